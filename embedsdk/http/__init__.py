"""Talking to the server: the transport, what an answer means, and what is retried.

- ``_transport``: the network seam (``Transport``, ``AiohttpTransport`` on one aiohttp
  session, ``MockTransport`` for tests), each aiohttp error mapped to ours in one place;
- ``_responses``: an HTTP answer to vectors or to an exception (the provider's words from any
  body shape, ``Retry-After``, ``x-ratelimit-*``); pure;
- ``_retry``: what is retried and how long to wait (backoff's ``expo``), when a batch is split
  or its inputs isolated, the storm breaker, the testing switch; the typed values a request's
  attempts report in (``Failure``, and ``Verdict``: the rate controller's reading of an
  answer, which ``ratecontrol`` gives and the retry loop reads); pure.

Exports the names below to the rest of embedsdk (rate control reads answers through it, the
client sends through it). Imports only ``embedsdk._exceptions`` and ``embedsdk._text`` of
embedsdk (and aiohttp, backoff, numpy).
"""

from __future__ import annotations

from ._responses import (
    MAX_RETRY_AFTER,
    RateLimitHeaders,
    content_type_of,
    decode_embeddings,
    embeddings_of,
    is_quota,
    not_found_hint,
    parse_error_body,
    parse_ratelimit_headers,
    parse_retry_after,
    status_error,
    trace_id_of,
)
from ._retry import (
    DNS_RETRIES,
    WHOLE_AFTER,
    CallBreaker,
    Failure,
    RetryBudget,
    Verdict,
    blames_input,
    is_input_too_large,
    is_retryable,
    is_testing,
    lowered_batch_cap,
    refusal_key,
    refused_alone,
    refuses_base64,
    same_refusal,
    set_testing,
    should_split,
    wait_beyond,
    wait_gen,
)
from ._transport import (
    AiohttpTransport,
    MockTransport,
    Request,
    Response,
    Transport,
    connection_error,
    proxy_from_environment,
)

__all__ = [
    "DNS_RETRIES",
    "MAX_RETRY_AFTER",
    "WHOLE_AFTER",
    "AiohttpTransport",
    "CallBreaker",
    "Failure",
    "MockTransport",
    "RateLimitHeaders",
    "Request",
    "Response",
    "RetryBudget",
    "Transport",
    "Verdict",
    "blames_input",
    "connection_error",
    "content_type_of",
    "decode_embeddings",
    "embeddings_of",
    "is_input_too_large",
    "is_quota",
    "is_retryable",
    "is_testing",
    "lowered_batch_cap",
    "not_found_hint",
    "parse_error_body",
    "parse_ratelimit_headers",
    "parse_retry_after",
    "proxy_from_environment",
    "refusal_key",
    "refused_alone",
    "refuses_base64",
    "same_refusal",
    "set_testing",
    "should_split",
    "status_error",
    "trace_id_of",
    "wait_beyond",
    "wait_gen",
]
