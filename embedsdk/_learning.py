"""What a rate controller learns from the answers: the pace a rate limit allows, from what got
through (:class:`_PaceLearner`), and the levels of requests in flight the server takes, which
tell a concurrency cap from a rate limit (:class:`_Levels`). Pure state, no locks:
:class:`~embedsdk._adaptive.RateController` holds them under its own, and its module docstring
tells the design.
"""

from __future__ import annotations

import collections
import math

from ._pacing import LEVEL_EVIDENCE, _Pace
from ._ratelimit_hints import RateLimitHeaders, exhausted, says_concurrency, says_per_minute

#: A wall that lasted this long (seconds) was a window's, not a bucket's: see after_wall.
LONG_WALL = 1.0
#: A wall this old is a window of a minute or so: a probe also goes just after a whole
#: number of minutes from the cycle's first request, when such a window opens again
#: (``OPENS_LATE`` seconds after, for the clocks' difference).
MINUTE_WALL = 5.0
OPENS_LATE = 0.05
#: After a long wall, the share of the whole cycle's rate to pace at: that rate is what the
#: window sustains, measured (not a pace that overshot), so only its error is allowed for.
AFTER_WALL = 0.97
#: Successes are counted in bins of BIN seconds over the last RECENT seconds.
BIN = 0.25
RECENT = 10.0


