"""The simulated provider's limiters, driven with explicit times, and the in-process
transport on a loop whose clock skips idle time (embedsdk.testing).

Private access: the limiters (``testing._limits``) are the unit of the first half, driven with
explicit times; the server shows them only through a clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

import embedsdk
from embedsdk.testing import (
    SimConfig,
    SimulatedTransport,
    VirtualTimeLoop,
    expected_matrix,
    run_in_virtual_time,
)
from embedsdk.testing._limits import (
    FixedWindow,
    InFlightCap,
    SlidingWindow,
    TokenBucket,
    allowance,
    make_limiter,
)


@pytest.fixture
def real_waits() -> Iterator[None]:
    """Sleep for real (in simulated time): the client's pacing and backoff are under test."""
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


def statuses(limiter: object, times: list[float], tokens: int = 1) -> list[str]:
    """'ok' or the refused limit's name, for one request at each time."""
    out = []
    for now in times:
        refusal = limiter.admit(now, tokens)  # type: ignore[attr-defined]
        out.append("ok" if refusal is None else refusal.which)
    return out


def test_allowance_is_per_minute_scaled_to_the_window() -> None:
    assert allowance(600, 60) == 600
    assert allowance(600, 1) == 10
    assert allowance(90, 1) == 1  # 1.5 per second rounds down, but one always gets through
    assert allowance(None, 1) is None


def test_token_bucket_refills_continuously_and_holds_its_burst() -> None:
    bucket = TokenBucket(rpm=600, tpm=None, burst=1.0)  # 10/s, holds 10
    assert statuses(bucket, [0.0] * 11) == ["ok"] * 10 + ["RPM"]
    assert statuses(bucket, [0.05, 0.1, 0.15, 0.2]) == ["RPM", "ok", "RPM", "ok"]
    refusal = bucket.admit(0.2, 1)
    assert refusal is not None and refusal.wait == pytest.approx(0.1)


def test_token_bucket_with_a_tenth_of_a_second_holds_one_request() -> None:
    bucket = TokenBucket(rpm=600, tpm=None, burst=0.1)
    assert statuses(bucket, [0.0, 0.0, 0.099, 0.2, 0.3]) == ["ok", "RPM", "RPM", "ok", "ok"]


def test_token_bucket_on_tokens_lets_a_large_request_go_into_debt() -> None:
    bucket = TokenBucket(rpm=None, tpm=6000, burst=1.0)  # 100 tokens/s, holds 100
    assert statuses(bucket, [0.0], tokens=250) == ["ok"]  # a full bucket takes it
    # 150 tokens of debt: 10 more fit only once 1.6 s of refill have paid it back.
    assert statuses(bucket, [1.0, 1.55, 1.65], tokens=10) == ["TPM", "TPM", "ok"]


def test_fixed_window_resets_all_at_once_at_the_boundary() -> None:
    window = FixedWindow(rpm=120, tpm=None, window=1.0)  # 2 per aligned second
    assert statuses(window, [0.1, 0.2, 0.9]) == ["ok", "ok", "RPM"]
    refusal = window.admit(0.95, 1)
    assert refusal is not None and refusal.wait == pytest.approx(0.05)
    assert statuses(window, [1.0, 1.01, 1.02]) == ["ok", "ok", "RPM"]


def test_sliding_window_frees_as_the_oldest_leaves() -> None:
    window = SlidingWindow(rpm=120, tpm=None, window=1.0)
    assert statuses(window, [0.1, 0.6, 0.9]) == ["ok", "ok", "RPM"]
    assert statuses(window, [1.05, 1.2]) == ["RPM", "ok"]  # 0.1 has left by 1.1, not 1.05


def test_tpm_windows_count_tokens() -> None:
    for limiter in (FixedWindow(None, 600, 1.0), SlidingWindow(None, 600, 1.0)):
        assert statuses(limiter, [0.0, 0.1, 0.2], tokens=4) == ["ok", "ok", "TPM"]  # 10 per s


def test_in_flight_cap() -> None:
    cap = InFlightCap(2)
    assert cap.enter() is None and cap.enter() is None
    refused = cap.enter()
    assert refused is not None and refused.which == "concurrency"
    cap.leave()
    assert cap.enter() is None


@pytest.mark.parametrize("kind", ["sliding", "fixed", "token_bucket"])
def test_headers_say_the_limit_what_is_left_and_the_reset(kind: str) -> None:
    limiter = make_limiter(kind, 600, 60_000, 60.0, 60.0)
    assert limiter is not None
    assert limiter.admit(0.0, 100) is None
    headers = limiter.headers(1.0)
    assert headers["x-ratelimit-limit-requests"] == "600"
    assert 598 <= int(headers["x-ratelimit-remaining-requests"]) <= 600  # a bucket refills
    assert headers["x-ratelimit-limit-tokens"] == "60000"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


