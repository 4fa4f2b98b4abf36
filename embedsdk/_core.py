"""The async core: every entry point ends up here.

A call goes: validate -> de-duplicate -> estimate tokens -> plan batches -> send the batches
with at most ``max_concurrent`` in flight (a worker takes the next batch as soon as it is free,
so there are no waves) -> pace each attempt through the rate limiters -> retry with backoff ->
decode and check the answer -> place rows by ``index`` -> gather duplicates back.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import re
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Sequence,
    Sized,
)
from typing import Any

import backoff
import numpy as np
import numpy.typing as npt
from aiolimiter import AsyncLimiter

from . import _retry
from ._cache import VectorCache, open_cache
from ._config import ClientOptions, resolve_options
from ._exceptions import (
    APIStatusError,
    BadRequestError,
    ClientClosedError,
    EmbedSDKError,
)
from ._planning import (
    deduplicate,
    estimate_tokens,
    iter_windows,
    plan_batches,
    validate_texts,
)
from ._progress import Progress
from ._responses import decode_embeddings, status_error, trace_id_of
from ._transport import AiohttpTransport, Request, Transport
from ._version import __version__

logger = logging.getLogger("embedsdk")

_UNOPENED = object()

Vectors = npt.NDArray[np.float32]

#: Dimensions of well-known models, used only to shape the answer to an empty input.
KNOWN_DIMENSIONS = {
    "BAAI/bge-m3": 1024,
    "Pro/BAAI/bge-m3": 1024,
    "BAAI/bge-large-zh-v1.5": 1024,
    "BAAI/bge-large-en-v1.5": 1024,
    "netease-youdao/bce-embedding-base_v1": 768,
    "Qwen/Qwen3-Embedding-0.6B": 1024,
    "Qwen/Qwen3-Embedding-4B": 2560,
    "Qwen/Qwen3-Embedding-8B": 4096,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}

_BATCH_LIMIT_RE = re.compile(r"(?:maximum|max)[^0-9]{0,40}?batch size[^0-9]{0,10}(\d+)", re.I)


@dataclasses.dataclass
class Stats:
    """Counters of one client since it was made (all integers)."""

    requests: int = 0
    retries: int = 0
    inputs_sent: int = 0
    tokens: int = 0
    splits: int = 0
    cache_hits: int = 0
    cache_misses: int = 0


class _Job:
    """One call's state: the unique texts, which of them to fetch, and the rows as they arrive.

    Rows are addressed by their position among the unique texts. ``todo`` lists the rows still
    to fetch (all of them, less the cache hits); ``batches`` are ``(start, stop)`` slices of it.
    """

    def __init__(self, texts: Sequence[str], offset: int = 0) -> None:
        self.n_inputs = len(texts)
        self.offset = offset  # position of texts[0] in the caller's whole input (streams)
        self.unique, self.inverse = deduplicate(texts)
        self.rows: Vectors | None = None
        self.filled = np.zeros(len(self.unique), dtype=bool)
        self.todo: npt.NDArray[np.intp] = np.arange(len(self.unique))
        self.tokens: list[int] = []
        self.batches: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.progress: Progress | None = None
        self.advanced = 0  # inputs counted on the progress bar

    def plan(self, batch_size: int, max_batch_tokens: int) -> None:
        """Estimate the tokens of the rows to fetch and cut them into batches."""
        self.todo = np.flatnonzero(~self.filled)
        self.tokens = [estimate_tokens(self.unique[i]) for i in self.todo]
        self.batches = plan_batches(self.tokens, batch_size, max_batch_tokens)

    def texts(self, start: int, stop: int) -> list[str]:
        return [self.unique[i] for i in self.todo[start:stop]]

    def store(self, rows: Any, vectors: Vectors) -> None:
        """Put ``vectors`` at unique ``rows`` (a slice or an index array)."""
        if self.rows is None:
            self.rows = np.empty((len(self.unique), vectors.shape[1]), dtype=np.float32)
        elif vectors.shape[1] != self.rows.shape[1]:
            raise EmbedSDKError(
                f"vectors of {vectors.shape[1]} dimensions arrived for a call that already "
                f"has {self.rows.shape[1]}: did the model or the cache change?"
            )
        self.rows[rows] = vectors
        self.filled[rows] = True
        self.advance(len(vectors))

    def advance(self, count: int) -> None:
        if self.progress is not None:
            self.advanced += count
            self.progress.advance(count)

    def result(self, empty_dim: int) -> Vectors:
        if self.rows is None:
            return np.empty((self.n_inputs, empty_dim), dtype=np.float32)
        if self.inverse is None:
            return self.rows
        return np.ascontiguousarray(self.rows[self.inverse])

    def fail(self, exc: BaseException, empty_dim: int) -> BaseException:
        """Annotate ``exc`` with the inputs left without a vector and what did arrive."""
        missing = ~self.filled if self.inverse is None else ~self.filled[self.inverse]
        failed = (np.flatnonzero(missing) + self.offset).tolist()
        if isinstance(exc, EmbedSDKError):
            exc.failed_indices = failed
            if self.rows is not None:
                partial = self.result(empty_dim).copy()
                partial[missing] = np.nan
                exc.partial = partial
            if failed and exc.args and isinstance(exc.args[0], str):
                exc.args = (f"{exc.args[0]}; {_describe(failed)}",)
        return exc


def _describe(failed: list[int]) -> str:
    if len(failed) > 1 and failed[-1] - failed[0] + 1 == len(failed):
        where = f"inputs {failed[0]}..{failed[-1]}"
    else:
        where = "inputs " + ", ".join(map(str, failed[:10])) + (" ..." if len(failed) > 10 else "")
    return f"{len(failed)} inputs have no vector ({where})"


async def _windows(
    texts: Iterable[str] | AsyncIterable[str], size: int
) -> AsyncIterator[list[str]]:
    """Lists of up to ``size`` consecutive texts from a sync or async iterable."""
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of str, not one str; wrap it in a list")
    if hasattr(texts, "__aiter__"):
        window: list[str] = []
        async for text in texts:
            window.append(text)
            if len(window) >= size:
                yield window
                window = []
        if window:
            yield window
    else:
        for window in iter_windows(texts, size):
            yield window


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
        **options: Any,
    ) -> None:
        self.options: ClientOptions = resolve_options(model=model, **options)
        self.stats = Stats()
        self._transport = transport
        self._owns_transport = transport is None
        self._closed = False
        self._encoding = self.options.encoding_format
        self._batch_cap = self.options.batch_size
        self._limiters: tuple[AsyncLimiter | None, AsyncLimiter | None] | None = None
        self._dim_hint = self.options.dimensions or KNOWN_DIMENSIONS.get(self.options.model, 0)
        self._cache: Any = _UNOPENED
        self._cache_lock: asyncio.Lock | None = None  # made on the loop that uses it
        o = self.options
        self._cache_namespace = VectorCache.namespace(o.endpoint, o.model, o.dimensions)
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"embedsdk/{__version__}",
        }
        if self.options.api_key:
            self._headers["Authorization"] = f"Bearer {self.options.api_key}"

    def __repr__(self) -> str:
        o = self.options
        return f"<AsyncEmbedder model={o.model!r} base_url={o.base_url!r}>"

    async def __aenter__(self) -> AsyncEmbedder:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close connections. Further calls raise :class:`ClientClosedError`."""
        self._closed = True
        if self._transport is not None and self._owns_transport:
            await self._transport.aclose()
        if isinstance(self._cache, VectorCache) and self._cache is not self.options.cache:
            self._cache.close()  # only a cache we opened ourselves

    # -- the public call -------------------------------------------------------------------

    async def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        max_concurrent: int | None = None,
        progress: bool = False,
    ) -> Vectors:
        """Embed ``texts``; row i of the ``(len(texts), D)`` float32 array is ``texts[i]``.

        ``batch_size`` caps inputs per request and ``max_concurrent`` requests in flight (the
        client's own settings when omitted); ``progress`` shows a bar on stderr.
        """
        workers = self._workers(max_concurrent)
        bar = Progress(len(texts), self.stats) if progress else None
        try:
            job = await self._start(texts, batch_size, progress=bar)
            await self._run(job, workers)
            return self._finish(job)
        finally:
            if bar is not None:
                bar.close()

    async def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: int | None = None,
        max_concurrent: int | None = None,
        window: int | None = None,
        progress: bool = False,
    ) -> AsyncGenerator[tuple[int, Vectors], None]:
        """Embed a stream of texts lazily; yields ``(start_index, vectors)`` blocks in order.

        Reads ``window`` texts at a time (default: enough to keep every slot busy for a while)
        and keeps at most two windows in memory, while the next window's requests start before
        the current one is handed out, so the slots never sit idle at a window boundary.
        ``progress`` shows a bar on stderr (with a total when ``texts`` has a length).
        """
        workers = self._workers(max_concurrent)
        total = len(texts) if isinstance(texts, Sized) else None
        bar = Progress(total, self.stats) if progress else None
        size = window or max(1024, 8 * workers * (batch_size or self.options.batch_size))
        slots = asyncio.Semaphore(workers)
        pending: collections.deque[tuple[int, asyncio.Task[Vectors]]] = collections.deque()
        start = 0
        try:
            async for chunk in _windows(texts, size):
                pending.append(
                    (
                        start,
                        asyncio.ensure_future(
                            self._embed_window(chunk, start, batch_size, workers, slots, bar)
                        ),
                    )
                )
                start += len(chunk)
                if len(pending) >= 2:
                    offset, task = pending.popleft()
                    yield offset, await task
            while pending:
                offset, task = pending.popleft()
                yield offset, await task
        finally:
            for _, task in pending:
                task.cancel()
            await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
            if bar is not None:
                bar.close()

    async def _embed_window(
        self,
        texts: list[str],
        offset: int,
        batch_size: int | None,
        workers: int,
        slots: asyncio.Semaphore,
        bar: Progress | None,
    ) -> Vectors:
        job = await self._start(texts, batch_size, offset, bar)
        await self._run(job, workers, slots)
        return self._finish(job)

    def _workers(self, max_concurrent: int | None) -> int:
        workers = self.options.max_concurrent if max_concurrent is None else max_concurrent
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise TypeError(f"max_concurrent must be a positive integer, got {workers!r}")
        return workers

    async def _run(self, job: _Job, workers: int, slots: asyncio.Semaphore | None = None) -> None:
        """Send the job's batches with at most ``workers`` in flight (and ``slots``, if shared).

        Each worker takes the next batch as soon as it is free: no waves. The first failure
        cancels the rest and is raised annotated with what is missing.
        """
        batches = iter(job.batches)

        async def worker() -> None:
            for batch in batches:  # shared iterator: each batch is taken once
                if slots is None:
                    await self._run_batch(job, batch)
                else:
                    async with slots:
                        await self._run_batch(job, batch)

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers, len(job.batches)))]
        try:
            await asyncio.gather(*tasks)
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise job.fail(exc, self._dim_hint) from None

    # -- the steps, also used by the thread-pool wrapper -----------------------------------

    async def _start(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        offset: int = 0,
        progress: Progress | None = None,
    ) -> _Job:
        """Check the input, serve what the cache has, and plan batches for the rest."""
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not one str; wrap it in a list")
        texts = list(texts)
        validate_texts(texts, offset)
        size = self._batch_cap if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TypeError(f"batch_size must be a positive integer, got {size!r}")
        job = _Job(texts, offset)
        job.progress = progress
        await self._cache_lookup(job)
        job.plan(min(size, self._batch_cap), self.options.max_batch_tokens)
        return job

    async def _cache_lookup(self, job: _Job) -> None:
        """Serve what the disk cache has; only the misses will be sent."""
        cache = await self._open_cache()
        if cache is None or not job.unique:
            return
        loop = asyncio.get_running_loop()
        matrix, hit = await loop.run_in_executor(
            None, cache.get_many, self._cache_namespace, job.unique
        )
        hits = int(hit.sum())
        self.stats.cache_hits += hits
        self.stats.cache_misses += len(job.unique) - hits
        if matrix is not None and hits:
            if hits == len(job.unique):
                job.rows = matrix  # every row cached: no copy
                job.filled[:] = True
                job.advance(hits)
            else:
                job.store(hit, matrix[hit])

    async def _open_cache(self) -> VectorCache | None:
        """Open the cache on first use, off the event loop (it touches the disk)."""
        if self._cache is _UNOPENED:
            if self._cache_lock is None:
                self._cache_lock = asyncio.Lock()
            async with self._cache_lock:
                if self._cache is _UNOPENED:
                    loop = asyncio.get_running_loop()
                    spec = self.options.cache
                    self._cache = await loop.run_in_executor(None, open_cache, spec)
        cache: VectorCache | None = self._cache
        return cache

    async def _run_batch(self, job: _Job, batch: tuple[int, int]) -> None:
        if job.error is not None:
            return
        start, stop = batch
        task = asyncio.current_task()
        assert task is not None
        job.tasks.add(task)
        try:
            await self._fetch_into(job, start, stop)
        except BaseException as exc:
            job.error = job.error or exc
            raise
        finally:
            job.tasks.discard(task)

    async def _cancel(self, job: _Job) -> None:
        """Cancel the batches of ``job`` still in flight (thread-pool wrapper, on failure)."""
        job.error = job.error or asyncio.CancelledError()
        tasks = list(job.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finish(self, job: _Job) -> Vectors:
        job.advance(job.n_inputs - job.advanced)  # the duplicates, served by their first copy
        if job.rows is not None:
            self._dim_hint = job.rows.shape[1]
        return job.result(self._dim_hint)

    async def _fetch_into(self, job: _Job, start: int, stop: int) -> None:
        """Fetch ``todo[start:stop]``, splitting the batch when the server says it is too big."""
        texts = job.texts(start, stop)
        tokens = sum(job.tokens[start:stop])
        try:
            vectors = await self._send_with_retries(texts, tokens)
        except APIStatusError as exc:
            if not _retry.should_split(exc) or len(texts) == 1:
                raise
            self._lower_batch_cap(exc, len(texts))
            self.stats.splits += 1
            for a, b in plan_batches(job.tokens[start:stop], self._batch_cap, 1 << 62):
                await self._fetch_into(job, start + a, start + b)
            return
        job.store(job.todo[start:stop], vectors)
        await self._cache_store(texts, vectors)

    async def _cache_store(self, texts: list[str], vectors: Vectors) -> None:
        """Write each batch as soon as it arrives, so an interrupted run resumes from here."""
        cache = self._cache
        if isinstance(cache, VectorCache):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, cache.set_many, self._cache_namespace, texts, vectors)

    def _lower_batch_cap(self, exc: APIStatusError, sent: int) -> None:
        match = _BATCH_LIMIT_RE.search(exc.message)
        limit = int(match.group(1)) if match else sent // 2
        self._batch_cap = max(1, min(self._batch_cap, limit, sent - 1))
        logger.info("server refused a batch of %d; batch cap is now %d", sent, self._batch_cap)

    # -- one request, with pacing and retries ----------------------------------------------

    async def _send_with_retries(self, texts: list[str], tokens: int) -> Vectors:
        send = backoff.on_exception(
            _retry.wait_gen,
            EmbedSDKError,
            max_tries=self.options.max_retries + 1,
            giveup=lambda exc: not _retry.is_retryable(exc),
            on_backoff=self._on_backoff,
            jitter=None,
            logger=None,
        )(self._send_once)
        result: Vectors = await send(texts, tokens)
        return result

    def _on_backoff(self, details: Any) -> None:
        self.stats.retries += 1
        exc = details.get("exception")
        logger.debug("retry %d in %.2f s after %s", details["tries"], details["wait"], exc)

    async def _pace(self, tokens: int) -> None:
        if self._limiters is None:  # created on the loop that uses them
            o = self.options
            self._limiters = (
                AsyncLimiter(o.rpm, 60) if o.rpm else None,
                AsyncLimiter(o.tpm, 60) if o.tpm else None,
            )
        rpm, tpm = self._limiters
        if rpm is not None:
            await rpm.acquire()
        if tpm is not None:
            # A request larger than the bucket waits for a full bucket, never forever.
            await tpm.acquire(min(tokens, tpm.max_rate))

    async def _send_once(self, texts: list[str], tokens: int) -> Vectors:
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        await self._pace(tokens)
        if self._transport is None:
            self._transport = AiohttpTransport()
        payload: dict[str, Any] = {"model": self.options.model, "input": texts}
        payload["encoding_format"] = self._encoding
        if self.options.dimensions is not None:
            payload["dimensions"] = self.options.dimensions
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        request = Request(self.options.endpoint, self._headers, body, self.options.timeout)
        self.stats.requests += 1
        response = await self._transport.send(request)
        if response.status >= 400:
            exc = status_error(response.status, response.headers, response.body)
            if self._refuses_base64(exc):
                return await self._send_once(texts, tokens)
            raise exc
        vectors, used = decode_embeddings(
            response.body, len(texts), self.options.dimensions, trace_id_of(response.headers)
        )
        self.stats.inputs_sent += len(texts)
        self.stats.tokens += used if used is not None else tokens
        return vectors

    def _refuses_base64(self, exc: APIStatusError) -> bool:
        """Some servers (older vLLM, TEI) refuse base64: switch this client to float lists."""
        if self._encoding != "base64" or not isinstance(exc, BadRequestError):
            return False
        if "base64" not in exc.message.lower() and "encoding_format" not in exc.message.lower():
            return False
        logger.info("server refuses base64 (%s); using float lists from now on", exc.message)
        self._encoding = "float"
        return True
