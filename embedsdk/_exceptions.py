"""Exceptions raised by embedsdk.

Every error embedsdk raises on purpose derives from :class:`EmbedSDKError`::

    EmbedSDKError
    ├── ConfigurationError          bad option, missing key, unusable URL (before any request),
    │                               or a base_url the server's answer shows wrong (a redirect
    │                               to follow with a GET, http:// to a TLS server or back)
    ├── InvalidInputError           a text is not a non-empty ``str`` (names its index)
    ├── ClientClosedError           the client was used after ``close()``
    ├── ResponseValidationError     a 2xx answer not to be trusted (JSON, count, index, dim)
    └── APIError                    talking to the provider failed
        ├── APIConnectionError      no HTTP answer: refused, reset, DNS, TLS (host, port, reason)
        │   └── APITimeoutError     no answer within ``timeout`` seconds
        └── APIStatusError          an HTTP error status; carries status_code, message, trace_id
            ├── BadRequestError           400 (and 413 that could not be split further)
            ├── AuthenticationError       401
            ├── PermissionDeniedError     403
            ├── NotFoundError             404 (names the URL, hints at the usual fixes)
            ├── UnprocessableEntityError  422 (a validating server refused a field)
            ├── RateLimitError            429
            │   ├── InsufficientQuotaError  429 with code ``insufficient_quota`` (never retried)
            │   └── WaitTooLongError        429 asking for a wait beyond ``max_wait`` (not waited)
            └── InternalServerError       5xx

An error that stops a call part-way (retries ran out, or a request was refused) carries
``failed_indices`` (the input positions left without a vector), ``batch_indices`` (the inputs of
the request that failed) and ``partial`` (the ``(N, D)`` float32 array of what did arrive, NaN rows
where nothing did, or ``None``); its message names the failed request's inputs, how often it was
tried, and the inputs left without a vector. What arrived is also in the cache when the cache is
on, so a re-run pays only for the rest. Callers who prefer partial results to an exception pass
``errors="return"`` to any entry point and get an ``EmbeddingResult`` instead.

Every exception pickles with its message and attributes, so that a worker process
(``multiprocessing``, ``ProcessPoolExecutor``, LlamaIndex's ``num_workers``) hands the real
error back.

The names follow openai-python's so that code catching ``openai.RateLimitError`` ports by
changing the import.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "EmbedSDKError",
    "InsufficientQuotaError",
    "InternalServerError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "UnprocessableEntityError",
    "WaitTooLongError",
]


class EmbedSDKError(Exception):
    """Base class of every error embedsdk raises on purpose."""

    #: Input positions left without a vector when this error stopped a call, else None.
    failed_indices: list[int] | None = None
    #: What arrived before the error: (N, D) float32 with NaN rows for failed inputs, or None.
    partial: Any = None
    #: Input positions of the request (batch) that failed, when a request failed, else None.
    batch_indices: list[int] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the message and the attributes, rebuilt without calling ``__init__``.

        ``BaseException`` pickles as ``cls(*args)``, which fails for a class with a required
        keyword (``index``, ``status_code``): a worker process's error could then not be sent
        back, which hangs ``multiprocessing.Pool`` and breaks ``ProcessPoolExecutor``. The
        attributes are the instance's own (``failed_indices``, ``partial``, ``status_code``,
        notes...); none of them holds the key.
        """
        return (_rebuilt, (type(self), self.args), self.__dict__ or None)


def _rebuilt(cls: type[EmbedSDKError], args: tuple[Any, ...]) -> EmbedSDKError:
    """An exception of ``cls`` with ``args`` (the message) and no attributes yet: pickle then
    restores them from the state :meth:`EmbedSDKError.__reduce__` saved."""
    return cls.__new__(cls, *args)


class ConfigurationError(EmbedSDKError, ValueError):
    """An option or the environment is wrong; raised before any request is sent, or at the
    first answer that shows base_url wrong (a 301/302/303 redirect, the other scheme).
    Never retried."""


class InvalidInputError(EmbedSDKError, ValueError):
    """An input text cannot be embedded. ``index`` is its position in the input."""

    def __init__(self, message: str, *, index: int) -> None:
        super().__init__(message)
        self.index = index


