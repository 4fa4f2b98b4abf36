"""Timing the clients: repetitions, medians, exactness checks, and the simulated server.

The simulated provider runs in a child process (``SimulatedProvider(..., process=True)``) so
that its CPU is not counted against the client, and on this 2-core machine the two share the
cores the way a client and a remote server would not share anything at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np

from . import ceiling
from .clients import BenchClient, Target, Vectors


@dataclasses.dataclass
class Run:
    """One client on one input size: the repetitions and what follows from them.

    Times are seconds (wall clock, ``time.perf_counter``) and CPU seconds of this whole
    process (``time.process_time``: every thread, the server excluded). The derived fields
    are filled by :func:`summarize`.
    """

    size: int
    client: str
    label: str
    concurrency: int
    seconds: list[float] = dataclasses.field(default_factory=list)
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)
    exact: bool | None = None  # vectors equal to the simulator's, bit for bit
    requests: int | None = None  # as counted by the simulator (first repetition)
    peak_in_flight: int | None = None
    server_cpu_s: float | None = None  # the simulator's CPU seconds (first repetition)
    median_s: float = 0.0
    median_cpu_s: float = 0.0
    texts_per_s: float = 0.0
    speedup: float | None = None  # over "embedsdk serial" at the same size
    ceiling_speedup: float = 1.0
    ceiling_texts_per_s: float | None = None
    efficiency: float | None = None  # texts_per_s / ceiling_texts_per_s
    speedup_efficiency: float | None = None  # speedup / ceiling_speedup
    latency_used: float | None = None  # seconds per request the ceiling assumed


def log(message: str, quiet: bool = False) -> None:
    """Progress lines go to stderr so that stdout keeps only the tables."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def simulated_server(**fields: Any) -> Iterator[Any]:
    """A :class:`embedsdk.testing.SimulatedProvider` serving from a child process.

    ``track_texts`` is off so that the server's memory and CPU stay flat on long runs.
    """
    from embedsdk.testing import SimConfig, SimulatedProvider

    config = SimConfig(**{"track_texts": False, **fields})
    with SimulatedProvider(config, process=True) as sim:
        yield sim


class SimPool:
    """One simulated provider for a whole bench run, reconfigured for each scenario.

    A child process takes about half a second to start; the scenarios only differ in the
    latency and dimensions they ask for, which ``configure`` changes in place.
    """

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._sim: Any = None

    def get(self, **fields: Any) -> Any:
        """The running simulator with ``fields`` applied and its counters reset."""
        if self._sim is None:
            self._sim = self._stack.enter_context(simulated_server(**fields))
        else:
            self._sim.configure(**fields)
            self._sim.reset_stats()
        return self._sim

    def __enter__(self) -> SimPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sim = None
        self._stack.close()


def expected(texts: Sequence[str], target: Target) -> Vectors | None:
    """The simulator's exact answer for ``texts``, or ``None`` for a real endpoint."""
    if not target.simulated or target.dim is None:
        return None
    from embedsdk.testing import expected_matrix

    matrix: Vectors = expected_matrix(texts, model=target.model, dim=target.dim)
    return matrix


async def _timed(client: BenchClient, texts: list[str]) -> tuple[Vectors, float, float]:
    gc.collect()  # garbage of the previous run is not this run's cost
    cpu0, t0 = time.process_time(), time.perf_counter()
    vectors = await client.embed(texts)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if vectors.shape[0] != len(texts):
        raise RuntimeError(f"{client.label} returned {vectors.shape[0]} rows for {len(texts)}")
    return vectors, seconds, cpu


def _server_stats(sim: Any) -> dict[str, Any]:
    stats: dict[str, Any] = sim.stats() if sim is not None else {}
    return stats


async def _measure_size(
    clients: list[BenchClient],
    texts: list[str],
    repeat: int,
    sim: Any,
    want: Vectors | None,
) -> list[Run]:
    runs = [Run(len(texts), c.id, c.label, c.concurrency) for c in clients]
    for rep in range(repeat):
        # Rotate the order each repetition so no client always runs right after another.
        order = list(range(len(clients)))
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for i in order:
            client, run = clients[i], runs[i]
            if sim is not None and rep == 0:
                sim.reset_stats()
            vectors, seconds, cpu = await _timed(client, texts)
            run.seconds.append(seconds)
            run.cpu_seconds.append(cpu)
            if rep == 0:
                if want is not None:
                    run.exact = bool(np.array_equal(vectors, want))
                stats = _server_stats(sim)
                run.requests = stats.get("requests")
                run.peak_in_flight = stats.get("peak_in_flight")
                run.server_cpu_s = stats.get("cpu_seconds")
    return runs


async def measure(
    clients: list[BenchClient],
    all_texts: list[str],
    sizes: Sequence[int],
    repeat: int,
    target: Target,
    sim: Any = None,
    verify: bool = True,
    progress: Callable[[str], None] = log,
) -> list[Run]:
    """Time every client on the first ``n`` texts for each ``n`` in ``sizes``.

    Each client first embeds one full wave untimed (connections opened, imports done). The
    first repetition's vectors are compared with the simulator's exact answer.
    """
    for client in clients:
        await client.start()
    runs: list[Run] = []
    try:
        warm = all_texts[: clients[0].batch_size * clients[0].concurrency] if clients else []
        for client in clients:
            await client.embed(warm)
        for n in sizes:
            texts = all_texts[:n]
            want = expected(texts, target) if verify else None
            size_runs = await _measure_size(clients, texts, repeat, sim, want)
            progress(
                f"  {n:>7,} texts: "
                + ", ".join(f"{r.client} {ceiling.median(r.seconds):.2f} s" for r in size_runs)
            )
            runs.extend(size_runs)
    finally:
        for client in clients:
            await client.aclose()
    return runs


def summarize(
    runs: list[Run], batch_size: int, latency: float | None, rpm: float | None = None
) -> list[Run]:
    """Fill the medians, speed-ups and ceilings of ``runs`` (in place; also returned).

    ``latency`` is the server's seconds per request; ``None`` (a real endpoint) estimates it
    per size from the serial run: its median time over its number of requests.
    """
    serial = {r.size: r for r in runs if r.client == "serial"}
    for run in runs:
        run.median_s = ceiling.median(run.seconds)
        run.median_cpu_s = ceiling.median(run.cpu_seconds) if run.cpu_seconds else 0.0
        run.texts_per_s = run.size / run.median_s if run.median_s > 0 else float("inf")
    for run in runs:
        base = serial.get(run.size)
        if base is not None and run.median_s > 0:
            run.speedup = base.median_s / run.median_s
        run.ceiling_speedup = ceiling.ceiling_speedup(run.size, batch_size, run.concurrency)
        lat = latency
        if lat is None and base is not None:
            lat = base.median_s / ceiling.n_batches(run.size, batch_size)
        if lat is None:
            continue
        run.latency_used = lat
        rate = ceiling.ceiling_rate(run.size, batch_size, run.concurrency, lat, rpm)
        run.ceiling_texts_per_s = rate if np.isfinite(rate) else None
        run.efficiency = ceiling.ratio(run.texts_per_s, rate)
        if run.speedup is not None:
            run.speedup_efficiency = run.speedup / run.ceiling_speedup
    return runs


def run_async(coro: Any) -> Any:
    """``asyncio.run`` (one loop for the whole measurement, as a user's program has)."""
    return asyncio.run(coro)
