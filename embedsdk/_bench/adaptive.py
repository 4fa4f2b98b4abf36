"""``--scenario adaptive``: every kind of rate limit, the client not told it.

Each case is a simulated provider in a child process enforcing one kind of limit: a token
bucket (requests or tokens, with 0.1 s to 60 s of burst), a fixed or sliding window of 1 s or
60 s, or a cap on requests in flight (429 or 503 beyond it). Against it, side by side and at
the same time (each contender has its own server, so they share nothing but the CPU):

- ``embedsdk adaptive``: the default client (``adaptive=True``), limit not told;
- ``embedsdk adaptive=False``: the same client with plain per-request backoff;
- ``embedsdk told``: the default client told the limit (``rpm=`` / ``tpm=``; for a cap,
  ``max_concurrent``);
- ``openai-python``: ``AsyncOpenAI`` with its default retries and a semaphore.

Every contender embeds more texts than the time allows, 32 a request, 16 in flight, and is
stopped after the case's time. What the server answered is read off its own timeline: the
share of what its limiter allows that was delivered, and the share of requests refused (429,
or 503 from the cap), once the first 10 s are over (per-second limits, caps) or over the first
three windows (per-minute windows). ``--quick`` runs shorter cases and counts the per-minute
windows over 10 s instead of 60 (same shape: "3 windows" is then 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Iterator
from typing import Any, Callable

import embedsdk

from . import report, runner
from .clients import available
from .texts import short_text

LATENCY = 0.05  # seconds per request
JITTER = 0.01
BATCH = 32
IN_FLIGHT = 16
DIM = 64
WARM_UP = 10.0  # seconds left out of a per-second case's figures

CONTENDERS = {
    "adaptive": "embedsdk adaptive",
    "fixed": "embedsdk adaptive=False",
    "told": "embedsdk told the limit",
    "openai": "openai-python",
}


@dataclasses.dataclass(frozen=True)
class Case:
    """A limit the server enforces (SimConfig fields); ``window`` set: a per-minute window."""

    name: str
    limits: dict[str, Any]
    minute_window: bool = False
    latency: float = LATENCY  # a cap's case answers slower: the cap, not the CPU, must bind

    def scaled(self, quick: bool) -> Case:
        """For ``--quick``, a per-minute window counts over 10 s (same limit per second)."""
        if not (quick and self.minute_window):
            return self
        limits = {**self.limits, "window": 10.0}
        return dataclasses.replace(self, name=self.name.replace("60 s", "10 s"), limits=limits)


RPM = 600
TPM = 150_000
CASES = (
    Case("token bucket, 1 s burst", {"limiter": "token_bucket", "rpm": RPM, "burst": 1.0}),
    Case("token bucket, 0.1 s burst", {"limiter": "token_bucket", "rpm": RPM, "burst": 0.1}),
    Case("token bucket, 60 s burst", {"limiter": "token_bucket", "rpm": RPM, "burst": 60.0}),
    Case("token bucket on tokens", {"limiter": "token_bucket", "tpm": TPM, "burst": 1.0}),
    Case("RPM and TPM buckets", {"limiter": "token_bucket", "rpm": RPM, "tpm": 4 * TPM}),
    Case("fixed 1 s window", {"limiter": "fixed", "rpm": RPM, "window": 1.0}),
    Case("sliding 1 s window", {"limiter": "sliding", "rpm": RPM, "window": 1.0}),
    Case("fixed 60 s window", {"limiter": "fixed", "rpm": RPM, "window": 60.0}, True),
    Case("sliding 60 s window", {"limiter": "sliding", "rpm": RPM, "window": 60.0}, True),
    Case("4 in flight, 429 beyond", {"max_in_flight": 4}, latency=0.2),
    Case("4 in flight, 503 beyond", {"max_in_flight": 4, "in_flight_status": 503}, latency=0.2),
)


def texts_for(n: int) -> list[str]:
    import random

    rng = random.Random(7)
    return [short_text(rng, i) for i in range(n)]


def allowed_texts_per_s(case: Case, texts: list[str]) -> float:
    """Texts per second the case's limiter sustains (the tightest of its limits)."""
    from embedsdk.testing._vectors import count_tokens  # the simulator's own count

    limits = case.limits
    rates = []
    if limits.get("rpm"):
        rates.append(limits["rpm"] / 60 * BATCH)
    if limits.get("tpm"):
        sample = texts[:: max(1, len(texts) // 500)]
        rates.append(limits["tpm"] / 60 / (sum(map(count_tokens, sample)) / len(sample)))
    if limits.get("max_in_flight"):
        rates.append(limits["max_in_flight"] * BATCH / (case.latency + JITTER / 2))
    return float(min(rates))


def measured_span(case: Case, seconds: float) -> tuple[float, float]:
    """The part of the run the figures count: after the warm-up, or three whole windows."""
    if case.minute_window:
        return 0.0, 3 * float(case.limits["window"])
    return min(WARM_UP, seconds / 3), seconds


def case_seconds(case: Case, quick: bool) -> float:
    if case.minute_window:
        return 3 * float(case.limits["window"]) + 5
    return 25.0 if quick else 60.0


# -- the contenders: each embeds until cancelled ---------------------------------------------


async def _ours(url: str, texts: list[str], case: Case, name: str) -> None:
    options: dict[str, Any] = {"adaptive": name != "fixed"}
    if name == "fixed":
        options["max_retries"] = 20  # plain retries get every chance to finish
    if name == "told":
        options.update({k: case.limits[k] for k in ("rpm", "tpm") if k in case.limits})
    in_flight = case.limits.get("max_in_flight", IN_FLIGHT) if name == "told" else IN_FLIGHT
    async with embedsdk.AsyncEmbedder(
        base_url=url, api_key="sk-bench", cache=False, batch_size=BATCH, **options
    ) as emb:
        await emb.embed(texts, max_concurrent=in_flight, errors="return")


async def _openai(url: str, texts: list[str], case: Case, name: str) -> None:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="sk-bench")  # its default retries (2)
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(part: list[str]) -> None:
        async with sem:
            await client.embeddings.create(model="BAAI/bge-m3", input=part)

    try:
        parts = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
        await asyncio.gather(*(one(p) for p in parts), return_exceptions=True)
    finally:
        await client.close()


def _contender(name: str) -> Callable[[str, list[str], Case, str], Awaitable[None]]:
    return _openai if name == "openai" else _ours


# -- running -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _servers(case: Case, names: list[str]) -> Iterator[dict[str, Any]]:
    """One fresh simulated provider (child process) per contender."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(
                runner.simulated_server(
                    latency=case.latency, jitter=JITTER, dim=DIM, timeline=True, **case.limits
                )
            )
            for name in names
        }


def figures(
    timeline: list[list[float]], allowed: float, span: tuple[float, float]
) -> dict[str, Any]:
    """Share of the allowance delivered and share of requests refused, over ``span``."""
    start, end = span
    inside = [(status, n) for t, status, n in timeline if start <= t < end]
    delivered = sum(n for _, n in inside)
    refused = sum(1 for status, _ in inside if status in (429, 503))
    return {
        "of_allowance": delivered / (allowed * (end - start)) if end > start else None,
        "refused_share": refused / len(inside) if inside else None,
        "requests": len(inside),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every case (JSON-able result; :func:`format_table` prints it)."""
    quick = bool(getattr(args, "quick", False))
    quiet = bool(getattr(args, "quiet", False))
    names = [c for c in CONTENDERS if available(c)]
    if getattr(args, "base_url", None):
        runner.log("adaptive: runs on the simulated provider only (--base-url ignored)", quiet)
    rows = []
    for base in CASES:
        case = base.scaled(quick)
        seconds = case_seconds(case, quick)
        texts = texts_for(int(allowed_texts_per_s(case, texts_for(500)) * seconds * 3) + 1000)
        allowed = allowed_texts_per_s(case, texts)
        runner.log(f"adaptive: {case.name}, {seconds:.0f} s, {', '.join(names)}", quiet)
        with _servers(case, names) as sims:
            asyncio.run(_timed_race(case, names, sims, texts, seconds))
            for name in names:
                timeline = sims[name].stats()["timeline"]
                row = figures(timeline, allowed, measured_span(case, seconds))
                rows.append({"case": case.name, "client": name, **row})
    return {
        "settings": {
            "latency_s": LATENCY,
            "jitter_s": JITTER,
            "batch_size": BATCH,
            "in_flight": IN_FLIGHT,
            "dim": DIM,
            "quick": quick,
            "clients": {name: CONTENDERS[name] for name in names},
        },
        "rows": rows,
    }


async def _timed_race(
    case: Case, names: list[str], sims: dict[str, Any], texts: list[str], seconds: float
) -> None:
    tasks = [
        asyncio.ensure_future(_contender(name)(sims[name].base_url, texts, case, name))
        for name in names
    ]
    try:
        await asyncio.sleep(seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["of_allowance"] is None:
        return "-"
    refused = row["refused_share"] or 0.0
    return f"{row['of_allowance'] * 100:.0f}% / {refused * 100:.1f}%"


def format_table(result: dict[str, Any]) -> str:
    """The printable table of :func:`run`'s result."""
    s = result["settings"]
    names = list(s["clients"])
    by = {(r["case"], r["client"]): r for r in result["rows"]}
    cases = list(dict.fromkeys(r["case"] for r in result["rows"]))
    headers = ["limit (not told)", *(s["clients"][n] for n in names), "adaptive >= plain"]
    rows = []
    for case in cases:
        ours, plain = by.get((case, "adaptive")), by.get((case, "fixed"))
        beats = None
        if ours and plain and ours["of_allowance"] is not None and plain["of_allowance"]:
            beats = ours["of_allowance"] >= plain["of_allowance"] * 0.98
        rows.append([case, *(_cell(by.get((case, n))) for n in names), report.yes_no(beats)])
    title = (
        f"Adaptive rate control: every kind of limit, {s['in_flight']} in flight, batch "
        f"{s['batch_size']}, latency {s['latency_s'] * 1000:g} ms (+ up to "
        f"{s['jitter_s'] * 1000:g} ms)"
        + (" (quick: per-minute windows of 10 s)" if s["quick"] else "")
    )
    note = (
        "Each cell: texts delivered, as a share of what the server's limiter allows / share of\n"
        "  requests refused (429, or 503 from the cap), read off the server's own timeline, after\n"
        "  the first 10 s (per-minute windows: over the first three windows, the first one's\n"
        "  whole allowance included). told: rpm= / tpm= given, or max_concurrent for a cap.\n"
        "  adaptive >= plain: within 2 % of adaptive=False or better."
    )
    return f"{title}\n{report.table(headers, rows)}\n{note}"
