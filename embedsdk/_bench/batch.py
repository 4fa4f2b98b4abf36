"""``--scenario batch``: fixed batch sizes of 20, 32 and 64 against ``batch_size="auto"``.

The simulated provider answers a request of ``n`` texts after 50 ms + 2 ms × n (+ up to
10 ms of jitter), takes at most 64 inputs a request (SiliconFlow's cap), and enforces one of:

- a limit on **requests**: 2,000 a minute (SiliconFlow's lowest level), a token bucket;
- a limit on **tokens**: 500,000 a minute (the same level), a token bucket;
- **no limit**: the 8 requests in flight bind;
- no limit, and a latency that grows **faster than the batch** (+ 0.05 ms × n²): the best
  batch is then no longer the cap;
- a limit on requests (600 a minute) on a server whose **cap is not known** to the client
  (the generic profile, which guesses 32): the server takes 64 and answers 413 above.

No limit is told to the client: the adaptive rate control learns it, as it would on a real
account. Each contender embeds more texts than the time allows, 8 in flight, and is stopped
after the case's time; its texts per second are read off the server's own timeline, over the
time after the first 10 s (the limit learned).

It runs in **simulated time** (``embedsdk.testing.run_in_virtual_time``): the whole client
(``AsyncEmbedder``: batching, pacing, retries) against the simulator's own server code
(``SimServer``, the same that answers over HTTP), in-process, on a loop whose clock skips idle
time. What is measured is how the batch size meets the server's latency and limits, which
simulated time keeps exactly; what it leaves out is the client's CPU per request and per text
(measured by ``--scenario fast``), which a bigger batch only reduces. A 60 s case takes
seconds of CPU rather than a minute, and the figures do not depend on how loaded the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
from typing import Any, Literal

import embedsdk
from embedsdk import AsyncEmbedder, RateController
from embedsdk.http import Request, Response, Transport, is_testing
from embedsdk.testing import SimulatedTransport, run_in_virtual_time

from . import report, runner

LATENCY = 0.05  # seconds per request...
PER_INPUT = 0.002  # ...and per input
JITTER = 0.01
IN_FLIGHT = 8
CAP = 64
RPM = 2_000
TPM = 500_000
PER_SQUARE = 0.00005  # seconds per input squared, in the last case
WARM_UP = 10.0
FIXED = (20, 32, 64)
CONTENDERS: tuple[int | str, ...] = (*FIXED, "auto")


@dataclasses.dataclass(frozen=True)
class Case:
    """A server: its limits (SimConfig fields), and a latency part growing as n²."""

    name: str
    limits: dict[str, Any]
    per_square: float = 0.0
    # Its cap: 64; "generic": the cap is not known (a guess of 32).
    provider: Literal["siliconflow", "generic"] = "siliconflow"

    @property
    def counts_requests(self) -> bool:
        return bool(self.limits.get("rpm"))


CASES = (
    Case(f"RPM {RPM:,}", {"limiter": "token_bucket", "rpm": RPM}),
    Case(f"TPM {TPM:,}", {"limiter": "token_bucket", "tpm": TPM}),
    Case("no limit", {}),
    Case("no limit, latency + 0.05 ms x n^2", {}, PER_SQUARE),
    # A server whose cap is not known (the generic profile guesses 32): auto tries past it
    # while the requests bind, until the server refuses the size (413 above 64).
    Case("RPM 600, cap not known (64)", {"limiter": "token_bucket", "rpm": 600}, 0.0, "generic"),
)


class _Quadratic(Transport):
    """``per_square × n²`` seconds more before a request of ``n`` inputs is served."""

    def __init__(self, inner: Transport, per_square: float) -> None:
        self.inner, self.per_square = inner, per_square

    async def send(self, request: Request) -> Response:
        n = len(json.loads(request.body)["input"])
        await asyncio.sleep(self.per_square * n * n)
        return await self.inner.send(request)


def texts_for(n: int) -> list[str]:
    """Short texts (about 26 tokens each), all different."""
    return [f"batch bench text {i}: the quick brown fox jumps over the lazy dog" for i in range(n)]


def most_texts_per_s(case: Case) -> float:
    """More than any contender can embed per second in ``case`` (the 8 slots at the cap)."""
    return IN_FLIGHT * CAP / (LATENCY + PER_INPUT * CAP) * 1.2


def run_one(case: Case, batch: int | str, seconds: float, texts: list[str]) -> dict[str, Any]:
    """One contender against a fresh server: texts per second after the warm-up, and the
    median size of the requests answered then."""

    async def main() -> list[list[float]]:
        sim = SimulatedTransport(
            dim=64,
            latency=LATENCY,
            per_input=PER_INPUT,
            jitter=JITTER,
            max_batch=CAP,
            track_texts=False,
            timeline=True,
            **case.limits,
        )
        transport: Transport = _Quadratic(sim, case.per_square) if case.per_square else sim
        async with AsyncEmbedder(
            transport=transport,
            cache=False,
            batch_size=batch,  # type: ignore[arg-type]
            api_key="sk-bench",
            provider=case.provider,
            rate_controller=RateController(),  # learns this server's limit from nothing
        ) as emb:
            call = asyncio.ensure_future(emb.embed(texts, max_concurrent=IN_FLIGHT))
            await asyncio.sleep(seconds)
            if call.done():
                call.result()  # ran out of texts, or failed: the figure would be wrong
                raise RuntimeError("batch bench: the contender finished early")
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        timeline: list[list[float]] = sim.stats(texts=False)["timeline"]
        return timeline

    was_testing = is_testing()
    embedsdk.set_testing(False)  # the client sleeps (in simulated time): pacing is measured
    try:
        timeline, _ = run_in_virtual_time(main())
    finally:
        embedsdk.set_testing(was_testing)
    inside = [(status, n) for t, status, n in timeline if WARM_UP <= t < seconds]
    sizes = [n for status, n in inside if status == 200]
    return {
        "case": case.name,
        "batch": batch,
        "texts_per_s": sum(sizes) / (seconds - WARM_UP),
        "median_batch": statistics.median(sizes) if sizes else None,
        "refused_share": sum(s == 429 for s, _ in inside) / max(1, len(inside)),
    }


def judge(case: Case, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Auto as a share of the best fixed batch and, where requests are limited, of RPM × cap."""
    fixed = {r["batch"]: r["texts_per_s"] for r in rows if r["batch"] != "auto"}
    auto = next(r["texts_per_s"] for r in rows if r["batch"] == "auto")
    best = max(fixed, key=fixed.__getitem__)
    verdict: dict[str, Any] = {
        "case": case.name,
        "best_fixed": best,
        "auto_of_best": auto / fixed[best],
        "within_5_percent": auto >= 0.95 * fixed[best],
        "auto_of_rpm_cap": None,
    }
    if case.counts_requests:
        verdict["auto_of_rpm_cap"] = auto / (case.limits["rpm"] / 60 * CAP)
    return verdict


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case, every contender (JSON-able; :func:`format_table` prints it)."""
    quick = bool(getattr(args, "quick", False))
    quiet = bool(getattr(args, "quiet", False))
    seconds = 30.0 if quick else 60.0
    if getattr(args, "base_url", None):
        runner.log("batch: runs on the simulated provider only (--base-url ignored)", quiet)
    rows, verdicts = [], []
    for case in CASES:
        runner.log(f"batch: {case.name}, {seconds:.0f} s (simulated) each", quiet)
        texts = texts_for(int(most_texts_per_s(case) * seconds))
        found = [run_one(case, batch, seconds, texts) for batch in CONTENDERS]
        rows += found
        verdicts.append(judge(case, found))
    return {
        "settings": {
            "latency_s": LATENCY,
            "per_input_s": PER_INPUT,
            "jitter_s": JITTER,
            "in_flight": IN_FLIGHT,
            "cap": CAP,
            "seconds": seconds,
            "warm_up_s": WARM_UP,
            "time": "simulated",
        },
        "rows": rows,
        "verdicts": verdicts,
    }


def _cell(row: dict[str, Any], best: float) -> str:
    share = row["texts_per_s"] / best if best else 0.0
    return f"{row['texts_per_s']:,.0f} ({share * 100:.0f}%)"


def format_table(result: dict[str, Any]) -> str:
    """The printable table of :func:`run`'s result."""
    s = result["settings"]
    by: dict[tuple[str, Any], dict[str, Any]] = {(r["case"], r["batch"]): r for r in result["rows"]}
    headers = ["limit (not told)", *(f"batch {b}" for b in CONTENDERS), "auto's batch"]
    headers += ["auto / best fixed", "auto / RPM x 64"]
    lines = []
    for v in result["verdicts"]:
        case = v["case"]
        best = by[(case, v["best_fixed"])]["texts_per_s"]
        auto = by[(case, "auto")]
        cells = [_cell(by[(case, b)], best) for b in CONTENDERS]
        of_rpm = v["auto_of_rpm_cap"]
        lines.append(
            [
                case,
                *cells,
                f"{auto['median_batch']:g}" if auto["median_batch"] is not None else "-",
                f"{v['auto_of_best'] * 100:.1f}% " + report.yes_no(v["within_5_percent"]),
                "-" if of_rpm is None else f"{of_rpm * 100:.1f}% " + report.yes_no(of_rpm >= 0.9),
            ]
        )
    title = (
        f"Batch size: fixed against auto, {s['in_flight']} in flight, latency "
        f"{s['latency_s'] * 1000:g} ms + {s['per_input_s'] * 1000:g} ms per input (+ up to "
        f"{s['jitter_s'] * 1000:g} ms), cap {s['cap']}, {s['seconds']:.0f} s of simulated time each"
    )
    note = (
        "Each cell: texts per second delivered after the first "
        f"{s['warm_up_s']:.0f} s (read off the server's timeline),\n"
        "  and as a share of the best fixed batch. auto's batch: the median request it sent.\n"
        "  Targets: auto within 5 % of the best fixed batch; >= 90 % of RPM x 64 when the limit\n"
        "  counts requests."
    )
    return f"{title}\n{report.table(headers, lines)}\n{note}"