class ClientClosedError(EmbedSDKError, RuntimeError):
    """The client was used after ``close()``."""


class ResponseValidationError(EmbedSDKError):
    """A successful HTTP answer whose body cannot be trusted.

    ``retryable``: a body broken on the way (cut short, not JSON, an index missing) is retried
    like a 5xx; vectors of another width than ``dimensions=`` asked (a server that ignores
    it) would come again, and each attempt is billed: not retried, and it stops the call.
    """

    def __init__(
        self, message: str, *, trace_id: str | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message if trace_id is None else f"{message} (trace id {trace_id})")
        self.trace_id = trace_id
        self.retryable = retryable


class APIError(EmbedSDKError):
    """Talking to the provider failed."""


class APIConnectionError(APIError):
    """No HTTP answer arrived: connection refused or reset, DNS or TLS failure.

    ``host`` and ``port``: where the request went (``None`` when unknown). ``reason``: what
    failed, when known: ``"dns"`` (the host name did not resolve; retried at most twice),
    ``"refused"`` (nothing listens there), ``"unreachable"`` (no route), ``"certificate"``
    (TLS verification failed; not retried), ``"proxy"``, ``"disconnected"`` (the server hung
    up on this request), ``"timeout"``, or ``None`` (a reset).
    """

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        port: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.reason = reason


class APITimeoutError(APIConnectionError):
    """No answer within the per-request ``timeout`` (seconds)."""

    def __init__(
        self,
        message: str,
        *,
        host: str | None = None,
        port: int | None = None,
        reason: str | None = "timeout",
    ) -> None:
        super().__init__(message, host=host, port=port, reason=reason)


class APIStatusError(APIError):
    """The provider answered with an HTTP error status.

    Attributes: ``status_code``; ``message`` (the provider's own words, parsed from any known
    body shape); ``code`` (the provider's error code, e.g. ``20042`` or ``"insufficient_quota"``);
    ``trace_id`` (``x-siliconcloud-trace-id`` or ``x-request-id``); ``retry_after`` (seconds the
    server asked us to wait, if it said); ``body`` (the raw body text, at most 2,000 characters).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: Any = None,
        trace_id: str | None = None,
        retry_after: float | None = None,
        body: str = "",
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.code = code
        self.trace_id = trace_id
        self.retry_after = retry_after
        self.body = body[:2000]
        text = f"HTTP {status_code}: {message}"
        if code is not None:
            text += f" (code {code})"
        if trace_id:
            text += f" [trace id {trace_id}]"
        super().__init__(text)


class BadRequestError(APIStatusError):
    """HTTP 400 (or a 413 that could not be split further): the request itself is wrong."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key may not do this (SiliconFlow: often account verification)."""


class NotFoundError(APIStatusError):
    """HTTP 404: wrong base URL or unknown model; the message names the URL requested."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: a validating server (FastAPI, axum: infinity, TEI, vLLM) refused the request's
    fields; the message joins its validation messages (``input: Field required``)."""


class RateLimitError(APIStatusError):
    """HTTP 429: the provider is rate limiting this account."""


class InsufficientQuotaError(RateLimitError):
    """HTTP 429 with code ``insufficient_quota``: out of credit; retrying cannot help."""


class InternalServerError(APIStatusError):
    """HTTP 5xx: the provider failed or is overloaded."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: BadRequestError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int, code: Any = None) -> type[APIStatusError]:
    """The exception class for an HTTP status (and provider error code)."""
    if status == 429 and code == "insufficient_quota":
        return InsufficientQuotaError
    if status >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status, APIStatusError)


class WaitTooLongError(RateLimitError):
    """HTTP 429 asking for a longer wait (``Retry-After``, ``x-ratelimit-reset-*``) than the
    client's ``max_wait``: raised at once instead of sleeping (a quota spent for the day, as
    Azure's "retry after 86400 seconds"), never retried. A subclass, so that code catching
    :class:`RateLimitError` still does; its own class, so that code may tell "slow down"
    from "come back tomorrow" without reading the message.

    ``requested_wait``: the seconds the server asked for; ``max_wait``: the bound it passed.
    """

    requested_wait: float | None = None
    max_wait: float | None = None
