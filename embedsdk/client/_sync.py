"""Sync clients: each owns one event-loop thread that runs the async core.

No embedding logic lives here. A sync call hands a coroutine to the client's loop thread and
waits for it (as anyio's blocking portal does), so the serial, thread-pool and long-lived sync
variants share one connection pool and one rate limit per client.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncGenerator, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Literal, TypeVar, overload

from typing_extensions import Unpack

from .._exceptions import ClientClosedError, ConfigurationError
from ..http import Transport
from ._config import (
    EMBEDDER_OPTIONS,
    NOT_GIVEN,
    BatchSize,
    ClientOptions,
    EmbedderOptions,
    ErrorMode,
    NotGiven,
    check_option_names,
    document_options,
)
from ._core import AsyncEmbedder
from ._job import EmbeddingResult, Stats, Vectors
from ._runner import Runner

T = TypeVar("T")

_portals: weakref.WeakSet[LoopThread] = weakref.WeakSet()


class LoopThread:
    """A daemon thread running an event loop, started lazily, safe across ``fork``."""

    def __init__(self, name: str = "embedsdk-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        _portals.add(self)

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # forked: the thread did not come along
                self._loop, self._thread, self._pid = None, None, os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(loop, ready), name=self._name, daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        # The loop's executor (cache I/O runs there) is ours, so that stopping can wait for
        # its threads directly: loop.shutdown_default_executor() starts a thread to do it,
        # which Python 3.12+ refuses at interpreter exit (where atexit stops this loop).
        executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="embedsdk-io")
        loop.set_default_executor(executor)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
            _cancel_pending(loop)  # calls other threads still wait on end now, not never
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            executor.shutdown(wait=True)  # loop.close() would not wait for its threads
            loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop thread, in a copy of the calling thread's context (its
        :mod:`contextvars`: ``track_usage`` blocks, an OpenTelemetry span), as an ``await``
        in that thread would."""
        loop = self._ensure_started()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync embedsdk call was made from its own loop thread (deadlock)")
        # call_soon_threadsafe copies this thread's context, and the task is made in it.
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def _start(
        self, coro: Coroutine[Any, Any, T]
    ) -> tuple[concurrent.futures.Future[T], threading.Event]:
        """:meth:`submit` ``coro``, and an event set once it has ended there, however: a
        cancelled future is done at once, while its task unwinds on the loop (credits its
        usage, closes its bar) a moment later. A task cancelled before it began never sets
        it: wait for it with a bound."""
        over = threading.Event()
        wrapped = _setting(over, coro)
        try:
            return self.submit(wrapped), over
        except BaseException:
            wrapped.close()  # never started: no "never awaited" warning, for either
            coro.close()
            raise

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait; Ctrl-C cancels it there, and waits (a
        second at most) for it to unwind: its usage is credited, its bar closed, by then."""
        future, over = self._start(coro)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()  # cancels the task inside the loop
                over.wait(timeout=UNWIND)
            raise

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` run on the loop thread, from another event loop; cancelling the
        caller cancels it there, and waits (a second at most) for it to unwind, as
        :meth:`call` does."""
        future, over = self._start(coro)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not over.is_set():
                # No executor, or one shut down (a loop closing): go without waiting.
                with contextlib.suppress(RuntimeError):
                    await asyncio.get_running_loop().run_in_executor(None, over.wait, UNWIND)
            raise

    def started_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop of this process, or ``None`` if none was started (or forked)."""
        with self._lock:
            return self._loop if self._pid == os.getpid() else None

    def on_own_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or self._pid != os.getpid():
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout=5)  # the thread closes its loop on its way out


#: Seconds a cancelled call is given to unwind on the loop thread before the caller goes on.
UNWIND = 1.0


async def _setting(over: threading.Event, coro: Coroutine[Any, Any, T]) -> T:
    """``await coro``, then set ``over``, however it ended."""
    try:
        return await coro
    finally:
        over.set()


def _cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks left on a stopped ``loop`` and let them unwind, as ``asyncio.run`` does.

    A call waiting in the rate limiter when its client is closed would otherwise never finish,
    and the thread that made it would wait forever.
    """
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


