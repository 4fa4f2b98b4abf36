"""A short fixed window, spent at each of its openings. Pure state: the controller holds it
under its lock.

A fixed window of a second gives its whole allowance back at once, at an instant set by the
server's clock. A pace spreads the allowance over the period, so it takes the windows a run
touches at its two ends only in part (a run of 60 s that starts mid-period touches 61), and
it meets the window's edge whenever it grows (a refusal every few seconds). Spent at each
opening instead, every window gives all of it, and no request is refused but those that look
for more room.
"""

from __future__ import annotations

import math

from ._tuning import Tuning


class Openings:
    """A window of ``period`` seconds that gave ``allowance`` requests, and opened no later
    than ``at`` (a request sent then got through after a wall): it opens again a whole
    number of periods after it.

    Each cycle sends the allowance as the window opens (``tuning.opens_late`` of the period
    after it); the first, which found it open, sends two more for each that got through
    (a bucket read as a window refuses the second, not the rest of the allowance at once).
    Once in ``tuning.spend_period`` seconds the cycle sends one more, half a period on, to
    look for more room: through, the allowance grows by one, and the next cycle looks
    again; refused, the next look waits twice as long. The server counts them in the order they
    reach it, not the order they went, so a cycle that looked may have any one refused;
    any other refusal says it was no such window (a bucket, or an opening learned wrong):
    :meth:`refused` is ``False``.
    """

    __slots__ = (
        "allowance",
        "anchor",
        "cycle",
        "extra",
        "look_after",
        "look_wait",
        "looked",
        "looked_refused",
        "ok",
        "period",
        "sent",
        "tuning",
    )

    def __init__(self, tuning: Tuning, period: float, at: float, allowance: int) -> None:
        self.tuning = tuning
        self.period = period
        self.anchor = at  # an opening, or a little after it
        self.allowance = max(1, allowance)
        self.cycle = 0  # the cycle the counts below are for
        self.sent = self.ok = 1  # the request that found it open
        self.extra = False  # whether this cycle looks for more room
        self.looked = -1  # the last cycle that did
        self.looked_refused = False  # whether one of its requests was refused
        self.look_wait = tuning.spend_period
        self.look_after = at + self.look_wait

    def turn(self, now: float) -> float | None:
        """When the next request may go: ``None``, now; else when the window opens."""
        cycle = math.floor((now - self.anchor) / self.period)
        if cycle > self.cycle:
            self.cycle, self.sent, self.ok = cycle, 0, 0
            self.extra = now >= self.look_after
            if self.extra:
                self.looked, self.looked_refused = cycle, False
                self.look_after = math.inf  # until its answers say when to look again
        if self.cycle == 0 and self.sent >= 2 * self.ok:
            return now + self.tuning.probe_poll  # the first: two more for each through
        if self.sent < self.allowance:
            return None
        if self.sent == self.allowance and self.extra:
            # Half a period on: a window shorter than the period learned has room again.
            look = self.anchor + (self.cycle + 0.5) * self.period
            return None if now >= look else look
        return self.anchor + (self.cycle + 1 + self.tuning.opens_late) * self.period

    def go(self) -> int:
        """A request went: the cycle it went in."""
        self.sent += 1
        return self.cycle

    def through(self, now: float, cycle: int) -> None:
        """A request of ``cycle`` got through; more than the allowance: the window gives
        one more."""
        if cycle != self.cycle:
            return
        self.ok += 1
        if self.ok > self.allowance:
            self.allowance += 1
            self.look_wait = self.tuning.spend_period
            self.look_after = now

    def refused(self, now: float, cycle: int) -> bool:
        """A request of ``cycle`` was refused: whether the window still holds."""
        if cycle != self.looked or self.looked_refused:
            return False
        self.looked_refused = True
        self.look_wait *= 2
        self.look_after = now + self.look_wait
        return True

    def rate(self) -> float:
        """Requests per second it gives."""
        return self.allowance / self.period
