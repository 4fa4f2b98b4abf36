"""What a rate-limit answer says of the limit: which ran out, and whether it was one of
requests in flight, from its ``x-ratelimit-*`` headers (parsed by ``embedsdk.http._responses``)
and the words of its message. Pure functions.
"""

from __future__ import annotations

from ..http import RateLimitHeaders

_CONCURRENCY_WORDS = ("concurren", "in flight", "in-flight", "parallel", "并发")


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
