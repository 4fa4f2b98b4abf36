"""The real client against every kind of rate limit, in simulated time.

Each run is the whole core (AsyncEmbedder: batching, retries, the rate controller) against
the simulated provider's own limiters, served in-process (``SimulatedTransport``) on a loop
whose clock skips idle time (``run_in_virtual_time``): minutes of traffic in a second or two
of CPU, the same on a loaded machine as on an idle one. The limits are never told to the
client unless a test says so. Shares are of what the server's limiter allows.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest

import embedsdk
from embedsdk import _adaptive
from embedsdk.testing import SimulatedTransport, expected_matrix, run_in_virtual_time
from embedsdk.testing._vectors import count_tokens

BATCH = 8
IN_FLIGHT = 16
LATENCY = 0.1
JITTER = 0.02


@pytest.fixture(autouse=True)
def real_waits() -> Iterator[None]:
    """The client sleeps (in simulated time): its pacing is what is under test."""
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


class Run:
    """What a client got from a server over ``seconds`` of simulated time."""

    def __init__(self, log: list[tuple[float, int, int]], allowed: float, seconds: float):
        self.log, self.allowed, self.seconds = log, allowed, seconds

    def share(self, start: float, end: float) -> float:
        """Texts delivered from requests sent in [start, end), over what the limit allows."""
        done = sum(n for t, _, n in self.log if start <= t < end)
        return done / (self.allowed * (end - start))

    def refused(self, start: float, end: float) -> float:
        """Share of the requests sent in [start, end) that were refused (429 or 503)."""
        statuses = [s for t, s, _ in self.log if start <= t < end]
        return sum(s in (429, 503) for s in statuses) / max(1, len(statuses))


def simulated(**fields: Any) -> SimulatedTransport:
    """The simulated provider, in-process, noting when each request came and how it went."""
    return SimulatedTransport(dim=4, latency=LATENCY, track_texts=False, timeline=True, **fields)


def timeline(sim: SimulatedTransport) -> list[tuple[float, int, int]]:
    """(seconds since the server started, status, texts embedded) of every request."""
    return [(t, status, n) for t, status, n in sim.stats(texts=False)["timeline"]]


def client(sim: SimulatedTransport, **options: Any) -> embedsdk.AsyncEmbedder:
    """The default client (adaptive, limit not told) on ``sim``, no cache."""
    return embedsdk.AsyncEmbedder(
        transport=sim, cache=False, batch_size=BATCH, api_key="sk-test", **options
    )


async def stop(call: asyncio.Future[Any]) -> None:
    """Cancel a call that is still running; a call that failed meanwhile fails the test."""
    if call.done():
        call.result()  # raises what stopped it
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)


def texts(n: int) -> list[str]:
    """Texts of about 30 tokens: a token limit of a second holds a few requests of them."""
    return [
        f"rate limit text {i}: " + "the quick brown fox jumps over the dog " * 2 for i in range(n)
    ]


def allowed_texts_per_second(limits: dict[str, Any]) -> float:
    """What the server's limits sustain, in texts per second (the tightest one)."""
    rates = []
    if limits.get("rpm"):
        rates.append(limits["rpm"] / 60 * BATCH)
    if limits.get("tpm"):
        sample = texts(10_000)[::100]  # the server's count, over texts like those sent
        per_text = sum(map(count_tokens, sample)) / len(sample)
        rates.append(limits["tpm"] / 60 / per_text)
    if limits.get("max_in_flight"):
        rates.append(limits["max_in_flight"] * BATCH / (LATENCY + JITTER / 2))
    return min(rates)


def run(limits: dict[str, Any], seconds: float, **options: Any) -> Run:
    """Embed far more than ``seconds`` can carry; stop after ``seconds``."""
    allowed = allowed_texts_per_second(limits)
    burst = (limits.get("burst") or 0) if limits.get("limiter") == "token_bucket" else 0
    many = texts(int(allowed * (seconds + burst + 60) * 1.2))

    async def main() -> list[tuple[float, int, int]]:
        sim = simulated(jitter=JITTER, **limits)
        async with client(sim, **options) as emb:
            call = asyncio.ensure_future(emb.embed(many, max_concurrent=IN_FLIGHT))
            await asyncio.sleep(seconds)
            await stop(call)
        return timeline(sim)

    log, _ = run_in_virtual_time(main())
    return Run(log, allowed, seconds)


