"""embedsdk: fast, exact batch embeddings from OpenAI-compatible ``/embeddings`` APIs.

>>> import embedsdk                                                       # doctest: +SKIP
>>> vecs = embedsdk.get_batch_embeddings(["你好", "hello"])                 # serial
>>> vecs = embedsdk.get_batch_embeddings_concurrent(texts, max_workers=5)  # thread pool
>>> vecs = await embedsdk.get_batch_embeddings_async(texts, max_concurrent=5)

Every call returns a C-contiguous ``numpy.ndarray`` of float32, shape ``(len(texts), D)``,
row i belonging to ``texts[i]``.
"""

from __future__ import annotations

import atexit

from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    EmbedSDKError,
    InsufficientQuotaError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
    WaitTooLongError,
)
from ._prices import Price, price_for
from ._version import __version__
from .cache import VectorCache
from .client import (
    NOT_GIVEN,
    AsyncEmbedder,
    BatchSize,
    ClientOptions,
    Embedder,
    EmbedderOptions,
    EmbeddingResult,
    EncodingFormat,
    ErrorMode,
    Event,
    NotGiven,
    Options,
    Provider,
    Rewrite,
    Stats,
    Vectors,
    close_default_clients,
    estimate_tokens,
    get_batch_embeddings,
    get_batch_embeddings_async,
    get_batch_embeddings_concurrent,
    track_usage,
)
from .files import NpyWriter, write_npy
from .http import AiohttpTransport, MockTransport, Request, Response, Transport, set_testing
from .plan import Estimate, aestimate, estimate
from .ratecontrol import RateController, Tuning

atexit.register(close_default_clients)

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AiohttpTransport",
    "AsyncEmbedder",
    "AuthenticationError",
    "BadRequestError",
    "BatchSize",
    "ClientClosedError",
    "ClientOptions",
    "ConfigurationError",
    "EmbedSDKError",
    "Embedder",
    "EmbedderOptions",
    "EmbeddingResult",
    "EncodingFormat",
    "ErrorMode",
    "Estimate",
    "Event",
    "InsufficientQuotaError",
    "InternalServerError",
    "InvalidInputError",
    "MockTransport",
    "NotFoundError",
    "NotGiven",
    "NpyWriter",
    "Options",
    "PermissionDeniedError",
    "Price",
    "Provider",
    "RateController",
    "RateLimitError",
    "Request",
    "Response",
    "ResponseValidationError",
    "Rewrite",
    "Stats",
    "Transport",
    "Tuning",
    "UnprocessableEntityError",
    "VectorCache",
    "Vectors",
    "WaitTooLongError",
    "__version__",
    "aestimate",
    "close_default_clients",
    "estimate",
    "estimate_tokens",
    "get_batch_embeddings",
    "get_batch_embeddings_async",
    "get_batch_embeddings_concurrent",
    "price_for",
    "set_testing",
    "track_usage",
    "write_npy",
]
