"""Server-side rate limits of the kinds providers and gateways enforce (no two alike).

``rpm`` / ``tpm`` are always per minute, the figure a provider publishes; ``kind`` says how
the server counts them:

- ``"sliding"``: at most ``rpm * window / 60`` requests (and tokens) in any ``window``
  seconds, a log of what was admitted;
- ``"fixed"``: the same allowance per aligned period (``[k * window, (k + 1) * window)``),
  reset all at once, as a counter with an expiry does;
- ``"token_bucket"``: refilled continuously at ``rpm / 60`` per second, holding ``burst``
  seconds of it (at least one request), as nginx ``limit_req``, Envoy and API gateways do;

and :class:`InFlightCap` refuses beyond a number of requests being answered (Zhipu's kind).
Only admitted requests count, as a provider bills only those. Times are whatever clock the
caller passes (the server loop's). Pure: no I/O, no sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

WINDOW = 60.0  # seconds, unless SimConfig.window says otherwise
LIMITER_KINDS = ("sliding", "fixed", "token_bucket")


class Refusal(NamedTuple):
    """Why a request was refused: ``which`` limit (``"RPM"``, ``"TPM"`` or
    ``"concurrency"``) and ``wait``, seconds until it would be taken (a hint)."""

    which: str
    wait: float


class RateLimiter:
    """A request and token limit of one kind. :meth:`admit` records what it takes."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm = rpm
        self.tpm = tpm

    def admit(self, now: float, tokens: int) -> Refusal | None:
        raise NotImplementedError

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers: the limit per minute, what is left now, and
        the time until the limit is back to its initial state."""
        raise NotImplementedError


class SlidingWindow(RateLimiter):
    """Admitted requests of the last ``window`` seconds, as ``(time, tokens)`` pairs."""

    def __init__(self, rpm: float | None, tpm: float | None, window: float = WINDOW) -> None:
        super().__init__(rpm, tpm)
        self.window = window
        self.events: deque[tuple[float, int]] = deque()
        self.tokens = 0

    def _expire(self, now: float) -> None:
        events = self.events
        while events and events[0][0] <= now - self.window:
            self.tokens -= events.popleft()[1]

    def admit(self, now: float, tokens: int) -> Refusal | None:
        self._expire(now)
        requests = allowance(self.rpm, self.window)
        if requests is not None and len(self.events) + 1 > requests:
            oldest_needed = self.events[len(self.events) - int(requests)]
            return Refusal("RPM", max(0.0, oldest_needed[0] + self.window - now))
        budget = allowance(self.tpm, self.window)
        if budget is not None and self.tokens + tokens > budget:
            return Refusal("TPM", self._wait_tokens(now, tokens, budget))
        self.events.append((now, tokens))
        self.tokens += tokens
        return None

    def _wait_tokens(self, now: float, tokens: int, budget: float) -> float:
        if tokens > budget:
            return self.window  # never fits; a client should give up, not spin
        excess = self.tokens + tokens - budget
        for when, count in self.events:
            excess -= count
            if excess <= 0:
                return max(0.0, when + self.window - now)
        return 0.0  # pragma: no cover - the loop always frees enough

    def headers(self, now: float) -> dict[str, str]:
        self._expire(now)
        reset = self.events[-1][0] + self.window - now if self.events else 0.0
        return _headers(
            self.rpm,
            allowance(self.rpm, self.window),
            len(self.events),
            self.tpm,
            allowance(self.tpm, self.window),
            self.tokens,
            reset,
        )


class FixedWindow(RateLimiter):
    """Counts per aligned period of ``window`` seconds, reset to zero when it ends."""

    def __init__(self, rpm: float | None, tpm: float | None, window: float = WINDOW) -> None:
        super().__init__(rpm, tpm)
        self.window = window
        self.period = -1
        self.requests = 0
        self.tokens = 0

    def _roll(self, now: float) -> None:
        period = math.floor(now / self.window)
        if period != self.period:
            self.period, self.requests, self.tokens = period, 0, 0

    def _until_reset(self, now: float) -> float:
        return (self.period + 1) * self.window - now

    def admit(self, now: float, tokens: int) -> Refusal | None:
        self._roll(now)
        requests = allowance(self.rpm, self.window)
        if requests is not None and self.requests + 1 > requests:
            return Refusal("RPM", self._until_reset(now))
        budget = allowance(self.tpm, self.window)
        if budget is not None and self.tokens + tokens > budget:
            wait = self.window if tokens > budget else self._until_reset(now)
            return Refusal("TPM", wait)
        self.requests += 1
        self.tokens += tokens
        return None

    def headers(self, now: float) -> dict[str, str]:
        self._roll(now)
        used = self.requests or self.tokens
        reset = self._until_reset(now) if used else 0.0
        return _headers(
            self.rpm,
            allowance(self.rpm, self.window),
            self.requests,
            self.tpm,
            allowance(self.tpm, self.window),
            self.tokens,
            reset,
        )


class _Bucket:
    """One continuously refilled bucket: ``rate`` units per second, ``capacity`` units."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity  # starts full
        self.stamp: float | None = None

    def refill(self, now: float) -> None:
        if self.stamp is not None:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, cost: float) -> float:
        """Seconds until the bucket takes ``cost`` (0: now). A cost above the capacity goes
        once the bucket is full, and leaves it in debt: the usual gateway behaviour."""
        need = min(cost, self.capacity) - self.level
        return 0.0 if need <= 1e-9 else need / self.rate

    def until_full(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


class TokenBucket(RateLimiter):
    """Refilled at ``rpm / 60`` requests (``tpm / 60`` tokens) per second, holding ``burst``
    seconds of that (at least one request)."""

    def __init__(self, rpm: float | None, tpm: float | None, burst: float = 1.0) -> None:
        super().__init__(rpm, tpm)
        self.burst = burst
        self.requests = None if rpm is None else _Bucket(rpm / 60, max(1.0, rpm / 60 * burst))
        self.tokens = None if tpm is None else _Bucket(tpm / 60, max(1.0, tpm / 60 * burst))

    def admit(self, now: float, tokens: int) -> Refusal | None:
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)
        if self.requests is not None:
            wait = self.requests.wait(1)
            if wait > 0:
                return Refusal("RPM", wait)
        if self.tokens is not None:
            wait = self.tokens.wait(tokens)
            if wait > 0:
                return Refusal("TPM", wait)
        if self.requests is not None:
            self.requests.level -= 1
        if self.tokens is not None:
            self.tokens.level -= tokens
        return None

    def headers(self, now: float) -> dict[str, str]:
        resets = []
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)
                resets.append(bucket.until_full())
        r, t = self.requests, self.tokens
        return _headers(
            self.rpm,
            None if r is None else r.capacity,
            0 if r is None else r.capacity - r.level,
            self.tpm,
            None if t is None else t.capacity,
            0 if t is None else t.capacity - t.level,
            max(resets, default=0.0),
        )


