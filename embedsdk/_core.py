"""The async core: every entry point ends up here.

A call goes: validate -> de-duplicate -> estimate tokens -> plan batches -> send the batches
with at most ``max_concurrent`` in flight (a worker takes the next batch as soon as it is free,
so there are no waves) -> pace each attempt through the rate limiters -> retry with backoff ->
decode and check the answer -> place rows by ``index`` -> gather duplicates back.

Here: the client and the steps of a call. Beside it: :class:`~embedsdk._sending.Sender` sends
one request (pacing, retries, decoding), :class:`~embedsdk._cache_async.AsyncCache` reads and
writes the disk cache off the loop, and :class:`~embedsdk._stream.Stream` runs the windows of
:meth:`AsyncEmbedder.embed_stream`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Iterable,
    Sequence,
    Sized,
)
from typing import Any, Literal, overload

from typing_extensions import Unpack

from . import _retry, _turns
from ._autobatch import BatchSizer, CutBatches, Limits, PlannedBatches
from ._cache_async import AsyncCache
from ._config import ClientOptions, EmbedderOptions, check_batch_size, resolve_options
from ._exceptions import (
    APIError,
    APIStatusError,
    ClientClosedError,
    ConfigurationError,
    EmbedSDKError,
    ResponseValidationError,
)
from ._job import (
    _CLOSED_DURING_CALL,
    EmbeddingResult,
    Stats,
    Vectors,
    _Job,
    _keep_going,
    _request_span,
    _stops_the_call,
    _Window,
    _windows,
)
from ._planning import (
    apply_input_limit,
    check_texts,
    plan_batches,
    validate_texts,
)
from ._progress import Progress
from ._providers import han_chars_per_token, input_token_limit, known_dimension, profile_for
from ._sending import Sender
from ._stream import Stream
from ._text import append_note, plural
from ._transport import Transport

logger = logging.getLogger("embedsdk")


def _least(told: float | None, learned: float | int | None) -> float | None:
    """The tighter of two per-minute paces (``None``: none)."""
    paces = [float(p) for p in (told, learned) if p is not None]
    return min(paces) if paces else None


class AsyncEmbedder:
    """A long-lived async client. Create it anywhere; use it inside one event loop.

    >>> async with AsyncEmbedder(model="BAAI/bge-m3") as emb:    # doctest: +SKIP
    ...     vectors = await emb.embed(["你好", "hello"])           # (2, 1024) float32

    Options are those of :func:`embedsdk.get_batch_embeddings_async`. ``transport`` replaces
    the network (see :class:`embedsdk.MockTransport`).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        transport: Transport | None = None,
        **options: Unpack[EmbedderOptions],
    ) -> None:
        self.options: ClientOptions = resolve_options(model=model, **options)
        self.stats = Stats()
        self._loop: asyncio.AbstractEventLoop | None = None  # the one loop it may be used on
        self._pid = os.getpid()
        self._profile = profile_for(self.options.base_url, self.options.provider)
        # Inputs per request this client may send: the provider's cap, lowered for good by a
        # 413 / "batch size" answer. ``batch_size`` (per client or per call) goes below it.
        self._batch_cap = self._profile.max_batch
        self._sizer = BatchSizer()  # batch_size="auto": the size of each batch, as the run goes
        self._input_limit = input_token_limit(self._profile, self.options.model)
        self._rate = _turns.controller_for(self.options)  # None with adaptive=False
        # The width of an answer with no rows (an empty input): fixed, whatever ran before.
        self._dim_hint = known_dimension(self.options.model, self.options.dimensions) or 0
        self._cache = AsyncCache(self.options, self.stats)
        # Last: __del__ finds a client whose __init__ raised by its missing sender.
        self._sender = Sender(self.options, self.stats, transport, self._rate, self._sizer)

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
    def _closed(self) -> bool:
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
        batch_size: int | Literal["auto"] | None = ...,
        max_concurrent: int | None = ...,
        progress: bool = ...,
        errors: Literal["raise"] = ...,
    ) -> Vectors: ...

    @overload
    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | Literal["auto"] | None = ...,
        max_concurrent: int | None = ...,
        progress: bool = ...,
        errors: Literal["return"],
    ) -> EmbeddingResult: ...

    @overload
    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | Literal["auto"] | None = ...,
        max_concurrent: int | None = ...,
        progress: bool = ...,
        errors: str = ...,
    ) -> Vectors | EmbeddingResult: ...

    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | Literal["auto"] | None = None,
        max_concurrent: int | None = None,
        progress: bool = False,
        errors: str = "raise",
    ) -> Vectors | EmbeddingResult:
        """Embed ``texts``; row i of the ``(len(texts), D)`` float32 array is ``texts[i]``.

        ``batch_size`` caps inputs per request (``"auto"``: chosen as the run goes) and
        ``max_concurrent`` requests in flight (the client's own settings when omitted);
        ``progress`` shows a bar on stderr.

        ``errors="raise"`` (default): the first request that fails for good stops the call and
        raises, carrying ``failed_indices`` and ``partial``. ``errors="return"``: failed
        requests are noted and the rest goes on; returns an :class:`EmbeddingResult` (NaN rows,
        an ``ok`` mask, the errors). Errors of the whole call (401, 403, 404, quota, server out
        of reach) still stop the sending, but are returned too. Bad input raises in both modes.
        """
        check_texts(texts)
        keep_going = _keep_going(errors)
        workers = self._workers(max_concurrent)
        bar = Progress(len(texts), self.stats) if progress else None
        try:
            job = await self._start(texts, batch_size, progress=bar, keep_going=keep_going)
            try:
                await self._run(job, workers)
            except EmbedSDKError as exc:
                if not keep_going:
                    raise
                return self._conclude(job, exc)
            return self._conclude(job)
        finally:
            if bar is not None:
                bar.close()

    async def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: int | Literal["auto"] | None = None,
        max_concurrent: int | None = None,
        window: int | None = None,
        progress: bool = False,
    ) -> AsyncGenerator[tuple[int, Vectors], None]:
        """Embed a stream of texts lazily; yields ``(start_index, vectors)`` blocks in order.

        Reads ``window`` texts at a time (default: enough to keep every slot busy for a while)
        and keeps at most two windows in memory, while the next window's requests start before
        the current one is handed out, so the slots never sit idle at a window boundary.
        ``progress`` shows a bar on stderr (with a total when ``texts`` has a length).

        When ``texts`` raises, the blocks of the windows already read are still yielded, then
        its exception is raised (the window it broke off in is not sent).
        """
        check_texts(texts)
        workers = self._workers(max_concurrent)
        total = len(texts) if isinstance(texts, Sized) else None
        bar = Progress(total, self.stats) if progress else None
        stream = Stream(self, batch_size, workers, bar)
        size = stream.window_size(window)
        pending: collections.deque[tuple[int, asyncio.Task[Vectors]]] = collections.deque()
        start = 0
        previous: _Window | None = None
        broke: list[Exception] = []  # what the producer of ``texts`` raised, if it did
        try:
            async for chunk in _windows(texts, size, broke):
                this = _Window()
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

    async def _run(self, job: _Job, workers: int, slots: asyncio.Semaphore | None = None) -> None:
        """Send the job's batches with at most ``workers`` in flight (and ``slots``, if shared).

        Each worker takes the next batch as soon as it is free: no waves. The first failure
        cancels the rest and is raised annotated with what is missing.
        """
        batches = self._batches(job, workers)

        async def worker() -> None:
            while True:
                batch = batches.take()  # shared by the workers: each batch is taken once
                if batch is None:
                    return
                try:
                    if slots is None:
                        await self._run_batch(job, batch)
                    else:
                        async with slots:
                            await self._run_batch(job, batch)
                finally:
                    batches.done(batch)

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers, batches.count))]
        try:
            await asyncio.gather(*tasks)
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise job.fail(exc, self._dim_hint) from None

    # -- the batch size ----------------------------------------------------------------------

    def _planned_size(self, batch_size: int | str | None) -> int | None:
        """Inputs per batch for this call (at most the cap), or ``None`` for ``"auto"``."""
        size = check_batch_size(self.options.batch_size if batch_size is None else batch_size)
        return None if isinstance(size, str) else min(size, self._batch_cap)

    def _batch_guess(self, batch_size: int | str | None) -> int:
        """Texts per request to plan windows for: the size asked, or the cap for "auto"."""
        return self._planned_size(batch_size) or self._batch_cap

    def _batches(self, job: _Job, workers: int) -> PlannedBatches | CutBatches:
        """The job's batches: planned, or cut as workers take them (``batch_size="auto"``)."""
        if job.batches is not None:
            return PlannedBatches(job.batches)
        per_text = sum(job.tokens) / len(job.tokens) if job.tokens else 1.0
        ends = job.ends_call

        def size(remaining: int) -> int:
            before = self._sizer.current
            chosen = self._sizer.size(
                self._batch_cap, self._limits(workers, per_text), remaining if ends else None
            )
            if before and self._sizer.current != before:
                logger.debug("batch size %d -> %d", before, self._sizer.current)
            return chosen

        return CutBatches(job.tokens, job.max_batch_tokens, size)

    def _limits(self, workers: int, per_text: float) -> Limits:
        """What bounds the throughput now, for the batch sizer: the slots (fewer when the
        rate controller narrowed its window), the tightest paces known (the user's ``rpm`` /
        ``tpm`` and those the controller learned), the tokens of a text."""
        rpm, tpm, window, ratio = self.options.rpm, self.options.tpm, None, 1.0
        if self._rate is not None:
            learned = self._rate.snapshot()
            rpm = _least(rpm, learned["rpm"])
            tpm = _least(tpm, learned["tpm"])
            window = learned["window"]
            ratio = float(learned["token_ratio"] or 1.0)
        return Limits(
            slots=workers if window is None else max(1, min(workers, int(window))),
            requests_per_s=None if rpm is None else rpm / 60,
            tokens_per_s=None if tpm is None else tpm / 60,
            tokens_per_text=per_text * ratio,
        )

    # -- the steps of a call ---------------------------------------------------------------

    async def _start(
        self,
        texts: Sequence[str],
        batch_size: int | str | None = None,
        offset: int = 0,
        progress: Progress | None = None,
        keep_going: bool = False,
    ) -> _Job:
        """Check the input, serve what the cache has, and plan batches for the rest."""
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        self._check_loop()
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not one str; wrap it in a list")
        texts = list(texts)
        validate_texts(texts, offset)
        texts = self._limit_inputs(texts, offset)
        size = self._planned_size(batch_size)
        job = _Job(texts, offset)
        job.progress = progress
        if progress is not None:
            self._sender.bars.add(progress)
        job.keep_going = keep_going
        await self._cache.lookup(job)
        job.plan(size, self.options.max_batch_tokens)
        return job

    async def _run_batch(self, job: _Job, batch: tuple[int, int]) -> None:
        if job.error is not None:
            return
        start, stop = batch
        try:
            await self._fetch_into(job, start, stop)
        except EmbedSDKError as exc:
            if self._closed and not isinstance(exc, ClientClosedError):
                # close() cut the request off: say that, not "server disconnected".
                closed = ClientClosedError(_CLOSED_DURING_CALL)
                job.error = job.error or closed
                raise closed from exc
            self._blame(job, exc, start, stop)
            if job.keep_going and not _stops_the_call(exc):
                if not job.breaker.gave_up(exc, self.options.max_retries):
                    rows = job.todo[start:stop]
                    job.failures.append((rows[~job.filled[rows]], exc))
                    return
                append_note(exc, job.breaker.note())  # a storm: the other batches stay unsent
            job.error = job.error or exc
            raise
        except BaseException as exc:
            job.error = job.error or exc
            raise

    def _blame(self, job: _Job, exc: EmbedSDKError, start: int, stop: int) -> None:
        """Name the inputs of the failed request and say whether it was retried."""
        if not isinstance(exc, (APIError, ResponseValidationError)) or exc.batch_indices:
            return
        exc.batch_indices = job.positions(start, stop)
        note = "" if isinstance(exc, APIStatusError) else _request_span(exc.batch_indices)
        attempts = getattr(exc, "attempts", None)
        if _retry.is_retryable(exc) and attempts:  # it reached us: every attempt failed
            note += f"; gave up after {plural(attempts, 'attempt')}"
        if note and exc.args and isinstance(exc.args[0], str):
            exc.args = (exc.args[0] + note,)

    def _limit_inputs(self, texts: list[str], offset: int) -> list[str]:
        """Refuse texts surely too long for the model, or cut them (``truncate=True``)."""
        if self._input_limit is None:
            return texts
        texts, cut = apply_input_limit(
            texts,
            self._input_limit,
            truncate=self.options.truncate,
            model=self.options.model,
            han_per_token=han_chars_per_token(self.options.model),
            start=offset,
        )
        if cut:
            self.stats.truncated += cut
            logger.info("cut %s to %d tokens (estimated)", plural(cut, "text"), self._input_limit)
        return texts

    def _conclude(self, job: _Job, fatal: EmbedSDKError | None = None) -> Vectors | EmbeddingResult:
        """The array, or the :class:`EmbeddingResult` when the job was made to keep going."""
        vectors = self._finish(job)
        return job.outcome(vectors, fatal) if job.keep_going else vectors

    def _finish(self, job: _Job) -> Vectors:
        job.advance(job.n_inputs - job.advanced)  # the duplicates, served by their first copy
        return job.result(self._dim_hint)

    async def _fetch_into(self, job: _Job, start: int, stop: int) -> None:
        """Fetch ``todo[start:stop]``, splitting the batch when the server says it is too big.

        A batch planned before a 413 lowered the cap is cut to the new cap before it is sent,
        so one 413 costs one extra request, not one per batch already planned.
        """
        if stop - start > self._batch_cap:
            await self._fetch_pieces(job, start, stop)
            return
        texts = job.texts(start, stop)
        tokens = sum(job.tokens[start:stop])
        try:
            vectors = await self._sender.send(texts, tokens, job)
        except APIStatusError as exc:
            if not _retry.should_split(exc) or len(texts) == 1:
                exc.args = (f"{exc.args[0]}{self._request_note(exc, job, start, stop)}",)
                raise
            self._lower_batch_cap(exc, len(texts))
            self.stats.splits += 1
            await self._fetch_pieces(job, start, stop)
            return
        self._cache.check_width(vectors)  # before the cache's width fixes the result's
        job.store(job.todo[start:stop], vectors)
        job.breaker.success()
        await self._cache.store(texts, vectors)

    async def _fetch_pieces(self, job: _Job, start: int, stop: int) -> None:
        """Fetch ``todo[start:stop]`` in consecutive batches of at most the current cap."""
        for a, b in plan_batches(job.tokens[start:stop], self._batch_cap, 1 << 62):
            await self._fetch_into(job, start + a, start + b)

    def _request_note(self, exc: APIStatusError, job: _Job, start: int, stop: int) -> str:
        """Which inputs the failed request carried, and why a too-long input cannot pass."""
        positions = job.positions(start, stop)
        if len(positions) == 1:
            note = f" (in the request for input {positions[0]})"
        elif positions[-1] - positions[0] + 1 == len(positions):
            note = f" (in the request for inputs {positions[0]}..{positions[-1]})"
        else:
            note = f" (in the request for {len(positions)} inputs from {positions[0]})"
        if _retry.is_input_too_large(exc):
            limit = self._profile.max_input_tokens(self.options.model)
            where = f" ({self.options.model} takes {limit} tokens per input)" if limit else ""
            note += f"; a text there is longer than the server takes{where}: shorten it"
        return note

    def _lower_batch_cap(self, exc: APIStatusError, sent: int) -> None:
        self._batch_cap = _retry.lowered_batch_cap(exc, sent, self._batch_cap)
        logger.info("server refused a batch of %d; batch cap is now %d", sent, self._batch_cap)
