"""The warm path (issue 22): a warm call against a bare ``SELECT`` of the same rows, in one run.

One cold run of ``get_batch_embeddings_async`` (latency 0, the simulated provider) fills a new
cache directory with ``args.warm_texts`` vectors of ``args.dim`` dimensions. Then, in pairs
that take turns going first:

- **warm**: the same call again, every text a hit: ``await get_batch_embeddings_async(texts,
  cache=DIR, ...)``, timed from the call to the array in hand (the thread hop to the client's
  loop, validation, de-duplication, the keys' hashing, the read, the matrix);
- **raw**: a bare batched ``SELECT key, value FROM vectors WHERE key IN (...)`` (500 keys a
  statement, one read transaction, ``fetchall``) of the same keys in the cache's own database
  file, over one ``sqlite3`` connection opened beforehand with SQLite's defaults: the lookup
  with nothing around it (no hashing, no matrix; the rows stay Python ``bytes``).

Figures: each side's vectors per second (texts over its median seconds) and ``ratio``, the
median over the pairs of raw seconds / warm seconds (1.0: the warm call is as fast as the
bare ``SELECT``; target: at least 0.7). The warm vectors are checked bit for bit against the
simulator's, and the simulator's request count shows that no warm call sent a request.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import embedsdk
from embedsdk import VectorCache
from embedsdk.cache import DBNAME, cache_keys
from embedsdk.client import resolve_options

from . import ceiling, runner
from .clients import Target, Vectors
from .scenarios import effective_batch, target_for
from .texts import mixed_texts

#: Keys per ``SELECT ... IN (...)`` of the raw read: the cache's own chunk.
RAW_CHUNK = 500
#: The ratio the warm path is to reach (issue 22).
TARGET = 0.7


@dataclasses.dataclass
class WarmResult:
    """The pairs' seconds (warm call, raw ``SELECT``) and the figures that follow from them."""

    texts: int
    dim: int
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    warm_s: list[float] = dataclasses.field(default_factory=list)
    raw_s: list[float] = dataclasses.field(default_factory=list)
    fill_s: float = 0.0  # the cold run that filled the cache
    exact: bool | None = None  # warm vectors equal to the simulator's, bit for bit
    warm_requests: int | None = None  # requests the server saw during the warm calls: 0
    warm_per_s: float = 0.0
    raw_per_s: float = 0.0
    ratio: float = 0.0

    def summarize(self) -> None:
        """Fill the rates and the ratio from the pairs."""
        self.warm_per_s = per_second(self.texts, self.warm_s)
        self.raw_per_s = per_second(self.texts, self.raw_s)
        self.ratio = pair_ratio(self.warm_s, self.raw_s)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def per_second(count: int, seconds: list[float]) -> float:
    """``count`` over the median of ``seconds`` (0.0 with no times, inf for a zero median)."""
    if not seconds:
        return 0.0
    middle = ceiling.median(seconds)
    return count / middle if middle > 0 else float("inf")


def pair_ratio(warm_s: list[float], raw_s: list[float]) -> float:
    """The median over the pairs of raw seconds / warm seconds: the warm call's speed as a
    share of the raw read's, pair by pair, so that a slow moment of the machine weighs on both
    sides of one pair rather than on one side of the medians."""
    if len(warm_s) != len(raw_s) or not warm_s:
        raise ValueError(f"pairs needed: {len(warm_s)} warm times, {len(raw_s)} raw times")
    return ceiling.median([raw / warm for warm, raw in zip(warm_s, raw_s)])