def test_limiter_config_is_checked() -> None:
    with pytest.raises(ValueError, match="limiter"):
        SimConfig(limiter="leaky")
    with pytest.raises(ValueError, match="in_flight_status"):
        SimConfig(in_flight_status=500)
    with pytest.raises(ValueError, match="max_in_flight"):
        SimConfig(max_in_flight=0)
    config = SimConfig(limiter="token_bucket", burst=0.5, max_in_flight=3)
    assert SimConfig.from_mapping(json.loads(json.dumps(config.to_json()))) == config


def test_virtual_time_skips_sleeps() -> None:
    async def nap() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(3600)
        await asyncio.wait_for(asyncio.sleep(5), timeout=10)
        return loop.time() - start

    elapsed, simulated = run_in_virtual_time(nap())
    assert elapsed == pytest.approx(3605) and simulated == pytest.approx(3605)


def test_virtual_time_cancels_what_is_left_when_the_run_fails() -> None:
    """Ctrl-C (or any failure) stops the run: the tasks still pending are cancelled and
    their clean-up runs, as under asyncio.run, instead of being destroyed pending."""
    cleaned: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append("background")

    async def main() -> None:
        background = asyncio.ensure_future(forever())
        await asyncio.sleep(1)
        assert not background.done()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_in_virtual_time(main())
    assert cleaned == ["background"]


def test_virtual_time_cleans_up_though_a_task_raises_the_interrupt_again() -> None:
    """Ctrl-C lands in one task, which its callers see again as they are cancelled, and a
    clean-up starts another task: the cancelling goes on in rounds until nothing is left
    pending (closing the loop would destroy such tasks, with a warning for each)."""
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(name)

    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None  # as a task holding the interrupt does

    spawned: list[asyncio.Future[None]] = []

    async def spawns_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            spawned.append(asyncio.ensure_future(forever("started by a clean-up")))

    async def main() -> None:
        tasks = [asyncio.ensure_future(c) for c in (stubborn(), spawns_on_cancel())]
        tasks.append(asyncio.ensure_future(forever("background")))
        await asyncio.sleep(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_in_virtual_time(main())
    assert "background" in cleaned
    # cancelled in the next round (before its first step: it never ran), not left pending
    assert [task.cancelled() for task in spawned] == [True]


def test_virtual_time_still_waits_for_other_threads() -> None:
    async def off_loop() -> int:
        return await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2, 3])

    assert run_in_virtual_time(off_loop())[0] == 6
    loop = VirtualTimeLoop()
    loop.close()


def test_in_process_transport_runs_the_real_client_against_a_limit(real_waits: None) -> None:
    """A token bucket of 600 RPM, one second of burst: the client gets every vector, in
    about the time the limit needs, and the 429s were counted by the server."""
    texts = [f"text {i}" for i in range(400)]

    async def main() -> tuple[object, dict[str, object]]:
        sim = SimulatedTransport(
            dim=8, latency=0.05, rpm=600, limiter="token_bucket", track_texts=False
        )
        async with embedsdk.AsyncEmbedder(
            transport=sim, cache=False, batch_size=4, api_key="sk-test"
        ) as emb:
            vectors = await emb.embed(texts, max_concurrent=8)
        return vectors, sim.stats()

    (vectors, stats), seconds = run_in_virtual_time(main())
    assert (vectors == expected_matrix(texts, dim=8)).all()  # type: ignore[attr-defined]
    # 100 requests at 10 per second after a burst of 10: about 9 s of simulated time.
    assert 8.0 <= seconds <= 12.0
    assert stats["status"][200] == 100  # type: ignore[index]


def test_in_process_transport_faults_and_timeouts(real_waits: None) -> None:
    async def main() -> list[str]:
        seen = []
        for fault in ("reset", "hang"):
            sim = SimulatedTransport(dim=4, fault_rate=1.0, faults=(fault,), hang=30.0)
            async with embedsdk.AsyncEmbedder(
                transport=sim, cache=False, max_retries=0, timeout=1.0, api_key="sk-test"
            ) as emb:
                try:
                    await emb.embed(["a"])
                except embedsdk.APIConnectionError as exc:
                    seen.append(type(exc).__name__)
        return seen

    assert run_in_virtual_time(main())[0] == ["APIConnectionError", "APITimeoutError"]
