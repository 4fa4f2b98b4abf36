"""The windows of one :meth:`AsyncEmbedder.embed_stream` call.

Each window (read by :func:`~embedsdk.client._job.windows`) is a job of its own, run through
the client's :class:`~embedsdk.client._runner.Runner` as a call is (``start`` -> ``run`` ->
``conclude``). The windows share the call's slots (``max_concurrent``) and progress bar, and a
window is started before the previous one is handed out; a text it repeats that the previous
window is still fetching is borrowed from it (:class:`~embedsdk.client._job.Window`) rather than
sent twice: the window's batches are planned again without it (``Runner.plan``).
"""

from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np
import numpy.typing as npt

from ._job import EmbeddingResult, Job, Lent, Vectors, Window
from ._progress import Progress
from ._runner import Runner


def _copy_arrived(job: Job, other: Job) -> bool:
    """Fill the rows of ``job`` still to fetch whose text ``other`` (the stream's previous
    window) already has: whether any were."""
    if other.rows is None:
        return False
    have = {other.unique[i]: i for i in np.flatnonzero(other.filled)}
    pairs = [(r, have[job.unique[r]]) for r in job.todo if job.unique[r] in have]
    if not pairs:
        return False
    mine, theirs = (np.array(column, dtype=np.intp) for column in zip(*pairs))
    job.store(mine, other.rows[theirs])
    return True


class Stream:
    """What the windows of one stream share, and how each is embedded.

    ``runner`` is the client's; ``ready`` the client's check before each window (the client
    is open, and on its event loop).
    """

    def __init__(
        self,
        runner: Runner,
        batch_size: int | str | None,
        workers: int,
        bar: Progress | None,
        keep_going: bool,
        ready: Callable[[], None],
    ) -> None:
        self._runner = runner
        self._ready = ready
        self._batch_size = batch_size
        self._workers = workers
        self._slots = asyncio.Semaphore(workers)  # shared by all the windows' batches
        self._bar = bar
        self._keep_going = keep_going  # errors="return": a block is an EmbeddingResult

    def window_size(self, window: int | None) -> int:
        """Texts per window: ``window``, or enough to keep every slot busy for a while."""
        if window:
            return window
        return max(1024, 8 * self._workers * self._runner.batch_guess(self._batch_size))

    async def embed(
        self, texts: list[str], offset: int, this: Window, previous: Window | None
    ) -> Vectors | EmbeddingResult:
        """The block of one window (``this``), whose first text is input ``offset``: its
        vectors, or with ``errors="return"`` its :class:`EmbeddingResult` (errors of the
        whole call, such as a 401 or a storm, still end the stream)."""
        runner = self._runner
        try:
            self._ready()
            job = this.job = await runner.start(
                texts, self._batch_size, offset, self._bar, keep_going=self._keep_going
            )
            job.ends_call = this.last
        finally:
            this.planned.set()
        ended: BaseException | None = None
        try:
            borrowed = await self._borrow(job, previous)
            try:
                await runner.run(job, self._workers, self._slots)
            finally:
                this.done = True
                this.lend()  # the rows the next window borrows, and which of them arrived
            if borrowed is not None and previous is not None and previous.lent is not None:
                await self._take_lent(job, borrowed, await previous.lent)
        except BaseException as exc:
            ended = exc
            raise
        finally:
            runner.finish(job, ended)
        return runner.conclude(job)

    async def _take_lent(self, job: Job, borrowed: npt.NDArray[np.intp], lent: Lent) -> None:
        """Store the rows the previous window lent; fetch those it did not get itself (it
        failed them, with ``errors="return"``): this window's own error names them."""
        rows, arrived = lent
        if rows is not None and arrived.any():
            job.store(borrowed[arrived], rows[arrived])
        missing = borrowed[~arrived]
        if not len(missing):
            return
        others = np.setdiff1d(np.flatnonzero(~job.filled), missing)  # failed here already
        self._runner.plan(job, self._batch_size, elsewhere=others)
        await self._runner.run(job, self._workers, self._slots)

    async def _borrow(self, job: Job, previous: Window | None) -> npt.NDArray[np.intp] | None:
        """Leave out of ``job``'s batches the rows the previous window is fetching right now,
        and ask it for them; returns those rows of ``job`` (``None`` when there are none)."""
        if previous is None or not len(job.todo):
            return None
        await previous.planned.wait()
        other = previous.job
        if other is None:
            return None
        if _copy_arrived(job, other):  # after this window's cache lookup, or with no cache
            self._runner.plan(job, self._batch_size)
        if previous.done or not len(job.todo):
            return None
        fetching = {other.unique[i]: i for i in other.todo if not other.filled[i]}
        pairs = [(r, fetching[job.unique[r]]) for r in job.todo if job.unique[r] in fetching]
        if not pairs:
            return None
        mine, theirs = (np.array(column, dtype=np.intp) for column in zip(*pairs))
        previous.wanted = theirs
        previous.lent = asyncio.get_running_loop().create_future()
        self._runner.plan(job, self._batch_size, elsewhere=mine)
        return mine
