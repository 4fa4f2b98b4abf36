"""``--scenario adaptive``: every kind of rate limit, the client not told it.

Each case is a simulated provider enforcing one kind of limit: a token bucket (requests or
tokens, with 0.1 s to 60 s of burst), a fixed or sliding window of 1 s or 60 s, or a cap on
requests in flight (429 or 503 beyond it); some cases also send ``Retry-After`` /
``retry-after-ms`` with each 429, or ``x-ratelimit-*`` headers. The contenders:

- ``embedsdk adaptive``: the default client (``adaptive=True``), limit not told;
- ``embedsdk adaptive=False``: the same client with plain per-request backoff;
- ``embedsdk told``: the default client told the limit (``rpm=`` / ``tpm=``; for a cap,
  ``max_concurrent``);
- ``openai-python``: ``AsyncOpenAI`` with its default retries and a semaphore.

Every contender embeds more texts than the time allows, 32 a request, 16 in flight, and is
stopped after the case's time. What the server answered is read off its own timeline: the
share of what its limiter allows that was delivered, and the share of requests refused (429,
or 503 from the cap), once the first 10 s are over (per-second limits, caps) or over the first
three windows (per-minute windows). Two tables:

- **simulated time**, deterministic: the embedsdk contenders, each through the real
  ``AsyncEmbedder`` against the simulator's own server code in-process
  (``SimulatedTransport``), on a loop whose clock skips idle time (``run_in_virtual_time``),
  as ``--scenario batch`` does. Every case at full length (60 s; 185 s for the per-minute
  windows), under ``--quick`` too: it takes a minute or two of CPU. A fixed window's first
  period starts with the run. The client's CPU is not modelled (its timers fire on time).
- **real time**: all four contenders at once on one event loop, each against its own
  simulator in a child process (openai-python can only be measured so). They share the
  machine's CPU: on a loaded machine late timers cost every contender some share, even the
  told one's even pace. ``--quick`` runs shorter cases and counts the per-minute windows
  over 10 s instead of 60 (same shape: "3 windows" is then 30 s); the cases with hints run
  in simulated time only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import random
import time
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
SIMULATED = ("adaptive", "fixed", "told")  # openai-python has no transport seam


@dataclasses.dataclass(frozen=True)
class Case:
    """A limit the server enforces (SimConfig fields); ``window`` set: a per-minute window."""

    name: str
    limits: dict[str, Any]
    minute_window: bool = False
    latency: float = LATENCY  # a cap's case answers slower: the cap, not the CPU, must bind
    real_time: bool = True  # False: in the simulated-time table only

    def scaled(self, quick: bool) -> Case:
        """For ``--quick``, a per-minute window counts over 10 s (same limit per second)."""
        if not (quick and self.minute_window):
            return self
        limits = {**self.limits, "window": 10.0}
        return dataclasses.replace(self, name=self.name.replace("60 s", "10 s"), limits=limits)

    @property
    def told_target(self) -> bool:
        """Whether a told limit must meet < 1 % of refusals here: the server enforces it as a
        token bucket of 1 s of burst or more, or as a per-minute window (issue 12)."""
        if self.minute_window:
            return True
        limits = self.limits
        if limits.get("limiter") != "token_bucket" or not (limits.get("rpm") or limits.get("tpm")):
            return False
        return float(limits.get("burst", 1.0)) >= 1.0  # SimConfig's default burst: 1 s

    def hinted(self, label: str, **hints: bool) -> Case:
        """This case with the server's hints on (simulated time only)."""
        limits = {**self.limits, **hints}
        return dataclasses.replace(
            self, name=f"{self.name} + {label}", limits=limits, real_time=False
        )


