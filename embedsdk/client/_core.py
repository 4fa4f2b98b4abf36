"""The async core: every entry point ends up here.

A call goes: validate -> de-duplicate -> estimate tokens -> plan batches -> send the batches
with at most ``max_concurrent`` in flight (a worker takes the next batch as soon as it is free,
so there are no waves) -> pace each attempt through the rate limiters -> retry with backoff ->
decode and check the answer -> place rows by ``index`` -> gather duplicates back.

Here: the client (its options, its event loop, closing it) and its public calls. Each call
runs through the client's :class:`~embedsdk.client._runner.Runner` (``start`` -> ``run`` ->
``conclude``: the steps of a call, from validation to the result);
:class:`~embedsdk.client._stream.Stream` runs the windows of
:meth:`AsyncEmbedder.embed_stream` through it too.
:class:`~embedsdk.client._sending.Sender` sends one request (pacing, retries, decoding) and
:class:`~embedsdk.client._cache_async.AsyncCache` reads and writes the disk cache off the loop.
"""

from __future__ import annotations

import asyncio
import collections
import os
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Iterable,
    Sequence,
    Sized,
)
from typing import Any, Literal, Union, overload

from typing_extensions import Unpack

from .. import ratecontrol
from .._exceptions import ClientClosedError, ConfigurationError, EmbedSDKError
from ..http import Transport
from ._autobatch import BatchSizer
from ._cache_async import AsyncCache
from ._config import (
    EMBEDDER_OPTIONS,
    NOT_GIVEN,
    BatchSize,
    ClientOptions,
    EmbedderOptions,
    ErrorMode,
    NotGiven,
    RewriteLog,
    check_option_names,
    document_options,
    resolve_options,
)
from ._job import (
    EmbeddingResult,
    Stats,
    Vectors,
    Window,
    returns_errors,
    windows,
)
from ._planning import check_texts
from ._progress import Progress
from ._runner import Runner
from ._sending import Sender
from ._stream import Stream


def _own(value: Any) -> Any:
    """A per-call argument as the steps of a call take it: ``None`` for "the client's own"
    (left out, :data:`~embedsdk.NOT_GIVEN`, or ``None`` as before)."""
    return None if isinstance(value, NotGiven) else value


#: A block of a stream: its vectors, or its EmbeddingResult with ``errors="return"``.
_Block = Union[Vectors, EmbeddingResult]


