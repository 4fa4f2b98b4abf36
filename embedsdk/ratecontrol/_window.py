"""Requests in flight: the window a concurrency cap allows, and the evidence that tells a cap
from a rate limit. Pure state: the controller holds it under its lock."""

from __future__ import annotations

import collections
import math

from ..http import RateLimitHeaders
from ._hints import exhausted, says_concurrency, says_per_minute
from ._tuning import Tuning


class Window:
    """How many requests may be in flight at once (``limit is None``: as many as are sent).

    A cap that refused a request sent with ``level`` in flight narrows it to ``level - 1``;
    each success that filled it widens it by one, up to the level refused last, which is
    probed again after ``tuning.cap_probe`` seconds, twice as long after each refused probe.
    """

    __slots__ = ("interval", "limit", "next_probe", "passed", "probe", "refused_at", "tuning")

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.limit: int | None = tuning.start_window
        self.refused_at: int | None = None  # the lowest level a cap refused lately
        self.interval = tuning.cap_probe
        self.next_probe = -math.inf
        self.probe: int | None = None  # the level a probe opened, until it is answered
        self.passed = 0  # successes at the refused level since it was refused

    def narrow(self, now: float, level: int) -> None:
        """A cap refused a request sent with ``level`` in flight."""
        self.limit = max(1, min(self.limit or level, level - 1))
        if self.probe is not None and level >= self.probe:
            self.interval = min(2 * self.interval, self.tuning.cap_probe_max)  # it failed
            self.probe = None
        elif self.refused_at is None:
            self.interval = self.tuning.cap_probe
        self.refused_at = level if self.refused_at is None else min(self.refused_at, level)
        self.next_probe = now + self.interval
        self.passed = 0

    def widen(self, now: float, level: int) -> None:
        """A request sent with ``level`` in flight succeeded."""
        limit = self.limit
        if limit is None or level < limit:
            return
        if self.refused_at is not None and level >= self.refused_at:
            self.passed += 1
            if self.passed >= self.tuning.level_evidence:  # the refused level passes now
                self.refused_at = self.probe = None
        if self.refused_at is None or limit + 1 < self.refused_at:
            self.limit = limit + 1
        elif now >= self.next_probe:
            self.limit = self.probe = limit + 1
            self.next_probe = now + self.interval


class Levels:
    """Successes and refusals by the requests in flight when each was sent (its level), over
    the last one or two ``tuning.level_memory`` spans: which levels the server takes, so
    whether a refusal above them reads as a concurrency cap."""

    __slots__ = ("ok", "refused", "tuning", "turn")

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.ok = [collections.Counter[int](), collections.Counter[int]()]
        self.refused = [collections.Counter[int](), collections.Counter[int]()]
        self.turn = -math.inf

    def note(self, now: float, level: int, refused: bool = False) -> None:
        if now - self.turn > self.tuning.level_memory:
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
        evidence = self.tuning.level_evidence
        return max((lv for lv, n in ok.items() if n >= evidence and n > refused[lv]), default=0)

    def above(self, level: int) -> bool:
        """Whether a request sent with ``level`` in flight went above every level that
        recent successes had (a lone request never does)."""
        return level > 1 and level > self.reached()

    def is_cap(self, level: int, message: str, hint: RateLimitHeaders | None) -> bool:
        """Whether a 429 reads as a concurrency cap rather than a rate limit: it says so,
        or it says nothing and came back on a request sent with more in flight than recent
        successes had. Before any level has succeeded a few times (the first requests of a
        run), a 429 that says nothing reads as a rate limit: the two cannot be told apart
        yet, and a cap then shows as a pace that keeps growing until the levels are known."""
        if not level:
            return False
        if says_concurrency(message):
            return True
        if exhausted(message, hint) != (True, True) or says_per_minute(message):
            return False  # it names the requests or the tokens that ran out
        return self.reached() > 0 and self.above(level)