RPM = 600
TPM = 150_000
BUCKET = Case("token bucket, 1 s burst", {"limiter": "token_bucket", "rpm": RPM, "burst": 1.0})
ON_TOKENS = Case("token bucket on tokens", {"limiter": "token_bucket", "tpm": TPM, "burst": 1.0})
FIXED_1S = Case("fixed 1 s window", {"limiter": "fixed", "rpm": RPM, "window": 1.0})
SLIDING_60S = Case("sliding 60 s window", {"limiter": "sliding", "rpm": RPM, "window": 60.0}, True)
CAP_429 = Case("4 in flight, 429 beyond", {"max_in_flight": 4}, latency=0.2)
CASES = (
    BUCKET,
    Case("token bucket, 0.1 s burst", {"limiter": "token_bucket", "rpm": RPM, "burst": 0.1}),
    Case("token bucket, 60 s burst", {"limiter": "token_bucket", "rpm": RPM, "burst": 60.0}),
    ON_TOKENS,
    Case("RPM and TPM buckets", {"limiter": "token_bucket", "rpm": RPM, "tpm": 4 * TPM}),
    FIXED_1S,
    Case("sliding 1 s window", {"limiter": "sliding", "rpm": RPM, "window": 1.0}),
    Case("fixed 60 s window", {"limiter": "fixed", "rpm": RPM, "window": 60.0}, True),
    SLIDING_60S,
    CAP_429,
    Case("4 in flight, 503 beyond", {"max_in_flight": 4, "in_flight_status": 503}, latency=0.2),
    # The server's hints: Retry-After and retry-after-ms with each 429 (a cap's: 1 s), or
    # x-ratelimit-* headers on every answer (a limiter's only).
    *(c.hinted("Retry-After", retry_after=True) for c in (BUCKET, FIXED_1S, SLIDING_60S)),
    CAP_429.hinted("Retry-After", retry_after=True),
    *(c.hinted("x-ratelimit-*", ratelimit_headers=True) for c in (BUCKET, ON_TOKENS)),
    *(c.hinted("x-ratelimit-*", ratelimit_headers=True) for c in (FIXED_1S, SLIDING_60S)),
)


def texts_for(n: int) -> list[str]:
    """Short texts whose index has the same width throughout, so that tokens per text do
    not drift along the list (the allowance of a token limit is computed over all of it)."""
    rng = random.Random(7)
    return [short_text(rng, 1_000_000 + i) for i in range(n)]


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


def _texts_and_allowance(case: Case, seconds: float) -> tuple[list[str], float]:
    """Three times what the case allows in ``seconds`` (a token bucket's burst included),
    and its allowance in texts/s."""
    burst = case.limits.get("burst", 0.0) if case.limits.get("limiter") == "token_bucket" else 0
    allowed = allowed_texts_per_s(case, texts_for(500))
    texts = texts_for(int(allowed * (seconds + burst) * 3) + 1000)
    return texts, allowed_texts_per_s(case, texts)


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


# -- the contenders: each embeds until cancelled ---------------------------------------------


def _options(case: Case, name: str) -> tuple[dict[str, Any], int]:
    """An embedsdk contender's client options, and its requests in flight."""
    options: dict[str, Any] = {"adaptive": name != "fixed"}
    if name == "fixed":
        options["max_retries"] = 20  # plain retries get every chance to finish
    if name == "told":
        options.update({k: case.limits[k] for k in ("rpm", "tpm") if k in case.limits})
    in_flight = case.limits.get("max_in_flight", IN_FLIGHT) if name == "told" else IN_FLIGHT
    return options, in_flight


async def _embed(emb: embedsdk.AsyncEmbedder, texts: list[str], in_flight: int) -> None:
    """Embed ``texts``, failures returned; having them all is a fault of the bench."""
    result = await emb.embed(texts, max_concurrent=in_flight, errors="return")
    if result.ok.all():
        raise RuntimeError("adaptive bench: a contender ran out of texts, the figures are wrong")


async def _ours(url: str, texts: list[str], case: Case, name: str) -> None:
    options, in_flight = _options(case, name)
    async with embedsdk.AsyncEmbedder(
        base_url=url, api_key="sk-bench", cache=False, batch_size=BATCH, **options
    ) as emb:
        await _embed(emb, texts, in_flight)


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


async def _until(call: Awaitable[None], seconds: float) -> float | None:
    """Run ``call`` for ``seconds`` at most; ``None`` if it was still running (then
    cancelled), else after how many seconds it ended (it gave up: it cannot finish)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    finally:
        if not task.done():  # the time is up, or the bench was interrupted
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not done:
        return None
    task.result()  # a fault of the bench shows
    return loop.time() - start


# -- simulated time ----------------------------------------------------------------------------


@contextlib.contextmanager
def _real_waits(seed: str) -> Iterator[None]:
    """The client sleeps (in simulated time: its pacing is what is measured), and its
    backoff's jitter is the same from run to run; both restored afterwards."""
    from embedsdk._retry import is_testing

    was_testing, state = is_testing(), random.getstate()
    embedsdk.set_testing(False)
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
        embedsdk.set_testing(was_testing)


async def _period_start(case: Case) -> None:
    """Wait (no time at all in simulated time) until a fixed window's period has begun, so
    that the run's first three windows are three whole periods."""
    if case.limits.get("limiter") != "fixed":
        return
    window = float(case.limits["window"])
    now = asyncio.get_running_loop().time()
    await asyncio.sleep((-now) % window + 0.001)  # just past the boundary: never before it


