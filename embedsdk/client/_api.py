"""The three functions of the usage guide, on shared default clients.

Calls with the same client options (model, base URL, key, limits, ...) share one
:class:`Embedder`, hence one loop thread, one connection pool and one rate limit, whichever of
the three functions they use. ``batch_size`` and the concurrency are per call.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal, overload

from typing_extensions import Unpack

from ._config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT,
    BatchSize,
    ClientOptions,
    ErrorMode,
    Options,
    check_option_names,
    document_options,
    option_names,
    resolve_options,
)
from ._job import EmbeddingResult, Vectors
from ._sync import Embedder

#: Options every entry point takes (besides the per-call batch size and concurrency), as
#: declared (``OPTION_TABLE``); the ``Options`` typed dict is checked against the same table.
CLIENT_OPTIONS = frozenset(option_names("every"))
_MAX_DEFAULT_CLIENTS = 8

_lock = threading.Lock()
_clients: OrderedDict[ClientOptions, Embedder] = OrderedDict()


def client_for(function: str, options: Options) -> Embedder:
    check_option_names(function, options, option_names("every"))
    resolved = resolve_options(**options)
    key = dataclasses.replace(
        resolved, batch_size=DEFAULT_BATCH_SIZE, max_concurrent=DEFAULT_MAX_CONCURRENT
    )
    with _lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
        client = Embedder(**options)
        _clients[key] = client
        # Not closed here: another thread may still be in a call on it. Its finalizer
        # closes it once the last caller lets go of it (not under the lock: it waits).
        evicted = _clients.popitem(last=False)[1] if len(_clients) > _MAX_DEFAULT_CLIENTS else None
    del evicted
    return client


def close_default_clients() -> None:
    """Close the clients the module-level functions made (also done at exit)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


@overload
def get_batch_embeddings(
    texts: Sequence[str],
    *,
    batch_size: BatchSize = ...,
    progress: bool = ...,
    errors: Literal["raise"] = ...,
    **options: Unpack[Options],
) -> Vectors: ...


@overload
def get_batch_embeddings(
    texts: Sequence[str],
    *,
    batch_size: BatchSize = ...,
    progress: bool = ...,
    errors: Literal["return"],
    **options: Unpack[Options],
) -> EmbeddingResult: ...


@overload
def get_batch_embeddings(
    texts: Sequence[str],
    *,
    batch_size: BatchSize = ...,
    progress: bool = ...,
    errors: ErrorMode,
    **options: Unpack[Options],
) -> Vectors | EmbeddingResult: ...


@document_options("every")
def get_batch_embeddings(
    texts: Sequence[str],
    *,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    errors: ErrorMode = "raise",
    **options: Unpack[Options],
) -> Vectors | EmbeddingResult:
    """Embed ``texts`` one request at a time (serial); returns ``(len(texts), D)`` float32.

    ``batch_size``: inputs per request (at most the provider's cap; a larger one is lowered
    to it, said once at INFO), or ``"auto"`` to let the client choose it as the run goes
    (from the cap, the rate limits it meets and how latency grows with the batch).
    ``progress=True`` shows a bar on stderr. ``errors="return"`` returns an
    :class:`~embedsdk.EmbeddingResult` (NaN rows, an ``ok`` mask, the errors) instead of
    raising when requests fail for good. An option not listed below is a ``TypeError``.
    """
    client = client_for("get_batch_embeddings", options)
    return client.embed(
        texts, batch_size=batch_size, max_concurrent=1, progress=progress, errors=errors
    )


@overload
def get_batch_embeddings_concurrent(
    texts: Sequence[str],
    max_workers: int = ...,
    batch_size: BatchSize = ...,
    *,
    progress: bool = ...,
    errors: Literal["raise"] = ...,
    **options: Unpack[Options],
) -> Vectors: ...


@overload
def get_batch_embeddings_concurrent(
    texts: Sequence[str],
    max_workers: int = ...,
    batch_size: BatchSize = ...,
    *,
    progress: bool = ...,
    errors: Literal["return"],
    **options: Unpack[Options],
) -> EmbeddingResult: ...


@overload
def get_batch_embeddings_concurrent(
    texts: Sequence[str],
    max_workers: int = ...,
    batch_size: BatchSize = ...,
    *,
    progress: bool = ...,
    errors: ErrorMode,
    **options: Unpack[Options],
) -> Vectors | EmbeddingResult: ...


@document_options("every")
def get_batch_embeddings_concurrent(
    texts: Sequence[str],
    max_workers: int = DEFAULT_MAX_CONCURRENT,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    *,
    progress: bool = False,
    errors: ErrorMode = "raise",
    **options: Unpack[Options],
) -> Vectors | EmbeddingResult:
    """Embed ``texts`` with ``max_workers`` workers, one batch in flight each.

    Each worker takes the next batch as soon as its last one is answered. They run on the
    shared client's event-loop thread (no thread per worker), so the rate limit and
    connections are shared; the call blocks the calling thread. Options and ``errors`` as
    for :func:`get_batch_embeddings`.
    """
    client = client_for("get_batch_embeddings_concurrent", options)
    return client.embed_threaded(
        texts, max_workers=max_workers, batch_size=batch_size, progress=progress, errors=errors
    )


@overload
async def get_batch_embeddings_async(
    texts: Sequence[str],
    max_concurrent: int = ...,
    batch_size: BatchSize = ...,
    *,
    progress: bool = ...,
    errors: Literal["raise"] = ...,
    **options: Unpack[Options],
) -> Vectors: ...


@overload
async def get_batch_embeddings_async(
    texts: Sequence[str],
    max_concurrent: int = ...,
    batch_size: BatchSize = ...,
    *,
    progress: bool = ...,
    errors: Literal["return"],
    **options: Unpack[Options],
) -> EmbeddingResult: ...


@overload
async def get_batch_embeddings_async(
    texts: Sequence[str],
    max_concurrent: int = ...,
    batch_size: BatchSize = ...,
    *,
    progress: bool = ...,
    errors: ErrorMode,
    **options: Unpack[Options],
) -> Vectors | EmbeddingResult: ...


@document_options("every")
async def get_batch_embeddings_async(
    texts: Sequence[str],
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    *,
    progress: bool = False,
    errors: ErrorMode = "raise",
    **options: Unpack[Options],
) -> Vectors | EmbeddingResult:
    """Embed ``texts`` with up to ``max_concurrent`` requests in flight; await it.

    Runs on the shared default client's loop thread, so it works from any event loop and
    shares limits with the sync functions. For a client that lives inside your own loop use
    :class:`AsyncEmbedder`. Options and ``errors`` as for :func:`get_batch_embeddings`.
    """
    client = client_for("get_batch_embeddings_async", options)
    return await client.embed_async(
        texts,
        batch_size=batch_size,
        max_concurrent=max_concurrent,
        progress=progress,
        errors=errors,
    )
