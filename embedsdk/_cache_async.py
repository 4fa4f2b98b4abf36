"""A client's disk cache, as the async core uses it: opened on first use, read before a call's
batches are planned, written as each batch arrives, and always on a worker thread (SQLite
blocks), shielded from the caller's cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

from ._cache import VectorCache, open_cache
from ._config import ClientOptions
from ._job import Stats, Vectors, _Job

_UNOPENED = object()


class AsyncCache:
    """The cache of one client (``options.cache``), counted in its ``stats``."""

    def __init__(self, options: ClientOptions, stats: Stats) -> None:
        self.opened: Any = _UNOPENED  # then the VectorCache, or None: no cache
        self.namespace = VectorCache.namespace(options.endpoint, options.model, options.dimensions)
        self._option = options.cache
        self._stats = stats
        self._lock: asyncio.Lock | None = None  # made on the loop that uses it
        self._disk_io: set[asyncio.Future[Any]] = set()  # cache reads/writes still running

    def ours(self) -> VectorCache | None:
        """The cache it opened itself, to be closed with the client (not the caller's own)."""
        opened = self.opened if isinstance(self.opened, VectorCache) else None
        return None if opened is self._option else opened

    async def aclose(self) -> None:
        """Wait for the reads and writes still running, then close the cache if it is ours."""
        if self._disk_io:  # writes of cancelled calls still run in their threads
            await asyncio.wait(list(self._disk_io))
        ours = self.ours()
        if ours is not None:
            ours.close()

    def forget_loop(self) -> None:
        """Drop the lock: it belongs to a loop that is gone (a fork)."""
        self._lock = None

    async def lookup(self, job: _Job) -> None:
        """Serve what the disk cache has; only the misses will be sent."""
        cache = await self._open()
        if cache is None or not job.unique:
            return
        matrix, hit = await self._on_disk(cache.get_many, self.namespace, job.unique)
        hits = int(hit.sum())
        self._stats.cache_hits += hits
        self._stats.cache_misses += len(job.unique) - hits
        if matrix is not None and hits:
            if hits == len(job.unique):
                job.rows = matrix  # every row cached: no copy
                job.filled[:] = True
                job.advance(hits)
            else:
                job.store(hit, matrix[hit])

    async def store(self, texts: list[str], vectors: Vectors) -> None:
        """Write each batch as soon as it arrives, so an interrupted run resumes from here."""
        cache = self.opened
        if isinstance(cache, VectorCache):
            await self._on_disk(cache.set_many, self.namespace, texts, vectors)

    async def _open(self) -> VectorCache | None:
        """Open the cache on first use, off the event loop (it touches the disk)."""
        if self.opened is _UNOPENED:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self.opened is _UNOPENED:
                    self.opened = await self._on_disk(open_cache, self._option)
        cache: VectorCache | None = self.opened
        return cache

    async def _on_disk(self, function: Any, *args: Any) -> Any:
        """Run blocking cache I/O on a thread, shielded from the caller's cancellation.

        A thread cannot be stopped: cancelling the caller would only stop the waiting, and
        :meth:`aclose` would then close SQLite under a write still running (the process
        crashes). So the I/O is shielded and tracked, ``aclose`` waits for it, and a batch
        that arrived is still written when its call is cancelled.
        """
        future = asyncio.get_running_loop().run_in_executor(None, function, *args)
        self._disk_io.add(future)
        future.add_done_callback(self._disk_io.discard)
        return await asyncio.shield(future)
