"""The cache scenario (issue 4): cold then warm, and what the cache costs a cold run.

For each variant (async: ``get_batch_embeddings_async``; sync: the thread pool,
``get_batch_embeddings_concurrent``, with the same number in flight) and each repetition:
a cold run with ``cache=False``, a cold run into a fresh cache directory, then three warm runs
of the same texts from that directory. Reported: warm vectors/s, warm speed-up over cold, and
the cache's cost on the cold run (cold with the cache over cold without, minus one).

Then the store on its own: ``args.cache_texts`` vectors of ``args.dim`` dimensions written
with one :meth:`VectorCache.set_many` and read back warm with :meth:`VectorCache.get_many`,
against a raw batched ``SELECT key, value ... WHERE key IN (...)`` over the same keys and blobs
in a plain sqlite3 table built here with SQLite's defaults (a lookup with nothing around it:
no hashing of texts, no matrix). The two reads take turns going first, and the ratio (raw
seconds / cache seconds) is the median over the pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import embedsdk
from embedsdk import VectorCache
from embedsdk.cache import cache_keys

from . import ceiling, runner
from .clients import Target, Vectors
from .scenarios import effective_batch, target_for
from .texts import mixed_texts

#: Warm runs after each cold one (the median is over all of them).
WARM_RUNS = 3
VARIANTS = {"async": "embedsdk async", "threads": "embedsdk threads (sync)"}
#: Timed read pairs (cache, raw SELECT) in the store comparison.
STORE_READS = 7
_RAW_CHUNK = 500  # keys per SELECT ... IN (...), as the cache's own lookups


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
class StoreRow:
    """The store alone: seconds per warm read of all ``vectors``, the cache's and the raw
    ``SELECT ... IN``'s, pair by pair, and ``ratio``, the median of raw / cache (1.0: as fast
    as the raw SELECT)."""

    vectors: int
    dim: int
    write_s: float = 0.0  # one set_many of every vector, into a new cache
    cache_s: list[float] = dataclasses.field(default_factory=list)
    raw_s: list[float] = dataclasses.field(default_factory=list)
    ratio: float = 0.0
    exact: bool | None = None

    def summarize(self) -> None:
        self.ratio = ceiling.median([r / c for r, c in zip(self.raw_s, self.cache_s)])


@dataclasses.dataclass
class CacheResult:
    settings: dict[str, Any]
    rows: list[CacheRow]
    store: StoreRow | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "store": None if self.store is None else dataclasses.asdict(self.store),
        }


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


def _raw_table(path: Path, keys: list[bytes], matrix: Vectors) -> sqlite3.Connection:
    """A plain table of the same keys and float32 blobs, SQLite's defaults otherwise."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("CREATE TABLE t (key BLOB PRIMARY KEY, value BLOB)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES (?, ?)", zip(keys, (r.tobytes() for r in matrix)))
    con.execute("COMMIT")
    return con


def _raw_read(con: sqlite3.Connection, keys: list[bytes]) -> int:
    """Every row of ``keys``, by batched ``SELECT ... IN`` in one read transaction."""
    found = 0
    con.execute("BEGIN")
    for start in range(0, len(keys), _RAW_CHUNK):
        chunk = keys[start : start + _RAW_CHUNK]
        sql = f"SELECT key, value FROM t WHERE key IN ({','.join('?' * len(chunk))})"
        found += len(con.execute(sql, chunk).fetchall())
    con.execute("COMMIT")
    return found


def _read_pair(
    cache: VectorCache, con: sqlite3.Connection, job: tuple[Any, ...], cache_first: bool
) -> Any:
    """Time one cache read and one raw read; returns (cache s, raw s, cache result)."""
    namespace, texts, keys = job
    raw_s = 0.0
    if not cache_first:
        raw_s = _timed_raw(con, keys)
    t0 = time.perf_counter()
    got = cache.get_many(namespace, texts)
    cache_s = time.perf_counter() - t0
    if cache_first:
        raw_s = _timed_raw(con, keys)
    return cache_s, raw_s, got


def _timed_raw(con: sqlite3.Connection, keys: list[bytes]) -> float:
    t0 = time.perf_counter()
    found = _raw_read(con, keys)
    seconds = time.perf_counter() - t0
    if found != len(keys):
        raise RuntimeError(f"the raw table returned {found} of {len(keys)} rows")
    return seconds


def measure_store(n: int, dim: int, tmp: Path, seed: int = 0) -> StoreRow:
    """Write ``n`` vectors of ``dim`` dimensions, then time warm reads against raw SELECTs."""
    matrix = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    texts = mixed_texts(n, seed=seed)
    namespace = VectorCache.namespace("http://127.0.0.1/v1/embeddings", "bench", dim)
    job = (namespace, texts, cache_keys(namespace, texts))
    row = StoreRow(n, dim)
    with VectorCache(tmp / "store") as cache:
        t0 = time.perf_counter()
        cache.set_many(namespace, texts, matrix)
        row.write_s = time.perf_counter() - t0
        con = _raw_table(tmp / "raw.sqlite3", job[2], matrix)
        try:
            _read_pair(cache, con, job, True)  # warm-up, untimed: connections open, pages cached
            for i in range(STORE_READS):
                cache_s, raw_s, (got, hit) = _read_pair(cache, con, job, i % 2 == 0)
                row.cache_s.append(cache_s)
                row.raw_s.append(raw_s)
                exact = bool(hit.all() and np.array_equal(got, matrix))
                row.exact = exact and row.exact is not False
        finally:
            con.close()
    row.summarize()
    return row


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
        store = measure_store(len(texts), args.dim, Path(tmp), args.seed)
    runner.log(
        f"  store: warm read {ceiling.median(store.cache_s) * 1000:.0f} ms, raw SELECT "
        f"{ceiling.median(store.raw_s) * 1000:.0f} ms, ratio {store.ratio:.2f}",
        args.quiet,
    )
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
    return CacheResult(settings, rows, store)