PER_SECOND = {
    "token bucket, 1 s of burst": {"limiter": "token_bucket", "rpm": 300, "burst": 1.0},
    "token bucket, 0.1 s of burst": {"limiter": "token_bucket", "rpm": 300, "burst": 0.1},
    "token bucket, 60 s of burst": {"limiter": "token_bucket", "rpm": 300, "burst": 60.0},
    "token bucket on tokens": {"limiter": "token_bucket", "tpm": 60_000, "burst": 1.0},
    "RPM and TPM together": {"limiter": "token_bucket", "rpm": 300, "tpm": 90_000},
    "fixed 1 s window": {"limiter": "fixed", "rpm": 300, "window": 1.0},
    "sliding 1 s window": {"limiter": "sliding", "rpm": 300, "window": 1.0},
    # A window of a second holding about 14 requests' tokens (fewer, and whole requests no
    # longer fit it evenly: a few percent go to rounding, whoever sends).
    "sliding 1 s window on tokens": {"limiter": "sliding", "tpm": 240_000, "window": 1.0},
    "4 in flight, 429 beyond": {"max_in_flight": 4},
    "4 in flight, 503 beyond": {"max_in_flight": 4, "in_flight_status": 503},
}
PER_MINUTE = {
    "fixed 60 s window": {"limiter": "fixed", "rpm": 300, "window": 60.0},
    "sliding 60 s window": {"limiter": "sliding", "rpm": 300, "window": 60.0},
    "fixed 60 s window on tokens": {"limiter": "fixed", "tpm": 60_000, "window": 60.0},
}
HINTS = {"no hints": {}, "Retry-After": {"retry_after": True}}


@pytest.mark.parametrize("hints", list(HINTS))
@pytest.mark.parametrize("kind", list(PER_SECOND))
def test_per_second_limits_and_caps(kind: str, hints: str) -> None:
    """Within 10 s the client runs at >= 90 % of what the limiter allows, and in steady state
    fewer than 5 % of its requests are refused."""
    seconds = 40.0 if "in flight" in kind else 60.0
    got = run({**PER_SECOND[kind], **HINTS[hints]}, seconds)
    assert got.share(10, seconds) >= 0.9
    assert got.refused(10, seconds) < 0.05


@pytest.mark.parametrize("hints", list(HINTS))
@pytest.mark.parametrize("kind", list(PER_MINUTE))
def test_per_minute_windows(kind: str, hints: str) -> None:
    """The first window's allowance is used at once; over any run of three windows or more
    the client gets >= 90 % of the allowance, with few refusals once it has learnt."""
    got = run({**PER_MINUTE[kind], **HINTS[hints]}, 300.0)
    for windows in (3, 4, 5):
        assert got.share(0, 60 * windows) >= 0.9
    assert got.share(0, 5) > 5  # the first window's allowance, spent in the first seconds
    assert got.refused(120, 300) < 0.05


def test_rate_limit_headers_do_not_mislead() -> None:
    """x-ratelimit-* headers (the reset of a bucket is when it is full again, not when the
    next request fits) must not stall the client."""
    for kind in ("token bucket, 1 s of burst", "fixed 1 s window"):
        got = run({**PER_SECOND[kind], "ratelimit_headers": True}, 60.0)
        assert got.share(10, 60) >= 0.9 and got.refused(10, 60) < 0.05


@pytest.mark.parametrize(
    "kind", ["token bucket, 1 s of burst", "4 in flight, 429 beyond", "fixed 1 s window"]
)
def test_never_slower_than_without_adaptation(kind: str) -> None:
    """Side by side with plain per-request retries: as much delivered (within a few per cent:
    on a fixed window, retries that hammer it take every slot the moment a second begins,
    and where the boundaries fall against the run moves that by a per cent or two), with a
    fraction of the refusals."""
    adaptive = run(PER_SECOND[kind], 40.0)
    plain = run(PER_SECOND[kind], 40.0, adaptive=False, max_retries=50)
    assert adaptive.share(10, 40) >= plain.share(10, 40) - 0.04
    assert adaptive.refused(10, 40) < plain.refused(10, 40) / 5