class InFlightCap:
    """At most ``limit`` requests being answered at once; beyond it, a refusal."""

    __slots__ = ("busy", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0

    def enter(self) -> Refusal | None:
        if self.busy >= self.limit:
            return Refusal("concurrency", 1.0)
        self.busy += 1
        return None

    def leave(self) -> None:
        self.busy -= 1


def make_limiter(
    kind: str, rpm: float | None, tpm: float | None, window: float, burst: float
) -> RateLimiter | None:
    """The limiter of ``kind`` for these limits, or ``None`` when there are none."""
    if rpm is None and tpm is None:
        return None
    if kind == "token_bucket":
        return TokenBucket(rpm, tpm, burst)
    if kind == "fixed":
        return FixedWindow(rpm, tpm, window)
    return SlidingWindow(rpm, tpm, window)


def allowance(per_minute: float | None, window: float) -> float | None:
    """What a window of ``window`` seconds admits of a per-minute limit: at least one
    request, whole requests (a fractional allowance rounds down)."""
    if per_minute is None:
        return None
    return float(max(1, int(per_minute * window / 60 + 1e-9)))


def _headers(
    rpm: float | None,
    request_capacity: float | None,
    requests_used: float,
    tpm: float | None,
    token_capacity: float | None,
    tokens_used: float,
    reset: float,
) -> dict[str, str]:
    headers: dict[str, str] = {}
    duration = _duration(reset)
    if rpm is not None and request_capacity is not None:
        headers["x-ratelimit-limit-requests"] = f"{rpm:g}"
        left = max(0, math.floor(request_capacity - requests_used + 1e-9))
        headers["x-ratelimit-remaining-requests"] = str(left)
        headers["x-ratelimit-reset-requests"] = duration
    if tpm is not None and token_capacity is not None:
        headers["x-ratelimit-limit-tokens"] = f"{tpm:g}"
        left = max(0, math.floor(token_capacity - tokens_used + 1e-9))
        headers["x-ratelimit-remaining-tokens"] = str(left)
        headers["x-ratelimit-reset-tokens"] = duration
    return headers


def _duration(seconds: float) -> str:
    """OpenAI's duration format: ``"6m0s"``, ``"1.5s"``, ``"20ms"``."""
    seconds = max(0.0, seconds)
    if seconds >= 60:
        minutes = int(seconds // 60)
        return f"{minutes}m{math.ceil(seconds - 60 * minutes)}s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    return f"{seconds:.3g}s"
