"""The real client against every kind of rate limit, in simulated time with real time's noise.

Each run is the whole core (AsyncEmbedder: batching, retries, the rate controller) against
the simulated provider's own limiters, served in-process (``SimulatedTransport``) on a loop
whose clock skips idle time (``run_in_virtual_time``): a minute of traffic in under a second
of CPU. ``TimingNoise()`` makes that time behave as a loaded machine's does (timers that fire
late, a CPU cost per request, jittered arrivals): a controller that relies on exact timers
passes in exact simulated time and fails here. The limits are never told to the client
unless a test says so.

Figures are for the **whole run, start included**, from the first request, as a user sees
them: what got through over what the limiter allowed in that time, and the share of
requests refused.

Private access: the progress bar's note and the server's own token count are read where a
test checks what a user is shown, or counts as the server does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

import embedsdk
from embedsdk import RateController, Tuning
from embedsdk.ratecontrol import VISIBLE_WAIT
from embedsdk.testing import (
    SimulatedTransport,
    TimingNoise,
    expected_matrix,
    run_in_virtual_time,
)
from embedsdk.testing._vectors import count_tokens

BATCH = 32
IN_FLIGHT = 16
LATENCY = 0.05
JITTER = 0.01
RPM = 600
SECONDS = 60.0

Log = list[tuple[float, int, int]]
#: This machine under load (see TimingNoise): every run here has its timing.
LOADED = TimingNoise()


@pytest.fixture(autouse=True)
def real_waits() -> Iterator[None]:
    """The client sleeps (in simulated time): its pacing is what is under test."""
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


def texts(n: int, tag: str = "") -> list[str]:
    """Short texts whose numbers have the same width throughout: tokens per text do not
    drift along the list (a token limit's allowance is counted over all of them)."""
    return [f"rate limit text {tag}{i:07d}: the quick brown fox jumps" for i in range(n)]


TOKENS_PER_TEXT = sum(map(count_tokens, texts(500))) / 500  # the server's count


class Run:
    """The server's timeline of one run: (seconds since its first request, status, texts
    embedded) of every request."""

    def __init__(self, log: Log) -> None:
        start = min(t for t, _, _ in log)
        self.log = [(t - start, status, n) for t, status, n in log]

    def texts(self, start: float, end: float) -> int:
        return sum(n for t, s, n in self.log if start <= t < end and s == 200)

    def refused(self, start: float, end: float) -> int:
        return sum(1 for t, s, _ in self.log if start <= t < end and s in (429, 503))

    def refused_share(self, start: float, end: float) -> float:
        sent = sum(1 for t, _, _ in self.log if start <= t < end)
        return self.refused(start, end) / max(1, sent)

    def busiest(self, span: float) -> int:
        """The most requests sent in any ``span`` seconds."""
        sent = sorted(t for t, _, _ in self.log)
        return max(sum(1 for u in sent[i:] if u < t + span) for i, t in enumerate(sent))


def latency(limits: dict[str, Any]) -> float:
    """Seconds the server takes per request: longer behind a cap on requests in flight (a
    slow model is why there is such a cap), so that the loop's own delays between an answer
    and the next request, which the noise makes a few milliseconds, cost a few per cent."""
    return 0.2 if limits.get("max_in_flight") else LATENCY


def allowed(limits: dict[str, Any], seconds: float) -> float:
    """The texts the server's limiter lets through in the first ``seconds`` from the first
    request (the tightest of its limits): a token bucket starts full; a window's allowance
    is whole in every window the run touches (a fixed window's first one starts ``phase``
    seconds before the first request); a cap answers ``max_in_flight`` at a time."""
    if limits.get("max_in_flight"):
        per_request = latency(limits) + JITTER / 2
        return float(limits["max_in_flight"] * BATCH / per_request * seconds)
    kind = limits["limiter"]
    rates = []
    for key, per in (("rpm", BATCH), ("tpm", 1 / TOKENS_PER_TEXT)):
        if not limits.get(key):
            continue
        per_second = limits[key] / 60
        if kind == "token_bucket":
            burst = max(1.0, per_second * limits.get("burst", 1.0))
            rates.append((per_second * seconds + burst) * per)
            continue
        window = limits["window"]
        allowance = max(1, int(limits[key] * window / 60 + 1e-9))
        start = limits.get("phase", 0.0) if kind == "fixed" else 0.0
        rates.append(allowance * math.ceil((seconds + start) / window) * per)
    return min(rates)


@functools.cache
def run(
    kind: str,
    adaptive: bool = True,
    noise: TimingNoise | None = LOADED,
    seconds: float = SECONDS,
    told: bool = False,
) -> Run:
    """The default client (16 requests in flight) against ``LIMITS[kind]`` for ``seconds``,
    embedding far more than that allows; ``adaptive=False``: plain retries instead;
    ``told``: the client is told the limiter's ``rpm`` / ``tpm``. Runs are kept: several
    tests judge one."""
    limits = LIMITS[kind]
    many = texts(int(allowed(limits, seconds) * 2) + 2000)
    options: dict[str, Any] = {"adaptive": adaptive}
    if told:
        options.update({key: limits[key] for key in ("rpm", "tpm") if key in limits})
    if adaptive:
        options["rate_controller"] = RateController()  # nothing learned by an earlier run
    else:
        options["max_retries"] = 20

    async def main() -> Log:
        await aligned()
        sim = SimulatedTransport(
            dim=4,
            latency=latency(limits),
            jitter=JITTER,
            track_texts=False,
            timeline=True,
            **limits,
        )
        async with embedsdk.AsyncEmbedder(
            transport=sim, api_key="sk-test", cache=False, batch_size=BATCH, **options
        ) as emb:
            call = asyncio.ensure_future(emb.embed(many, max_concurrent=IN_FLIGHT, errors="return"))
            done, _ = await asyncio.wait({call}, timeout=seconds + 0.5)
            if done:
                call.result()  # a call that failed meanwhile fails the test
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        return [tuple(x) for x in sim.stats(texts=False)["timeline"]]  # type: ignore[misc]

    random.seed(f"{kind}/{adaptive}/{told}")  # backoff's jitter: whatever ran before
    log, _ = run_in_virtual_time(main(), noise)
    return Run(log)


async def aligned() -> None:
    """Start on a round second of the loop's clock. The simulated clock starts at this
    machine's uptime, and the controller counts successes in bins aligned to its clock:
    without this, where the first request falls in a bin (and so the run) would change from
    one session to the next."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1000.0 - loop.time() % 1000.0)


def share(kind: str, got: Run, start: float = 0.0, end: float = SECONDS) -> float:
    """What got through in [start, end) of the run, over what the limiter allowed then."""
    limits = LIMITS[kind]
    before = allowed(limits, start) if start > 0 else 0.0
    return got.texts(start, end) / (allowed(limits, end) - before)


LIMITS: dict[str, dict[str, Any]] = {
    # token buckets of 600 requests a minute holding 1, 0.1, 10 and 60 s of it
    "b1": {"limiter": "token_bucket", "rpm": RPM, "burst": 1.0},
    "b01": {"limiter": "token_bucket", "rpm": RPM, "burst": 0.1},
    "b1/60": {"limiter": "token_bucket", "rpm": 60, "burst": 1.0},  # one request a second
    "b10": {"limiter": "token_bucket", "rpm": RPM, "burst": 10.0},
    "b60": {"limiter": "token_bucket", "rpm": RPM, "burst": 60.0},
    "tok": {"limiter": "token_bucket", "tpm": 150_000, "burst": 1.0},
    "both": {"limiter": "token_bucket", "rpm": RPM, "tpm": 600_000},
    # fixed windows, their periods starting before the first request
    "f1": {"limiter": "fixed", "rpm": RPM, "window": 1.0, "phase": 0.37},
    "f10": {"limiter": "fixed", "rpm": RPM, "window": 10.0, "phase": 3.7},
    "f60": {"limiter": "fixed", "rpm": RPM, "window": 60.0, "phase": 22.0},
    "s1": {"limiter": "sliding", "rpm": RPM, "window": 1.0},
    "s10": {"limiter": "sliding", "rpm": RPM, "window": 10.0},
    "s60": {"limiter": "sliding", "rpm": RPM, "window": 60.0},
    # windows of tokens: a second's holds 13 requests' tokens (and 0.4 of one more, which
    # whole requests cannot use, whoever sends), a minute's 335 requests'
    "s1tok": {"limiter": "sliding", "tpm": 360_000, "window": 1.0},
    "f60tok": {"limiter": "fixed", "tpm": 150_000, "window": 60.0, "phase": 22.0},
    # a cap on requests in flight, refused with a 429 or a 503
    "c429": {"max_in_flight": 4},
    "c503": {"max_in_flight": 4, "in_flight_status": 503},
    # the same, with hints: Retry-After, and x-ratelimit-* headers
    "b1+ra": {"limiter": "token_bucket", "rpm": RPM, "burst": 1.0, "retry_after": True},
    "b1+xr": {"limiter": "token_bucket", "rpm": RPM, "burst": 1.0, "ratelimit_headers": True},
    "f1+ra": {"limiter": "fixed", "rpm": RPM, "window": 1.0, "phase": 0.37, "retry_after": True},
    "f1+xr": {
        "limiter": "fixed",
        "rpm": RPM,
        "window": 1.0,
        "phase": 0.37,
        "ratelimit_headers": True,
    },
    "f60+ra": {
        "limiter": "fixed",
        "rpm": RPM,
        "window": 60.0,
        "phase": 22.0,
        "retry_after": True,
    },
}

#: What the kinds below reach short of the targets today, with TimingNoise(), whole run
#: (measured 2026-12-05 at cd7e119; the gaps are the controller's, named in each comment).
GAPS: dict[str, dict[str, float]] = {
    # A bucket holding a single request: 78.7 % of the limit (80-84 % with other noise
    # seeds). One of the first 17 requests gets through, so the first pace is a guess of
    # 1/s that doubles for 4 s; near the limit the noise brings two requests closer than
    # the bucket allows every few seconds (each refusal a cut): 78-85 % over the seeds.
    "b01": {"share": 0.75},
    # A bucket of tokens, with each request's real tokens known only after its answer: the
    # first wave alone is 12 refusals of about 400 requests; 5.6 % refused here (4.8-5.0 %
    # with other noise seeds), 97-99.6 % of the limit.
    "tok": {"refused": 0.06},
}
TARGETS = {"share": 0.90, "refused": 0.05, "first_10_s": 2 * IN_FLIGHT, "below_plain": 0.02}


def target(kind: str, name: str) -> float:
    return GAPS.get(kind, {}).get(name, TARGETS[name])


#: The kinds judged on whole runs (the rest serve the tests below).
KINDS = [kind for kind in LIMITS if kind not in ("b1/60", "s1tok", "f60tok")]


@pytest.mark.parametrize("kind", [*KINDS, "s1tok"])
def test_a_whole_run_reaches_the_limit_with_few_refusals(kind: str) -> None:
    """From the first request: at least 90 % of what the limiter allows, at most 5 % of the
    requests refused, and at most two refusals per request in flight in the first 10 s."""
    got = run(kind)
    assert share(kind, got) >= target(kind, "share")
    assert got.refused_share(0, SECONDS) <= target(kind, "refused")
    assert got.refused(0, 10) <= target(kind, "first_10_s")


@pytest.mark.parametrize("kind", [kind for kind in KINDS if "+" not in kind])
def test_never_below_plain_retries(kind: str) -> None:
    """Side by side with plain per-request retries (adaptive=False): as much delivered,
    within 2 % (retries that hammer a fixed window take every slot the moment it opens),
    with a fraction of the refusals."""
    adaptive, plain = run(kind), run(kind, adaptive=False)
    assert share(kind, adaptive) >= share(kind, plain) - target(kind, "below_plain")
    assert adaptive.refused_share(0, SECONDS) < plain.refused_share(0, SECONDS) / 2


PER_MINUTE = ["f60", "s60", "f60tok", "f60+ra"]


@pytest.mark.parametrize("kind", PER_MINUTE)
def test_windows_of_a_minute_over_five_minutes(kind: str) -> None:
    """The first window's allowance goes at once, and so does each later one's; over any
    run of three windows or more the client gets at least 90 % of what they allow, with few
    refusals once it has learnt their period (measured: 99.8-100 %, 0.2-0.4 % refused after
    the first two minutes)."""
    got = run(kind, seconds=300.0)
    for windows in (3, 4, 5):
        assert share(kind, got, 0, 60 * windows) >= 0.9
    per_window = allowed(LIMITS[kind], 1.0)  # one window's allowance
    assert got.texts(0, 5) >= 0.9 * per_window  # spent in the first seconds
    assert got.refused_share(120, 300) < 0.05


def after_an_earlier_run(kind: str, earlier: int, seconds: float) -> Run:
    """``earlier`` requests sent at once by another client (an earlier run, another process
    on the key: a controller of its own), then the default client for ``seconds``; one
    timeline from the earlier run's first request."""
    limits = LIMITS[kind]
    many = texts(int(allowed(limits, seconds) * 2) + 2000, "next")

    async def main() -> Log:
        await aligned()
        sim = SimulatedTransport(
            dim=4, latency=LATENCY, jitter=JITTER, track_texts=False, timeline=True, **limits
        )
        options: dict[str, Any] = {"transport": sim, "api_key": "sk-test", "cache": False}
        async with embedsdk.AsyncEmbedder(
            **options, batch_size=BATCH, rate_controller=RateController()
        ) as before:
            await before.embed(texts(earlier * BATCH, "before"), max_concurrent=IN_FLIGHT)
        async with embedsdk.AsyncEmbedder(
            **options, batch_size=BATCH, rate_controller=RateController()
        ) as emb:
            call = asyncio.ensure_future(emb.embed(many, max_concurrent=IN_FLIGHT, errors="return"))
            done, _ = await asyncio.wait({call}, timeout=seconds)
            if done:
                call.result()  # a call that failed meanwhile fails the test
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        return [tuple(x) for x in sim.stats(texts=False)["timeline"]]  # type: ignore[misc]

    random.seed(f"{kind}/{earlier}")
    log, _ = run_in_virtual_time(main(), LOADED)
    return Run(log)


@pytest.mark.parametrize("kind", ["s60", "f60"])
@pytest.mark.parametrize("earlier", [200, 375, 500])
def test_a_window_of_a_minute_partly_spent_before_the_run(kind: str, earlier: int) -> None:
    """A re-run soon after a run (or another process on the key) finds the window partly
    spent, and learns from its first cycle a period and an allowance that are not the
    window's. Its room is looked for a few requests more at a time, not one at a time, so
    that the next cycle's allowance, spent at once, meets room that frees at once. One at a
    time, the cycles of a sliding window alternated between half spent and whole: 77-99 %
    over five minutes (s60), 87 % (f60, 500 before). Measured now: 100 %, 1.3-1.6 %
    refused."""
    got = after_an_earlier_run(kind, earlier, 300.0)
    assert share(kind, got, 0, 300.0) >= 0.9
    assert got.refused_share(0, 300.0) < 0.05


#: Limits told to the client (rpm= / tpm=), among them a bucket of one request a second.
TOLD = ["b1", "b1/60", "f60", "s60", "tok"]


@pytest.mark.parametrize("kind", TOLD)
def test_a_told_limit_is_spread_evenly_and_never_refused(kind: str) -> None:
    """Told the server's own figure, the client is (almost) never refused, uses at least
    90 % of it, never sends more than the figure in any 60 s of the server's timeline, and
    never more than about half a second of it in any second (no burst of a minute's
    allowance). Measured: none refused, 99.2-99.3 %, 598 in the busiest minute of 600."""
    got = run(kind, seconds=130.0, told=True)
    limits = LIMITS[kind]
    assert got.refused_share(0, 130) < 0.01
    if "rpm" in limits:
        per_second = limits["rpm"] / 60 * BATCH  # texts: the figure, spread over the run
    else:
        per_second = limits["tpm"] / 60 / TOKENS_PER_TEXT
    assert got.texts(0, 130) >= 0.9 * per_second * 130
    if "rpm" in limits:
        assert got.busiest(60.0) <= limits["rpm"]
        assert got.busiest(1.0) <= limits["rpm"] / 60 * 1.5 + 1


def pinned_at_the_limit(noise: TimingNoise | None) -> Run:
    """A pacer told the limit and pinned there: exactly 10 requests a second, no margin, no
    learning, against a bucket of 10 a second that holds a single request."""

    async def main() -> Log:
        await aligned()
        controller = RateController(tuning=Tuning(spacing=1.0), learns=False)
        controller.follow(10.0, None)
        sim = SimulatedTransport(
            dim=4,
            latency=LATENCY,
            jitter=JITTER,
            track_texts=False,
            timeline=True,
            limiter="token_bucket",
            rpm=600,
            burst=0.1,
        )
        async with embedsdk.AsyncEmbedder(
            transport=sim, api_key="sk-test", cache=False, batch_size=8, rate_controller=controller
        ) as emb:
            call = asyncio.ensure_future(emb.embed(texts(8000), max_concurrent=16))
            await asyncio.sleep(30.0)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        return [tuple(x) for x in sim.stats(texts=False)["timeline"]]  # type: ignore[misc]

    log, _ = run_in_virtual_time(main(), noise)
    return Run(log)


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_a_sliding_window_on_a_busy_machine_is_spent_as_it_frees(seed: int) -> None:
    """A machine much busier than this one (timers up to 20 ms late, 100 ms one time in
    fifty): a burst that spends a window goes out unevenly, some requests a stall later
    than their turn, and a sliding window frees its room as unevenly a period later. The
    next burst follows the last one as the server saw it, and does not outrun the room
    (measured: 100 % with 3.7-4.6 % refused on these seeds; with Tuning.follow_burst off,
    up to 19 % refused; before it, each burst at once after a short wait, 70-96 %)."""
    got = run("s10", noise=TimingNoise.harsh(seed))
    assert share("s10", got) >= 0.95
    assert got.refused_share(0, SECONDS) <= 0.05


def test_the_noise_catches_a_pacer_that_relies_on_exact_timers() -> None:
    """In exact simulated time, requests spaced exactly at the limit all get through; with
    a loaded machine's timing they arrive a little early or late, and a bucket that holds a
    single request refuses many (measured 0 of 300, then 44 of 293)."""
    exact = pinned_at_the_limit(None)
    noisy = pinned_at_the_limit(LOADED)
    assert exact.refused_share(0, 30) <= 0.01
    assert noisy.refused_share(0, 30) >= 0.05


def test_a_told_rpm_is_never_exceeded() -> None:
    """rpm=600 told, against a server enforcing it over a sliding minute: over any 60 s of
    the server's timeline at most 600 requests, none refused, at most about half a second of
    the rate in any second, and the limit used."""

    async def main() -> Log:
        await aligned()
        sim = SimulatedTransport(
            dim=4,
            latency=LATENCY,
            jitter=JITTER,
            track_texts=False,
            timeline=True,
            limiter="sliding",
            rpm=600,
            window=60.0,
        )
        async with embedsdk.AsyncEmbedder(
            transport=sim, api_key="sk-test", cache=False, batch_size=8, rpm=600
        ) as emb:
            call = asyncio.ensure_future(emb.embed(texts(8 * 1500), max_concurrent=IN_FLIGHT))
            await asyncio.sleep(130.0)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        return [tuple(x) for x in sim.stats(texts=False)["timeline"]]  # type: ignore[misc]

    log, _ = run_in_virtual_time(main(), LOADED)
    got = Run(log)
    assert got.refused(0, 130) == 0
    assert got.busiest(60.0) <= 600
    assert got.busiest(1.0) <= 10 * 1.5 + 1
    assert got.texts(0, 130) >= 0.9 * 130 * 10 * 8


def test_the_learned_limit_is_shared_by_the_clients_of_one_account() -> None:
    """Two clients of one account: one controller, so together they stay under the limit."""

    async def main() -> Log:
        await aligned()
        sim = SimulatedTransport(
            dim=4,
            latency=LATENCY,
            jitter=JITTER,
            track_texts=False,
            timeline=True,
            **LIMITS["b1"],
        )
        many = texts(40_000)
        clients = [
            embedsdk.AsyncEmbedder(transport=sim, cache=False, batch_size=BATCH, api_key="sk-a")
            for _ in range(2)
        ]
        calls = [
            asyncio.ensure_future(c.embed(many[i::2], max_concurrent=8))
            for i, c in enumerate(clients)
        ]
        await asyncio.sleep(SECONDS)
        for call in calls:
            assert not call.done()
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        for client in clients:
            await client.aclose()
        return [tuple(x) for x in sim.stats(texts=False)["timeline"]]  # type: ignore[misc]

    log, _ = run_in_virtual_time(main(), LOADED)
    got = Run(log)
    assert got.texts(0, SECONDS) >= 0.9 * allowed(LIMITS["b1"], SECONDS)
    assert got.refused_share(0, SECONDS) <= 0.05
    assert got.refused(0, 10) <= 2 * 16


def test_every_vector_arrives_in_order_under_a_limit() -> None:
    many = texts(600)

    async def main() -> tuple[Any, float]:
        await aligned()
        loop = asyncio.get_running_loop()
        sim = SimulatedTransport(dim=4, latency=LATENCY, limiter="fixed", rpm=600, window=1)
        async with embedsdk.AsyncEmbedder(
            transport=sim, api_key="sk-test", cache=False, batch_size=8
        ) as emb:
            start = loop.time()
            return await emb.embed(many, max_concurrent=IN_FLIGHT), loop.time() - start

    (vectors, seconds), _ = run_in_virtual_time(main(), LOADED)
    assert (vectors == expected_matrix(many, dim=4)).all()
    assert seconds < 600 / 8 / 10 * 1.3  # 75 requests at 10 a second, and little more


# -- it can be seen ---------------------------------------------------------------------------


def minute_window(seconds: float, **options: Any) -> Run:
    """A fixed window of 60 requests a minute, spent at once: pauses of seconds."""

    async def main() -> Log:
        sim = SimulatedTransport(
            dim=4, latency=LATENCY, track_texts=False, timeline=True, rpm=60, limiter="fixed"
        )
        async with embedsdk.AsyncEmbedder(
            transport=sim, api_key="sk-test", cache=False, batch_size=8
        ) as emb:
            call = asyncio.ensure_future(emb.embed(texts(8000), max_concurrent=4, **options))
            await asyncio.sleep(seconds)
            assert not call.done()
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        return [tuple(x) for x in sim.stats(texts=False)["timeline"]]  # type: ignore[misc]

    random.seed(7)  # backoff's jitter: the same run whatever ran before
    log, _ = run_in_virtual_time(main())
    return Run(log)


def test_a_long_pause_is_logged_with_its_real_length(caplog: pytest.LogCaptureFixture) -> None:
    """The INFO line names the pause the workers really took, and the DEBUG retry lines say
    they waited for it (not "in 0.00 s")."""
    caplog.set_level(logging.DEBUG, logger="embedsdk")
    got = minute_window(130.0)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    paused = [m for m in infos if "paused" in m]
    assert len(paused) >= 2, infos
    assert all("answered 429 so far" in m for m in paused)
    # Each logged pause is one the requests really waited: the next request went that late
    # (but for the last, which the end of the run may cut short).
    sent = sorted(t for t, _, _ in got.log)
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    for message in paused[:-1]:
        seconds = float(message.split("paused ")[1].split(" s")[0])
        assert any(gap >= seconds - 0.051 for gap in gaps)  # the line rounds to 0.1 s
    retries = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retry")]
    assert retries and not any("in 0.00 s" in m for m in retries)
    assert any("after the shared pause" in m for m in retries)


def test_info_lines_follow_the_loops_clock_at_most_one_per_kind_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The INFO lines are spaced in the time the requests wait (simulated here, where 130 s
    pass in a fraction of a real second): a few of each kind, not one for the whole run."""
    caplog.set_level(logging.INFO, logger="embedsdk")
    minute_window(130.0)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    paused = [m for m in infos if "paused" in m]
    paced = [m for m in infos if "held back by the learned pace" in m]
    assert 2 <= len(paused) <= 130 / 10 + 1, infos
    assert len(paced) <= 130 / 10 + 1, infos


def test_the_progress_bar_says_what_holds_requests_back(monkeypatch: pytest.MonkeyPatch) -> None:
    notes: list[str] = []
    monkeypatch.setattr(
        "embedsdk.client._progress.Progress.note", lambda self, text: notes.append(text)
    )
    minute_window(90.0, progress=True)
    # Requests wait for a pause of seconds, or for the one request probing the wall (which
    # of the two shows first depends on the jitter): either way the bar says so, with the
    # learned pace and the 429s.
    held = [n for n in notes if "paused" in n or "probes the limit" in n]
    assert held and all("answered 429 so far" in n for n in held), notes


def test_quiet_until_a_wait_is_long(caplog: pytest.LogCaptureFixture) -> None:
    """A limit that only paces (no pause of seconds) logs nothing at INFO for short waits."""
    caplog.set_level(logging.INFO, logger="embedsdk")

    async def main() -> None:
        sim = SimulatedTransport(dim=4, latency=LATENCY, limiter="token_bucket", rpm=6000)
        async with embedsdk.AsyncEmbedder(
            transport=sim, api_key="sk-test", cache=False, batch_size=8
        ) as emb:
            call = asyncio.ensure_future(emb.embed(texts(40_000), max_concurrent=IN_FLIGHT))
            await asyncio.sleep(20.0)
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)

    run_in_virtual_time(main(), LOADED)
    assert not [r for r in caplog.records if "paused" in r.getMessage()]
    assert VISIBLE_WAIT >= 2.0
