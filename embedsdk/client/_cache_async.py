"""A client's disk cache, as the async core uses it: opened on first use, read before a call's
batches are planned, written as each batch arrives, and always on a worker thread (SQLite
blocks), shielded from the caller's cancellation."""

from __future__ import annotations

import asyncio
import shlex
from typing import Any

import numpy as np

from .._exceptions import EmbedSDKError
from ..cache import VectorCache, open_cache
from ._config import ClientOptions
from ._job import Job, Vectors

_UNOPENED = object()


class AsyncCache:
    """The cache of one client (``options.cache``); a call's hits and misses are counted
    by its :class:`Job`."""

    def __init__(self, options: ClientOptions) -> None:
        self.opened: Any = _UNOPENED  # then the VectorCache, or None: no cache
        self.namespace = VectorCache.namespace(options.endpoint, options.model, options.dimensions)
        self._option = options.cache
        self._lock: asyncio.Lock | None = None  # made on the loop that uses it
        self._disk_io: set[asyncio.Future[Any]] = set()  # cache reads/writes still running
        # The width of the first vectors this client had, and whether the cache gave them: that
        # fixes the width of a call's result (and of a stream's blocks) before any answer.
        self._width: int | None = None
        self._width_from_cache = False

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

    async def lookup(self, job: Job) -> None:
        """Serve what the disk cache has; only the misses will be sent."""
        cache = await self._open()
        if cache is None or not job.unique:
            return
        matrix, hit = await self._on_disk(cache.get_many, self.namespace, job.unique)
        if matrix is not None and self._width not in (None, matrix.shape[1]):
            # Of another width than this client's vectors: stale, or the cache holds both
            # widths. Fetched again (and replaced), as misses, they cannot mix with the others.
            matrix, hit = None, np.zeros_like(hit)
        hits = int(hit.sum())
        job.count(cache_hits=hits, cache_misses=len(job.unique) - hits)
        if matrix is not None and hits:
            self._note_width(int(matrix.shape[1]), from_cache=True)
            if hits == len(job.unique):
                job.rows = matrix  # every row cached: no copy
                job.filled[:] = True
                job.advance(hits)
            else:
                job.store(hit, matrix[hit])

    def check_width(self, vectors: Vectors) -> None:
        """Refuse an answer whose vectors are not as wide as those the cache gave this client.

        The cache is keyed by endpoint, model and dimensions, not by width: a server that
        changed its model under the same name makes the cached vectors stale. Raised at once,
        not retried: every answer will be so, until the cache is cleared.
        """
        width = self._width
        if not self._width_from_cache or vectors.shape[1] == width:
            return
        where = self.opened.directory if isinstance(self.opened, VectorCache) else "?"
        command = f"embedsdk cache clear --dir {shlex.quote(str(where))}"
        raise EmbedSDKError(
            f"vectors of {vectors.shape[1]} dimensions arrived, but the cache at {where} had"
            f" given this client vectors of {width} for the same endpoint and model: the model"
            f" changed under its name, and the cached vectors are stale; run `{command}` and"
            " run again"
        )

    def _note_width(self, width: int, from_cache: bool) -> None:
        if self._width is None:
            self._width, self._width_from_cache = width, from_cache

    async def store(self, texts: list[str], vectors: Vectors) -> None:
        """Write each batch as soon as it arrives, so an interrupted run resumes from here."""
        self._note_width(int(vectors.shape[1]), from_cache=False)
        cache = self.opened
        if isinstance(cache, VectorCache):
            await self._on_disk(cache.set_many, self.namespace, texts, vectors)

    async def _open(self) -> VectorCache | None:
        """Open the cache on first use, off the event loop (it touches the disk)."""
        if self.opened is _UNOPENED and (self._option is None or self._option is False):
            self.opened = None  # no cache: nothing to open, no thread to hop to
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
