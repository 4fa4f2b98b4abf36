"""What a rate-limit answer says: ``x-ratelimit-*`` headers and the words of its message.

Pure functions; header names are looked up in any case (``_responses._header``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import NamedTuple

from .._responses import _header

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_CONCURRENCY_WORDS = ("concurren", "in flight", "in-flight", "parallel", "并发")


class RateLimitHeaders(NamedTuple):
    """``x-ratelimit-*`` values; ``None`` where absent. Reset times in seconds from now."""

    remaining_requests: float | None
    reset_requests: float | None
    remaining_tokens: float | None
    reset_tokens: float | None


def parse_duration(value: str) -> float | None:
    """Seconds from ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"`` or a bare number."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, number) if math.isfinite(number) else None
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = _header(headers, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _duration(headers: Mapping[str, str], name: str) -> float | None:
    raw = _header(headers, name)
    return None if raw is None else parse_duration(raw)


def parse_ratelimit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """The OpenAI-style rate-limit headers of an answer (any case), or ``None``."""
    requests = _number(headers, "x-ratelimit-remaining-requests")
    tokens = _number(headers, "x-ratelimit-remaining-tokens")
    if requests is None and tokens is None:
        return None
    return RateLimitHeaders(
        requests,
        _duration(headers, "x-ratelimit-reset-requests"),
        tokens,
        _duration(headers, "x-ratelimit-reset-tokens"),
    )


def exhausted(message: str, hint: RateLimitHeaders | None) -> tuple[bool, bool]:
    """Which limits a 429 says ran out: ``(requests, tokens)``; both when it does not say."""
    if hint is not None:
        requests = hint.remaining_requests is not None and hint.remaining_requests <= 0
        tokens = hint.remaining_tokens is not None and hint.remaining_tokens <= 0
        if requests or tokens:
            return requests, tokens
    text = message.upper()
    requests = "RPM" in text or "RPS" in text or "REQUESTS PER" in text
    tokens = "TPM" in text or "TOKENS PER" in text or "TOKEN LIMIT" in text
    if requests or tokens:
        return requests, tokens
    return True, True


def says_per_minute(message: str) -> bool:
    """The 429's message names a rate ("per minute", "RPM", "TPM", "QPS")."""
    text = message.upper()
    return any(word in text for word in ("PER MIN", "RPM", "TPM", "QPS", "RPS", "PER SEC"))


def says_concurrency(message: str) -> bool:
    """The 429's message blames requests in flight (Zhipu's kind of limit)."""
    text = message.lower()
    return any(word in text for word in _CONCURRENCY_WORDS)
