"""Big jobs through the provider's Batch API: half the price, outside the account's rate limit.

>>> import embedsdk.batchapi as batchapi                                 # doctest: +SKIP
>>> vecs = batchapi.embed_via_batch(texts, job_dir="corpus.batch",
...                                 base_url="https://api.openai.com/v1",
...                                 model="text-embedding-3-small")

The texts go in JSONL files to ``/files``, one batch each on ``/batches`` (endpoint
``/v1/embeddings``), and come back within the provider's 24-hour window; the result is the
same as :func:`embedsdk.get_batch_embeddings`' (the same vectors, bit for bit, rows in input
order, the same cache entries). Texts already cached are not sent; a job killed anywhere
resumes from its job directory when run again, without uploading or paying twice.

Modules:

- :mod:`._limits`: what each provider's Batch API takes (requests, bytes, inputs per file)
  (prices: :mod:`embedsdk._prices`).
- :mod:`._state`: the job directory (``job.json``, the plan table, the part files).
- :mod:`._plan`: one pass over the texts into part files within those limits.
- :mod:`._http`: the Batch API's calls over one aiohttp session, retried with backoff.
- :mod:`._results`: a finished batch's output and error files into the store, failures
  sorted (sent again, split one input a request, or refused).
- :mod:`._job`: the job itself (submit, poll, finish, send again) and its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

from .._exceptions import ConfigurationError
from ..cache import VectorCache, open_cache
from ..client import AsyncEmbedder, ClientOptions, resolve_options
from ..files import OutputFileError, lock_output
from ._http import BatchAPI, NoBatchAPI
from ._job import (
    MAX_ROUNDS,
    TERMINAL,
    BatchJob,
    BatchJobError,
    Failed,
    JobBusyError,
    JobReport,
)
from ._limits import BatchLimits, limits_for
from ._plan import Stores
from ._results import StoreFailed
from ._state import STDIN_COPY, STORE, JobState

logger = logging.getLogger("embedsdk.batchapi")


def job_identity(options: ClientOptions) -> dict[str, Any]:
    """What the stored vectors depend on; a job directory is for one of these."""
    return {
        "base_url": options.base_url,
        "model": options.model,
        "dimensions": options.dimensions,
        "encoding_format": options.encoding_format,
    }


#: Bytes the job's own store may hold: all of them (a store that evicted would make the
#: result pay /embeddings for what a batch already returned).
UNBOUNDED = 2**62


@contextlib.contextmanager
def job_store(options: ClientOptions, job_dir: Path) -> Iterator[Stores]:
    """The job directory, locked for this run, and where its vectors are kept: its own store
    (never evicts; the result is read from it) and a copy in the caller's cache when on.

    Two runs of one job would number their parts alike and match one's output to the
    other's requests: the second is refused (the lock is the operating system's, so it ends
    with the process, however it ends). A run that fails before it planned anything (a bad
    text, a wrong option) leaves no directory behind; one refused for the lock touches none.
    """
    path = Path(job_dir).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    remedy = f"or stop it (the job's state is in {path})"
    held = False
    try:
        with contextlib.ExitStack() as stack:
            try:
                lock = lock_output(str(path), remedy=remedy, holder="embedsdk batch job")
                stack.enter_context(lock)
            except OutputFileError as exc:  # busy, or the lock cannot be made
                raise JobBusyError(str(exc), job_dir=str(path)) from None
            held = True
            cache = open_cache(options.cache) if options.cache is not False else None
            if cache is not None and cache is not options.cache:
                stack.enter_context(cache)  # opened here: closed here (a caller's stays open)
            usable = cache if cache is not None and cache.enabled else None
            own = stack.enter_context(VectorCache(path / STORE, size_limit=UNBOUNDED))
            yield Stores(own, usable)
    except BaseException:
        if held:  # the stores are closed by now
            discard_if_unsent(path)
        raise


async def run_job(
    texts: Iterable[Any] | Callable[[], Iterable[Any]],
    job_dir: str | Path,
    options: ClientOptions,
    stores: Stores,
    *,
    failed: Failed = "batch",
    max_rounds: int = MAX_ROUNDS,
    progress: bool = False,
    limits: BatchLimits | None = None,
    keep_remote: bool = False,
    price: object = None,
) -> JobReport:
    """Send ``texts`` through the Batch API until their vectors are in ``stores.job``.

    The engine of :func:`embed_via_batch` and ``embedsdk embed --via batch``, run inside
    :func:`job_store`. ``texts``: a sequence, or a function that returns an iterable of them
    afresh each time it is called (a job whose input changed before anything was sent is
    planned again from the start); a one-shot iterator is read once.
    """
    if options.truncate:
        raise ConfigurationError("truncate=True is not available with the Batch API yet")
    state = JobState.open(job_dir, job_identity(options))
    namespace = VectorCache.namespace(options.endpoint, options.model, options.dimensions)
    job = BatchJob(
        options,
        state,
        stores,
        namespace,
        limits or limits_for(options.provider),
        failed=failed,
        max_rounds=max_rounds,
        progress=progress,
        keep_remote=keep_remote,
        price=price,
    )
    return await job.run(texts)


def discard_if_unsent(job_dir: str | Path) -> bool:
    """Remove a job directory whose job planned nothing (it failed on a bad text, a wrong
    option); one with parts keeps its state, to resume. Whether nothing is kept there."""
    try:
        empty = not JobState.load(job_dir).parts
    except ConfigurationError:
        return True  # no job there (or not ours): nothing kept
    if empty:
        shutil.rmtree(job_dir, ignore_errors=True)
    return empty


def _check(failed: str, job_dir: Any) -> Path:
    if failed not in ("batch", "embeddings"):
        raise ConfigurationError(f"failed must be 'batch' or 'embeddings', not {failed!r}")
    if job_dir is None or str(job_dir) == "":
        raise ConfigurationError(
            "job_dir is required: the directory where the job's state is kept, so that a run "
            "killed anywhere resumes there"
        )
    return Path(job_dir).expanduser()


async def aembed_via_batch(
    texts: list[str],
    *,
    job_dir: str | Path,
    failed: Failed = "batch",
    max_rounds: int = MAX_ROUNDS,
    progress: bool = False,
    errors: str = "raise",
    price: object = None,
    **options: Any,
) -> Any:
    """:func:`embed_via_batch` in an event loop."""
    path = _check(failed, job_dir)
    resolved = resolve_options(**options)
    texts = list(texts)
    with job_store(resolved, path) as stores:
        report = await run_job(
            texts,
            path,
            resolved,
            stores,
            failed=failed,
            max_rounds=max_rounds,
            progress=progress,
            price=price,
        )
        return await _result(report, texts, stores, options, errors)


async def _result(
    report: JobReport, texts: list[str], stores: Stores, options: dict[str, Any], errors: str
) -> Any:
    """The job's vectors in input order, read from its store: no request, except for texts
    the batches refused (which /embeddings names as it would) and, with failed="embeddings",
    what failed in the batches (at full price; the caller's cache gets those too)."""
    logger.info("%s", report.summary())
    async with AsyncEmbedder(**{**options, "cache": stores.job}) as embedder:
        result = await embedder.embed(texts, errors=errors)  # type: ignore[call-overload]
    return result


def embed_via_batch(
    texts: list[str],
    *,
    job_dir: str | Path,
    failed: Failed = "batch",
    max_rounds: int = MAX_ROUNDS,
    progress: bool = False,
    errors: str = "raise",
    price: object = None,
    **options: Any,
) -> Any:
    """Embed ``texts`` through the provider's Batch API; blocks until the batches are done
    (up to the provider's 24 hours) and returns what :func:`embedsdk.get_batch_embeddings`
    returns: a ``(len(texts), D)`` float32 array, row i for ``texts[i]``.

    ``job_dir``: where the job's state is kept; run the same call again after Ctrl-C or a
    crash and it resumes the same batches. ``failed``: what to do with requests that failed
    in a batch for a transient reason (and expired or cancelled ones): ``"batch"`` sends them
    in a new batch, up to ``max_rounds`` times; ``"embeddings"`` sends them to
    ``/embeddings`` at full price. ``progress``: a bar of requests done. ``price``: yours per
    million tokens for the summary's cost (a number in USD, ``"0.5 CNY"`` or a
    :class:`embedsdk.Price`; default: the published one, if listed). ``options``: the
    client options of :func:`embedsdk.get_batch_embeddings` (``base_url``, ``model``,
    ``dimensions``, ``cache``, ``api_key``...). Raises :class:`BatchJobError` when a batch
    fails validation or failures remain, and :class:`NoBatchAPI` when the server has none.
    """
    return _run_sync(
        aembed_via_batch(
            texts,
            job_dir=job_dir,
            failed=failed,
            max_rounds=max_rounds,
            progress=progress,
            errors=errors,
            price=price,
            **options,
        )
    )


def _run_sync(coro: Any) -> Any:
    """``asyncio.run(coro)``, on a thread of its own when this one runs a loop (a notebook).

    On that thread, Ctrl-C (a notebook's interrupt) reaches the caller's thread only: the
    job is then cancelled on its own loop and waited for, so that no run goes on behind the
    next one (the job directory's lock would refuse that one).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> Any:
        box["task"] = asyncio.current_task()
        box["loop"] = asyncio.get_running_loop()
        started.set()
        return await coro

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=target, name="embedsdk-batch", daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        started.wait()
        if "loop" in box:
            with contextlib.suppress(RuntimeError):  # it has just ended: nothing to cancel
                box["loop"].call_soon_threadsafe(box["task"].cancel)
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


__all__ = [
    "STDIN_COPY",
    "TERMINAL",
    "BatchAPI",
    "BatchJob",
    "BatchJobError",
    "BatchLimits",
    "JobBusyError",
    "JobReport",
    "JobState",
    "NoBatchAPI",
    "StoreFailed",
    "Stores",
    "aembed_via_batch",
    "discard_if_unsent",
    "embed_via_batch",
    "job_store",
    "limits_for",
    "run_job",
]
