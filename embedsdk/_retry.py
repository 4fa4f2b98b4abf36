"""When to retry, how long to wait, and when to split a batch. Pure functions."""

from __future__ import annotations

import random
from collections.abc import Generator

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    InsufficientQuotaError,
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


def wait_gen(base: float = 0.5, cap: float = 30.0) -> Generator[float, BaseException | None, None]:
    """A ``backoff`` wait generator that honours the server's ``Retry-After`` hint.

    ``backoff`` sends each exception into the generator before asking for the next wait, so
    a hint (already capped by the parser) wins over the exponential guess; a small jitter
    keeps many workers from returning at the same instant.
    """
    attempt = 0
    exc = yield 0.0
    while True:
        hint = getattr(exc, "retry_after", None)
        if _testing:
            delay = 0.0
        elif hint is not None:
            delay = hint + random.uniform(0, 0.1 * hint + 0.05)
        else:
            delay = backoff_delay(attempt, base, cap)
        attempt += 1
        exc = yield delay
