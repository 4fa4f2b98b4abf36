"""The progress bar (tqdm): texts/s, tokens, cache hits, retries and ETA."""

from __future__ import annotations

import sys
import time
from typing import Any

# tqdm.auto: a widget in Jupyter (with ipywidgets), the usual text bar everywhere else.
from tqdm.auto import tqdm

# Redraw the counters at most this often (seconds): tqdm's own throttle covers the bar, but
# building the postfix dict on every batch would not be free at 10^5 batches per second.
_POSTFIX_EVERY = 0.25


class Progress:
    """A bar over ``total`` texts (``None`` when the length is unknown), fed by the core."""

    def __init__(self, total: int | None, stats: Any, enabled: bool = True) -> None:
        self._stats = stats
        self._base = (stats.tokens, stats.cache_hits, stats.retries, stats.rate_limited)
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

    def counters(self) -> dict[str, object]:
        tokens, hits, retries, limited = self._base
        counters: dict[str, object] = {
            "tokens": self._stats.tokens - tokens,
            "cached": self._stats.cache_hits - hits,
            "retries": self._stats.retries - retries,
        }
        if self._stats.rate_limited > limited:
            counters["429s"] = self._stats.rate_limited - limited
        if self._note:
            counters["limit"] = self._note
        return counters

    def note(self, text: str) -> None:
        """Say what holds the requests back (the rate controller's pace, a pause), now."""
        self._note = text
        self._last = time.monotonic()
        self._bar.set_postfix(self.counters(), refresh=True)

    def close(self) -> None:
        self._bar.set_postfix(self.counters(), refresh=False)
        self._bar.close()

    @property
    def elapsed(self) -> float:
        return float(self._bar.format_dict.get("elapsed", 0.0))