def simulated_timeline(
    case: Case, name: str, seconds: float, texts: list[str]
) -> tuple[list[list[float]], float | None]:
    """The embedsdk contender ``name`` against ``case`` for ``seconds`` of simulated time:
    the server's timeline (seconds, status, texts embedded) of every request, and when the
    call gave up (``None``: it ran until stopped)."""
    from embedsdk import RateController
    from embedsdk.testing import SimulatedTransport, run_in_virtual_time

    options, in_flight = _options(case, name)

    async def main() -> tuple[list[list[float]], float | None]:
        await _period_start(case)
        sim = SimulatedTransport(
            latency=case.latency,
            jitter=JITTER,
            dim=DIM,
            track_texts=False,
            timeline=True,
            **case.limits,
        )
        controller: dict[str, Any] = {}
        if options["adaptive"]:  # a controller of its own: it learns from nothing
            controller["rate_controller"] = RateController()
        async with embedsdk.AsyncEmbedder(
            transport=sim,
            api_key="sk-bench",
            cache=False,
            batch_size=BATCH,
            **options,
            **controller,
        ) as emb:
            ended = await _until(_embed(emb, texts, in_flight), seconds)
        timeline: list[list[float]] = sim.stats(texts=False)["timeline"]
        return timeline, ended

    with _real_waits(seed=f"{case.name}/{name}"):
        found, _ = run_in_virtual_time(main())
    return found


def run_simulated(quiet: bool = False, cases: tuple[Case, ...] = CASES) -> dict[str, Any]:
    """Every case at full length, in simulated time, for the embedsdk contenders."""
    wall, cpu = time.perf_counter(), time.process_time()
    rows = []
    for case in cases:
        seconds = case_seconds(case, quick=False)
        texts, allowed = _texts_and_allowance(case, seconds)
        runner.log(f"adaptive, simulated time: {case.name}, {seconds:.0f} s", quiet)
        for name in SIMULATED:
            timeline, ended = simulated_timeline(case, name, seconds, texts)
            row = figures(timeline, allowed, measured_span(case, seconds))
            rows.append({"case": case.name, "client": name, **row, "ended_s": ended})
    settings = _settings(SIMULATED, quick=False, time_kind="simulated")
    settings.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)
    return {"settings": settings, "rows": rows, "verdicts": judge_all(cases, rows)}


# -- real time ---------------------------------------------------------------------------------


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


def run_real_time(quick: bool = False, quiet: bool = False) -> dict[str, Any]:
    """The real-time cases, all contenders at once, each against its own child process."""
    wall, cpu = time.perf_counter(), time.process_time()
    names = [c for c in CONTENDERS if available(c)]
    cases = [base.scaled(quick) for base in CASES if base.real_time]
    rows = []
    for case in cases:
        seconds = case_seconds(case, quick)
        texts, allowed = _texts_and_allowance(case, seconds)
        runner.log(f"adaptive, real time: {case.name}, {seconds:.0f} s, {', '.join(names)}", quiet)
        with _servers(case, names) as sims:
            ended = asyncio.run(_timed_race(case, names, sims, texts, seconds))
            for name in names:
                timeline = sims[name].stats()["timeline"]
                row = figures(timeline, allowed, measured_span(case, seconds))
                rows.append({"case": case.name, "client": name, **row, "ended_s": ended[name]})
    settings = _settings(names, quick=quick, time_kind="real")
    settings.update(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)
    return {"settings": settings, "rows": rows, "verdicts": judge_all(cases, rows)}


async def _timed_race(
    case: Case, names: list[str], sims: dict[str, Any], texts: list[str], seconds: float
) -> dict[str, float | None]:
    """Every contender at once for ``seconds``: when each gave up (``None``: it did not)."""
    calls = (_until(_contender(n)(sims[n].base_url, texts, case, n), seconds) for n in names)
    return dict(zip(names, await asyncio.gather(*calls)))


