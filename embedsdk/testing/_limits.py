"""Server-side rate limits: request and token counts over a sliding window (60 s by default)."""

from __future__ import annotations

import math
from collections import deque

WINDOW = 60.0  # seconds, unless SimConfig.window says otherwise


class SlidingWindow:
    """Admitted requests of the last ``window`` seconds, as ``(time, tokens)`` pairs.

    Times are whatever clock the caller passes (the loop's monotonic clock); only requests
    that were admitted count, as a provider bills only those.
    """

    __slots__ = ("events", "tokens", "window")

    def __init__(self, window: float = WINDOW) -> None:
        self.events: deque[tuple[float, int]] = deque()
        self.tokens = 0
        self.window = window

    def expire(self, now: float) -> None:
        events = self.events
        while events and events[0][0] <= now - self.window:
            self.tokens -= events.popleft()[1]

    def admit(
        self, now: float, tokens: int, rpm: float | None, tpm: float | None
    ) -> tuple[str, float] | None:
        """Record the request and return ``None``, or return ``(limit, wait)`` if it is over.

        ``limit`` is ``"RPM"`` or ``"TPM"``; ``wait`` is seconds until the window would take it.
        """
        self.expire(now)
        if rpm is not None and len(self.events) + 1 > _capacity(rpm):
            return "RPM", self._wait_requests(now, _capacity(rpm))
        if tpm is not None and self.tokens + tokens > tpm:
            return "TPM", self._wait_tokens(now, tokens, tpm)
        self.events.append((now, tokens))
        self.tokens += tokens
        return None

    def _wait_requests(self, now: float, capacity: int) -> float:
        # The request fits once all but capacity - 1 of the current events have expired.
        oldest_needed = self.events[len(self.events) - capacity]
        return max(0.0, oldest_needed[0] + self.window - now)

    def _wait_tokens(self, now: float, tokens: int, tpm: float) -> float:
        if tokens > tpm:
            return self.window  # never fits; a client should give up, not spin
        excess = self.tokens + tokens - tpm
        for when, count in self.events:
            excess -= count
            if excess <= 0:
                return max(0.0, when + self.window - now)
        return 0.0  # pragma: no cover - the loop always frees enough

    def remaining(self, now: float, rpm: float | None, tpm: float | None) -> dict[str, str]:
        """``x-ratelimit-*`` headers (OpenAI's names) describing the window."""
        self.expire(now)
        reset = _duration(self.events[0][0] + self.window - now) if self.events else "0s"
        headers: dict[str, str] = {}
        if rpm is not None:
            headers["x-ratelimit-limit-requests"] = str(_capacity(rpm))
            left = max(0, _capacity(rpm) - len(self.events))
            headers["x-ratelimit-remaining-requests"] = str(left)
            headers["x-ratelimit-reset-requests"] = reset
        if tpm is not None:
            headers["x-ratelimit-limit-tokens"] = str(int(tpm))
            headers["x-ratelimit-remaining-tokens"] = str(max(0, int(tpm) - self.tokens))
            headers["x-ratelimit-reset-tokens"] = reset
        return headers


def _capacity(rpm: float) -> int:
    """Requests a window holds: a fractional RPM rounds down, but at least one gets through."""
    return max(1, int(rpm))


def _duration(seconds: float) -> str:
    """OpenAI's duration format: ``"6m0s"``, ``"1.5s"``."""
    seconds = max(0.0, seconds)
    if seconds >= 60:
        minutes = int(seconds // 60)
        return f"{minutes}m{math.ceil(seconds - 60 * minutes)}s"
    return f"{seconds:.3g}s"
