"""The throughput scenario (issue 3, part 2) and the fast-server CPU scenario (part 4)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from ..client import find_api_key, resolve_options
from . import runner
from .clients import CLIENTS, Target, make_clients
from .texts import mixed_texts


@dataclasses.dataclass
class ThroughputResult:
    """Runs of every client at every size, with the settings that produced them."""

    name: str  # "throughput" or "fast"
    settings: dict[str, Any]
    runs: list[runner.Run]

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "runs": [dataclasses.asdict(r) for r in self.runs]}

    def run(self, client: str, size: int | None = None) -> runner.Run | None:
        """The run of ``client`` (at ``size``, else the largest), if it ran."""
        found = [r for r in self.runs if r.client == client and size in (None, r.size)]
        return found[-1] if found else None


@contextlib.contextmanager
def target_for(
    args: argparse.Namespace, latency: float, dim: int, real: bool = True
) -> Iterator[tuple[Target, Any]]:
    """The endpoint of a scenario: ``--base-url`` when given (and ``real``), else a fresh
    simulated provider in a child process with ``latency`` seconds per request and ``dim``
    dimensions. Yields ``(target, sim)``, ``sim`` being ``None`` for a real endpoint."""
    if real and args.base_url:
        key, _ = find_api_key(None, args.base_url)
        yield Target(args.base_url.rstrip("/"), args.model, key, simulated=False), None
        return
    pool: runner.SimPool | None = getattr(args, "sims", None)  # set by run_bench
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(runner.SimPool())
        sim = pool.get(latency=latency, dim=dim)
        yield Target(sim.base_url, args.model, None, True, latency, dim), sim


def effective_batch(target: Target, batch_size: int) -> int:
    """The batch size our client really uses there (the provider's cap wins); every client,
    peers included, is given this one so that all send the same requests."""
    # A real endpoint without a key fails here, before any request, with the library's message.
    key = target.key if target.simulated else target.api_key
    options = resolve_options(base_url=target.base_url, api_key=key, batch_size=batch_size)
    return int(options.batch_size)


def _settings(
    args: argparse.Namespace, target: Target, batch: int, ids: list[str]
) -> dict[str, Any]:
    return {
        "endpoint": "simulated provider (child process)" if target.simulated else target.base_url,
        "model": target.model,
        "dim": target.dim,
        "latency_s": target.latency,
        "batch_size": batch,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "rpm": args.rpm,
        "clients": {i: CLIENTS[i] for i in ids},
    }


def _measure(
    args: argparse.Namespace, name: str, sizes: list[int], latency: float
) -> ThroughputResult:
    with target_for(args, latency, args.dim) as (target, sim):
        batch = effective_batch(target, args.batch_size)
        if batch != args.batch_size:
            runner.log(f"  batch size {args.batch_size} -> {batch}: the provider's cap", args.quiet)
        clients = make_clients(args.clients, target, batch, args.concurrency)
        texts = mixed_texts(max(sizes), seed=args.seed)
        runs = runner.run_async(
            runner.measure(
                clients,
                texts,
                sizes,
                args.repeat,
                target,
                sim,
                verify=args.verify,
                progress=lambda line: runner.log(line, args.quiet),
            )
        )
        settings = _settings(args, target, batch, [c.id for c in clients])
    runner.summarize(runs, batch, target.latency, args.rpm)
    return ThroughputResult(name, {**settings, "sizes": sizes}, runs)


def run_throughput(args: argparse.Namespace) -> ThroughputResult:
    """Serial, thread pool, async and the peers over ``args.sizes`` (issue 3, part 2)."""
    latency = "the endpoint's latency" if args.base_url else f"latency {args.latency * 1000:g} ms"
    runner.log(
        f"throughput: {args.concurrency} in flight, batch {args.batch_size}, {latency}, "
        f"sizes {args.sizes}, {args.repeat} repetitions",
        args.quiet,
    )
    return _measure(args, "throughput", args.sizes, args.latency)


def run_fast(args: argparse.Namespace) -> ThroughputResult:
    """A fast self-hosted server (issue 3, part 4): near-zero latency, the client's CPU.

    The figure is the client process's CPU seconds per 100,000 vectors; the server runs in
    another process, so none of its work is counted.
    """
    runner.log(
        f"fast server: latency {args.fast_latency * 1000:g} ms, {args.dim} dims, "
        f"{args.fast_texts:,} texts, {args.repeat} repetitions",
        args.quiet,
    )
    return _measure(args, "fast", [args.fast_texts], args.fast_latency)


def cpu_per_100k(run: runner.Run) -> float:
    """CPU seconds the client process spent per 100,000 vectors (median repetition)."""
    return run.median_cpu_s / run.size * 100_000
