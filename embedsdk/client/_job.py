"""One call's state and what it gives back: counters, results, windows of a stream.

:class:`Job` holds one call's unique texts, the rows still to fetch and the rows as they
arrive; :class:`EmbeddingResult` is what ``errors="return"`` gives; :func:`windows` cuts a
stream into windows, reading generators and files off the event loop. No I/O but that read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

import numpy as np
import numpy.typing as npt

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    EmbedSDKError,
    InsufficientQuotaError,
    NotFoundError,
    PermissionDeniedError,
    ResponseValidationError,
    WaitTooLongError,
)
from .._prices import Price
from .._text import plural
from ..http import CallBreaker, refusal_key
from ._planning import deduplicate, estimate_tokens, iter_windows, plan_batches

if TYPE_CHECKING:
    from ._progress import Progress  # the bar counts with the Job's Stats

T = TypeVar("T")

Vectors = npt.NDArray[np.float32]


@dataclasses.dataclass
class Stats:
    """Counters: of one client since it was made (``client.stats``), or of one call (its
    usage: ``EmbeddingResult.usage``, :func:`embedsdk.track_usage`).

    ``requests``: HTTP requests sent, retries included; ``retries``: attempts repeated after a
    retryable failure; ``inputs_sent``: texts in successful answers; ``tokens``: tokens used,
    as the server's ``usage.prompt_tokens`` says (our estimate when it says nothing:
    ``tokens_estimated`` of them); ``splits``: batches split after a 413, or to find the
    inputs a refusal is about; ``cache_hits`` / ``cache_misses``: distinct texts of each call
    found / not found in the disk cache (neither moves while the cache is off);
    ``rate_limited``: answers with HTTP 429; ``refused``: inputs the server refused on their
    own (found by splitting); ``bytes_sent`` / ``bytes_received``: request and answer bodies;
    ``waited_seconds``: time requests waited to go, for their turn under a rate limit (told
    or learned) or before a retry, summed over requests; ``busy_seconds``: time requests were
    in flight, summed.
    ``price``: the price per million tokens (``None``: unknown), which gives ``cost`` and
    ``saved`` (what the cache hits would have cost, at the average tokens per text sent).
    """

    requests: int = 0
    retries: int = 0
    inputs_sent: int = 0
    tokens: int = 0
    splits: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    truncated: int = 0  # texts cut to the model's input limit (truncate=True)
    rate_limited: int = 0  # answers with HTTP 429 (each one retried or counted as failed)
    refused: int = 0  # inputs the server refused on their own (their batches were split)
    tokens_estimated: int = 0  # of ``tokens``: answers without usage, counted by our estimate
    bytes_sent: int = 0
    bytes_received: int = 0
    waited_seconds: float = 0.0
    busy_seconds: float = 0.0
    price: Price | None = dataclasses.field(default=None, compare=False)

    @property
    def cost(self) -> float | None:
        """What ``tokens`` cost at ``price``, in its currency (``None`` without a price)."""
        return None if self.price is None else self.price.cost(self.tokens)

    @property
    def saved(self) -> float | None:
        """About what the cache saved: its hits at the average tokens per text sent."""
        if self.price is None:
            return None
        per_text = self.tokens / self.inputs_sent if self.inputs_sent else 0.0
        return self.price.cost(per_text * self.cache_hits)

    def add(self, other: Stats) -> None:
        """Add ``other``'s counters to these. The price stays when both are at the same price
        (per million and currency; where it was read does not matter), or when either counted
        nothing yet; otherwise it is dropped: the sum's cost is unknown."""
        if not _same_price(self.price, other.price) and _counted(other):
            self.price = None if _counted(self) else other.price
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __sub__(self, other: Stats) -> Stats:
        """The counters since ``other`` was read (a copy of these earlier)."""
        diff = Stats(price=self.price)
        for name in COUNTERS:
            setattr(diff, name, getattr(self, name) - getattr(other, name))
        return diff

    def copy(self) -> Stats:
        return dataclasses.replace(self)


#: The counting fields of :class:`Stats` (all but ``price``).
COUNTERS = tuple(f.name for f in dataclasses.fields(Stats) if f.name != "price")


def _counted(stats: Stats) -> bool:
    return any(getattr(stats, name) for name in COUNTERS)