def _settings(names: Any, quick: bool, time_kind: str) -> dict[str, Any]:
    return {
        "latency_s": LATENCY,
        "jitter_s": JITTER,
        "batch_size": BATCH,
        "in_flight": IN_FLIGHT,
        "dim": DIM,
        "quick": quick,
        "time": time_kind,
        "clients": {name: CONTENDERS[name] for name in names},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both tables (JSON-able; :func:`format_table` prints them): simulated time, then real."""
    quiet = bool(getattr(args, "quiet", False))
    if getattr(args, "base_url", None):
        runner.log("adaptive: runs on the simulated provider only (--base-url ignored)", quiet)
    simulated = run_simulated(quiet)
    return {
        "simulated": simulated,
        "real_time": run_real_time(bool(getattr(args, "quick", False)), quiet),
    }


# -- verdicts and tables -----------------------------------------------------------------------


def judge(case: Case, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets of issue 12 for one case, from its rows by contender: adaptive >= 90 % of
    the allowance with < 5 % of requests refused, and within 2 % of ``adaptive=False`` or
    better; where :attr:`Case.told_target`, the told limit < 1 % refused."""
    misses = []
    ours, plain, told = rows.get("adaptive"), rows.get("fixed"), rows.get("told")
    share = None if ours is None else ours["of_allowance"]
    refused = None if ours is None else ours["refused_share"]
    if share is None or share < 0.9:
        misses.append(f"{report.pct(share)} < 90%")
    if refused is None or refused >= 0.05:
        misses.append(f"{_share(refused)} refused")
    if plain and plain["of_allowance"] and (share or 0.0) < plain["of_allowance"] * 0.98:
        misses.append("below plain")
    if case.told_target and told is not None and (told["refused_share"] or 0.0) >= 0.01:
        misses.append(f"told {_share(told['refused_share'])} refused")
    return {"case": case.name, "met": not misses, "misses": misses}


def judge_all(cases: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`judge` for each case of ``cases`` (in order) that has rows."""
    verdicts = []
    for case in cases:
        mine = {r["client"]: r for r in rows if r["case"] == case.name}
        if mine:
            verdicts.append(judge(case, mine))
    return verdicts


def targets_met(table: dict[str, Any]) -> bool:
    """Whether every case of one table (``run(...)["simulated"]``) met its targets."""
    return all(v["met"] for v in table["verdicts"])


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["of_allowance"] is None:
        return "-"
    cell = f"{row['of_allowance'] * 100:.0f}% / {_share(row['refused_share'])}"
    ended = row.get("ended_s")
    return cell if ended is None else f"{cell}, ended at {ended:.0f} s"


def _verdict_cell(verdict: dict[str, Any]) -> str:
    return "yes" if verdict["met"] else "NO: " + ", ".join(verdict["misses"])


def format_one(table: dict[str, Any]) -> str:
    """One table (simulated or real time) of :func:`run`'s result, printable."""
    s = table["settings"]
    names = list(s["clients"])
    by = {(r["case"], r["client"]): r for r in table["rows"]}
    headers = ["limit (not told)", *(s["clients"][n] for n in names), "targets"]
    rows = [
        [v["case"], *(_cell(by.get((v["case"], n))) for n in names), _verdict_cell(v)]
        for v in table["verdicts"]
    ]
    simulated = s["time"] == "simulated"
    title = (
        f"Adaptive rate control, {'simulated' if simulated else 'real'} time: every kind of "
        f"limit, {s['in_flight']} in flight, batch {s['batch_size']}, latency "
        f"{s['latency_s'] * 1000:g} ms (+ up to {s['jitter_s'] * 1000:g} ms)"
        + (" (quick: per-minute windows of 10 s)" if s["quick"] else "")
    )
    took = f"  This table took {s['wall_s']:.0f} s ({s['cpu_s']:.0f} s of CPU in this process)."
    return f"{title}\n{report.table(headers, rows)}\n{NOTE}\n{_TIME_NOTES[simulated]}\n{took}"


NOTE = (
    "Each cell: texts delivered, as a share of what the server's limiter allows / share of\n"
    "  requests refused (429, or 503 from the cap), read off the server's own timeline, after\n"
    "  the first 10 s (per-minute windows: over the first three windows, the first one's\n"
    "  whole allowance included). told: rpm= / tpm= given, or max_concurrent for a cap.\n"
    "  targets: adaptive >= 90 % with < 5 % refused, and within 2 % of adaptive=False or\n"
    "  better; told < 1 % refused where the server enforces the told limit as a token bucket\n"
    "  of >= 1 s of burst or as a per-minute window. ended at N s: the call returned before\n"
    "  the case's time was up (embedsdk: requests failed after all their retries and it gave\n"
    "  up; openai-python: it had been through every batch, failed ones included)."
)
_TIME_NOTES = {
    True: "  Simulated time: the real client against the simulator's own server code, in-process,\n"
    "  on a loop whose clock skips idle time; the same figures on any machine. The client's\n"
    "  CPU is not counted (its timers fire on time). A fixed window's first period starts\n"
    "  with the run.",
    False: "  Real time: all contenders at once on one event loop, each against its own simulator\n"
    "  in a child process, sharing the machine's CPU. On a loaded machine timers fire late\n"
    "  and every contender loses share, even the told one's even pace: read the simulated\n"
    "  table for the controller, this one for openai-python beside it. A fixed window starts\n"
    "  wherever the run falls: its first three windows may hold four periods' allowance.",
}


def format_table(result: dict[str, Any]) -> str:
    """Both tables of :func:`run`'s result, printable."""
    return "\n\n".join(format_one(result[k]) for k in ("simulated", "real_time") if k in result)
