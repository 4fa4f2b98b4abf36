"""``--scenario adaptive`` (issue 7): reach a rate limit nobody told the client.

Each case is a simulated provider in a child process that enforces a limit over a sliding
60 s window (600 RPM, or 200k TPM; with or without ``Retry-After``) which the clients are
*not* told. Every contender embeds the same texts at batch 20 with 16 requests in flight
(langchain-openai sends its chunks one at a time), each against its own fresh provider, all of
a case at the same time (they share nothing but the CPU, and the limits leave it idle):

- ``embedsdk adaptive``: the default client (``adaptive=True``), its own controller;
- ``embedsdk fixed``: the same client with ``adaptive=False`` (per-request backoff);
- ``openai-python``: ``AsyncOpenAI`` with its default retries and a semaphore of 16;
- ``langchain-openai``: ``OpenAIEmbeddings`` with its default retries,
  ``check_embedding_ctx_length=False`` (else tiktoken downloads its tables).

"% of limit" is texts per second delivered over what the limit sustains (RPM x batch / 60,
or TPM / 60 over the server's tokens per text). A sliding window also lets one window's
quota through at once at the start, which is why short runs can pass 100 %. ``--quick``
halves the texts *and* the limits (same shape, same length in time: a window is a minute)
and runs the four cases at once instead of one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Iterator
from typing import Any, Callable, Optional

import numpy as np

import embedsdk

from .._adaptive import RateController
from .._exceptions import EmbedSDKError
from . import report, runner
from .clients import available
from .texts import mixed_texts, short_text

#: Seconds the simulated provider takes per request (SiliconFlow answers a batch of 20 in
#: a few hundred milliseconds).
LATENCY = 0.2
CONCURRENCY = 16
DIM = 256  # smaller vectors than the model's: the limits, not the bytes, are measured
#: A run is stopped after this many times the time the limit itself needs.
TIME_CAP = 3.0

CONTENDERS = {
    "adaptive": "embedsdk adaptive",
    "fixed": "embedsdk adaptive=False",
    "openai": "openai-python",
    "langchain": "langchain-openai",
}


@dataclasses.dataclass(frozen=True)
class Case:
    """A limit the server enforces and the clients are not told (per minute)."""

    name: str
    rpm: float | None
    tpm: float | None
    retry_after: bool

    def scaled(self, factor: float) -> Case:
        return dataclasses.replace(
            self,
            name=self.name if factor == 1 else f"{self.name} x{factor:g}",
            rpm=None if self.rpm is None else self.rpm * factor,
            tpm=None if self.tpm is None else self.tpm * factor,
        )


CASES = (
    Case("600 RPM", 600, None, False),
    Case("600 RPM + Retry-After", 600, None, True),
    Case("200k TPM", None, 200_000, False),
    Case("200k TPM + Retry-After", None, 200_000, True),
)


def tpm_texts(n: int, seed: int = 0) -> list[str]:
    """Short unique texts of about 17 tokens (the server's count): 20,000 of them are
    about 1.7 minutes of a 200k TPM quota, like 20,000 texts at 600 RPM and batch 20."""
    rng = random.Random(seed)
    return [f"{short_text(rng, i)} {short_text(rng, i)[-12:]}" for i in range(n)]


def allowed_texts_per_s(case: Case, texts: list[str], batch: int) -> float:
    """Texts per second the limit sustains."""
    if case.rpm is not None:
        return case.rpm / 60 * batch
    from embedsdk.testing._vectors import count_tokens  # the simulator's own count

    assert case.tpm is not None
    per_text = sum(count_tokens(t) for t in texts) / len(texts)
    return case.tpm / 60 / per_text


# -- the contenders: each returns (rows delivered mask, vectors or None, error or None) -----

#: Rows delivered (mask), the vectors, the error, what the controller learned.
Outcome = tuple[np.ndarray, Optional[np.ndarray], Optional[str], Optional[dict[str, Any]]]


def _batches(texts: list[str], batch: int) -> list[list[str]]:
    return [texts[i : i + batch] for i in range(0, len(texts), batch)]


async def _ours(url: str, texts: list[str], batch: int, adaptive: bool) -> Outcome:
    controller = RateController() if adaptive else None  # its own: no sharing between runs
    options: dict[str, Any] = {"rate_controller": controller} if adaptive else {"adaptive": False}
    ok = np.ones(len(texts), dtype=bool)
    async with embedsdk.AsyncEmbedder(
        base_url=url, api_key="sk-bench", cache=False, batch_size=batch, **options
    ) as emb:
        try:
            vectors = await emb.embed(texts, max_concurrent=CONCURRENCY)
        except EmbedSDKError as exc:
            ok[exc.failed_indices or list(range(len(texts)))] = False
            return ok, None, type(exc).__name__, _snapshot(controller)
    return ok, vectors, None, _snapshot(controller)


def _snapshot(controller: RateController | None) -> dict[str, Any] | None:
    return None if controller is None else controller.snapshot()


async def _openai(url: str, texts: list[str], batch: int) -> Outcome:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="sk-bench")  # its default retries (2)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(part: list[str]) -> list[list[float]]:
        async with sem:
            resp = await client.embeddings.create(model="BAAI/bge-m3", input=part)
        return [item.embedding for item in sorted(resp.data, key=lambda d: d.index)]

    try:
        parts = await asyncio.gather(
            *(one(p) for p in _batches(texts, batch)), return_exceptions=True
        )
    finally:
        await client.close()
    return _assemble(parts, len(texts), batch)


async def _langchain(url: str, texts: list[str], batch: int) -> Outcome:
    from langchain_openai import OpenAIEmbeddings

    options: dict[str, Any] = {  # its default retries (2)
        "model": "BAAI/bge-m3",
        "base_url": url,
        "api_key": "sk-bench",
        "check_embedding_ctx_length": False,
        "chunk_size": batch,
    }
    emb = OpenAIEmbeddings(**options)
    try:
        rows = await emb.aembed_documents(texts)
    except Exception as exc:  # one call: any failure loses every row
        return np.zeros(len(texts), dtype=bool), None, type(exc).__name__, None
    finally:
        owner = getattr(getattr(emb, "async_client", None), "_client", None)
        if owner is not None:
            await owner.close()
    return np.ones(len(texts), dtype=bool), np.asarray(rows, dtype=np.float32), None, None


def _assemble(parts: list[Any], n: int, batch: int) -> Outcome:
    """Rows from per-batch results, some of which may be exceptions."""
    ok = np.zeros(n, dtype=bool)
    vectors = np.full((n, DIM), np.nan, dtype=np.float32)
    errors = [p for p in parts if isinstance(p, BaseException)]
    for i, part in enumerate(parts):
        if not isinstance(part, BaseException):
            vectors[i * batch : i * batch + len(part)] = part
            ok[i * batch : i * batch + len(part)] = True
    error = (
        f"{type(errors[0]).__name__} ({len(errors)} of {len(parts)} requests)" if errors else None
    )
    return ok, vectors, error, None


def _contender(
    name: str, url: str, texts: list[str], batch: int
) -> Callable[[], Awaitable[Outcome]]:
    if name == "adaptive":
        return lambda: _ours(url, texts, batch, True)
    if name == "fixed":
        return lambda: _ours(url, texts, batch, False)
    if name == "openai":
        return lambda: _openai(url, texts, batch)
    return lambda: _langchain(url, texts, batch)


# -- running -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _servers(cases: list[Case], names: list[str]) -> Iterator[dict[tuple[str, str], Any]]:
    """One fresh simulated provider (child process) per case and contender."""
    with contextlib.ExitStack() as stack:
        sims = {}
        for case in cases:
            for name in names:
                sims[case.name, name] = stack.enter_context(
                    runner.simulated_server(
                        rpm=case.rpm,
                        tpm=case.tpm,
                        retry_after=case.retry_after,
                        latency=LATENCY,
                        dim=DIM,
                    )
                )
        yield sims


async def _timed(make: Callable[[], Awaitable[Outcome]], cap: float) -> tuple[Outcome, float]:
    start = time.perf_counter()
    try:
        outcome = await asyncio.wait_for(make(), cap)
    except asyncio.TimeoutError:
        outcome = (np.zeros(0, dtype=bool), None, f"stopped after {cap:.0f} s", None)
    return outcome, time.perf_counter() - start


def _row(
    case: Case,
    name: str,
    texts: list[str],
    batch: int,
    outcome: Outcome,
    seconds: float,
    stats: dict[str, Any],
) -> dict[str, Any]:
    from embedsdk.testing import expected_matrix

    ok, vectors, error, learned = outcome
    delivered = int(ok.sum())
    if ok.size == 0:  # stopped: count what the server answered
        delivered = sum(stats.get("batch_sizes", []))
    exact = None
    if vectors is not None and delivered:
        want = expected_matrix([t for t, k in zip(texts, ok) if k], dim=DIM)
        exact = bool(np.array_equal(vectors[ok], want))
    allowed = allowed_texts_per_s(case, texts, batch)
    complete = error is None and delivered == len(texts) and seconds > 0
    requests = int(stats.get("requests", 0))
    limited = int(stats.get("rate_limited", 0))
    return {
        "case": case.name,
        "client": name,
        "label": CONTENDERS[name],
        "texts": len(texts),
        "delivered": delivered,
        "seconds": seconds,
        # Throughput only for runs that delivered everything: a failed call's rate is that of
        # the first window's burst, up to its failure.
        "texts_per_s": len(texts) / seconds if complete else None,
        "allowed_texts_per_s": allowed,
        "of_limit": len(texts) / seconds / allowed if complete else None,
        "requests": requests,
        "rate_limited": limited,
        "rate_limited_share": limited / requests if requests else None,
        "failed": not complete,
        "error": error,
        "exact": exact,
        "learned": learned,
    }


async def _run_cases(
    cases: list[Case],
    names: list[str],
    texts_for: dict[str, list[str]],
    batch: int,
    sims: dict[tuple[str, str], Any],
) -> list[tuple[Case, str, Outcome, float]]:
    jobs = []
    for case in cases:
        texts = texts_for[case.name]
        cap = TIME_CAP * len(texts) / allowed_texts_per_s(case, texts, batch) + 30
        for name in names:
            make = _contender(name, sims[case.name, name].base_url, texts, batch)
            jobs.append((case, name, _timed(make, cap)))
    done = await asyncio.gather(*(job for _, _, job in jobs))
    return [(case, name, *result) for (case, name, _), result in zip(jobs, done)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case (JSON-able result; :func:`format_table` prints it)."""
    quick = bool(getattr(args, "quick", False))
    factor = 0.5 if quick else 1.0
    n = 10_000 if quick else 20_000
    batch = int(getattr(args, "batch_size", 20) or 20)
    names = [c for c in CONTENDERS if available(c)]
    quiet = bool(getattr(args, "quiet", False))
    if getattr(args, "base_url", None):
        runner.log("adaptive: runs on the simulated provider only (--base-url ignored)", quiet)
    cases = [c.scaled(factor) for c in CASES]
    texts_for = {
        c.name: tpm_texts(n, args.seed) if c.tpm else mixed_texts(n, seed=args.seed) for c in cases
    }
    groups = [cases] if quick else [[c] for c in cases]
    rows = []
    for group in groups:
        runner.log(
            f"adaptive: {', '.join(c.name for c in group)}; {n:,} texts, batch {batch}, "
            f"{CONCURRENCY} in flight, latency {LATENCY * 1000:g} ms, clients not told",
            quiet,
        )
        with _servers(group, names) as sims:
            results = asyncio.run(_run_cases(group, names, texts_for, batch, sims))
            for case, name, outcome, seconds in results:
                stats = sims[case.name, name].stats()
                rows.append(_row(case, name, texts_for[case.name], batch, outcome, seconds, stats))
                runner.log(f"  {case.name}: {CONTENDERS[name]} {seconds:.1f} s", quiet)
    return {
        "settings": {
            "texts": n,
            "batch_size": batch,
            "concurrency": CONCURRENCY,
            "latency_s": LATENCY,
            "dim": DIM,
            "quick": quick,
            "limits_scaled_by": factor,
            "cases": [dataclasses.asdict(c) for c in cases],
            "clients": {name: CONTENDERS[name] for name in names},
        },
        "rows": rows,
    }


def _result(row: dict[str, Any]) -> str:
    if not row["failed"]:
        return "all done"
    missing = row["texts"] - row["delivered"]
    return f"FAILED: {missing:,} missing, {row['error'] or 'stopped'}"


def _learned(row: dict[str, Any]) -> str:
    learned = row.get("learned")
    if not learned:
        return "-"
    if learned.get("rpm") is not None:
        return f"{learned['rpm']:,.0f} rpm"
    if learned.get("tpm") is not None:
        return f"{learned['tpm']:,.0f} tpm"
    return "-"


def format_table(result: dict[str, Any]) -> str:
    """The printable table of :func:`run`'s result."""
    s = result["settings"]
    headers = [
        "limit (not told)",
        "client",
        "result",
        "seconds",
        "texts/s",
        "% of limit",
        "requests",
        "429s",
        "429 %",
        "exact",
        "learned pace",
    ]
    rows = [
        [
            r["case"],
            r["label"],
            _result(r),
            f"{r['seconds']:.1f}",
            report.rate(r["texts_per_s"]),
            report.pct(r["of_limit"]),
            f"{r['requests']:,}",
            f"{r['rate_limited']:,}",
            "-" if r["rate_limited_share"] is None else f"{r['rate_limited_share'] * 100:.1f}%",
            report.yes_no(r["exact"]),
            _learned(r),
        ]
        for r in result["rows"]
    ]
    title = (
        f"Adaptive rate control: {s['texts']:,} texts, batch {s['batch_size']}, "
        f"{s['concurrency']} in flight, latency {s['latency_s'] * 1000:g} ms, the limit over a "
        "sliding 60 s window and not told to the clients"
        + (f" (quick: limits x{s['limits_scaled_by']:g})" if s["quick"] else "")
    )
    note = (
        "% of limit: texts/s of a complete run over what the limit sustains (RPM x batch / 60,\n"
        "  or TPM / 60 over the server's tokens per text). The sliding window also lets a whole\n"
        "  window's quota through at once when it empties (at the start, and a minute after a\n"
        "  burst), so a run can pass 100 %. seconds: until the call returned or failed.\n"
        "  langchain-openai sends one chunk at a time; learned pace: the controller's, at the end."
    )
    return f"{title}\n{report.table(headers, rows)}\n{note}"