def _same_price(a: Price | None, b: Price | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.per_million == b.per_million and a.currency == b.currency


@dataclasses.dataclass
class EmbeddingResult:
    """What a call made with ``errors="return"`` gives instead of raising.

    ``vectors``: the ``(N, D)`` float32 array, row i for ``texts[i]``, NaN rows where nothing
    arrived (``D`` is 0 when nothing arrived and the model's dimension is unknown). ``ok``: the
    ``(N,)`` bool mask of the rows that arrived. ``errors``: one exception per failed request
    (or the one that stopped the call, such as a 401), each with ``failed_indices`` (the input
    positions it left without a vector) and ``batch_indices``; empty when everything arrived.
    ``start``: the input position of row 0 (a block of ``embed_stream(errors="return")``; 0
    for a call), so that every index it names is a position in the caller's whole input.
    ``usage``: the call's (the block's) :class:`Stats`: tokens, requests, retries, cache hits...

    >>> result = emb.embed(texts, errors="return")      # doctest: +SKIP
    >>> good = result.vectors[result.ok]
    >>> retry = [texts[i] for i in result.failed_indices]
    """

    vectors: Vectors
    ok: npt.NDArray[np.bool_]
    errors: list[EmbedSDKError]
    start: int = 0
    usage: Stats = dataclasses.field(default_factory=Stats)

    @property
    def failed_indices(self) -> list[int]:
        """Input positions without a vector, in order."""
        return [int(i) + self.start for i in np.flatnonzero(~self.ok)]

    def error_for(self, index: int) -> EmbedSDKError | None:
        """The exception that left input ``index`` without a vector, or ``None``."""
        for exc in self.errors:
            if exc.failed_indices is not None and index in exc.failed_indices:
                return exc
        return None

    def raise_for_errors(self) -> None:
        """Raise the first error, if any input failed (the ``errors="raise"`` behaviour)."""
        if self.errors:
            raise self.errors[0]


#: In ``errors="return"`` mode these still stop the whole call: they concern every request
#: (key, account, model, base URL, a quota spent for longer than ``max_wait``, a closed
#: client), so sending the rest only repeats them. (So do some connection failures: see
#: :func:`stops_the_call`.)
CALL_WIDE_ERRORS = (
    ConfigurationError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    InsufficientQuotaError,
    WaitTooLongError,
    ClientClosedError,
)


#: Connection failures that concern every request: the server is out of reach. A timeout, a
#: reset or a server hanging up may be one batch's own.
_OUT_OF_REACH = frozenset({"dns", "refused", "unreachable", "certificate", "proxy"})


def stops_the_call(exc: EmbedSDKError) -> bool:
    if isinstance(exc, APIConnectionError):
        return exc.reason in _OUT_OF_REACH
    if isinstance(exc, ResponseValidationError) and not exc.retryable:
        return True  # not the width asked: every batch would be billed and refused
    return isinstance(exc, CALL_WIDE_ERRORS)


CLOSED_DURING_CALL = "the client was closed during this call"


def returns_errors(errors: str) -> bool:
    """``errors="return"``: collect failed batches and go on; ``"raise"``: stop at the first."""
    if errors not in ("raise", "return"):
        raise ValueError(f'errors must be "raise" or "return", got {errors!r}')
    return errors == "return"


class Job:
    """One call's state: the unique texts, which of them to fetch, and the rows as they arrive.

    Rows are addressed by their position among the unique texts. ``todo`` lists the rows still
    to fetch (all of them, less the cache hits); ``batches`` are ``(start, stop)`` slices of it,
    planned up front for a fixed batch size, ``None`` with ``batch_size="auto"`` (the core then
    cuts them as workers take them, ``_autobatch.CutBatches``).
    """

    def __init__(self, texts: Sequence[str], offset: int = 0) -> None:
        self.n_inputs = len(texts)
        self.offset = offset  # position of texts[0] in the caller's whole input (streams)
        self.unique, self.inverse = deduplicate(texts)
        self.rows: Vectors | None = None
        self.filled = np.zeros(len(self.unique), dtype=bool)
        self.todo: npt.NDArray[np.intp] = np.arange(len(self.unique))
        self.tokens: list[int] = []
        self.batches: list[tuple[int, int]] | None = []
        self.max_batch_tokens = 0
        self.ends_call = True  # the call's last texts are here (not a stream's inner window)
        self.error: BaseException | None = None
        self.progress: Progress | None = None
        self.advanced = 0  # inputs counted on the progress bar
        self.keep_going = False  # errors="return": a failed batch is noted, the rest goes on
        self.failures: list[tuple[npt.NDArray[np.intp], EmbedSDKError]] = []  # (rows, error)
        self.breaker = CallBreaker()  # errors="return": stops the sending in a storm
        self.told_unreachable = False  # the INFO line "cannot connect" was logged
        self.usage = Stats()  # this call's counters (the client's Stats count them too)
        # What counts this call: its usage, the client's stats, the progress bar's (the
        # sender's begin() and the runner's start() add theirs).
        self.counters: tuple[Stats, ...] = (self.usage,)
        self.call: Any = None  # its _events.Call, for the hooks (set as it starts)
        self.collectors: tuple[Stats, ...] = ()  # the track_usage() blocks open at its start
        self.started = 0.0  # the loop's clock at its start
        self.ended = False
        # Refusals met (``_retry.refusal_key``): True while every batch refused that way was
        # refused whole (the request is the problem: not split again), False once one input
        # was found to be the cause.
        self.refusals: dict[tuple[Any, ...], bool] = {}

    def count(self, **amounts: float) -> None:
        """Add ``amounts`` (:class:`Stats` counters by name) to every Stats counting this
        call: its usage, its client's, its progress bar's."""
        for stats in self.counters:
            for name, amount in amounts.items():
                setattr(stats, name, getattr(stats, name) + amount)

    def refused_whole(self, exc: APIStatusError) -> bool:
        """Whether batches were refused whole this way before (and no input was found to be
        the cause): this batch is not split again."""
        return self.refusals.get(refusal_key(exc), False)

    def note_refusal(self, exc: APIStatusError, whole: bool) -> None:
        """A batch refused this way failed whole (``whole``), or its inputs were found."""
        key = refusal_key(exc)
        self.refusals[key] = whole and self.refusals.get(key, True)

    def plan(self, batch_size: int | None, max_batch_tokens: int, elsewhere: Any = None) -> None:
        """Estimate the tokens of the rows to fetch and cut them into batches of at most
        ``batch_size`` inputs (``None``: cut later, as workers take them).

        ``elsewhere``: rows not to fetch although not filled yet (another window brings them).
        """
        wanted = ~self.filled
        if elsewhere is not None:
            wanted[elsewhere] = False
        self.todo = np.flatnonzero(wanted)
        self.tokens = [estimate_tokens(self.unique[i]) for i in self.todo]
        self.max_batch_tokens = max_batch_tokens
        self.batches = (
            None if batch_size is None else plan_batches(self.tokens, batch_size, max_batch_tokens)
        )

    def texts(self, start: int, stop: int) -> list[str]:
        return [self.unique[i] for i in self.todo[start:stop]]

    def positions(self, start: int, stop: int) -> list[int]:
        """Where the texts of ``todo[start:stop]`` first occur in the caller's whole input."""
        rows = self.todo[start:stop]
        if self.inverse is not None:
            first = np.unique(self.inverse, return_index=True)[1]  # first input of each row
            rows = first[rows]
        return (np.sort(rows) + self.offset).tolist()  # type: ignore[no-any-return]

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

    def inputs_of(self, rows: npt.NDArray[np.intp]) -> list[int]:
        """Every input position (duplicates too) whose text is one of the unique ``rows``."""
        found = (
            np.sort(rows) if self.inverse is None else np.flatnonzero(np.isin(self.inverse, rows))
        )
        return [int(i) + self.offset for i in found]

    def outcome(self, vectors: Vectors, fatal: EmbedSDKError | None) -> EmbeddingResult:
        """The ``errors="return"`` answer: NaN where nothing arrived, the mask, the errors.

        ``vectors`` (from :meth:`result`) may be ``rows`` itself: the job is over, so it is
        written in place. Rows no failed batch accounts for were left by ``fatal``.
        """
        ok = self.filled.copy() if self.inverse is None else self.filled[self.inverse]
        vectors[~ok] = np.nan
        blamed = self.filled.copy()
        errors: list[EmbedSDKError] = []
        for rows, exc in self.failures:
            exc.failed_indices = self.inputs_of(rows)
            blamed[rows] = True
            errors.append(exc)
        if fatal is not None:
            fatal.failed_indices = self.inputs_of(np.flatnonzero(~blamed))
            errors.append(fatal)
        return EmbeddingResult(vectors, ok, errors, self.offset, self.usage)


def request_span(positions: list[int]) -> str:
    """What an error says of the inputs its request carried (``positions``, sorted)."""
    if len(positions) == 1:
        return f" (in the request for input {positions[0]})"
    if positions and positions[-1] - positions[0] + 1 == len(positions):
        return f" (in the request for inputs {positions[0]}..{positions[-1]})"
    return f" (in the request for {len(positions)} inputs from {positions[0]})"


def _describe(failed: list[int]) -> str:
    """``"1 input has no vector (input 7)"``, ``"3 inputs have no vector (inputs 4..6)"``."""
    if len(failed) == 1:
        return f"1 input has no vector (input {failed[0]})"
    if failed[-1] - failed[0] + 1 == len(failed):
        where = f"{failed[0]}..{failed[-1]}"
    else:
        where = ", ".join(map(str, failed[:10])) + (" ..." if len(failed) > 10 else "")
    return f"{plural(len(failed), 'input')} have no vector (inputs {where})"


#: What a window lends the next: the rows it was asked for (``None``: none arrived) and
#: which of them arrived (a row it failed to get, with ``errors="return"``, is not lent).
Lent = tuple[Union[Vectors, None], npt.NDArray[np.bool_]]


class Window:
    """A stream's window in flight, seen by the next window.

    A text repeated across a window boundary is a miss in both windows' cache lookups while
    the first window is still fetching it; the second window borrows its row instead of
    paying for it again (``wanted`` rows are copied into ``lent`` before the first window's
    block is handed to the caller, who may change it in place).
    """

    __slots__ = ("done", "job", "last", "lent", "planned", "wanted")

    def __init__(self) -> None:
        self.job: Job | None = None
        self.planned = asyncio.Event()
        self.done = False
        self.last = False  # the stream's last window (its end may be spread over the slots)
        self.wanted: npt.NDArray[np.intp] | None = None  # rows of ``job`` the next one needs
        self.lent: asyncio.Future[Lent] | None = None

    def lend(self) -> None:
        if self.lent is None or self.lent.done():
            return
        job, wanted = self.job, self.wanted
        if job is None or wanted is None:
            self.lent.cancel()
            return
        rows = None if job.rows is None else job.rows[wanted].copy()
        self.lent.set_result((rows, job.filled[wanted].copy()))


async def windows(
    texts: Iterable[str] | AsyncIterable[str], size: int, broke: list[Exception] | None = None
) -> AsyncIterator[list[str]]:
    """Lists of up to ``size`` consecutive texts from a sync or async iterable.

    ``broke``: when the iterable raises, its exception is put there and the lists end (the
    texts of the window it broke off are dropped: nothing is sent from a window that did not
    read whole, as for a bad line in a small file). Without it, the exception is raised.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of str, not one str; wrap it in a list")
    failed: list[Exception] = [] if broke is None else broke
    if isinstance(texts, AsyncIterable):
        source = _async_windows(texts, size, failed)
    elif isinstance(texts, Sequence):  # in memory: slicing never blocks
        source = _sequence_windows(texts, size)
    else:
        source = _read_windows(iter(texts), size, failed)
    async for window in source:
        yield window
    if failed and broke is None:
        raise failed[0]


async def _sequence_windows(texts: Sequence[str], size: int) -> AsyncIterator[list[str]]:
    for window in iter_windows(texts, size):
        yield window


async def _async_windows(
    texts: AsyncIterable[str], size: int, failed: list[Exception]
) -> AsyncIterator[list[str]]:
    window: list[str] = []
    try:
        async for text in texts:
            window.append(text)
            if len(window) >= size:
                yield window
                window = []
    except Exception as exc:  # the producer broke off: the windows already out still count
        failed.append(exc)
        return
    if window:
        yield window


async def _read_windows(
    items: Iterator[str], size: int, failed: list[Exception]
) -> AsyncIterator[list[str]]:
    """A generator or a file may block (a slow pipe on stdin): it is read off the loop, so
    the requests in flight are answered and placed meanwhile."""
    while True:
        window = await _off_loop(_take, items, size, failed)
        if not window:
            return
        yield window


def _take(items: Iterator[str], size: int, failed: list[Exception]) -> list[str]:
    try:
        return list(itertools.islice(items, size))
    except Exception as exc:  # the producer broke off: the windows already out still count
        failed.append(exc)
        return []


async def _off_loop(function: Callable[..., T], *args: Any) -> T:
    """Run ``function`` on a daemon thread of its own and await its result.

    Not the loop's executor: a read blocked on an idle pipe must not hold up the loop's
    shutdown, nor the interpreter's exit (executor threads are joined at exit).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = function(*args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="embedsdk-reader", daemon=True).start()
    return await future
