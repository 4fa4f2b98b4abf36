"""What the LangChain and LlamaIndex adapters share: their options, and where calls run.

- **Options**: every option of :func:`embedsdk.get_batch_embeddings` (``CLIENT_OPTIONS``)
  plus ``batch_size`` and ``max_concurrent``, checked by :func:`~embedsdk.client._config.
  resolve_options` when the adapter is made, so that a bad value fails before any request.
- **Sync calls** go to the shared default :class:`Embedder` of those options, the one the
  module functions use: one loop thread, one connection pool for the whole process.
- **Async calls** run on the caller's own loop, on one :class:`AsyncEmbedder` per event loop
  and per options, shared by every adapter of the process (LangChain's and LlamaIndex's
  alike). It is closed when its loop shuts down (``asyncio.run``, ``asyncio.Runner``,
  pytest-asyncio: they all finalize async generators, see :func:`_close_with_loop`).
- Both kinds of client use the account's shared rate controller (``ratecontrol``) and the same
  disk cache directory.

Nothing here imports LangChain or LlamaIndex.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, cast

from ..client import (
    CLIENT_OPTIONS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT,
    AsyncEmbedder,
    ClientOptions,
    Embedder,
    Options,
    Runner,
    client_for,
    resolve_options,
)

#: Options that shape one call rather than the client.
PER_CALL = frozenset({"batch_size", "max_concurrent"})


def accepted_options() -> frozenset[str]:
    """Every keyword an adapter passes on to embedsdk (read each time: options may be added)."""
    return CLIENT_OPTIONS | PER_CALL


def missing(owner: str, package: str, extra: str) -> ImportError:
    """The error for an adapter whose framework cannot be imported: which extra brings it."""
    return ImportError(
        f"{owner} needs {package}, which is not installed (or failed to import): "
        f"pip install 'embedsdk[{extra}]'"
    )


def check_options(owner: str, options: Mapping[str, Any]) -> ClientOptions:
    """Refuse unknown keywords (``TypeError``) and bad values (``ConfigurationError``)."""
    unknown = sorted(set(options) - accepted_options())
    if unknown:
        raise TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    return resolve_options(**options)


def _split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    client = {k: v for k, v in options.items() if k not in PER_CALL}
    call = {k: v for k, v in options.items() if k in PER_CALL}
    return client, call


def _client_key(client_options: Mapping[str, Any]) -> ClientOptions:
    """The identity of a client: its resolved options, whatever the per-call settings."""
    resolved = resolve_options(**client_options)
    return dataclasses.replace(
        resolved, batch_size=DEFAULT_BATCH_SIZE, max_concurrent=DEFAULT_MAX_CONCURRENT
    )


#: Above this many texts, vectors are turned into Python lists window by window while the
#: next windows are in flight (``embed_stream``), rather than all at once at the end: the
#: frameworks want ``list[list[float]]``, and 10,000 x 1024 floats take about a second of CPU.
STREAM_ABOVE = 1024


def embed_sync(
    owner: str, options: Mapping[str, Any], texts: Sequence[str], progress: bool = False
) -> list[list[float]]:
    """Embed on the shared default :class:`Embedder` of these options (its loop thread)."""
    client_options, call = _split(options)
    client: Embedder = client_for(owner, cast(Options, client_options))
    if len(texts) <= STREAM_ABOVE:
        return _lists(client.embed(list(texts), progress=progress, **call))
    rows: list[list[float]] = []
    window = _window(call, client.runner)
    for _, block in client.embed_stream(texts, window=window, progress=progress, **call):
        rows.extend(_lists(block))
    return rows


async def embed_async(
    options: Mapping[str, Any], texts: Sequence[str], progress: bool = False
) -> list[list[float]]:
    """Embed on this loop's :class:`AsyncEmbedder` of these options: no thread hop."""
    client_options, call = _split(options)
    client = await _loop_client(client_options)
    if len(texts) <= STREAM_ABOVE:
        return _lists(await client.embed(list(texts), progress=progress, **call))
    rows: list[list[float]] = []
    window = _window(call, client.runner)
    stream = client.embed_stream(texts, window=window, progress=progress, **call)
    try:
        async for _, block in stream:
            for start in range(0, len(block), _ROWS):
                rows.extend(block[start : start + _ROWS].tolist())
                await asyncio.sleep(0)  # answers that came meanwhile are read, the next sent
    finally:
        await stream.aclose()  # cancelled or failed: the windows in flight stop now
    return rows


def _window(call: Mapping[str, Any], runner: Runner) -> int:
    """Texts per streamed window: two rounds of requests, so that only the last, small
    window's conversion is left once the answers are all in."""
    workers = call.get("max_concurrent") or DEFAULT_MAX_CONCURRENT
    return int(2 * workers * runner.batch_guess(call.get("batch_size")))


#: Rows turned into lists at a time (64 x 1024 floats: a few milliseconds).
_ROWS = 64


def _lists(vectors: Any) -> list[list[float]]:
    # In slices: one tolist() of a whole block holds the GIL for a tenth of a second, during
    # which the loop thread can neither read answers nor send the next requests.
    rows: list[list[float]] = []
    for start in range(0, len(vectors), _ROWS):
        rows.extend(vectors[start : start + _ROWS].tolist())
    return rows


@dataclasses.dataclass
class _LoopClients:
    """The async clients of one event loop, and the generator that closes them with it."""

    clients: dict[ClientOptions, AsyncEmbedder]
    closer: AsyncGenerator[None, None] | None = None


_lock = threading.Lock()
# Weak keys: an entry goes with its loop. (A loop closed without finalizing async generators
# stays referenced by its clients until the next look-up sweeps it; see _sweep.)
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClients] = (
    weakref.WeakKeyDictionary()
)


async def _loop_client(client_options: Mapping[str, Any]) -> AsyncEmbedder:
    loop = asyncio.get_running_loop()
    key = _client_key(client_options)
    with _lock:
        _sweep()
        entry = _loops.get(loop)
        if entry is None:
            entry = _loops[loop] = _LoopClients({})
        client = entry.clients.get(key)
        if client is None or client.closed:
            client = entry.clients[key] = AsyncEmbedder(**client_options)
        start_closer = entry.closer is None
        if start_closer:
            entry.closer = _close_with_loop(loop, entry)
    if start_closer and entry.closer is not None:
        await entry.closer.asend(None)  # runs to its yield: the loop now tracks it
    return client


async def _close_with_loop(
    loop: asyncio.AbstractEventLoop, entry: _LoopClients
) -> AsyncGenerator[None, None]:
    """Suspended until the loop finalizes its async generators, then closes the clients.

    ``asyncio.run``, ``asyncio.Runner`` and pytest-asyncio call ``loop.shutdown_asyncgens()``
    before closing a loop; that resumes this generator at its ``yield`` with
    ``GeneratorExit``, and the ``finally`` closes the sessions on their own loop, before it
    is closed. (A task waiting forever would be cancelled at the same point by
    ``asyncio.run``, but would be reported as "destroyed but pending" by loops that are just
    closed.)
    """
    try:
        yield
    finally:
        with _lock:
            if _loops.get(loop) is entry:
                del _loops[loop]
            clients = list(entry.clients.values())
            entry.clients.clear()
        for client in clients:
            await client.aclose()


def _sweep() -> None:
    """Forget the clients of loops closed without finalizing their async generators (a bare
    ``loop.close()``): their sessions cannot be closed any more, but need not be kept."""
    for loop in [loop for loop in list(_loops) if loop.is_closed()]:
        entry = _loops.pop(loop, None)
        if entry is not None:
            entry.closer = None  # its loop is gone: nothing can resume it
