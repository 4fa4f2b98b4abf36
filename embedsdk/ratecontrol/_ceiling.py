"""The user's own ``rpm`` / ``tpm``: hard ceilings, spread evenly over the minute.

``AsyncLimiter(rpm, 60)`` would let a whole minute's allowance through at once, and a server
that enforces the same figure over shorter periods (a token bucket with a second of burst, or
OpenAI's "quantized" limits) would refuse most of that burst. So each ceiling is a leaky
bucket (aiolimiter) that holds half a second of the rate (at least one request), running 1 %
under the figure: a server enforcing the same limit, as a token bucket with a second of
burst or more or as a window of a minute, then never has a reason to refuse.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

#: Seconds of the rate a ceiling lets through at once (after an idle spell).
BURST = 0.5
#: How far under the user's figure the ceiling runs: room for clocks and network jitter.
MARGIN = 0.01


def spread_limiter(per_minute: float) -> AsyncLimiter:
    """A limiter of ``per_minute`` units, at most :data:`BURST` seconds of them at once."""
    per_second = per_minute / 60 * (1 - MARGIN)
    capacity = max(1.0, per_second * BURST)
    return AsyncLimiter(capacity, capacity / per_second)


async def acquire(limiter: AsyncLimiter, amount: float) -> None:
    """Take ``amount`` units, in pieces when it is more than the bucket holds: a request
    larger than half a second of the rate waits until all of its units have been metered."""
    capacity = limiter.max_rate
    while amount > capacity:
        await limiter.acquire(capacity)
        amount -= capacity
    await limiter.acquire(max(amount, 0.0))


class Ceilings:
    """The two ceilings of one client, made on first use on the loop that uses them."""

    __slots__ = ("_requests", "_rpm", "_tokens", "_tpm")

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self._rpm = rpm
        self._tpm = tpm
        self._requests: AsyncLimiter | None = None
        self._tokens: AsyncLimiter | None = None

    def forget(self) -> None:
        """Drop the limiters (they belong to a loop that is gone: a fork, a new loop)."""
        self._requests = self._tokens = None

    async def wait(self, tokens: float) -> None:
        """Wait until one request of ``tokens`` tokens fits under both ceilings."""
        if self._rpm is not None:
            if self._requests is None:
                self._requests = spread_limiter(self._rpm)
            await self._requests.acquire()
        if self._tpm is not None:
            if self._tokens is None:
                self._tokens = spread_limiter(self._tpm)
            await acquire(self._tokens, tokens)
