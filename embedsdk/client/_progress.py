"""The progress bar (tqdm): texts/s and ETA (tqdm's), tokens a minute, cost and what the
cache saved, cache hits, retries, 429s, and at the end what held the run back."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

# tqdm.auto: a widget in Jupyter (with ipywidgets), the usual text bar everywhere else.
from tqdm.auto import tqdm

from ._job import Stats

if TYPE_CHECKING:
    from .._prices import Price

# Redraw the counters at most this often (seconds): tqdm's own throttle covers the bar, but
# building the postfix dict on every batch would not be free at 10^5 batches per second.
_POSTFIX_EVERY = 0.25

#: Shares of the slots' time (``max_concurrent`` x the run's length) past which a run is
#: said to be held back by waiting (rate limits, retries) or by latency (every slot in flight).
WAITING_BOUND = 0.25
LATENCY_BOUND = 0.75


def held_back_by(usage: Stats, seconds: float, slots: int) -> str:
    """What held a run back, from how its slots spent their time (``seconds`` x ``slots``):
    waiting to go (``usage.waited_seconds``: a rate limit's turn, a retry's backoff), in
    flight (``usage.busy_seconds``: the server's latency), or neither (idle: the client read
    input, looked in the cache, decoded). ``""`` when nothing was sent."""
    capacity = seconds * max(1, slots)
    if usage.requests == 0 or capacity <= 0:
        return ""
    waited = min(1.0, usage.waited_seconds / capacity)
    busy = min(1.0, usage.busy_seconds / capacity)
    if waited >= WAITING_BOUND:
        what = "the rate limit" if usage.rate_limited or usage.retries == 0 else "retries"
        return f"{what}: requests waited to go {waited:.0%} of the time"
    if busy >= LATENCY_BOUND:
        slots_ = "the one slot" if slots <= 1 else f"all {slots} slots"
        return f"latency: {slots_} in flight {busy:.0%} of the time (--max-concurrent)"
    idle = max(0.0, 1.0 - waited - busy)
    return f"the client: the slots sat idle {idle:.0%} of the time (input, cache, decoding)"


class Progress:
    """A bar over ``total`` texts (``None`` when the length is unknown), fed by the core.

    ``counted``: the call's counters (a stream's windows all add to it: its :class:`Job`
    counts there too), priced at ``price``; ``slots``: the call's ``max_concurrent``, to say
    at the end what held the run back. Other calls on the same client do not move it.
    """

    def __init__(
        self, total: int | None, price: Price | None = None, enabled: bool = True, slots: int = 1
    ) -> None:
        self.counted = Stats(price=price)
        self._slots = slots
        self._started = time.monotonic()
        self._last = 0.0
        self._note = ""  # what holds the requests back, when something does
        self._bar = tqdm(
            total=total,
            unit="text",  # no unit_scale: it would show 40 texts as "40.0/40.0"
            dynamic_ncols=True,
            disable=not enabled,
            file=sys.stderr,
            smoothing=0.05,
        )

    def advance(self, texts: int) -> None:
        self._bar.update(texts)
        now = time.monotonic()
        if now - self._last >= _POSTFIX_EVERY:
            self._last = now
            self._bar.set_postfix(self.counters(), refresh=False)

    def usage(self) -> Stats:
        """What the call counted since the bar opened (a copy)."""
        return self.counted.copy()

    def counters(self) -> dict[str, object]:
        usage = self.usage()
        minutes = max(time.monotonic() - self._started, 1e-9) / 60
        counters: dict[str, object] = {
            "tokens": f"{usage.tokens:,}",  # tqdm writes a large int as 1e+04
            "tok/min": f"{usage.tokens / minutes:,.0f}",
        }
        cost = usage.cost
        if usage.price is not None and cost is not None:
            counters["cost"] = usage.price.money(cost)
            saved = usage.saved
            if usage.cache_hits and saved is not None:
                counters["saved"] = usage.price.money(saved)
        counters["cached"] = usage.cache_hits
        counters["retries"] = usage.retries
        if usage.rate_limited:
            counters["429s"] = usage.rate_limited
        if self._note:
            counters["limit"] = self._note
        return counters

    def note(self, text: str) -> None:
        """Say what holds the requests back (the rate controller's pace, a pause), now."""
        self._note = text
        self._last = time.monotonic()
        self._bar.set_postfix(self.counters(), refresh=True)

    def verdict(self) -> str:
        """What held the run back so far (see :func:`held_back_by`)."""
        return held_back_by(self.usage(), time.monotonic() - self._started, self._slots)

    def close(self) -> None:
        counters = self.counters()
        counters.pop("limit", None)
        verdict = self.verdict()
        if verdict:
            counters["held back by"] = verdict
        self._bar.set_postfix(counters, refresh=False)
        self._bar.close()

    @property
    def elapsed(self) -> float:
        return float(self._bar.format_dict.get("elapsed", 0.0))
