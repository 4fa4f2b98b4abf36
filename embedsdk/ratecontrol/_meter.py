"""What the server took, counted over time. Pure state."""

from __future__ import annotations

import collections
import math

from ._tuning import Tuning


class Meter:
    """Successes (requests, tokens) in bins of ``tuning.bin`` seconds over the last
    ``tuning.recent`` seconds, and their totals since the start."""

    __slots__ = ("bins", "first", "requests", "tokens", "tuning")

    def __init__(self, tuning: Tuning) -> None:
        self.tuning = tuning
        # [bin, requests, tokens]
        self.bins: collections.deque[list[float]] = collections.deque()
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
        counts = self._bin(now)
        counts[1] += requests
        counts[2] += tokens

    def correct(self, tokens: float) -> None:
        """The last success counted ``tokens`` more real tokens than it was booked for."""
        self.tokens += tokens
        if self.bins:
            self.bins[-1][2] += tokens

    def totals(self) -> tuple[float, float]:
        return self.requests, self.tokens

    def _bin(self, now: float) -> list[float]:
        slot = math.floor(now / self.tuning.bin)
        bins = self.bins
        if not bins or bins[-1][0] != slot:
            bins.append([slot, 0.0, 0.0])
        oldest = slot - self.tuning.recent / self.tuning.bin
        while bins and bins[0][0] <= oldest:
            bins.popleft()
        return bins[-1]

    def _since(self, now: float, since: float) -> list[list[float]]:
        first = math.floor(max(since, now - self.tuning.recent) / self.tuning.bin)
        return [b for b in self.bins if b[0] >= first]

    def best_rate(self, now: float, since: float) -> tuple[float, float] | None:
        """Requests and tokens per second the server took at best over ``tuning.measure``
        seconds since ``since`` (within the last ``tuning.recent``), or on average when
        less time has passed; ``None`` when nothing was taken.

        The best run rather than the mean: after a cut the span holds the pause and the
        probe, which say nothing of the limit; while the pace was above the limit, what got
        through in a second is what the limit lets through in a second."""
        t = self.tuning
        start = max(since, now - t.recent)
        bins = [b for b in self._since(now, since) if b[1] or b[2]]
        if not bins or now <= start:
            return None
        if now - start < t.measure or len(bins) < 2:
            span = max(now - start, t.bin)
            return sum(b[1] for b in bins) / span, sum(b[2] for b in bins) / span
        width = round(t.measure / t.bin)
        best = [0.0, 0.0]
        head, total = 0, [0.0, 0.0]
        for tail in bins:  # a window of ``width`` bins sliding over them
            total[0] += tail[1]
            total[1] += tail[2]
            while bins[head][0] <= tail[0] - width:
                total[0] -= bins[head][1]
                total[1] -= bins[head][2]
                head += 1
            best = [max(best[0], total[0]), max(best[1], total[1])]
        return best[0] / t.measure, best[1] / t.measure
