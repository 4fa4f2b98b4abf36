"""``batch_size="auto"``: the size of each batch, chosen as the run goes. Pure: no I/O.

A batch of ``b`` texts can go no faster than the least of three ceilings, in texts per second:

- the **slots**: ``slots × b / latency(b)``, ``slots`` requests in flight, each taking
  ``latency(b)`` seconds (measured: a real server answers a big batch later than a small one);
- a limit that counts **requests** (RPM): ``request pace × b``, more the bigger the batch;
- a limit that counts **tokens** (TPM): ``token pace / tokens per text``, whatever ``b`` is.

:class:`BatchSizer` starts at the cap (the provider's, lowered for good by a 413) and, each
time a worker takes a batch, picks the size whose least ceiling is highest. The paces are the
rate controller's (learned from 429s) and the user's ``rpm`` / ``tpm``; ``latency(b)`` is
measured for the sizes on a ladder (the cap, then three quarters of each size below it).

- **Requests run out** (a request pace binds): the next size up carries more texts for the
  same request, so batches grow step by step to the cap, without probing first.
- **Tokens run out**: every size gives the same texts per second; the size stays put.
- **No limit** (the slots bind): ``b / latency(b)`` decides. Latency grows roughly as
  ``a + c × b`` on most servers, which makes the cap the best; when it grows faster than the
  batch, a smaller batch carries more texts per second. Now and then a few batches go at the
  size one step down (or up) and their latency is compared; a step is taken only when it wins
  by :data:`MARGIN`. A probe that loses waits twice as long before the next one; none goes in
  the first :data:`WARM_UP` seconds, while the rate limits met early are being learned.
- **The end of a call** (the slots bind): the texts still to send are spread evenly over the
  slots rather than left to a few workers, in no more requests than batches of :data:`TAIL`
  would take.

>>> sizer = BatchSizer(clock=lambda: 0.0)
>>> sizer.size(64, Limits(slots=4))
64
>>> sizer.size(64, Limits(slots=4), remaining=100)    # the end of a call: 4 x 25
25
>>> sizer.size(64, Limits(slots=4), remaining=30)     # no more requests than 20 + 10
15
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Callable

from ..ratecontrol import loop_time
from ._planning import batch_end

#: Each size on the ladder is this share of the one above it.
STEP = 0.75
#: A size must promise this much more texts per second than the current one to be taken.
MARGIN = 0.03
#: Batches sent at a neighbouring size to measure it (as many as a figure needs).
PROBE_ROUND = 3
#: Batches between probes, at first and at most (the interval doubles after each probe).
FIRST_PROBE = 16
LAST_PROBE = 256
#: Seconds from a client's first batch before the first probe: the limits met early in a run
#: are learned meanwhile (batches of another size in the middle of that only blur it).
WARM_UP = 5.0
#: Answers needed at a size before its latency counts.
MIN_SAMPLES = 3
#: Weight of a new answer in a size's running figure, once it has 1 / SMOOTHING of them.
SMOOTHING = 0.2
#: Seconds after which a size's figure is forgotten (the server may have changed).
STALE = 60.0
#: A batch counts for a size on the ladder when it has at least this share of its texts.
FULL = 0.85
#: The end of a call is spread over as many requests as batches of this size would take (the
#: seed's fixed size), at most one per slot: never more requests, nor a later end, than those.
TAIL = 20


@dataclasses.dataclass(frozen=True)
class Limits:
    """What bounds the throughput now. ``slots``: requests that may be in flight;
    ``requests_per_s`` / ``tokens_per_s``: the tightest pace known (``None``: none known);
    ``tokens_per_text``: in the units of ``tokens_per_s``."""

    slots: int
    requests_per_s: float | None = None
    tokens_per_s: float | None = None
    tokens_per_text: float = 1.0


class _Figure:
    """Texts per second per slot (``b / latency(b)``) of one size, smoothed."""

    __slots__ = ("at", "n", "rate")

    def __init__(self) -> None:
        self.n = 0
        self.rate = 0.0
        self.at = -math.inf

    def add(self, rate: float, now: float) -> None:
        self.n += 1
        self.rate += (rate - self.rate) * max(SMOOTHING, 1.0 / self.n)
        self.at = now


def ladder(cap: int) -> list[int]:
    """The sizes tried: ``cap`` and three quarters of each one below it, down to 1.

    >>> ladder(64)
    [64, 48, 36, 27, 20, 15, 11, 8, 6, 4, 3, 2, 1]
    """
    sizes = [max(1, cap)]
    while sizes[-1] > 1:
        sizes.append(max(1, min(sizes[-1] - 1, round(sizes[-1] * STEP))))
    return sizes


class BatchSizer:
    """Chooses the size of each batch of one client (see the module's docstring).

    Call :meth:`size` when a worker takes a batch and :meth:`observe` when a request is
    answered. ``clock`` returns seconds (default: the running event loop's clock, so that
    simulated time ages the figures too, else :func:`time.monotonic`; tests pass a fake one);
    it only ages the figures.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or loop_time
        self._cap = 0
        self._sizes: list[int] = []
        self._current = 0  # index in _sizes
        self._figures: dict[int, _Figure] = {}
        self._probe: list[int] | None = None  # [size, batches left] of the probe under way
        self._started: float | None = None  # when the first batch was taken
        self._since_probe = 0  # batches cut since the last probe (or move)
        self._interval = FIRST_PROBE
        self._toggle = False  # which neighbour the next probe measures
        self.moves = 0  # steps taken along the ladder

    def __repr__(self) -> str:
        return f"<BatchSizer size={self.current} cap={self._cap} moves={self.moves}>"

    @property
    def current(self) -> int:
        """The size batches are cut at now (0 before the first call)."""
        return self._sizes[self._current] if self._sizes else 0

    # -- the answers ---------------------------------------------------------------------

    def observe(self, texts: int, seconds: float) -> None:
        """A request of ``texts`` inputs was answered after ``seconds`` (sending to answer,
        waits for a turn left out). Counts for the smallest size on the ladder that holds it,
        when it is nearly full."""
        if texts < 1 or not seconds > 0 or not self._sizes:
            return
        fitting = [s for s in self._sizes if s >= texts]
        if not fitting or texts < FULL * fitting[-1]:
            return
        size = fitting[-1]
        self._figures.setdefault(size, _Figure()).add(texts / seconds, self._clock())

    def rate(self, size: int) -> float | None:
        """Measured texts per second per slot at ``size`` (``None``: too few, or stale)."""
        figure = self._figures.get(size)
        if figure is None or figure.n < MIN_SAMPLES or self._clock() - figure.at > STALE:
            return None
        return figure.rate

    # -- the decision ----------------------------------------------------------------------

    def size(self, cap: int, limits: Limits, remaining: int | None = None) -> int:
        """The size of the batch a worker takes now.

        ``cap``: the most inputs a request may carry (the provider's, lowered by 413s);
        ``remaining``: texts of the call not answered yet (to send and in flight), to spread
        the end of a call over the slots (``None``: not the end of anything, e.g. a window of
        a stream that goes on).
        """
        self._set_cap(cap)
        self._step(limits)
        size = self._probing(limits)
        if remaining is None or self.request_bound(size, limits):
            return size
        parts = max(1, min(limits.slots, -(-remaining // TAIL)))
        return max(1, min(size, -(-remaining // parts)))

    def wants_more(self, cap: int, limits: Limits) -> bool:
        """Whether batches at ``cap`` are held back by a limit on requests (measured at the
        cap): a bigger batch would carry more texts, if the server takes one."""
        return self.current == cap and self.request_bound(cap, limits)

    def ceiling(self, size: int, limits: Limits, rate: float | None) -> float:
        """Texts per second at ``size``: the least of the three ceilings (``rate``: texts per
        second per slot at that size; ``None`` leaves the slots' ceiling out)."""
        least = math.inf if rate is None else limits.slots * rate
        if limits.requests_per_s:
            least = min(least, limits.requests_per_s * size)
        if limits.tokens_per_s and limits.tokens_per_text > 0:
            least = min(least, limits.tokens_per_s / limits.tokens_per_text)
        return least

    def request_bound(self, size: int, limits: Limits) -> bool:
        """Whether a limit on requests is what holds ``size`` back (every request counts).
        ``False`` until the latency at ``size`` is known: the slots may bind first."""
        rate = self.rate(size)
        if not limits.requests_per_s or rate is None:
            return False
        others = Limits(limits.slots, None, limits.tokens_per_s, limits.tokens_per_text)
        return limits.requests_per_s * size <= self.ceiling(size, others, rate)

    def _set_cap(self, cap: int) -> None:
        cap = max(1, cap)
        if cap == self._cap:
            return
        before = self.current or cap
        self._cap, self._sizes = cap, ladder(cap)
        self._current = next(i for i, s in enumerate(self._sizes) if s <= before)
        self._figures = {s: f for s, f in self._figures.items() if s in self._sizes}
        self._probe = None

    def _step(self, limits: Limits) -> None:
        """Move one step up or down the ladder when that promises more texts per second."""
        i, sizes = self._current, self._sizes
        here = self.rate(sizes[i])
        if here is None:
            return  # too little is known of this size yet
        now = self.ceiling(sizes[i], limits, here)
        if i > 0:
            above = self.rate(sizes[i - 1])
            up = self.ceiling(sizes[i - 1], limits, here if above is None else above)
            # Unmeasured, the size above is assumed as fast per slot as this one. Where a
            # request pace is known, a tie goes up: requests may be what runs out (a 429 that
            # did not say which paces both), and then the bigger batch carries more.
            if up > now * (1 + MARGIN) or (limits.requests_per_s and up >= now):
                self._move(i - 1)
                return
        if i + 1 < len(sizes):
            below = self.rate(sizes[i + 1])
            if below is not None and self.ceiling(sizes[i + 1], limits, below) > now * (1 + MARGIN):
                self._move(i + 1)

    def _move(self, index: int) -> None:
        self._current = index
        self._probe = None
        self._since_probe = 0
        self._interval = FIRST_PROBE
        self.moves += 1

    def _probing(self, limits: Limits) -> int:
        """The current size, or a neighbour's while a probe is under way."""
        if self._probe is not None:
            self._probe[1] -= 1
            size = self._probe[0]
            if self._probe[1] <= 0:
                self._probe = None
            return size
        self._since_probe += 1
        now = self._clock()
        if self._started is None:
            self._started = now
        if self._since_probe < self._interval or now < self._started + WARM_UP:
            return self.current
        target = self._probe_target(limits)
        self._since_probe = 0
        if target is None:
            return self.current
        self._interval = min(2 * self._interval, LAST_PROBE)
        self._probe = [target, PROBE_ROUND - 1]
        return target

    def _probe_target(self, limits: Limits) -> int | None:
        """A neighbouring size that might carry more texts per second, if any."""
        i, sizes = self._current, self._sizes
        here = self.rate(sizes[i])
        if here is None:
            return None
        now = self.ceiling(sizes[i], limits, here)
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(sizes)]
        self._toggle = not self._toggle
        if self._toggle:
            neighbours.reverse()
        for j in neighbours:
            # Optimistic: its latency unknown, only the rate limits bound it.
            if self.ceiling(sizes[j], limits, None) > now * (1 + MARGIN):
                return sizes[j]
        return None


class PlannedBatches:
    """A fixed batch size: the batches planned up front, taken in order."""

    __slots__ = ("_batches", "count")

    def __init__(self, batches: Sequence[tuple[int, int]]) -> None:
        self._batches = iter(batches)
        self.count = len(batches)

    def take(self) -> tuple[int, int] | None:
        return next(self._batches, None)

    def done(self, batch: tuple[int, int]) -> None:
        """Nothing to count: the batches were planned."""


class CutBatches:
    """``batch_size="auto"``: consecutive batches cut as workers take them (each by
    :func:`~embedsdk.client._planning.batch_end`, the rule
    :func:`~embedsdk.client._planning.plan_batches` plans by).

    ``tokens``: estimated tokens of each row to fetch; ``size(remaining)``: how many inputs the
    next batch may have, ``remaining`` being the rows not answered yet (to cut and in flight).
    A batch never passes ``max_tokens`` estimated tokens (a single larger input goes alone).
    """

    __slots__ = ("_max_tokens", "_next", "_size", "_tokens", "count", "in_flight")

    def __init__(self, tokens: Sequence[int], max_tokens: int, size: Callable[[int], int]) -> None:
        self._tokens = tokens
        self._max_tokens = max_tokens
        self._size = size
        self._next = 0
        self.in_flight = 0
        self.count = len(tokens)  # at most one batch per row

    def take(self) -> tuple[int, int] | None:
        start = self._next
        if start >= len(self._tokens):
            return None
        size = self._size(len(self._tokens) - start + self.in_flight)
        stop = batch_end(self._tokens, start, size, self._max_tokens)
        self._next = stop
        self.in_flight += stop - start
        return start, stop

    def done(self, batch: tuple[int, int]) -> None:
        self.in_flight -= batch[1] - batch[0]