@pytest.mark.parametrize(
    "kind",
    [
        {"limiter": "token_bucket", "rpm": 300, "burst": 1.0},
        {"limiter": "token_bucket", "rpm": 60, "burst": 1.0},  # one request a second
        {"limiter": "fixed", "rpm": 300, "window": 60.0},
        {"limiter": "sliding", "rpm": 300, "window": 60.0},
        {"limiter": "token_bucket", "tpm": 60_000, "burst": 1.0},
    ],
)
def test_a_told_limit_is_spread_evenly_and_never_refused(kind: dict[str, Any]) -> None:
    told = {k: kind[k] for k in ("rpm", "tpm") if k in kind}
    got = run(kind, 130.0, **told)
    assert got.refused(0, 130) < 0.01
    assert got.share(0, 130) >= 0.9
    # No burst of a minute's allowance: at most about half a second of it in any second.
    sent = sorted(t for t, _, _ in got.log)
    per_second = kind.get("rpm", 0) / 60 or got.allowed / BATCH
    busiest = max(sum(1 for u in sent if t <= u < t + 1) for t in sent)
    assert busiest <= per_second * 1.5 + 1


def test_the_learned_limit_is_shared_by_the_clients_of_one_account() -> None:
    """Two clients of one account: one controller, so together they stay under the limit."""

    async def main() -> list[tuple[float, int, int]]:
        sim = simulated(limiter="token_bucket", rpm=300)
        many = texts(4000)
        clients = [
            embedsdk.AsyncEmbedder(transport=sim, cache=False, batch_size=BATCH, api_key="sk-a")
            for _ in range(2)
        ]
        assert clients[0]._rate is clients[1]._rate
        calls = [
            asyncio.ensure_future(c.embed(many[i::2], max_concurrent=8))
            for i, c in enumerate(clients)
        ]
        await asyncio.sleep(60)
        for call in calls:
            await stop(call)
        for client in clients:
            await client.aclose()
        return timeline(sim)

    log, _ = run_in_virtual_time(main())
    got = Run(log, 300 / 60 * BATCH, 60)
    assert got.share(10, 60) >= 0.9 and got.refused(10, 60) < 0.05


def test_every_vector_arrives_in_order_under_a_limit() -> None:
    many = texts(600)

    async def main() -> Any:
        async with client(simulated(limiter="fixed", rpm=600, window=1)) as emb:
            return await emb.embed(many, max_concurrent=IN_FLIGHT)

    vectors, seconds = run_in_virtual_time(main())
    assert (vectors == expected_matrix(many, dim=4)).all()
    assert seconds < 600 / BATCH / 10 * 1.3  # 75 requests at 10 a second, and little more


# -- it can be seen -------------------------------------------------------------------------------


def test_a_long_pause_is_logged_with_its_real_length(caplog: pytest.LogCaptureFixture) -> None:
    """A fixed window of a minute, spent at once: the INFO line names the pause the workers
    really took, and the DEBUG retry lines say they waited for it (not "in 0.00 s")."""
    caplog.set_level(logging.DEBUG, logger="embedsdk")
    random.seed(7)  # backoff's jitter: the same run whatever ran before
    got = run({"limiter": "fixed", "rpm": 60, "window": 60.0}, 130.0)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    paused = [m for m in infos if "paused" in m]
    assert paused, infos
    assert all("answered 429 so far" in m for m in paused)
    # Each logged pause is one the requests really waited: the next request went that late.
    sent = sorted(t for t, _, _ in got.log)
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    for message in paused:
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
    random.seed(7)  # backoff's jitter: the same run whatever ran before
    run({"limiter": "fixed", "rpm": 60, "window": 60.0}, 130.0)
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
    many = texts(800)

    async def main() -> None:
        async with client(simulated(limiter="fixed", rpm=60, window=60)) as emb:
            call = asyncio.ensure_future(emb.embed(many, max_concurrent=4, progress=True))
            await asyncio.sleep(90)
            await stop(call)

    random.seed(7)  # backoff's jitter: the same run whatever ran before
    run_in_virtual_time(main())
    # Requests wait for a pause of seconds, or for the one request probing the wall (which
    # of the two shows first depends on the jitter): either way the bar says so, with the
    # learned pace and the 429s.
    held = [n for n in notes if "paused" in n or "probes the limit" in n]
    assert held and all("requests/min" in n and "answered 429 so far" in n for n in held), notes


def test_quiet_until_a_wait_is_long(caplog: pytest.LogCaptureFixture) -> None:
    """A limit that only paces (no pause of seconds) logs nothing at INFO for short waits."""
    caplog.set_level(logging.INFO, logger="embedsdk")
    run({"limiter": "token_bucket", "rpm": 6000, "burst": 1.0}, 20.0)
    assert not [r for r in caplog.records if "paused" in r.getMessage()]
    assert _adaptive.VISIBLE_WAIT >= 2.0
