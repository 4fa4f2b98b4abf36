"""The batch sizer of ``batch_size="auto"`` (embedsdk/client/_autobatch.py), on a fake clock.

Each test feeds the sizer the answers of a modelled server: a request of ``b`` texts answered
after ``latency(b)`` seconds, under the paces a rate controller would report. No loop, no
server: the decisions alone. Runs of the real core against the simulated provider are in
tests/test_autobatch_runs.py.

Private access: the sizer's decisions (``client._autobatch``) and the planner's rule they
share (``client._planning``) are the unit under test; a client shows only the batches sent.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Callable

import pytest

from embedsdk.client._autobatch import (
    FIRST_PROBE,
    STALE,
    TAIL,
    WARM_UP,
    BatchSizer,
    CutBatches,
    Limits,
    PlannedBatches,
    ladder,
)
from embedsdk.client._planning import batch_end, plan_batches
from embedsdk.ratecontrol import loop_time
from embedsdk.testing import run_in_virtual_time

Latency = Callable[[int], float]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def affine(b: int) -> float:
    """Most servers: a fixed part and a part per input (the cap is then the best size)."""
    return 0.05 + 0.002 * b


def quadratic(b: int) -> float:
    """Latency growing faster than the batch: texts per second per slot peak near 32."""
    return 0.05 + 0.0005 * b + 0.00005 * b * b


def per_slot(latency: Latency, b: int) -> float:
    return b / latency(b)


def feed(
    sizer: BatchSizer,
    clock: Clock,
    latency: Latency,
    limits: Limits,
    batches: int,
    cap: int = 64,
    noise: float = 0.0,
) -> list[int]:
    """Take ``batches`` batches one after another, each answered after ``latency(size)``
    (times ``1 ± noise``); returns the sizes taken."""
    rng = random.Random(1)
    sizes = []
    for _ in range(batches):
        size = sizer.size(cap, limits)
        sizes.append(size)
        seconds = latency(size) * (1 + noise * (2 * rng.random() - 1))
        clock.now += seconds / limits.slots
        sizer.observe(size, seconds)
    return sizes


def best_on_ladder(latency: Latency, cap: int = 64) -> int:
    return max(ladder(cap), key=lambda b: per_slot(latency, b))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sizer(clock: Clock) -> BatchSizer:
    return BatchSizer(clock=clock)


def test_the_ladder_goes_down_by_quarters_to_one() -> None:
    assert ladder(64) == [64, 48, 36, 27, 20, 15, 11, 8, 6, 4, 3, 2, 1]
    assert ladder(32)[:4] == [32, 24, 18, 14]
    assert ladder(1) == [1]
    assert ladder(2) == [2, 1]


# -- no rate limit: the slots bind ----------------------------------------------------------


def test_starts_at_the_cap_and_keeps_it_when_latency_grows_with_the_batch(
    sizer: BatchSizer, clock: Clock
) -> None:
    sizes = feed(sizer, clock, affine, Limits(slots=8), 600)
    assert sizes[0] == 64 and sizer.current == 64 and sizer.moves == 0
    probes = [s for s in sizes if s != 64]
    assert probes and set(probes) == {48}  # it did look one step down...
    assert len(probes) <= 0.03 * len(sizes)  # ...rarely: 12 of 600 batches


def test_probes_grow_rarer_while_they_lose(sizer: BatchSizer, clock: Clock) -> None:
    slow = Limits(slots=1)  # a batch every 0.178 s: the first probe waits for the batch count
    sizes = feed(sizer, clock, affine, slow, 1000)
    starts = [i for i, s in enumerate(sizes) if s != 64 and sizes[i - 1] == 64]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert starts[0] == max(FIRST_PROBE - 1, math.ceil(WARM_UP / affine(64)))
    assert gaps == sorted(gaps) and gaps[-1] > 4 * gaps[0]


def test_no_probe_in_the_first_seconds(sizer: BatchSizer, clock: Clock) -> None:
    """Many slots: FIRST_PROBE batches go by in a fraction of a second, while a limit met at
    the start is still being learned; the first probe waits for WARM_UP seconds."""
    sizes = feed(sizer, clock, affine, Limits(slots=64), 3000)
    first = next(i for i, s in enumerate(sizes) if s != 64)
    assert first * affine(64) / 64 == pytest.approx(WARM_UP, abs=0.01)


@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_latency_growing_faster_than_the_batch_moves_to_the_best_size(
    sizer: BatchSizer, clock: Clock, noise: float
) -> None:
    best = best_on_ladder(quadratic)
    assert best < 64  # the case is one where the cap is not the best
    feed(sizer, clock, quadratic, Limits(slots=8), 800, noise=noise)
    got = per_slot(quadratic, sizer.current)
    assert got >= 0.97 * per_slot(quadratic, best)
    assert got >= 1.15 * per_slot(quadratic, 64)


def test_the_best_size_is_found_from_below_too(sizer: BatchSizer, clock: Clock) -> None:
    """A cap lowered by 413s and raised again (a new client, a server replaced): the sizer
    climbs back up the ladder by probing."""
    feed(sizer, clock, quadratic, Limits(slots=8), 5, cap=8)
    assert sizer.current == 8
    feed(sizer, clock, quadratic, Limits(slots=8), 3000, cap=64)
    assert per_slot(quadratic, sizer.current) >= 0.97 * per_slot(
        quadratic, best_on_ladder(quadratic)
    )


# -- a limit on requests: bigger batches carry more for the same request --------------------


def test_a_request_pace_grows_batches_to_the_cap_without_probing_down(
    sizer: BatchSizer, clock: Clock
) -> None:
    feed(sizer, clock, quadratic, Limits(slots=8), 800)  # settled below the cap
    start = sizer.current
    assert start < 64
    paced = Limits(slots=8, requests_per_s=10.0)  # 10 x 64 texts/s: far below what 8 slots do
    sizes = feed(sizer, clock, quadratic, paced, 40)
    assert sizer.current == 64
    assert min(sizes) >= start  # no probe below, no step back
    assert sizes.index(64) <= 15  # three steps of three answers each, and little more


def test_a_request_pace_with_too_few_slots_settles_where_both_meet(
    sizer: BatchSizer, clock: Clock
) -> None:
    """4 slots and 20 requests a second: at 64 the slots bind (4 x 64 / 0.29 s = 880 texts/s
    < 20 x 64), at 36 the pace does (720): 48 carries the most (960)."""
    limits = Limits(slots=4, requests_per_s=20.0)
    model = {b: sizer.ceiling(b, limits, per_slot(quadratic, b)) for b in ladder(64)}
    assert max(model, key=model.__getitem__) == 48
    feed(sizer, clock, quadratic, limits, 800)
    assert sizer.current == 48


def test_a_request_pace_spares_the_end_of_a_call(sizer: BatchSizer, clock: Clock) -> None:
    """Under a request pace every request counts: the end of a call is not cut finer, once
    the latency shows that the pace binds before the slots do."""
    paced = Limits(slots=5, requests_per_s=10.0)
    assert sizer.size(64, paced, remaining=100) == 20  # latency unknown: the slots may bind
    feed(sizer, clock, affine, paced, 3)
    assert sizer.size(64, paced, remaining=100) == 64
    assert sizer.size(64, Limits(slots=5), remaining=100) == 20
    lavish = Limits(slots=5, requests_per_s=1000.0)  # a told rpm far above what 5 slots send
    assert sizer.size(64, lavish, remaining=100) == 20


# -- a limit on tokens: the size does not matter --------------------------------------------


def test_a_token_pace_keeps_the_size(sizer: BatchSizer, clock: Clock) -> None:
    tokens = Limits(slots=8, tokens_per_s=10_000.0, tokens_per_text=30.0)  # 333 texts/s
    assert feed(sizer, clock, affine, tokens, 300) == [64] * 300  # not even a probe
    feed(sizer, clock, quadratic, Limits(slots=8), 800)
    settled = sizer.current
    assert feed(sizer, clock, quadratic, tokens, 300) == [settled] * 300  # no growth either


def test_a_limit_that_does_not_say_which_grows_batches(sizer: BatchSizer, clock: Clock) -> None:
    """A 429 that names neither requests nor tokens: the controller paces both. Growing the
    batch costs nothing if tokens ran out, and pays if requests did."""
    feed(sizer, clock, quadratic, Limits(slots=8), 800)
    both = Limits(slots=8, requests_per_s=10.0, tokens_per_s=10 * 30 * 36.0, tokens_per_text=30)
    feed(sizer, clock, quadratic, both, 40)
    assert sizer.current == 64


# -- the end of a call ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "slots", "size"),
    [
        (1000, 5, 64),  # not the end yet
        (320, 5, 64),
        (200, 5, 40),  # 5 x 40 rather than 64, 64, 64, 8
        (100, 5, 20),
        (30, 5, 15),  # two requests, as batches of 20 would take, but even
        (20, 5, 20),
        (7, 5, 7),
        (100, 1, 64),  # one slot: nothing to spread over
    ],
)
def test_the_end_of_a_call_is_spread_over_the_slots(
    sizer: BatchSizer, remaining: int, slots: int, size: int
) -> None:
    assert sizer.size(64, Limits(slots=slots), remaining=remaining) == size
    # never more requests than batches of TAIL would take
    assert -(-remaining // min(size, remaining)) <= max(1, -(-remaining // TAIL))


# -- the cap, the figures ---------------------------------------------------------------------


def test_a_lowered_cap_rebuilds_the_ladder(sizer: BatchSizer, clock: Clock) -> None:
    feed(sizer, clock, affine, Limits(slots=8), 50)
    assert sizer.rate(64) is not None
    assert sizer.size(40, Limits(slots=8)) == 40  # a 413 said 40
    assert sizer.rate(64) is None  # the old sizes are forgotten
    feed(sizer, clock, affine, Limits(slots=8), 50, cap=40)
    assert sizer.current == 40 and sizer.rate(40) is not None


def test_a_batch_counts_for_the_ladder_size_it_nearly_fills(sizer: BatchSizer) -> None:
    sizer.size(64, Limits(slots=1))
    for _ in range(3):
        sizer.observe(46, 0.2)  # 46 of 48: counts for 48
        sizer.observe(30, 0.2)  # 30 of 36: too far from full, counted nowhere
        sizer.observe(5, 0.0)  # no time measured: no figure
    assert sizer.rate(48) == pytest.approx(230.0)
    assert sizer.rate(36) is None and sizer.rate(6) is None


def test_figures_go_stale(sizer: BatchSizer, clock: Clock) -> None:
    sizer.size(64, Limits(slots=1))
    for _ in range(3):
        sizer.observe(48, 0.2)
    assert sizer.rate(48) is not None
    clock.now += STALE + 1
    assert sizer.rate(48) is None


def test_a_figure_needs_a_few_answers(sizer: BatchSizer) -> None:
    sizer.size(64, Limits(slots=1))
    sizer.observe(64, 0.2)
    sizer.observe(64, 0.2)
    assert sizer.rate(64) is None
    sizer.observe(64, 0.2)
    assert sizer.rate(64) == pytest.approx(320.0)


def test_the_default_clock_is_the_loops_inside_one_and_the_monotonic_one_outside() -> None:
    assert loop_time() > 0

    async def main() -> tuple[float, float]:
        await asyncio.sleep(100.0)  # simulated: the loop's clock jumps, the monotonic one not
        return loop_time(), asyncio.get_running_loop().time()

    (inside, loops), _ = run_in_virtual_time(main())
    assert inside == loops >= 100.0


# -- cutting batches ------------------------------------------------------------------------


def test_planned_batches_are_as_long_as_the_size_and_the_token_budget_allow() -> None:
    """``plan_batches`` (a fixed size) and ``batch_end`` (``"auto"``, one batch at a time)
    cut by one rule: consecutive batches of at most ``size`` inputs and ``budget`` tokens (a
    larger input alone), each as long as that allows."""
    rng = random.Random(3)
    for _ in range(300):
        tokens = [rng.choice([1, 5, 30, 200, 5000]) for _ in range(rng.randrange(0, 80))]
        size, budget = rng.randrange(1, 40), rng.choice([100, 1000, 10**9])
        batches = plan_batches(tokens, size, budget)
        edges = [start for start, _ in batches] + [len(tokens)]  # consecutive, all covered
        assert edges[0] == 0 and [stop for _, stop in batches] == edges[1:]
        for start, stop in batches:
            assert batch_end(tokens, start, size, budget) == stop
            assert 1 <= stop - start <= size
            assert stop - start == 1 or sum(tokens[start:stop]) <= budget
            if stop < len(tokens):  # one more input would break a limit
                assert stop - start == size or sum(tokens[start : stop + 1]) > budget


def test_cut_batches_ask_with_what_is_left_and_respect_the_token_budget() -> None:
    asked: list[int] = []

    def size(remaining: int) -> int:
        asked.append(remaining)
        return 4

    batches = CutBatches([10] * 10, 30, size)  # the budget holds 3 texts
    first, second = batches.take(), batches.take()
    assert (first, second) == ((0, 3), (3, 6))
    assert asked == [10, 10]  # what is left counts what is in flight
    assert first is not None
    batches.done(first)
    assert batches.take() == (6, 9) and asked[-1] == 7
    assert batches.take() == (9, 10)
    assert batches.take() is None


def test_planned_batches_are_taken_in_order() -> None:
    planned = PlannedBatches([(0, 2), (2, 3)])
    assert planned.count == 2
    assert [planned.take(), planned.take(), planned.take()] == [(0, 2), (2, 3), None]
