"""When to retry, how long to wait, and when to split a batch. Pure functions."""

from __future__ import annotations

import random
from collections.abc import Generator

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    InsufficientQuotaError,
    RateLimitError,
    ResponseValidationError,
)

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524})

# llama.cpp answers an input longer than its batch with a 500 that no retry can fix.
_PERMANENT_500_MARKERS = ("input is too large", "too large to process", "exceeds the maximum")

_testing = False


def set_testing(enabled: bool) -> None:
    """For users' own tests: retry without sleeping (stamina's ``set_testing``)."""
    global _testing
    _testing = enabled


def is_testing() -> bool:
    return _testing


def should_split(exc: BaseException) -> bool:
    """A 413, or a 400 that complains about the batch size: send the batch in halves."""
    if not isinstance(exc, APIStatusError):
        return False
    if exc.status_code == 413:
        return True
    return exc.status_code in (400, 422) and "batch size" in exc.message.lower()


#: How servers say one input is longer than they take (llama.cpp 500, TEI 413/422 "must
#: have less than 512 tokens", OpenAI 400 "maximum context length").
_TOO_LONG_MARKERS = (*_PERMANENT_500_MARKERS, "must have less than", "maximum context length")


def is_input_too_large(exc: BaseException) -> bool:
    """The server refused an input for its length: no retry or split of the batch helps."""
    if not isinstance(exc, APIStatusError):
        return False
    message = exc.message.lower()
    if exc.status_code < 500 and "batch size" in message:  # the batch, not one input
        return False
    return any(marker in message for marker in _TOO_LONG_MARKERS)


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: 408/409/429/5xx, no answer, timeouts, untrustworthy bodies.

    Never: other 4xx (400, 401, 403, 404), ``insufficient_quota``, and a 5xx that says the
    input is too large.
    """
    if isinstance(exc, (APIConnectionError, ResponseValidationError)):
        return True
    if not isinstance(exc, APIStatusError) or isinstance(exc, InsufficientQuotaError):
        return False
    if exc.status_code >= 500:
        message = exc.message.lower()
        return not any(marker in message for marker in _PERMANENT_500_MARKERS)
    return exc.status_code in RETRY_STATUSES


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)] seconds."""
    return random.uniform(0, min(cap, base * 2.0**attempt))


def wait_gen(
    base: float = 0.5, cap: float = 30.0
) -> Generator[float, BaseException | None, None]:
    """A ``backoff`` wait generator that honours the server's ``Retry-After`` hint.

    ``backoff`` sends each exception into the generator before asking for the next wait, so
    a hint (already capped by the parser) wins over the exponential guess; a small jitter
    keeps many workers from returning at the same instant. A 429 the rate controller paused
    for (``rate_verdict == "paused"``) waits in that shared pause, and a refusal of a
    concurrency cap (``"narrowed"``, without a hint) for a free slot: no wait of their own.
    """
    attempt = 0
    exc = yield 0.0
    while True:
        hint = getattr(exc, "retry_after", None)
        verdict = getattr(exc, "rate_verdict", None)
        if _testing or verdict == "paused" or (verdict == "narrowed" and hint is None):
            delay = 0.0
        elif hint is not None:
            delay = hint + random.uniform(0, 0.1 * hint + 0.05)
        else:
            delay = backoff_delay(attempt, base, cap)
        attempt += 1
        exc = yield delay


class RetryBudget:
    """The retries one request has left: ``give_up`` is ``backoff``'s ``giveup``.

    ``max_retries`` failures of any retryable kind. When ``paced`` (adaptive rate control),
    a refusal the controller acted on (a 429, or a 503 read as a concurrency cap) first
    draws on an allowance of three times as many: the controller spaces them, and a probe
    sent while a window is still full may meet several in a row.
    """

    __slots__ = ("failures", "rate_limits")

    def __init__(self, max_retries: int, paced: bool = False) -> None:
        self.failures = max_retries
        self.rate_limits = 3 * max_retries if paced else 0

    def give_up(self, exc: BaseException) -> bool:
        if not is_retryable(exc):
            return True
        if self.rate_limits > 0 and getattr(exc, "rate_verdict", None) in _CONTROLLED:
            self.rate_limits -= 1
            return False
        self.failures -= 1
        return self.failures < 0


_CONTROLLED = ("paused", "narrowed")
