"""The cache scenario (issue 4): cold then warm, and what the cache costs a cold run.

For each variant (async: ``get_batch_embeddings_async``; sync: the thread pool,
``get_batch_embeddings_concurrent``, with the same number in flight) and each repetition:
a cold run with ``cache=False``, a cold run into a fresh cache directory, then three warm runs
of the same texts from that directory. Reported: warm vectors/s, warm speed-up over cold, and
the cache's cost on the cold run (cold with the cache over cold without, minus one).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import embedsdk

from . import ceiling, runner
from .clients import Target, Vectors
from .scenarios import effective_batch, target_for
from .texts import mixed_texts

#: Warm runs after each cold one (the median is over all of them).
WARM_RUNS = 3
VARIANTS = {"async": "embedsdk async", "threads": "embedsdk threads (sync)"}


@dataclasses.dataclass
class CacheRow:
    """One variant's repetitions (seconds) and the figures derived from their medians."""

    variant: str
    label: str
    texts: int
    cold_nocache_s: list[float] = dataclasses.field(default_factory=list)
    cold_s: list[float] = dataclasses.field(default_factory=list)
    warm_s: list[float] = dataclasses.field(default_factory=list)
    warm_exact: bool | None = None
    warm_vectors_per_s: float = 0.0
    warm_speedup: float = 0.0  # cold (with cache) / warm
    cache_cost: float = 0.0  # cold with cache / cold without - 1
    cold_efficiency: float | None = None  # cold without cache against the ceiling

    def summarize(self, ceiling_s: float) -> None:
        cold, bare, warm = (
            ceiling.median(x) for x in (self.cold_s, self.cold_nocache_s, self.warm_s)
        )
        self.warm_vectors_per_s = self.texts / warm
        self.warm_speedup = cold / warm
        self.cache_cost = cold / bare - 1.0
        self.cold_efficiency = ceiling_s / bare if ceiling_s > 0 else None


@dataclasses.dataclass
class CacheResult:
    settings: dict[str, Any]
    rows: list[CacheRow]

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "rows": [dataclasses.asdict(r) for r in self.rows]}


async def _embed(
    variant: str, texts: list[str], target: Target, w: int, b: int, cache: Any
) -> Vectors:
    options: dict[str, Any] = {
        "base_url": target.base_url,
        "model": target.model,
        "api_key": "sk-bench",
    }
    if variant == "async":
        result: Vectors = await embedsdk.get_batch_embeddings_async(
            texts, max_concurrent=w, batch_size=b, cache=cache, **options
        )
    else:
        result = embedsdk.get_batch_embeddings_concurrent(
            texts, max_workers=w, batch_size=b, cache=cache, **options
        )
    return result


async def _timed(
    variant: str, texts: list[str], target: Target, w: int, b: int, cache: Any
) -> tuple[Vectors, float]:
    t0 = time.perf_counter()
    vectors = await _embed(variant, texts, target, w, b, cache)
    return vectors, time.perf_counter() - t0


async def _measure(
    args: argparse.Namespace, texts: list[str], target: Target, batch: int, tmp: Path
) -> list[CacheRow]:
    rows = [CacheRow(v, label, len(texts)) for v, label in VARIANTS.items()]
    want = runner.expected(texts, target) if args.verify else None
    w = args.concurrency
    await _embed("async", texts[: w * batch], target, w, batch, False)  # warm-up, untimed
    try:
        for rep in range(args.repeat):
            for row in rows:
                row.cold_nocache_s.append(
                    (await _timed(row.variant, texts, target, w, batch, False))[1]
                )
                directory = str(tmp / f"{row.variant}-{rep}")
                row.cold_s.append(
                    (await _timed(row.variant, texts, target, w, batch, directory))[1]
                )
                for _ in range(WARM_RUNS):  # warm runs are cheap: take several
                    vectors, seconds = await _timed(row.variant, texts, target, w, batch, directory)
                    row.warm_s.append(seconds)
                    if want is not None and row.warm_exact is not False:
                        row.warm_exact = bool(np.array_equal(vectors, want))
                runner.log(
                    f"  {row.variant}: cold {row.cold_nocache_s[-1]:.2f} s without cache, "
                    f"{row.cold_s[-1]:.2f} s with; warm "
                    + ", ".join(f"{x * 1000:.0f}" for x in row.warm_s[-WARM_RUNS:])
                    + " ms",
                    args.quiet,
                )
    finally:
        embedsdk.close_default_clients()  # closes the caches before their folder goes
    return rows


def run_cache(args: argparse.Namespace) -> CacheResult:
    """Cold and warm runs over ``args.cache_texts`` texts on the simulated provider."""
    n, latency = args.cache_texts, args.cache_latency
    runner.log(
        f"cache: {n:,} texts, {args.dim} dims, latency {latency * 1000:g} ms, "
        f"{args.concurrency} in flight, {args.repeat} repetitions",
        args.quiet,
    )
    texts = mixed_texts(n, seed=args.seed)
    with (
        target_for(args, latency, args.dim, real=False) as (target, _),
        tempfile.TemporaryDirectory(prefix="embedsdk-bench-cache-") as tmp,
    ):
        batch = effective_batch(target, args.batch_size)
        rows = runner.run_async(_measure(args, texts, target, batch, Path(tmp)))
    best = ceiling.ceiling_seconds(n, batch, args.concurrency, latency)
    for row in rows:
        row.summarize(best)
    settings = {
        "texts": n,
        "dim": args.dim,
        "latency_s": latency,
        "batch_size": batch,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "warm_runs": WARM_RUNS,
        "ceiling_cold_s": best,
    }
    return CacheResult(settings, rows)
