"""What a rate controller learns from the answers: the levels of requests in flight the server
takes, which tell a concurrency cap from a rate limit (:class:`_Levels`). Pure state, no locks:
:class:`~embedsdk._adaptive.RateController` holds it under its own, and its module docstring
tells the design.
"""

from __future__ import annotations

import collections
import math

from ._pacing import LEVEL_EVIDENCE
from ._ratelimit_hints import RateLimitHeaders, exhausted, says_concurrency, says_per_minute


class _Levels:
    """Successes and refusals by the requests in flight when each was sent (its level), over
    the last 10-20 s (two halves): which levels the server takes, so whether a refusal above
    them reads as a concurrency cap."""

    __slots__ = ("ok", "refused", "turn")

    def __init__(self) -> None:
        self.ok: list[collections.Counter[int]] = [collections.Counter(), collections.Counter()]
        self.refused: list[collections.Counter[int]] = [
            collections.Counter(),
            collections.Counter(),
        ]
        self.turn = -math.inf

    def note(self, now: float, level: int, refused: bool = False) -> None:
        """Count a success (or a refusal) by its level, over the last 10-20 s."""
        if now - self.turn > 10.0:
            self.ok = [self.ok[1], collections.Counter()]
            self.refused = [self.refused[1], collections.Counter()]
            self.turn = now
        (self.refused if refused else self.ok)[1][level] += 1

    def reached(self) -> int:
        """The most requests in flight that recent successes had, counting only levels that
        succeeded a few times and more often than they were refused: a client's count runs
        a little ahead of the server's (answers on their way back), and a lucky success now
        and then above a cap must not hide it."""
        ok = self.ok[0] + self.ok[1]
        refused = self.refused[0] + self.refused[1]
        return max(
            (level for level, n in ok.items() if n >= LEVEL_EVIDENCE and n > refused[level]),
            default=0,
        )

    def above(self, level: int) -> bool:
        """Whether a request sent with ``level`` in flight went above every level that
        recent successes had (a lone request never does)."""
        return level > 1 and level > self.reached()

    def is_cap(self, level: int, message: str, hint: RateLimitHeaders | None) -> bool:
        """Whether a 429 reads as a concurrency cap rather than a rate limit: it says so,
        or it says nothing and came back on a request sent with more in flight than any
        recent success had."""
        if not level:
            return False
        if says_concurrency(message):
            return True
        if exhausted(message, hint) != (True, True) or says_per_minute(message):
            return False  # it names the requests or the tokens that ran out
        return self.above(level)