class _PaceLearner:
    """The pace of ``requests`` and ``tokens`` (the controller's own :class:`_Pace` objects),
    learned from what the server accepted and from its walls of refusals (runs of 429s).

    ``decrease``, ``increase`` and ``quiet``: as :class:`~embedsdk._adaptive.RateController`
    takes them.
    """

    __slots__ = (
        "cut_what",
        "cycle",
        "decrease",
        "decreased_at",
        "increase",
        "ok_requests",
        "ok_tokens",
        "quiet",
        "recent",
        "refused_at",
        "requests",
        "since",
        "timescale",
        "tokens",
        "wall_since",
    )

    def __init__(
        self, requests: _Pace, tokens: _Pace, decrease: float, increase: float, quiet: float
    ) -> None:
        self.requests = requests
        self.tokens = tokens
        self.decrease = decrease
        self.increase = increase
        self.quiet = quiet
        # What the server accepted since the last decrease: the estimate of its limit.
        self.since: float | None = None
        self.ok_requests = 0.0
        self.ok_tokens = 0.0
        self.recent: collections.deque[list[float]] = collections.deque()  # [bin, req, tok]
        # What got through since the last long wall ended (or the start): see after_wall.
        self.cycle: list[float] | None = None  # [since, requests, tokens]
        self.cut_what = (True, True)  # what the last decrease was for: requests, tokens
        self.decreased_at = -math.inf
        self.timescale = 0.0  # the longest wall seen, seconds: the limit's own period
        self.wall_since = -math.inf  # first refusal of the current wall
        self.refused_at = -math.inf  # the last refusal of the current wall

    def begin(self, now: float) -> None:
        """A first request went at ``now``: what gets through is counted from then on."""
        if self.since is None:
            self.since = now

    def count(self, now: float, sent: float, requests: float, tokens: float) -> None:
        """``requests`` successes of ``tokens`` tokens, the first sent at ``sent``."""
        self.ok_requests += requests
        self.ok_tokens += tokens
        self._count_recent(now, requests, tokens)
        if self.cycle is None:
            self.cycle = [sent, 0.0, 0.0]
        self.cycle[1] += requests
        self.cycle[2] += tokens

    def correct(self, tokens: float) -> None:
        """The last success counted ``tokens`` more real tokens than it was booked for."""
        self.ok_tokens += tokens
        if self.recent:
            self.recent[-1][2] += tokens
        if self.cycle is not None:
            self.cycle[2] += tokens

    def refused(self, now: float, first: bool, what: tuple[bool, bool]) -> None:
        """A rate limit refused a request at ``now``; ``first``: the first refusal of a wall
        (the pace was too fast: cut it; later ones: the wall lasts); ``what``: whether the
        requests and/or the tokens ran out."""
        if first:
            self.wall_since = now
            self.cut(now, *what)
        self.refused_at = now

    def wall_ended(self, now: float) -> None:
        """A success ends the current wall: one that lasted was a window's (see after_wall)."""
        if now - self.wall_since >= LONG_WALL:
            self.timescale = max(self.timescale, now - self.wall_since)
            self.after_wall(now)

    def _count_recent(self, now: float, requests: float, tokens: float) -> None:
        """Successes per bin of :data:`BIN` seconds, over the last :data:`RECENT` seconds."""
        slot = math.floor(now / BIN)
        bins = self.recent
        if bins and bins[-1][0] == slot:
            bins[-1][1] += requests
            bins[-1][2] += tokens
        else:
            bins.append([slot, requests, tokens])
        while bins and bins[0][0] <= slot - RECENT / BIN:
            bins.popleft()

    def accepted(self, now: float) -> tuple[float, float] | None:
        """Requests and tokens per second the server took since the last decrease, over
        at most the last :data:`RECENT` seconds; ``None`` when too little is known."""
        if self.since is None or self.ok_requests < 2:
            return None
        start = max(self.since, now - RECENT)
        span = now - start
        if span <= 0:
            return None
        first = math.floor(start / BIN)
        requests = sum(b[1] for b in self.recent if b[0] >= first)
        tokens = sum(b[2] for b in self.recent if b[0] >= first)
        requests, tokens = min(requests, self.ok_requests), min(tokens, self.ok_tokens)
        return requests / span, tokens / span

    def cut(self, now: float, requests: bool, tokens: bool) -> None:
        """Multiplicative decrease of the exhausted dimension(s), from what got through.

        What went through recently is at least the limit's rate when the pace was above it
        (a bucket's burst aside); the span may include a slow start after the last
        decrease, so the limit may be somewhat above it."""
        accepted = self.accepted(now)
        for pace, index, floor, flag in (
            (self.requests, 0, 1 / 60, requests),
            (self.tokens, 1, 1.0, tokens),
        ):
            if flag:
                took = None if accepted is None else accepted[index] / 0.85
                pace.decrease(self.decrease, took, floor)
        self.cut_what = (requests, tokens)
        self.since = now
        self.ok_requests = self.ok_tokens = 0.0
        self.decreased_at = now

    def after_wall(self, now: float) -> None:
        """A wall that lasted seconds has ended: a window (of a minute, say) that was spent
        early is open again. What got through over the whole cycle, this wall included
        (to about when it ended: between the last refusal and now), is what the window
        sustains: pace under that before everybody goes again."""
        cycle, self.cycle = self.cycle, None
        end = (max(self.refused_at, self.wall_since) + now) / 2
        if cycle is None or end <= cycle[0]:
            return
        span = end - cycle[0]
        requests, tokens = self.cut_what
        if requests:
            self.requests.decrease(AFTER_WALL, cycle[1] / span, 1 / 60)
        if tokens:
            self.tokens.decrease(AFTER_WALL, cycle[2] / span, 1.0)
        self.decreased_at = now

    def window_opens(self, now: float) -> float | None:
        """When a per-minute window opened by the cycle's first request (a sliding window,
        or one counted from it) has room again: just after the next whole number of minutes
        from it. ``None`` unless the current wall has lasted :data:`MINUTE_WALL` seconds."""
        if self.cycle is None or now - self.wall_since < MINUTE_WALL:
            return None
        start = self.cycle[0]
        return start + 60.0 * math.floor((now - start) / 60.0 + 1.0) + OPENS_LATE

    def grow(self, now: float, tokens: float, requests: float = 1.0) -> None:
        """Additive increase, doubling after each quiet spell since the last decrease.

        A limit counted over a long period (a wall lasted ``timescale`` seconds) answers an
        overshoot only that much later: grow by at most a tenth per period then."""
        step = self.increase
        spell = self.quiet
        if self.timescale:
            step = min(step, 0.1 / self.timescale)
            spell = max(spell, self.timescale)
        if self.decreased_at > -math.inf:  # a pace only followed (never cut) does not double
            step *= 2.0 ** min(4.0, math.floor((now - self.decreased_at) / spell))
        self.requests.increase(step, requests)
        self.tokens.increase(step, tokens)


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
