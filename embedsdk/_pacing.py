"""The two things a rate controller steers: a pace (GCRA, per quantity) and a window
(requests in flight). Pure state, no locks: :class:`~embedsdk._adaptive.RateController`
holds them under its own.
"""

from __future__ import annotations

import math

#: Below this share of the pace a decrease came from, the pace grows three times as fast.
PLATEAU = 0.98
#: Successes at a level (requests in flight) that show the server takes that many.
LEVEL_EVIDENCE = 3


class _Pace:
    """The adaptive pace of one quantity (requests, or tokens), in units per second."""

    __slots__ = ("base", "peak", "rate", "tat")

    def __init__(self) -> None:
        self.rate: float | None = None  # None: not limited
        self.base = 0.0  # the pace set at the last decrease (the increase's scale)
        self.peak = 0.0  # the pace a decrease came from when it was only just too fast
        self.tat = -math.inf  # GCRA theoretical arrival time

    def decrease(self, factor: float, accepted: float | None, floor: float) -> None:
        """``factor`` times what the server took (per second), or a third as deep a cut from
        the pace when that is lower: the pace was then only just above the limit."""
        if accepted is not None and accepted > 0 and (self.rate is None or accepted < self.rate):
            self.rate = max(floor, factor * accepted)
            self.peak = 0.0
        elif self.rate is not None:
            self.peak = self.rate
            self.rate = max(floor, (2 + factor) / 3 * self.rate)
        self.base = self.rate or 0.0

    def increase(self, step: float, amount: float) -> None:
        """Grow by ``step`` of the base per second of use (``amount`` units just went),
        three times as fast while well under the pace the last decrease came from: back
        near the limit soon, then slowly over it (TCP CUBIC's plateau, in short)."""
        if self.rate is not None:
            if self.rate < PLATEAU * self.peak:
                step *= 3
            self.rate += step * self.base * amount / self.rate


class _Window:
    """How many requests may be in flight at once (``None``: as many as the clients send)."""

    __slots__ = ("interval", "limit", "next_probe", "passed", "probe", "refused_at")

    def __init__(self) -> None:
        self.limit: int | None = None
        self.refused_at: int | None = None  # the lowest level a cap refused lately
        self.interval = 2.0  # seconds between probes at that level, doubling on a refusal
        self.next_probe = -math.inf
        self.probe: int | None = None  # the level a probe opened, until it is answered
        self.passed = 0  # successes at the refused level since it was refused

    def narrow(self, now: float, level: int) -> None:
        """A cap refused a request sent with ``level`` in flight."""
        self.limit = max(1, min(self.limit or level, level - 1))
        if self.probe is not None and level >= self.probe:
            self.interval = min(2 * self.interval, 60.0)  # the probe failed: wait longer
            self.probe = None
        elif self.refused_at is None:
            self.interval = 2.0
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
            if self.passed >= LEVEL_EVIDENCE:  # the level refused before passes: it moved
                self.refused_at = self.probe = None
        if self.refused_at is None or limit + 1 < self.refused_at:
            self.limit = limit + 1
        elif now >= self.next_probe:
            self.limit = self.probe = limit + 1
            self.next_probe = now + self.interval
