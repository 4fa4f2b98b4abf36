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

from ._api import (
    close_default_clients,
    get_batch_embeddings,
    get_batch_embeddings_async,
    get_batch_embeddings_concurrent,
)
from ._cache import VectorCache
from ._config import ClientOptions
from ._core import AsyncEmbedder
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
from ._job import EmbeddingResult, Stats
from ._npy import NpyWriter, write_npy
from ._planning import estimate_tokens
from ._retry import set_testing
from ._sync import Embedder
from ._transport import AiohttpTransport, MockTransport, Request, Response, Transport
from ._version import __version__
from .ratecontrol import RateController, Tuning

atexit.register(close_default_clients)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AiohttpTransport",
    "AsyncEmbedder",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ClientOptions",
    "ConfigurationError",
    "EmbedSDKError",
    "Embedder",
    "EmbeddingResult",
    "InsufficientQuotaError",
    "InternalServerError",
    "InvalidInputError",
    "MockTransport",
    "NotFoundError",
    "NpyWriter",
    "PermissionDeniedError",
    "RateController",
    "RateLimitError",
    "Request",
    "Response",
    "ResponseValidationError",
    "Stats",
    "Transport",
    "Tuning",
    "UnprocessableEntityError",
    "VectorCache",
    "WaitTooLongError",
    "__version__",
    "close_default_clients",
    "estimate_tokens",
    "get_batch_embeddings",
    "get_batch_embeddings_async",
    "get_batch_embeddings_concurrent",
    "set_testing",
    "write_npy",
]