def raw_read(con: sqlite3.Connection, keys: list[bytes]) -> int:
    """Every row of ``keys`` from the cache's table, by batched ``SELECT ... IN`` in one read
    transaction; returns how many were found."""
    found = 0
    con.execute("BEGIN")
    try:
        for start in range(0, len(keys), RAW_CHUNK):
            chunk = keys[start : start + RAW_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, value FROM vectors WHERE key IN ({marks})"
            found += len(con.execute(sql, chunk).fetchall())
    finally:
        con.execute("COMMIT")
    return found


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()  # the previous step's garbage is not this step's cost
    t0 = time.perf_counter()
    result = function()
    return result, time.perf_counter() - t0


async def _timed_async(function: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    t0 = time.perf_counter()
    result = await function()
    return result, time.perf_counter() - t0


class _Sides:
    """The two sides of a pair: the warm call through the client, the raw read of the file."""

    def __init__(self, texts: list[str], target: Target, batch: int, w: int, folder: Path):
        self.texts, self.folder, self.target = texts, folder, target
        self.options: dict[str, Any] = {
            "base_url": target.base_url,
            "model": target.model,
            "api_key": "sk-bench",
            "cache": str(folder),
            "max_concurrent": w,
            "batch_size": batch,
        }
        resolved = resolve_options(base_url=target.base_url, model=target.model, api_key="sk-x")
        namespace = VectorCache.namespace(resolved.endpoint, resolved.model, resolved.dimensions)
        self.keys = cache_keys(namespace, texts)
        self.con: sqlite3.Connection | None = None

    async def call(self) -> Vectors:
        result: Vectors = await embedsdk.get_batch_embeddings_async(self.texts, **self.options)
        return result

    def open_raw(self) -> None:
        self.con = sqlite3.connect(self.folder / DBNAME, isolation_level=None)

    def raw(self) -> int:
        assert self.con is not None
        found = raw_read(self.con, self.keys)
        if found != len(self.keys):
            raise RuntimeError(
                f"the raw SELECT found {found} of {len(self.keys)} rows: its keys are not "
                "the client's (has the cache's key or namespace changed?)"
            )
        return found


async def _pairs(args: argparse.Namespace, sides: _Sides, result: WarmResult, sim: Any) -> None:
    want = runner.expected(sides.texts, sides.target) if args.verify else None
    await sides.call()  # untimed: the client's connection to the cache opened, pages cached
    sides.raw()
    before = None if sim is None else sim.stats().get("requests")
    for i in range(args.warm_pairs):
        if i % 2 == 0:
            vectors, warm = await _timed_async(sides.call)
            raw = _timed(sides.raw)[1]
        else:
            raw = _timed(sides.raw)[1]
            vectors, warm = await _timed_async(sides.call)
        result.warm_s.append(warm)
        result.raw_s.append(raw)
        if want is not None and result.exact is not False:
            result.exact = bool(np.array_equal(vectors, want))
        del vectors
    if before is not None:
        result.warm_requests = int(sim.stats().get("requests", 0)) - int(before)


async def _measure(args: argparse.Namespace, sides: _Sides, sim: Any) -> WarmResult:
    result = WarmResult(len(sides.texts), args.dim)
    try:
        result.fill_s = (await _timed_async(sides.call))[1]  # cold: fills the cache
        sides.open_raw()
        await _pairs(args, sides, result, sim)
    finally:
        if sides.con is not None:
            sides.con.close()
        embedsdk.close_default_clients()  # closes the cache before its folder goes
    return result


def run(args: argparse.Namespace) -> WarmResult:
    """A warm call of ``args.warm_texts`` texts against the raw ``SELECT`` of its rows."""
    n = args.warm_texts
    runner.log(
        f"warm: {n:,} texts, {args.dim} dims, {args.warm_pairs} alternating pairs "
        "(warm get_batch_embeddings_async, raw SELECT ... IN on the same file)",
        args.quiet,
    )
    texts = mixed_texts(n, seed=args.seed)
    with (
        target_for(args, 0.0, args.dim, real=False) as (target, sim),
        tempfile.TemporaryDirectory(prefix="embedsdk-bench-warm-") as tmp,
    ):
        batch = effective_batch(target, args.batch_size)
        sides = _Sides(texts, target, batch, args.concurrency, Path(tmp) / "cache")
        result: WarmResult = runner.run_async(_measure(args, sides, sim))
    result.settings = {
        "texts": n,
        "dim": args.dim,
        "pairs": args.warm_pairs,
        "raw_chunk": RAW_CHUNK,
        "batch_size": batch,
        "target": TARGET,
    }
    result.summarize()
    runner.log(
        f"  warm {result.warm_per_s:,.0f} vectors/s, raw SELECT {result.raw_per_s:,.0f}/s: "
        f"ratio {result.ratio:.2f}",
        args.quiet,
    )
    return result
