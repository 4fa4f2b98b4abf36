"""One job through the Batch API: plan, upload, create, poll, store, send the failures again.

Every step that spends something is written to ``job.json`` first (see :mod:`._state`), so a
run that is killed anywhere resumes where it stopped: a file being uploaded or a batch being
created is looked up by name before it is sent again (and so is one whose answer was lost);
a batch in progress is polled again; a finished batch whose results were downloaded is stored
from the job directory. What a batch leaves owed is sent again in a new one in this run
(transient failures, expired requests), or by the next run (a cancel seen while it ran, a
refusal for the account's sake), each named in the error that ends this one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable, Literal

from .._exceptions import ConfigurationError, EmbedSDKError
from .._prices import Price, as_price
from ..client import ClientOptions, estimate_tokens
from ._http import BatchAPI
from ._limits import BatchLimits
from ._plan import ENDPOINT, Scan, Stores, plan_texts, read_requests, resend_lines
from ._results import Sorter, StoreFailed
from ._state import JobState, part_file

logger = logging.getLogger("embedsdk.batchapi")

Failed = Literal["batch", "embeddings"]
#: A batch's statuses that end it.
TERMINAL = ("completed", "failed", "expired", "cancelled")
#: Poll waits: a tenth of the time the batches have run so far, from POLL_FIRST seconds to
#: POLL_MAX: a job of minutes is seen done within seconds, one of hours is asked about every
#: few minutes (the delay it adds stays under a tenth).
POLL_FIRST = 2.0
POLL_MAX = 300.0
POLL_SHARE = 0.1
#: Rounds of resending what failed in a batch, per run (the first sending is not counted).
MAX_ROUNDS = 3


class BatchJobError(EmbedSDKError):
    """A batch job cannot go on: a batch failed validation, the provider refused requests
    for a reason other than their content (a key, a quota, a model), a batch was cancelled,
    or failures remain after the rounds allowed. What came back is kept: the same call again
    resumes (and sends again what the error names).

    ``job_dir``: where the job's state is (run again to resume); ``batch_id``: the batch at
    fault, when one is.
    """

    def __init__(self, message: str, *, job_dir: str = "", batch_id: str | None = None) -> None:
        super().__init__(message)
        self.job_dir = job_dir
        self.batch_id = batch_id


class JobBusyError(BatchJobError):
    """Another run holds the job directory (its ``DIR.lock``): wait for it, or stop it."""


@dataclasses.dataclass
class JobReport:
    """What a job did, over all its runs so far (``seen`` / ``cached`` / ``duplicates``:
    this run's scan).

    ``tokens``: input tokens as the provider counted them; ``price``: the ``/embeddings``
    price (:class:`embedsdk.Price`; ``None``: unknown); ``cost`` / ``saved``: in its currency,
    through the batches and what ``/embeddings`` would have cost more (``None`` without a
    price); ``left``: inputs
    whose vectors did not come back (failed after the rounds allowed); ``earlier``: texts of
    this run's scan that an earlier run's batches carry.
    """

    job_dir: str
    seen: int = 0
    cached: int = 0
    duplicates: int = 0
    earlier: int = 0
    planned: int = 0
    batches: int = 0
    requests: int = 0
    stored: int = 0
    tokens: int = 0
    left: int = 0
    price: Price | None = None
    discount: float = 0.5
    seconds: float = 0.0

    @property
    def cost(self) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(self.tokens) * (1 - self.discount)

    @property
    def saved(self) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(self.tokens) * self.discount

    def summary(self) -> str:
        """One line for a person: what was sent, what it cost, what it saved."""
        price, cost, saved = self.price, self.cost, self.saved
        money = (
            f"{price.money(cost)} at {price}, {price.money(saved)} less than /embeddings"
            if price is not None and cost is not None and saved is not None
            else "no published price for this model (give yours with price=)"
        )
        before = f", {plural(self.earlier, 'text')} sent by an earlier run" if self.earlier else ""
        batches = plural(self.batches, "batch", "batches")
        return (
            f"Batch API: {plural(self.planned, 'text')} in {batches}"
            f" ({plural(self.requests, 'request')}) in {self.seconds:,.1f} s; "
            f"{plural(self.cached, 'text')} already cached, "
            f"{plural(self.duplicates, 'duplicate')} not sent{before}; "
            f"{plural(self.tokens, 'token')}: {money}"
        )


class BatchJob:
    """One job directory's run. Use :func:`embedsdk.batchapi.embed_via_batch` or the
    command line's ``--via batch``; this is their engine."""

    def __init__(
        self,
        options: ClientOptions,
        state: JobState,
        stores: Stores,
        namespace: bytes,
        limits: BatchLimits,
        *,
        failed: Failed = "batch",
        max_rounds: int = MAX_ROUNDS,
        progress: bool = False,
        keep_remote: bool = False,
        sleep: Callable[[float], Any] = asyncio.sleep,
        price: object = None,
    ) -> None:
        self.options, self.state, self.stores, self.namespace = options, state, stores, namespace
        self.limits, self.failed, self.max_rounds = limits, failed, max_rounds
        self.progress, self.keep_remote, self._sleep = progress, keep_remote, sleep
        self.api = BatchAPI(options.base_url, options.api_key, sleep=sleep)
        self.report = JobReport(
            str(state.directory),
            price=options.price
            if price is None
            else as_price(price, options.provider, options.model),
            discount=limits.discount,
        )
        self._bar: Any = None
        self._free = 0  # batches finished in this run that no held part has taken the place of
        self._seen_running: set[int] = set()  # parts this run saw in progress

    # -- the whole job -----------------------------------------------------------------------

    async def run(self, texts: Iterable[Any] | Callable[[], Iterable[Any]]) -> JobReport:
        started = time.monotonic()
        scan = await self._plan(_afresh(texts))
        self.report.seen, self.report.cached = scan.texts, scan.cached
        self.report.duplicates, self.report.earlier = scan.covered, scan.earlier
        try:
            self._resend([p for p in self.state.parts if p.get("deferred")], "deferred")
            async with self.api:
                await self._send_until_done()
        finally:
            self._close_bar()
            self.state.save()
            self._tally()
            self.report.seconds = time.monotonic() - started
        return self.report

    async def _plan(self, texts: Callable[[], Iterable[Any]]) -> Scan:
        round_ = 1 + max((p["round"] for p in self.state.parts), default=0)

        def check(digest: str, count: int) -> None:
            known = self.state.data.get("input")
            if known is None or known["digest"] == digest:
                return
            if self.state.ever_sent():
                raise ConfigurationError(
                    f"the job in {self.state.directory} was started for another input "
                    f"({known['texts']:,} texts, now {count:,}) and its batches are paid "
                    "for: run it with that input to collect them, or use another job "
                    "directory"
                )
            raise _OtherInput

        def plan(source: Iterable[Any], round_: int, check: Any) -> Scan:
            with self.state.plan() as table:
                table.forget_parts_above(len(self.state.parts))
                return plan_texts(
                    source, self.state, table, self.stores, self.namespace, self.options,
                    self.limits, round_, check,
                )  # fmt: skip

        def work() -> Scan:
            try:
                return plan(texts(), round_, check)
            except _OtherInput:
                pass
            # Nothing of the old plan was sent: it is forgotten, and this input planned.
            logger.info("the job's input changed before anything was sent: planned afresh")
            self.state.reset()
            return plan(texts(), 1, lambda digest, count: None)

        return await asyncio.get_running_loop().run_in_executor(None, work)

    async def _send_until_done(self) -> None:
        rounds = 0
        while True:
            live = [p for p in self.state.parts if p["stage"] != "finished"]
            if live:
                await self._submit_all(live)
                await self._poll(live)
            again = [p for p in self.state.parts if _owes(p)]
            if not again or self.failed == "embeddings" or rounds >= self.max_rounds:
                break
            rounds += 1
            self._resend(again, "retry")
        self._check_done()

    # -- submitting --------------------------------------------------------------------------

    async def _submit_all(self, parts: list[dict[str, Any]]) -> None:
        waiting = [p for p in parts if p["stage"] != "submitted"]
        if not waiting:
            return
        if not self.state.data.get("validated"):
            first = waiting[0]
            await self._submit(first)
            await self._until_validated(first)
            waiting = waiting[1:]
        for part in waiting:
            await self._submit(part)

    async def _submit(self, part: dict[str, Any]) -> None:
        """Upload the part's file and create its batch, each once, whatever was killed and
        whatever answer was lost on the way back."""
        if part["stage"] in ("planned", "uploading"):
            found = await self._uploaded_before(part) if part["stage"] == "uploading" else None
            if found is None:
                self._stage(part, "uploading")
                path, name = self.state.path(part["file"]), self.state.remote_name(part)
                found = await self.api.exactly_once(
                    f"upload of {name}",
                    lambda: self.api.upload(path, name, tries=1),
                    lambda: self._uploaded_before(part),
                )
            part["file_id"] = found["id"]
            self._stage(part, "uploaded")
        if part["stage"] in ("uploaded", "creating"):
            batch = await self._created_before(part) if part["stage"] == "creating" else None
            if batch is None:
                part["tries"] = part.get("tries", 0) + 1
                part["created_with"] = self._live(part)
                self._stage(part, "creating")
                batch = await self.api.exactly_once(
                    f"the batch of {part['file']}",
                    lambda: self.api.create(
                        part["file_id"], ENDPOINT, self._metadata(part), tries=1
                    ),
                    lambda: self._created_before(part),
                )
            part["batch_id"], part["status"] = batch["id"], batch.get("status")
            self._seen_running.add(part["n"])  # made by this run: a cancel is someone's wish
            self._stage(part, "submitted")
            logger.info("part %d: batch %s (%s)", part["n"], batch["id"], batch.get("status"))

    def _live(self, part: dict[str, Any]) -> int:
        """The job's other batches in progress (a full queue holds a part only while one
        of them is there to finish)."""
        return sum(
            1
            for p in self.state.parts
            if p is not part and p["stage"] == "submitted" and p["status"] not in TERMINAL
        )

    def _metadata(self, part: dict[str, Any]) -> dict[str, str]:
        return {
            "embedsdk_job": self.state.job_id,
            "embedsdk_part": str(part["n"]),
            "embedsdk_try": str(part.get("tries", 1)),
        }

    async def _uploaded_before(self, part: dict[str, Any]) -> dict[str, Any] | None:
        name = self.state.remote_name(part)
        for found in await self.api.files():
            if found.get("filename") == name and found.get("bytes") == part["bytes"]:
                logger.info("part %d: found its file %s, uploaded before", part["n"], found["id"])
                return found
        return None

    async def _created_before(self, part: dict[str, Any]) -> dict[str, Any] | None:
        async for batch in self.api.batches():
            if batch.get("metadata") == self._metadata(part):
                logger.info("part %d: found its batch %s, made before", part["n"], batch["id"])
                return batch
        return None

    def _stage(self, part: dict[str, Any], stage: str) -> None:
        part["stage"] = stage
        self.state.save()

    async def _until_validated(self, part: dict[str, Any]) -> None:
        """Wait for the first batch to pass validation: a file the provider refuses fails
        there, before any other is uploaded."""
        started = asyncio.get_running_loop().time()
        while True:
            batch = await self.api.retrieve(part["batch_id"])
            self._note(part, batch)
            if batch.get("status") != "validating":
                break
            await self._sleep(_poll_wait(asyncio.get_running_loop().time() - started))
        if batch.get("status") == "failed":
            await self._finish(part, batch)  # raises, or holds it
            return
        self.state.data["validated"] = True
        self.state.save()

    # -- polling -----------------------------------------------------------------------------

    async def _poll(self, parts: list[dict[str, Any]]) -> None:
        self._open_bar()
        self._free = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            for part in parts:
                if part["status"] == "held" and self._free > 0:
                    self._free -= 1  # one batch finished: one held part takes its place
                    await self._submit(part)
                if part["stage"] != "submitted":
                    continue
                batch = await self.api.retrieve(part["batch_id"])
                self._note(part, batch)
                if batch.get("status") in TERMINAL:
                    await self._finish(part, batch)
            self._show(parts)
            if all(p["stage"] == "finished" for p in parts):
                return
            if not any(p["stage"] == "submitted" for p in parts):
                self._free += 1  # only held parts left: nothing of ours is in the queue
            await self._sleep(_poll_wait(loop.time() - started))

    def _note(self, part: dict[str, Any], batch: dict[str, Any]) -> None:
        """Record the batch's status and counts."""
        if batch.get("status") in ("validating", "in_progress", "finalizing"):
            self._seen_running.add(part["n"])
        counts = batch.get("request_counts") or {}
        new = {k: int(counts.get(k) or 0) for k in ("total", "completed", "failed")}
        new["total"] = new["total"] or part["requests"]
        if part["status"] != batch.get("status") or part["counts"] != new:
            part["status"], part["counts"] = batch.get("status"), new
            self.state.save()

    async def _finish(self, part: dict[str, Any], batch: dict[str, Any]) -> None:
        """A terminal batch: its results downloaded, stored and sorted."""
        status = batch.get("status")
        if status == "failed" and _over_enqueued(batch):
            self._hold(part, batch)
            return
        if status == "failed":
            self._failed_validation(part, batch)
        for kind, key in (("output", "output_file_id"), ("errors", "error_file_id")):
            file_id = batch.get(key)
            path = self.state.path(part_file(part["n"], kind))
            if file_id and not path.exists():
                await self.api.download(file_id, path)
        sorter = Sorter(self.state, part, read_requests(self.state, part), self.options.dimensions)
        loop = asyncio.get_running_loop()
        part["stored"] = await loop.run_in_executor(None, sorter.store, self.stores, self.namespace)
        # Cancelled while this run watched it: someone means it to stop, so what is left
        # waits for the next run; found cancelled by a run started since, it goes now.
        sorter.sort_errors(cancelled=status == "cancelled" and part["n"] in self._seen_running)
        part["tokens_used"] = sorter.tokens
        part["retry"], part["split"], part["refused"] = sorter.retry, sorter.split, sorter.refused
        part["deferred"], part["why"] = sorter.deferred, sorter.why
        part["owed"] = sorter.owed_inputs()
        if part["stored"] and not await loop.run_in_executor(None, self.stores.job.checkpoint):
            raise StoreFailed(
                f"the job's vector store at {self.stores.job.directory} could not be synced "
                "to disk; the batch's results are kept in the job directory: run again"
            )
        self._stage(part, "finished")  # then its downloaded files go: the store has them
        if any(p["status"] == "held" for p in self.state.parts):
            self._free += 1  # a place in the queue for one held part
        if not self.keep_remote:
            await self._forget_remote(part, batch)
        for kind in ("output", "errors"):
            self.state.path(part_file(part["n"], kind)).unlink(missing_ok=True)  # stored

    def _hold(self, part: dict[str, Any], batch: dict[str, Any]) -> None:
        """The provider's queue is full (its enqueued-token limit): the part's file is
        batched again once one of the job's batches in progress has finished."""
        if not part.get("created_with"):
            raise BatchJobError(
                f"batch {batch.get('id')} was refused for a full queue with no other batch "
                f"of this job in progress ({_reasons(batch)}): it passes the provider's "
                "limit of tokens enqueued at once by itself, or the account's other batches "
                "fill it: make the files smaller (BatchLimits), or run the same command "
                "again once they have finished",
                job_dir=str(self.state.directory),
                batch_id=batch.get("id"),
            )
        part["batch_id"], part["status"] = None, "held"
        self._stage(part, "uploaded")
        logger.info("part %d: the provider's queue is full; sent again later", part["n"])

    def _failed_validation(self, part: dict[str, Any], batch: dict[str, Any]) -> None:
        reasons = _reasons(batch)
        part["stage"] = "uploaded"  # a new batch of the same file, once the cause is fixed
        part["batch_id"] = None
        self.state.save()
        raise BatchJobError(
            f"the provider refused batch {batch.get('id')} of {self.state.path(part['file'])} "
            f"at validation: {reasons or 'no reason given'}",
            job_dir=str(self.state.directory),
            batch_id=batch.get("id"),
        )

    async def _forget_remote(self, part: dict[str, Any], batch: dict[str, Any]) -> None:
        """Delete the job's files on the provider's side (they count against its storage)."""
        for key in ("input_file_id", "output_file_id", "error_file_id"):
            if batch.get(key):
                try:
                    await self.api.delete_file(batch[key])
                except EmbedSDKError as exc:  # a leftover file costs little: say so, go on
                    logger.info("could not delete file %s: %s", batch[key], exc)

    # -- sending failures again --------------------------------------------------------------

    def _resend(self, parts: list[dict[str, Any]], which: str) -> None:
        """New parts for what ``parts`` owe: ``"retry"`` (and ``split``, one input a
        request) in this run, or ``"deferred"`` at the start of the next. One part's
        requests are in memory at a time."""
        if not parts:
            return
        round_ = 1 + max(p["round"] for p in self.state.parts)
        made = resend_lines(self.state, self.options, self.limits, round_, self._owed(parts, which))
        for part in parts:
            if which == "deferred":
                part["deferred"], part["why"] = [], None
            else:
                part["resent"] = True
            again = ("deferred",) if part["resent"] else ("retry", "split", "deferred")
            part["owed"] = sum(len(r) for r in _picked(self.state, part, again))
        self.state.save()
        logger.info("sending again in %s", plural(len(made), "batch", "batches"))

    def _owed(self, parts: list[dict[str, Any]], which: str) -> Iterator[tuple[list[str], int]]:
        """The requests to send again, less the texts the job's store holds by now (sent to
        /embeddings with failed="embeddings", or by another part)."""
        lists = ("deferred",) if which == "deferred" else ("retry", "split")
        for part in parts:
            for kind, texts in _picked_by_kind(self.state, part, lists):
                _, stored = self.stores.job.get_many(self.namespace, texts)
                texts = [t for t, found in zip(texts, stored) if not found]
                if not texts:
                    continue
                if kind == "split":
                    yield from (([t], estimate_tokens(t)) for t in texts)
                else:
                    yield texts, sum(map(estimate_tokens, texts))

    def _check_done(self) -> None:
        self._tally()
        owed = [p for p in self.state.parts if _owes(p)]
        if owed and self.failed == "batch":
            inputs = sum(p.get("owed", 0) for p in owed)
            raise BatchJobError(
                f"{plural(inputs, 'text')} still failed in the batches after "
                f"{plural(self.max_rounds, 'round')} of sending them again in this run (the "
                "provider's errors were transient): run the same command again to send them "
                "again, or send them to /embeddings at full price with failed='embeddings' "
                "(--batch-failed embeddings)",
                job_dir=str(self.state.directory),
            )
        deferred = [p for p in self.state.parts if p.get("deferred")]
        if deferred:
            inputs = sum(p.get("owed", 0) for p in deferred)
            raise BatchJobError(
                f"{plural(inputs, 'text')} came back without vectors: {deferred[0]['why']}. "
                "What the batches returned is kept; mend the cause (the key, the quota, the "
                "model) if there is one, and run the same command again to send them again",
                job_dir=str(self.state.directory),
                batch_id=deferred[0].get("batch_id"),
            )

    # -- reporting ---------------------------------------------------------------------------

    def _tally(self) -> None:
        parts = self.state.parts
        report = self.report
        report.batches = sum(1 for p in parts if p.get("batch_id"))
        first = parts[0]["round"] if parts else 0
        report.planned = sum(p["inputs"] for p in parts if p["round"] == first)
        report.requests = sum(p["requests"] for p in parts)
        report.stored = sum(p["stored"] for p in parts)
        report.tokens = sum(p["tokens_used"] for p in parts)
        report.left = sum(p.get("owed", 0) for p in parts if p["stage"] == "finished")

    def _open_bar(self) -> None:
        if not self.progress or self._bar is not None:
            return
        from tqdm.auto import tqdm

        total = sum(p["requests"] for p in self.state.parts)
        self._bar = tqdm(total=total, unit="request", desc="batches", dynamic_ncols=True)

    def _show(self, parts: list[dict[str, Any]]) -> None:
        if self._bar is None:
            return
        done = sum(p["counts"]["completed"] + p["counts"]["failed"] for p in self.state.parts)
        self._bar.total = max(self._bar.total, sum(p["requests"] for p in self.state.parts))
        self._bar.n = done
        statuses = sorted({str(p["status"]) for p in parts if p["stage"] != "finished"})
        self._tally()
        saved = self.report.saved
        postfix = {"status": ",".join(statuses) or "done"}
        if saved is not None:
            postfix["saved"] = f"${saved:,.2f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _OtherInput(Exception):
    """The input is not the one the job was planned for (and nothing was sent yet)."""


def _afresh(texts: Iterable[Any] | Callable[[], Iterable[Any]]) -> Callable[[], Iterable[Any]]:
    """A function giving ``texts`` from the start each time it is called; a one-shot
    iterator cannot be read twice, and a second reading says so."""
    if callable(texts):
        return texts
    if isinstance(texts, (list, tuple)) or hasattr(texts, "__getitem__"):
        return lambda: texts
    calls = [0]

    def once() -> Iterable[Any]:
        calls[0] += 1
        if calls[0] > 1:
            raise ConfigurationError(
                "the job directory holds a job planned for another input, and nothing of it "
                "was sent: delete the directory, or pass the texts as a list (or a function "
                "returning them) so that the job can be planned again"
            )
        return texts

    return once


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 batch``, ``2,000 batches`` (with thousands separators)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def _poll_wait(elapsed: float) -> float:
    """Seconds to the next poll, when the batches have run ``elapsed`` seconds so far."""
    return min(POLL_MAX, max(POLL_FIRST, POLL_SHARE * elapsed))


def _picked_by_kind(
    state: JobState, part: dict[str, Any], lists: tuple[str, ...]
) -> Iterator[tuple[str, list[str]]]:
    wanted = [(kind, i) for kind in lists for i in part.get(kind) or ()]
    if not wanted:
        return
    requests = read_requests(state, part)
    for kind, i in wanted:
        yield kind, requests[i]


def _picked(state: JobState, part: dict[str, Any], lists: tuple[str, ...]) -> list[list[str]]:
    return [texts for _, texts in _picked_by_kind(state, part, lists)]


def _errors(batch: dict[str, Any]) -> list[dict[str, Any]]:
    return list((batch.get("errors") or {}).get("data") or [])


def _reasons(batch: dict[str, Any]) -> str:
    """The provider's reasons a batch failed, as one line (the first five)."""
    return "; ".join(
        (f"line {e['line']}: " if e.get("line") else "")
        + str(e.get("message") or e.get("code") or "?")
        for e in _errors(batch)[:5]
    )


def _over_enqueued(batch: dict[str, Any]) -> bool:
    """Failed only because the provider's queue is full (OpenAI's enqueued-token limit)."""
    errors = _errors(batch)
    return bool(errors) and all(e.get("code") == "token_limit_exceeded" for e in errors)


def _owes(part: dict[str, Any]) -> bool:
    """A finished part with requests to send again in this run that no later part took."""
    return (
        part["stage"] == "finished" and not part["resent"] and bool(part["retry"] or part["split"])
    )
