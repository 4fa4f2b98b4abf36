"""The steps of one call on a client: check, plan, send with workers, split, isolate, finish.

A client (:class:`~embedsdk.client._core.AsyncEmbedder`) owns one :class:`Runner`: its
documented internal interface, which both of its calls use. ``embed`` runs a call as
:meth:`Runner.start` -> :meth:`Runner.run` -> :meth:`Runner.conclude`; ``embed_stream`` runs
each window so (:class:`~embedsdk.client._stream.Stream`), its windows sharing slots and
borrowing rows (:meth:`Runner.plan` plans a window's batches again); the integrations size
their windows by :meth:`Runner.batch_guess`. Beside it, the client's
:class:`~embedsdk.client._sending.Sender` sends each request (pacing, retries, decoding) and
its :class:`~embedsdk.client._cache_async.AsyncCache` reads and writes the disk cache.

The runner holds what the client learned of the server's batch cap (lowered by a 413, raised
where the cap is only a guess).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from .. import ratecontrol
from .._exceptions import (
    APIError,
    APIStatusError,
    ClientClosedError,
    EmbedSDKError,
    ResponseValidationError,
)
from .._text import append_note, plural
from ..http import (
    WHOLE_AFTER,
    Failure,
    blames_input,
    is_input_too_large,
    is_retryable,
    lowered_batch_cap,
    same_refusal,
    should_split,
)
from ._autobatch import BatchSizer, CutBatches, Limits, PlannedBatches
from ._cache_async import AsyncCache
from ._config import ClientOptions, RewriteLog, batch_cap_rewrite, check_batch_size
from ._job import (
    CLOSED_DURING_CALL,
    EmbeddingResult,
    Job,
    Vectors,
    request_span,
    stops_the_call,
)
from ._planning import apply_input_limit, plan_batches, too_long_note, validate_texts
from ._progress import Progress
from ._providers import han_chars_per_token, input_token_limit, known_dimension, profile_for
from ._sending import Sender

logger = logging.getLogger("embedsdk")

#: The largest batch tried on a server whose cap is not known (OpenAI's cap: the largest
#: any provider is known to take).
UNKNOWN_CAP_MAX = 2048


def _least(told: float | None, learned: float | int | None) -> float | None:
    """The tighter of two per-minute paces (``None``: none)."""
    paces = [float(p) for p in (told, learned) if p is not None]
    return min(paces) if paces else None


def _halves(start: int, stop: int) -> list[tuple[int, int]]:
    """``[start, stop)`` as two consecutive halves (the first the smaller one)."""
    middle = (start + stop) // 2
    return [(start, middle), (middle, stop)]


def _all_like(parts: list[tuple[int, int, APIStatusError]], first: APIStatusError) -> bool:
    """Whether every refused part was refused as the whole batch (``first``) was."""
    return all(same_refusal(exc, first) for _, _, exc in parts)


#: What an error says when every part of its batch was refused as the whole was.
_WHOLE_REFUSAL = (
    "its halves and quarters, sent alone, were refused the same way, so the request (the "
    "model, an option), not one of its inputs, is the likely cause"
)
#: ... and when an earlier batch of the call was, so this one was not split.
_WHOLE_BEFORE = (
    "an earlier batch of this call was refused the same way whatever part of it was sent, "
    "so the request (the model, an option), not one of its inputs, is the likely cause"
)


def _refusal_note(size: int) -> str:
    """What an error says about an input the server refused on its own."""
    return (
        f"the server refuses this input: its batch of {size} was split to find it, and "
        "the other inputs were sent without it"
    )


class Runner:
    """The steps of a call on one client (see the module's docstring).

    ``sender``, ``cache``, ``sizer`` and ``rate`` (the rate controller, ``None`` with
    ``adaptive=False``) are the client's (a call's counts go to its :class:`Job`, which adds
    them to the client's stats too); ``rewrites`` says each option it uses otherwise than
    given once, at INFO. The caller checks that the
    client is open and on its event loop before :meth:`start` (the runner refuses to send
    once the sender is closed, and says so).
    """

    def __init__(
        self,
        options: ClientOptions,
        sender: Sender,
        cache: AsyncCache,
        sizer: BatchSizer,
        rate: ratecontrol.RateController | None,
        rewrites: RewriteLog | None = None,
    ) -> None:
        self.options = options
        self._sender = sender
        self._cache = cache
        self._sizer = sizer  # batch_size="auto": the size of each batch, as the run goes
        self._rate = rate
        self._rewrites = RewriteLog() if rewrites is None else rewrites
        profile = profile_for(options.base_url, options.provider)
        # Inputs per request this client may send: the provider's cap, lowered for good by a
        # 413 / "batch size" answer. ``batch_size`` (per client or per call) goes below it.
        self._batch_cap = profile.max_batch
        self._cap_known = profile.cap_known  # False: a guess, tried past (see _raise_batch_cap)
        self._profile = profile
        self._input_limit = input_token_limit(profile, options.model)
        # The width of an answer with no rows (an empty input): fixed, whatever ran before.
        self._dim_hint = known_dimension(options.model, options.dimensions) or 0

    # -- the interface: a call's steps -----------------------------------------------------

    async def start(
        self,
        texts: Sequence[str],
        batch_size: int | str | None = None,
        offset: int = 0,
        progress: Progress | None = None,
        keep_going: bool = False,
    ) -> Job:
        """A call's :class:`Job` for ``texts`` (input ``offset`` onwards in the caller's
        whole input): the texts checked and fitted to the model's input limit, what the cache
        has served, and batches planned for the rest."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of str, not one str; wrap it in a list")
        texts = list(texts)
        validate_texts(texts, offset)
        texts, cut = self._limit_inputs(texts, offset)
        size = self._planned_size(batch_size)
        job = Job(texts, offset)
        self._sender.begin(job, offset)
        try:
            job.progress = progress
            if progress is not None:
                job.counters += (progress.counted,)
                self._sender.bars.add(progress)
            job.count(truncated=cut)
            job.keep_going = keep_going
            await self._cache.lookup(job)
            job.plan(size, self.options.max_batch_tokens)
        except BaseException as exc:  # the cache failed, the call was cancelled: it is over
            self._sender.end(job, exc)
            raise
        return job

    async def run(self, job: Job, workers: int, slots: asyncio.Semaphore | None = None) -> None:
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

    def plan(
        self,
        job: Job,
        batch_size: int | str | None,
        elsewhere: npt.NDArray[np.intp] | None = None,
    ) -> None:
        """Plan ``job``'s batches again, at the size asked (rows were filled meanwhile, or are
        fetched ``elsewhere``: by a stream's previous window)."""
        job.plan(self._planned_size(batch_size), self.options.max_batch_tokens, elsewhere)

    def conclude(self, job: Job, fatal: EmbedSDKError | None = None) -> Vectors | EmbeddingResult:
        """The call's array, or its :class:`EmbeddingResult` when the job was made to keep
        going (``fatal``: the error that stopped it, if one did)."""
        job.advance(job.n_inputs - job.advanced)  # the duplicates, served by their first copy
        vectors = job.result(self._dim_hint)
        return job.outcome(vectors, fatal) if job.keep_going else vectors

    def finish(self, job: Job, error: BaseException | None = None) -> None:
        """The call is over, however it ended (``error``: what ended it): its usage goes to
        the ``track_usage`` blocks open at its start, and its hooks hear of it (with
        ``errors="return"``, the first batch that failed, when nothing else ended it)."""
        if error is None and job.failures:
            error = job.failures[0][1]
        self._sender.end(job, error)

    def batch_guess(self, batch_size: int | str | None) -> int:
        """Texts per request to size windows by: the size asked (``None``: the client's),
        capped as the client knows the server's cap now, or that cap for ``"auto"``."""
        return self._planned_size(batch_size) or self._batch_cap

    # -- the inputs ------------------------------------------------------------------------

    def _limit_inputs(self, texts: list[str], offset: int) -> tuple[list[str], int]:
        """Refuse texts surely too long for the model, or cut them (``truncate=True``);
        returns the texts and how many were cut."""
        if self._input_limit is None:
            return texts, 0
        texts, cut = apply_input_limit(
            texts,
            self._input_limit,
            truncate=self.options.truncate,
            model=self.options.model,
            han_per_token=han_chars_per_token(self.options.model),
            start=offset,
        )
        if cut:
            logger.info("cut %s to %d tokens (estimated)", plural(cut, "text"), self._input_limit)
        return texts, cut

    # -- the batch size --------------------------------------------------------------------

    def _planned_size(self, batch_size: int | str | None) -> int | None:
        """Inputs per batch for this call (at most the cap), or ``None`` for ``"auto"``."""
        size = check_batch_size(self.options.batch_size if batch_size is None else batch_size)
        if isinstance(size, str):
            return None
        if self._cap_known and size > self._batch_cap:  # said once per client, at INFO
            cap, provider = self._batch_cap, self._profile
            self._rewrites.say(batch_cap_rewrite(size, cap, provider.max_batch, provider.name))
            return cap
        return size

    def _batches(self, job: Job, workers: int) -> PlannedBatches | CutBatches:
        """The job's batches: planned, or cut as workers take them (``batch_size="auto"``)."""
        if job.batches is not None:
            return PlannedBatches(job.batches)
        per_text = sum(job.tokens) / len(job.tokens) if job.tokens else 1.0
        ends = job.ends_call

        def size(remaining: int) -> int:
            before = self._sizer.current
            limits = self._limits(workers, per_text)
            if not self._cap_known and self._sizer.wants_more(self._batch_cap, limits):
                self._raise_batch_cap()
            chosen = self._sizer.size(self._batch_cap, limits, remaining if ends else None)
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

    # -- one batch -------------------------------------------------------------------------

    async def _run_batch(self, job: Job, batch: tuple[int, int]) -> None:
        if job.error is not None:
            return
        start, stop = batch
        try:
            await self._fetch_into(job, start, stop)
        except EmbedSDKError as exc:
            if self._sender.closed and not isinstance(exc, ClientClosedError):
                # close() cut the request off: say that, not "server disconnected".
                closed = ClientClosedError(CLOSED_DURING_CALL)
                job.error = job.error or closed
                raise closed from exc
            self._blame(job, exc, start, stop)
            if job.keep_going and not stops_the_call(exc):
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

    def _blame(self, job: Job, exc: EmbedSDKError, start: int, stop: int) -> None:
        """Name the inputs of a failed request that nothing named on the way up (a
        connection that failed for good, an answer of the wrong width...)."""
        if isinstance(exc, (APIError, ResponseValidationError)):
            self._name_request(job, exc, start, stop)

    def _name_request(
        self, job: Job, exc: EmbedSDKError, start: int, stop: int, note: str = ""
    ) -> None:
        """Say which inputs the failed request for ``todo[start:stop]`` carried (its
        ``batch_indices`` and the message; once: the first to name it wins), then ``note``."""
        if not exc.batch_indices:
            exc.batch_indices = job.positions(start, stop)
            note = self._request_note(exc, exc.batch_indices) + note
        if note and exc.args and isinstance(exc.args[0], str):
            exc.args = (exc.args[0] + note,)

    async def _fetch_into(self, job: Job, start: int, stop: int) -> None:
        """Fetch ``todo[start:stop]``, splitting the batch when the server says it is too big,
        or to find the inputs it refused for what they hold (:meth:`_isolate`).

        A batch planned before a 413 lowered the cap is cut to the new cap before it is sent,
        so one 413 costs one extra request, not one per batch already planned.
        """
        if stop - start > self._batch_cap and self._cap_known:
            await self._fetch_pieces(job, start, stop)
            return
        try:
            await self._fetch_batch(job, start, stop)
        except APIStatusError as exc:
            if stop - start > 1 and should_split(exc):
                self._lower_batch_cap(exc, stop - start)
                job.count(splits=1)
                await self._fetch_pieces(job, start, stop)
                return
            if stop - start > 1 and blames_input(exc) is not False:
                await self._isolate(job, start, stop, exc)
                return
            self._name_request(job, exc, start, stop)
            raise

    async def _fetch_batch(self, job: Job, start: int, stop: int) -> None:
        """One request (with its retries) for ``todo[start:stop]``; its rows stored and cached.

        A request that gave up after its retries (its error is one a retry may fix) is named
        here, where both are known: its inputs, and how many attempts it made.
        """
        texts = job.texts(start, stop)
        outcome = await self._sender.send(texts, sum(job.tokens[start:stop]), job)
        if isinstance(outcome, Failure):
            if is_retryable(outcome.error):
                tried = f"; gave up after {plural(outcome.attempt, 'attempt')}"
                self._name_request(job, outcome.error, start, stop, tried)
            raise outcome.error
        vectors = outcome
        self._cache.check_width(vectors)  # before the cache's width fixes the result's
        job.store(job.todo[start:stop], vectors)
        job.breaker.success()
        await self._cache.store(texts, vectors)

    async def _fetch_pieces(self, job: Job, start: int, stop: int) -> None:
        """Fetch ``todo[start:stop]`` in consecutive batches of at most the current cap."""
        for a, b in plan_batches(job.tokens[start:stop], self._batch_cap, 1 << 62):
            await self._fetch_into(job, start + a, start + b)

    async def _isolate(self, job: Job, start: int, stop: int, exc: APIStatusError) -> None:
        """The server refused ``todo[start:stop]`` for what some input holds (or cannot say
        why): find those inputs, embed the others, and fail only them.

        The batch is sent again in halves, and each refused half in halves, through the
        normal paced path, until the refused inputs stand alone: about 2 x log2(batch) extra
        requests per refused input. When no part of the batch goes through for
        :data:`~embedsdk.http.WHOLE_AFTER` rounds of halving and every part is refused as
        the whole was, the request is the problem, not an input: the batch fails whole with
        the first error, and later batches refused that way in this call are not split.
        """
        refused: list[tuple[int, int, APIStatusError]] = []
        before = job.refused_whole(exc)
        whole = before or await self._bisect(job, start, stop, exc, refused)
        job.note_refusal(exc, whole)
        if whole:
            why = _WHOLE_BEFORE if before else _WHOLE_REFUSAL
            self._name_request(job, exc, start, stop, f"; {why}")
            raise exc
        if not refused:
            return  # every part went through when sent again: the refusal did not last
        for a, b, error in refused:
            self._name_request(job, error, a, b, f"; {_refusal_note(stop - start)}")
        job.count(refused=len(refused))
        if job.keep_going:
            job.failures.extend((job.todo[a:b], error) for a, b, error in refused)
            return
        first = refused[0][2]
        if len(refused) > 1:
            others = [str(job.positions(a, b)[0]) for a, b, _ in refused[1:]]
            named = ("input " if len(others) == 1 else "inputs ") + ", ".join(others)
            first.args = (f"{first.args[0]}; it also refuses {named} alone",)
        raise first

    async def _bisect(
        self,
        job: Job,
        start: int,
        stop: int,
        first: APIStatusError,
        refused: list[tuple[int, int, APIStatusError]],
    ) -> bool:
        """Send ``todo[start:stop]`` in halves, then the refused halves in halves, one round
        of halving at a time, until each refused part is one input (added to ``refused``).
        ``True``: nothing went through and every part was refused as the whole (``first``)
        was, :data:`~embedsdk.http.WHOLE_AFTER` rounds in: the batch fails whole."""
        job.count(splits=1)
        pieces = _halves(start, stop)
        through = False  # some part of the batch was embedded
        level = 0
        while True:
            level += 1
            failing: list[tuple[int, int, APIStatusError]] = []
            for a, b in pieces:
                exc = await self._try_piece(job, a, b)
                through = through or exc is None
                if exc is not None:
                    (refused if b - a == 1 else failing).append((a, b, exc))
            if not failing:
                return False
            if level >= WHOLE_AFTER and not through and _all_like(failing + refused, first):
                return True
            job.count(splits=len(failing))
            pieces = [half for a, b, _ in failing for half in _halves(a, b)]

    async def _try_piece(self, job: Job, start: int, stop: int) -> APIStatusError | None:
        """Send one part of a refused batch: ``None`` when its vectors arrived, the refusal
        when it was refused too. Anything else (a 5xx after its retries) is raised."""
        try:
            await self._fetch_batch(job, start, stop)
        except APIStatusError as exc:
            if blames_input(exc) is False:
                self._name_request(job, exc, start, stop)
                raise
            return exc
        return None

    def _request_note(self, exc: EmbedSDKError, positions: list[int]) -> str:
        """Which inputs the failed request carried, and why a too-long input cannot pass."""
        note = request_span(positions)
        if is_input_too_large(exc):
            note += too_long_note(self.options.model, self._input_limit, self.options.truncate)
        return note

    def _lower_batch_cap(self, exc: APIStatusError, sent: int) -> None:
        self._batch_cap = lowered_batch_cap(exc, sent, self._batch_cap)
        self._cap_known = True
        logger.info("server refused a batch of %d; batch cap is now %d", sent, self._batch_cap)

    def _raise_batch_cap(self) -> None:
        """Try batches twice as big: this server's cap is only a guess (the generic
        profile's), and a limit on requests holds the batches at it back. A 413 or a "batch
        size" error then sets the cap the server has."""
        raised = min(2 * self._batch_cap, UNKNOWN_CAP_MAX)
        if raised > self._batch_cap:
            logger.info(
                "requests are what the rate limit counts, and this server's batch cap is not "
                "known: trying batches of %d (a refusal of the size sets it)",
                raised,
            )
        self._batch_cap = raised
        self._cap_known = raised >= UNKNOWN_CAP_MAX