@document_options("every", "call", "clients")
class AsyncEmbedder:
    """A long-lived async client. Create it anywhere; use it inside one event loop.

    >>> async with AsyncEmbedder(model="BAAI/bge-m3") as emb:    # doctest: +SKIP
    ...     vectors = await emb.embed(["你好", "hello"])           # (2, 1024) float32

    Options are those of :func:`embedsdk.get_batch_embeddings_async`, with ``batch_size``
    and ``max_concurrent`` as the defaults of each call, and ``transport``. Options it uses
    otherwise than given (a ``batch_size`` above the provider's cap, base64 for a float-only
    provider) are said once at INFO and listed in ``options.rewritten``.
    """

    def __init__(
        self,
        model: str | NotGiven | None = NOT_GIVEN,
        *,
        transport: Transport | NotGiven | None = NOT_GIVEN,
        **options: Unpack[EmbedderOptions],
    ) -> None:
        check_option_names(type(self).__name__, options, EMBEDDER_OPTIONS)
        self.options: ClientOptions = resolve_options(model=model, **options)
        rewrites = RewriteLog()  # each rewrite of the options said once, at INFO
        for rewrite in self.options.rewritten:
            rewrites.say(rewrite)
        self.stats = Stats(price=self.options.price)
        self._loop: asyncio.AbstractEventLoop | None = None  # the one loop it may be used on
        self._pid = os.getpid()
        sizer = BatchSizer()  # batch_size="auto": the size of each batch, as the run goes
        self._rate = ratecontrol.controller_for(self.options)  # None with adaptive=False
        self._cache = AsyncCache(self.options)
        sender = Sender(self.options, self.stats, _own(transport), self._rate, sizer)
        #: The steps of a call (:class:`~embedsdk.client._runner.Runner`): the internal
        #: interface ``embed``, ``embed_stream``'s windows and embedsdk's integrations use.
        #: Not part of the public API.
        self.runner = Runner(self.options, sender, self._cache, sizer, self._rate, rewrites)
        # Last: __del__ finds a client whose __init__ raised by its missing sender.
        self._sender = sender

    def __repr__(self) -> str:
        o = self.options
        return f"<AsyncEmbedder model={o.model!r} base_url={o.base_url!r}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        """Never closed: say so once, and release its connections and cache anyway.

        aiohttp would otherwise report an "Unclosed client session" and an "Unclosed
        connector" naming none of our names. ``_warn`` is bound now: at interpreter exit the
        ``warnings`` module may already be gone.
        """
        sender: Sender | None = getattr(self, "_sender", None)
        if sender is None or sender.closed or self._pid != os.getpid():
            return  # half-made (__init__ raised), closed, or a forked copy of the parent's
        sender.closed = True
        opened = self._cache.ours()  # not the caller's own cache
        if not sender.holds_session() and not opened:
            return  # nothing to release
        _warn(
            f"{self!r} was never closed: use `async with AsyncEmbedder(...) as emb:` or "
            "`await emb.aclose()` when done; its connections are being closed now",
            ResourceWarning,
            source=self,
        )
        sender.close_unawaited()
        if opened is not None:
            opened.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` ran: the client sends nothing more."""
        return self._sender.closed

    async def __aenter__(self) -> AsyncEmbedder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close connections. Further calls raise :class:`ClientClosedError`."""
        await self._sender.aclose()
        await self._cache.aclose()  # waits for its writes; closes only a cache it opened

    # -- the public call -------------------------------------------------------------------

    @overload
    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> Vectors: ...

    @overload
    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> EmbeddingResult: ...

    @overload
    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: ErrorMode,
    ) -> Vectors | EmbeddingResult: ...

    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: BatchSize | NotGiven | None = NOT_GIVEN,
        max_concurrent: int | NotGiven | None = NOT_GIVEN,
        progress: bool = False,
        errors: ErrorMode = "raise",
    ) -> Vectors | EmbeddingResult:
        """Embed ``texts``; row i of the ``(len(texts), D)`` float32 array is ``texts[i]``.

        ``batch_size`` caps inputs per request (``"auto"``: chosen as the run goes; above the
        provider's cap, lowered to it, said once at INFO) and ``max_concurrent`` requests in
        flight: left out, :data:`~embedsdk.NOT_GIVEN` or ``None``, the client's own settings.
        ``progress`` shows a bar on stderr.

        ``errors="raise"`` (default): the first request that fails for good stops the call and
        raises, carrying ``failed_indices`` and ``partial``. ``errors="return"``: failed
        requests are noted and the rest goes on; returns an :class:`EmbeddingResult` (NaN rows,
        an ``ok`` mask, the errors). Errors of the whole call (401, 403, 404, quota, server out
        of reach) still stop the sending, but are returned too. Bad input raises in both modes.
        """
        check_texts(texts)
        keep_going = returns_errors(errors)
        workers = self._workers(_own(max_concurrent))
        bar = Progress(len(texts), self.options.price, slots=workers) if progress else None
        try:
            self._ready()
            job = await self.runner.start(
                texts, _own(batch_size), progress=bar, keep_going=keep_going
            )
            ended: BaseException | None = None
            try:
                await self.runner.run(job, workers)
            except EmbedSDKError as exc:
                ended = exc
                if not keep_going:
                    raise
                return self.runner.conclude(job, exc)
            except BaseException as exc:  # cancelled, interrupted
                ended = exc
                raise
            finally:
                self.runner.finish(job, ended)
            return self.runner.conclude(job)
        finally:
            if bar is not None:
                bar.close()

    @overload
    def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        window: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> AsyncGenerator[tuple[int, Vectors], None]: ...

    @overload
    def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        window: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> AsyncGenerator[tuple[int, EmbeddingResult], None]: ...

    @overload
    def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = ...,
        max_concurrent: int | NotGiven | None = ...,
        window: int | NotGiven | None = ...,
        progress: bool = ...,
        errors: ErrorMode,
    ) -> AsyncGenerator[tuple[int, Vectors | EmbeddingResult], None]: ...

    async def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: BatchSize | NotGiven | None = NOT_GIVEN,
        max_concurrent: int | NotGiven | None = NOT_GIVEN,
        window: int | NotGiven | None = NOT_GIVEN,
        progress: bool = False,
        errors: ErrorMode = "raise",
    ) -> AsyncGenerator[tuple[int, Vectors | EmbeddingResult], None]:
        """Embed a stream of texts lazily; yields ``(start_index, vectors)`` blocks in order.

        Reads ``window`` texts at a time (left out, :data:`~embedsdk.NOT_GIVEN` or ``None``:
        enough to keep every slot busy for a while) and keeps at most two windows in memory,
        while the next window's requests start before the current one is handed out, so the
        slots never sit idle at a window boundary. ``batch_size`` and ``max_concurrent`` as for
        :meth:`embed`; ``progress`` shows a bar on stderr (with a total when ``texts`` has a
        length).

        ``errors="return"``: each block is an :class:`EmbeddingResult` (NaN rows, an ``ok``
        mask, the errors of its failed requests; its indices are positions in the whole
        stream) and the stream goes on; errors of the whole call (401, 403, 404, quota, a
        server out of reach, a storm) still end it with the exception.

        When ``texts`` raises, the blocks of the windows already read are still yielded, then
        its exception is raised (the window it broke off in is not sent).
        """
        check_texts(texts)
        keep_going = returns_errors(errors)
        workers = self._workers(_own(max_concurrent))
        total = len(texts) if isinstance(texts, Sized) else None
        bar = Progress(total, self.options.price, slots=workers) if progress else None
        stream = Stream(self.runner, _own(batch_size), workers, bar, keep_going, self._ready)
        size = stream.window_size(_own(window))
        pending: collections.deque[tuple[int, asyncio.Task[_Block]]] = collections.deque()
        start = 0
        previous: Window | None = None
        broke: list[Exception] = []  # what the producer of ``texts`` raised, if it did
        try:
            async for chunk in windows(texts, size, broke):
                this = Window()
                this.last = len(chunk) < size  # a short window is the stream's last
                coro = stream.embed(chunk, start, this, previous)
                pending.append((start, asyncio.ensure_future(coro)))
                previous = this
                start += len(chunk)
                if len(pending) >= 2:
                    offset, task = pending.popleft()
                    yield offset, await task
            while pending:
                offset, task = pending.popleft()
                yield offset, await task
            if broke:
                raise broke[0]
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
            if bar is not None:
                bar.close()

    def _ready(self) -> None:
        """Refuse a call on a closed client, or on another event loop than its own."""
        if self.closed:
            raise ClientClosedError("this client is closed; create a new one")
        self._check_loop()

    def _check_loop(self) -> None:
        """Refuse a second event loop clearly: the session, the limiters and the locks belong
        to the first one, and would fail later with "Event loop is closed" or worse."""
        loop = asyncio.get_running_loop()
        if self._pid != os.getpid():  # forked (multiprocessing): start afresh in the child
            self._forget_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "this AsyncEmbedder was first used on another event loop (each asyncio.run() "
                "makes a new one): create the client inside the loop that uses it, or use "
                "embedsdk.Embedder, which runs on its own loop thread and works from any loop"
            )

    def _forget_loop(self) -> None:
        """Drop what belongs to the parent's loop (its session, limiters and locks)."""
        self._sender.forget_loop()
        self._loop, self._pid = None, os.getpid()
        self._cache.forget_loop()

    def _workers(self, max_concurrent: int | None) -> int:
        workers = self.options.max_concurrent if max_concurrent is None else max_concurrent
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError(f"max_concurrent must be a positive integer, got {workers!r}")
        return workers
