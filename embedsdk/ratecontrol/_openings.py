"""A short fixed window, spent as each of its periods begins. Pure state: the controller
holds it under its lock.

A fixed window of a second gives its whole allowance back at once, at an instant set by the
server's clock. A pace spreads the allowance over the period, so it takes the windows a run
touches at its two ends only in part (a run of 60 s that starts mid-period touches 61), and
it meets the window's edge whenever it grows (a refusal every few seconds). Spent as each
period begins instead, every window gives all of it, and no request is refused but those
that look for more room.
"""

from __future__ import annotations

import math

from ._tuning import Tuning


class Openings:
    """A window of ``period`` seconds that gave ``allowance`` requests, and was open by
    ``at`` (a request sent then got through after a wall; one sent ``band`` seconds before
    was refused, so it opened in between): it opens again a whole number of periods on.

    Each period's allowance goes as it begins (``tuning.opens_late`` of the period after
    ``at``, so after the opening wherever in the band it fell); none goes in the band before
    it, where the server may count it in the next window. Until as many as the first burst
    got have got through (``confirmed``), two more go for each that did: a bucket read as a
    window refuses the second, not the rest of an allowance at once.

    Once in ``tuning.spend_period`` seconds a period sends one more, half a period on, to
    look for room: when the period's requests all get through, the allowance grows by one
    and the next period looks again; when one is refused, the next look waits twice as long
    (at most ``tuning.look_max``). The server counts a period's requests as they reach it,
    so any one of a period that looked may be the refused one; any other refusal says this
    is no such window (:meth:`refused` is ``False``).
    """

    __slots__ = (
        "allowance",
        "anchor",
        "band",
        "confirmed",
        "cycle",
        "limit",
        "look_after",
        "look_wait",
        "looked",
        "looked_ok",
        "looked_refused",
        "period",
        "sent",
        "tried",
        "tuning",
    )

    def __init__(
        self, tuning: Tuning, period: float, at: float, band: float, allowance: int
    ) -> None:
        self.tuning = tuning
        self.period = period
        self.anchor = at
        self.band = min(max(0.0, band), period / 2)
        self.allowance = max(1, allowance)
        self.cycle = 0  # the period the counts below are for
        self.limit = self.allowance  # what it may send: the allowance, and a look
        self.sent = 1  # this period's: the request that found it open
        self.tried = [1, 1]  # sent and through before it is confirmed
        self.confirmed = self.allowance <= 1
        self.look_wait = tuning.spend_period
        self.look_after = at + self.look_wait
        self.looked = -1  # the last period that looked for room
        self.looked_ok = 0  # its requests through
        self.looked_refused = False  # whether one of them was refused

    def turn(self, now: float) -> float | None:
        """When the next request may go: ``None``, now; else when to ask again (the next
        period's start, half a period on for a look, or soon while it is not confirmed)."""
        cycle = math.floor((now - self.anchor) / self.period)
        if cycle > self.cycle:
            self.cycle, self.sent, self.limit = cycle, 0, self.allowance
            if now >= self.look_after:
                self.limit += 1
                self.looked, self.looked_ok, self.looked_refused = cycle, 0, False
                self.look_after = now + self.look_wait
        start = self.anchor + self.cycle * self.period
        if not self.confirmed and self.tried[0] >= 2 * self.tried[1]:
            return now + self.tuning.probe_poll
        if self.sent < self.allowance:
            if now < start + self.period - self.band:
                return None
        elif self.sent < self.limit:  # the look, half a period on
            look = start + self.period / 2
            return None if now >= look else look
        return start + (1 + self.tuning.opens_late) * self.period

    def go(self) -> int:
        """A request went: the period it went in."""
        self.sent += 1
        if not self.confirmed:
            self.tried[0] += 1
        return self.cycle

    def through(self, now: float, cycle: int) -> None:
        """A request sent in period ``cycle`` got through."""
        if not self.confirmed:
            self.tried[1] += 1
            self.confirmed = self.tried[1] >= self.allowance
        if cycle == self.looked and not self.looked_refused:
            self.looked_ok += 1
            if self.looked_ok > self.allowance:  # the look got through: one more
                self.allowance += 1
                self.look_wait = self.tuning.spend_period
                self.look_after = now

    def refused(self, now: float, cycle: int) -> bool:
        """A request of period ``cycle`` was refused: whether the window still holds."""
        if not self.confirmed or cycle != self.looked or self.looked_refused:
            return False
        self.looked_refused = True
        self.look_wait = min(2 * self.look_wait, self.tuning.look_max)
        self.look_after = now + self.look_wait
        return True

    def opens(self) -> float:
        """When the next period begins."""
        return self.anchor + (self.cycle + 1 + self.tuning.opens_late) * self.period

    def rate(self) -> float:
        """Requests per second it gives."""
        return self.allowance / self.period
