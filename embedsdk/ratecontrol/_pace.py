"""A pace: one quantity (requests, or tokens) per second, booked as a GCRA without burst, and
how it grows between cuts. Pure state: the controller holds it under its lock."""

from __future__ import annotations

import math

from ._tuning import Tuning

#: How a pace grows: ``DISCOVER`` doubles (it has never been refused: its first guess may be
#: far too low); ``REGAIN`` climbs back to the rate it was refused at, then beyond.
DISCOVER = "discover"
REGAIN = "regain"


class Pace:
    """The pace of one quantity, in units per second (``rate is None``: not limited).

    Bookings are spaced by the pace as it is when the next one is made (a GCRA whose
    theoretical arrival time follows the rate): the last booking's time and amount, and a
    ``floor`` the next may not come before (a pause's end, a cluster worker's turn). After
    a cut to ``base``, the pace grows with the seconds it held requests back (``used``):
    doubling every ``tuning.discover`` seconds in ``DISCOVER``, else along TCP CUBIC's curve,
    back to ``ceiling`` (the rate it was refused at) after ``period`` seconds, slowly near
    it, faster beyond it.
    """

    __slots__ = (
        "amount",
        "base",
        "ceiling",
        "floor",
        "last",
        "mode",
        "period",
        "phase",
        "rate",
        "tuning",
        "used",
    )

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.rate: float | None = None
        self.last = -math.inf  # when the last booking goes
        self.amount = 0.0  # its units
        self.floor = -math.inf
        self.phase: float | None = None
        self.base = 0.0
        self.ceiling = 0.0
        self.mode = DISCOVER
        self.used = 0.0
        self.period = tuning.regain

    def set(self, rate: float, ceiling: float, mode: str, period: float | None = None) -> None:
        """Pace at ``rate`` from now, growing in ``mode`` back towards ``ceiling``."""
        self.rate = self.base = rate
        self.ceiling = max(ceiling, rate)
        self.mode = mode
        self.used = 0.0
        self.period = max(self.tuning.regain, period or 0.0)

    def follow(self, rate: float | None) -> None:
        """Take a rate decided elsewhere (a cluster's leader): it does not grow here."""
        self.rate = rate
        self.base = self.ceiling = rate or 0.0
        self.mode = REGAIN
        self.used = -math.inf

    def grow(self, seconds: float) -> None:
        """The pace held requests back for ``seconds`` more."""
        if self.rate is None or self.used == -math.inf:
            return
        self.used += seconds
        if self.mode == DISCOVER:
            self.rate = self.base * 2.0 ** (self.used / self.tuning.discover)
            return
        # CUBIC: base at 0, the ceiling at ``period``, then beyond it on a steeper curve
        # (``tuning.beyond``: a ceiling measured too low is left within a few periods).
        k = self.period
        x = (self.used - k) / k
        if x >= 0 or self.ceiling <= self.base:
            self.rate = max(self.base, self.ceiling) * (1 + self.tuning.beyond * max(x, 0) ** 3)
            return
        self.rate = self.ceiling * (1 + (1 - self.base / self.ceiling) * x**3)

    def next(self) -> float:
        """The earliest the next booking may go (``-inf``: any time): on the grid of
        ``phase`` when one is set (a cluster's worker keeps to its own slots)."""
        if not self.rate:
            return self.floor
        step = (self.amount or 1.0) / self.rate
        if self.phase is None:
            return max(self.floor, self.last + step)
        # The first slot of the grid at least half a step after the last booking (one
        # that went a little late does not lose the next slot) and not before the floor.
        at = max(self.floor, self.last + step / 2)
        if at == -math.inf:
            return at
        return self.phase + step * math.ceil((at - self.phase) / step - 1e-6)

    def book(self, at: float, amount: float) -> None:
        self.last, self.amount = at, amount

    def interval(self, amount: float = 1.0) -> float:
        """Seconds this pace puts between two requests of ``amount`` units (0: no pace)."""
        return amount / self.rate if self.rate else 0.0
