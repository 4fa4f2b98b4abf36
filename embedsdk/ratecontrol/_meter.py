"""What the server took: successes (requests and tokens) counted over time. Pure state."""

from __future__ import annotations

import collections
import math

from ._tuning import Tuning


class Meter:
    """Successes in bins of ``tuning.bin`` seconds over the last ``tuning.recent`` seconds,
    and their totals since the start (requests, tokens)."""

    __slots__ = ("bins", "first", "requests", "tokens", "tuning")

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        self.bins: collections.deque[list[float]] = collections.deque()  # [bin, req, tok]
        self.requests = 0.0
        self.tokens = 0.0
        self.first: float | None = None  # when the first request went

    def sent(self, now: float) -> None:
        """A request went at ``now`` (only the first one matters)."""
        if self.first is None:
            self.first = now

    def add(self, now: float, requests: float, tokens: float) -> None:
        """``requests`` successes of ``tokens`` tokens, answered at ``now``."""
        self.requests += requests
        self.tokens += tokens
        slot = math.floor(now / self.tuning.bin)
        bins = self.bins
        if bins and bins[-1][0] == slot:
            bins[-1][1] += requests
            bins[-1][2] += tokens
        else:
            bins.append([slot, requests, tokens])
        oldest = slot - self.tuning.recent / self.tuning.bin
        while bins and bins[0][0] <= oldest:
            bins.popleft()

    def correct(self, tokens: float) -> None:
        """The last success counted ``tokens`` more real tokens than it was booked for."""
        self.tokens += tokens
        if self.bins:
            self.bins[-1][2] += tokens

    def totals(self) -> tuple[float, float]:
        return self.requests, self.tokens

    def best_rate(self, now: float, since: float) -> tuple[float, float] | None:
        """Requests and tokens per second the server took at best over ``tuning.measure``
        seconds since ``since`` (within the last ``tuning.recent``), or on average when
        less time has passed; ``None`` when nothing was taken.

        The best run rather than the mean: after a cut the span holds the pause and the
        probe, which say nothing of the limit; while the pace was above the limit, what got
        through in a second is what the limit lets through in a second."""
        t = self.tuning
        since = max(since, now - t.recent)
        first = math.floor(since / t.bin)
        bins = [b for b in self.bins if b[0] >= first]
        if not bins or now <= since:
            return None
        width = round(t.measure / t.bin)
        if now - since < t.measure or len(bins) < 2:
            span = max(now - since, t.bin)
            return sum(b[1] for b in bins) / span, sum(b[2] for b in bins) / span
        best = [0.0, 0.0]
        for i, start in enumerate(bins):
            run = [b for b in bins[i:] if b[0] < start[0] + width]
            best[0] = max(best[0], sum(b[1] for b in run))
            best[1] = max(best[1], sum(b[2] for b in run))
        return best[0] / t.measure, best[1] / t.measure