@atexit.register
def _stop_all() -> None:
    for portal in list(_portals):
        portal.stop()


async def _aclose_then_stop(core: AsyncEmbedder, portal: LoopThread) -> None:
    try:
        await core.aclose()
    finally:
        portal.stop()


def _release(portal: LoopThread, core: AsyncEmbedder) -> None:
    """Close ``core``'s connections and stop ``portal``'s thread, once.

    Run by ``Embedder.close()``, and by a ``weakref.finalize`` when an Embedder that was never
    closed is collected or the interpreter exits: otherwise its thread would run forever and
    aiohttp would warn about an unclosed session. Never starts a thread just to close it.
    """
    loop = portal.started_loop()
    if loop is None:
        return
    if portal.on_own_thread():  # a garbage collection that happened to run on the loop
        loop.create_task(_aclose_then_stop(core, portal))
        return
    try:
        portal.call(core.aclose())
    finally:
        portal.stop()


async def _anext(stream: AsyncGenerator[T, None]) -> T:
    return await stream.__anext__()


@document_options("every", "call", "clients")
class Embedder:
    """A long-lived sync client; safe to share between threads.

    >>> with Embedder(model="BAAI/bge-m3") as emb:     # doctest: +SKIP
    ...     vectors = emb.embed(["你好", "hello"])      # (2, 1024) float32

    Takes the same options as :class:`AsyncEmbedder` (``transport`` included).
    """

    def __init__(
        self,
        model: str | NotGiven | None = NOT_GIVEN,
        *,
        transport: Transport | NotGiven | None = NOT_GIVEN,
        **options: Unpack[EmbedderOptions],
    ) -> None:
        check_option_names(type(self).__name__, options, EMBEDDER_OPTIONS)
        self._core = AsyncEmbedder(model, transport=transport, **options)
        self._portal = LoopThread()
        self._closed = False
        self._release = weakref.finalize(self, _release, self._portal, self._core)

    def __repr__(self) -> str:
        o = self._core.options
        return f"<Embedder model={o.model!r} base_url={o.base_url!r}>"

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def options(self) -> ClientOptions:
        """The resolved options (the key hidden from ``repr``)."""
        return self._core.options

    @property
    def stats(self) -> Stats:
        """Counters since the client was made."""
        return self._core.stats

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran: further calls raise :class:`ClientClosedError`."""
        return self._closed

    @property
    def runner(self) -> Runner:
        """The steps of a call on this client's :class:`AsyncEmbedder` (its ``runner``): an
        internal interface for embedsdk's integrations, not part of the public API. Its
        coroutines belong to the client's loop thread."""
        return self._core.runner

    def close(self) -> None:
        """Close connections and stop the loop thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._release()  # a finalizer runs once: close() or collection, whichever is first

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise ClientClosedError("this client is closed; create a new one")
        try:
            return self._portal.call(coro)
        except concurrent.futures.CancelledError:
            if self._closed:  # close() from another thread ended this call
                raise ClientClosedError("the client was closed during this call") from None
            raise

    @overload
    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> Vectors: ...

    @overload
    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> EmbeddingResult: ...

    @overload
    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: ErrorMode,
    ) -> Vectors | EmbeddingResult: ...

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = NOT_GIVEN,
        max_concurrent: int | NotGiven | None = NOT_GIVEN,
        progress: bool = False,
        errors: ErrorMode = "raise",
    ) -> Vectors | EmbeddingResult:
        """Embed ``texts`` with up to ``max_concurrent`` requests in flight.

        ``errors="return"`` returns an :class:`EmbeddingResult` (NaN rows, ``ok`` mask,
        errors) instead of raising when requests fail; see :meth:`AsyncEmbedder.embed`.
        """
        return self._call(
            self._core.embed(
                texts,
                batch_size=batch_size,
                max_concurrent=max_concurrent,
                progress=progress,
                errors=errors,
            )
        )

    @overload
    async def embed_async(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> Vectors: ...

    @overload
    async def embed_async(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> EmbeddingResult: ...

    @overload
    async def embed_async(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: ErrorMode,
    ) -> Vectors | EmbeddingResult: ...

    async def embed_async(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = NOT_GIVEN,
        max_concurrent: int | NotGiven | None = NOT_GIVEN,
        progress: bool = False,
        errors: ErrorMode = "raise",
    ) -> Vectors | EmbeddingResult:
        """Await from any event loop; the work runs on this client's own loop thread.

        ``errors`` as for :meth:`embed`.
        """
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        coro = self._core.embed(
            texts,
            batch_size=batch_size,
            max_concurrent=max_concurrent,
            progress=progress,
            errors=errors,
        )
        try:
            return await self._portal.run(coro)
        except asyncio.CancelledError:
            if self._closed:  # close() from another thread ended this call
                raise ClientClosedError("the client was closed during this call") from None
            raise

    @overload
    def embed_stream(
        self,
        texts: Iterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        window: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> Iterator[tuple[int, Vectors]]: ...

    @overload
    def embed_stream(
        self,
        texts: Iterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        window: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> Iterator[tuple[int, EmbeddingResult]]: ...

    @overload
    def embed_stream(
        self,
        texts: Iterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        window: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: ErrorMode,
    ) -> Iterator[tuple[int, Vectors | EmbeddingResult]]: ...

    def embed_stream(
        self,
        texts: Iterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = NOT_GIVEN,
        max_concurrent: int | NotGiven | None = NOT_GIVEN,
        window: int | NotGiven | None = NOT_GIVEN,
        progress: bool = False,
        errors: ErrorMode = "raise",
    ) -> Iterator[tuple[int, Vectors | EmbeddingResult]]:
        """Embed an iterable lazily; yields ``(start_index, vectors)`` blocks in input order
        (``errors="return"``: ``(start_index, EmbeddingResult)``, and failed requests do not
        end it).

        See :meth:`AsyncEmbedder.embed_stream`. Closing the generator early (``break``) stops
        the requests in flight.
        """
        stream = self._core.embed_stream(
            texts,
            batch_size=batch_size,
            max_concurrent=max_concurrent,
            window=window,
            progress=progress,
            errors=errors,
        )
        try:
            while True:
                try:
                    yield self._call(_anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._portal.call(stream.aclose())

    @overload
    def embed_threaded(
        self,
        texts: Sequence[str],
        *,
        max_workers: int,
        batch_size: BatchSize | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> Vectors: ...

    @overload
    def embed_threaded(
        self,
        texts: Sequence[str],
        *,
        max_workers: int,
        batch_size: BatchSize | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> EmbeddingResult: ...

    @overload
    def embed_threaded(
        self,
        texts: Sequence[str],
        *,
        max_workers: int,
        batch_size: BatchSize | NotGiven | None = ...,
        progress: bool = ...,
        errors: ErrorMode,
    ) -> Vectors | EmbeddingResult: ...

    def embed_threaded(
        self,
        texts: Sequence[str],
        *,
        max_workers: int,
        batch_size: BatchSize | NotGiven | None = NOT_GIVEN,
        progress: bool = False,
        errors: ErrorMode = "raise",
    ) -> Vectors | EmbeddingResult:
        """Embed with at most ``max_workers`` requests in flight (the usage guide's thread pool).

        The same call as :meth:`embed` with ``max_concurrent=max_workers``: each of the
        ``max_workers`` workers takes the next batch as soon as its last one is answered. They
        are tasks on this client's event-loop thread rather than OS threads, since a thread
        per request would only hand its batch to that loop and wait (see docs/architecture.md).
        ``errors`` as for :meth:`embed`.
        """
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(f"max_workers must be a positive integer, got {max_workers!r}")
        return self.embed(
            texts,
            batch_size=batch_size,
            max_concurrent=max_workers,
            progress=progress,
            errors=errors,
        )
