"""``batch_size="auto"`` through the real core, in simulated time, and at every entry point.

The throughput runs are the whole client (AsyncEmbedder: batching, the rate controller,
retries) against the simulated provider served in-process (``SimulatedTransport``) on a loop
whose clock skips idle time (``run_in_virtual_time``), as in tests/test_rate_limits.py. The
server's latency grows with the batch (a fixed part and a part per input); the limits are not
told to the client. Throughput is read off the server's own timeline, and "auto" is judged
against the best of the fixed batch sizes run the same way: ratios, no wall clock.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import embedsdk
from embedsdk import (
    AsyncEmbedder,
    Embedder,
    MockTransport,
    RateController,
    Request,
    Response,
    Transport,
    estimate_tokens,
)
from embedsdk.testing import (
    SimulatedProvider,
    SimulatedTransport,
    expected_matrix,
    run_in_virtual_time,
)

FIXED = (20, 32, 64)
CAP = 64  # SiliconFlow's (provider="siliconflow"), the simulator's default max_batch too
LATENCY = 0.05  # seconds per request...
PER_INPUT = 0.002  # ...and per input in it: 0.09 s for 20, 0.178 s for 64
JITTER = 0.01
RPM = 600
TPM = 600_000


@pytest.fixture(autouse=True)
def real_waits() -> Any:
    """The client sleeps (in simulated time): its pacing is part of what is measured."""
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


def texts(n: int, start: int = 0) -> list[str]:
    """Texts of about 26 tokens each."""
    return [f"auto batch text {i}: the quick brown fox jumps over the dog" for i in range(n)]


class Quadratic(Transport):
    """A server whose latency grows faster than the batch: ``per_square × n²`` seconds more
    for a request of ``n`` inputs (padding, attention over long batches...)."""

    def __init__(self, inner: Transport, per_square: float) -> None:
        self.inner, self.per_square = inner, per_square

    async def send(self, request: Request) -> Response:
        n = len(json.loads(request.body)["input"])
        await asyncio.sleep(self.per_square * n * n)
        return await self.inner.send(request)


def rate(
    batch: int | str,
    limits: dict[str, Any],
    span: tuple[float, float],
    most: float,
    workers: int = 4,
    wrap: Callable[[Transport], Transport] = lambda t: t,
    provider: str = "siliconflow",
) -> float:
    """Texts per second delivered from requests sent within ``span`` (simulated seconds),
    the client embedding more than it can finish (``most`` texts per second) and stopped at
    the span's end."""
    start, end = span

    async def main() -> list[list[float]]:
        sim = SimulatedTransport(
            dim=4,
            latency=LATENCY,
            per_input=PER_INPUT,
            jitter=JITTER,
            track_texts=False,
            timeline=True,
            **limits,
        )
        async with AsyncEmbedder(
            transport=wrap(sim),
            cache=False,
            batch_size=batch,  # type: ignore[arg-type]
            api_key="sk-test",
            provider=provider,
            rate_controller=RateController(),  # nothing learned by an earlier run
        ) as emb:
            many = texts(int(most * end))
            call = asyncio.ensure_future(emb.embed(many, max_concurrent=workers))
            await asyncio.sleep(end)
            if call.done():
                call.result()  # it must not have finished (or failed) early
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        timeline: list[list[float]] = sim.stats(texts=False)["timeline"]
        return timeline

    timeline, _ = run_in_virtual_time(main())
    return sum(n for t, _, n in timeline if start <= t < end) / (end - start)


#: Each case: the server's limits, the span measured (after the limit is learned), and more
#: texts per second than any client could get there (4 slots: 4 x 64 / 0.178 s = 1,440).
LIMITS = {
    "no limit": ({}, (3.0, 12.0), 1600),
    "RPM": ({"limiter": "token_bucket", "rpm": RPM}, (10.0, 40.0), RPM / 60 * CAP * 1.2),
    "TPM": ({"limiter": "token_bucket", "tpm": TPM}, (10.0, 40.0), TPM / 60 / 20),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(LIMITS))
def test_auto_keeps_up_with_the_best_fixed_batch(case: str) -> None:
    limits, span, most = LIMITS[case]
    fixed = {b: rate(b, limits, span, most) for b in FIXED}
    auto = rate("auto", limits, span, most)
    assert auto >= 0.95 * max(fixed.values()), (auto, fixed)
    if case == "RPM":  # the limit counts requests: the cap's worth per request
        assert auto >= 0.9 * RPM / 60 * CAP
        assert auto >= 2.5 * fixed[20]


@pytest.mark.slow
def test_auto_goes_past_a_cap_that_is_only_a_guess_while_requests_bind() -> None:
    """A server whose cap the client does not know (the generic profile guesses 32) takes 64
    and refuses more with a 413; under a request limit, auto tries bigger batches, learns 64
    from the refusal, and carries nearly 64 texts per request, where 32 carries half."""
    limits = {"limiter": "token_bucket", "rpm": RPM}
    span, most = (10.0, 40.0), RPM / 60 * CAP * 1.2
    auto = rate("auto", limits, span, most, provider="generic")
    guess = rate(32, limits, span, most, provider="generic")
    assert auto >= 0.9 * RPM / 60 * CAP
    assert auto >= 1.8 * guess


@pytest.mark.slow
def test_auto_finds_the_size_when_latency_grows_faster_than_the_batch() -> None:
    """With latency 0.05 + 0.0025 n + 0.00005 n² seconds, 64 is not the best: about 32 is."""
    span = (10.0, 25.0)

    def wrap(t: Transport) -> Transport:
        return Quadratic(t, 0.00005)

    fixed = {b: rate(b, {}, span, 1000, wrap=wrap) for b in (20, 32, 48, 64)}
    auto = rate("auto", {}, span, 1000, wrap=wrap)
    assert max(fixed, key=fixed.__getitem__) not in (20, 64)
    assert auto >= 0.95 * max(fixed.values()), (auto, fixed)
    assert auto >= 1.1 * fixed[64]


# -- what auto leaves as it was ------------------------------------------------------------


def test_every_vector_in_order_with_duplicates_under_a_limit() -> None:
    unique = texts(3000)
    many = unique + unique[::7] + unique[:50]  # duplicates across the whole call

    async def main() -> tuple[Any, dict[str, Any]]:
        sim = SimulatedTransport(
            dim=4, latency=LATENCY, per_input=PER_INPUT, limiter="token_bucket", rpm=RPM
        )
        async with AsyncEmbedder(
            transport=sim,
            cache=False,
            batch_size="auto",
            api_key="sk-test",
            provider="siliconflow",
            rate_controller=RateController(),
        ) as emb:
            vectors = await emb.embed(many, max_concurrent=8)
        return vectors, sim.stats()

    (vectors, stats), _ = run_in_virtual_time(main())
    assert vectors.shape == (len(many), 4)
    assert (vectors == expected_matrix(many, dim=4)).all()
    sent = stats["batch_sizes"]
    assert sum(sent) == len(unique)  # each distinct text once
    assert max(sent) == CAP


def test_an_explicit_integer_sends_the_batches_it_always_did() -> None:
    """Fixed sizes are planned up front, by the planner's rule: consecutive texts, each batch
    as long as the size and the token budget allow (a text larger than the budget alone)."""
    many = [("long " * (i % 13 * 9)) + f"text {i}" for i in range(700)]
    seen: list[list[str]] = []

    def handle(request: Request) -> Response:
        inputs = request.json()["input"]
        seen.append(inputs)
        data = [{"index": i, "embedding": [1.0, 0.0]} for i in range(len(inputs))]
        return Response(200, {}, json.dumps({"data": data}).encode())

    with Embedder(
        base_url="http://127.0.0.1:9/v1",
        transport=MockTransport(handle),
        cache=False,
        max_batch_tokens=300,
    ) as emb:
        emb.embed(many, batch_size=17, max_concurrent=1)
    position = {t: i for i, t in enumerate(many)}
    got = [(position[b[0]], position[b[-1]] + 1) for b in seen]
    tokens = [estimate_tokens(t) for t in many]
    assert [start for start, _ in got] == [0, *(stop for _, stop in got[:-1])]  # in order
    assert got[-1][1] == len(many)  # every text, once
    for start, stop in got:
        used = sum(tokens[start:stop])
        assert stop - start <= 17 and (used <= 300 or stop - start == 1)
        if stop < len(many):  # as long as allowed: one more text breaks the size or budget
            assert stop - start == 17 or used + tokens[stop] > 300


def test_a_413_lowers_the_cap_auto_starts_from() -> None:
    many = texts(1000)

    async def main() -> tuple[Any, dict[str, Any], int]:
        sim = SimulatedTransport(dim=4, latency=LATENCY, max_batch=40)  # says 64 nowhere
        async with AsyncEmbedder(
            transport=sim, cache=False, batch_size="auto", api_key="", provider="siliconflow"
        ) as emb:
            vectors = await emb.embed(many, max_concurrent=4)
            return vectors, sim.stats(), emb.stats.splits

    (vectors, stats, splits), _ = run_in_virtual_time(main())
    assert (vectors == expected_matrix(many, dim=4)).all()
    sizes = stats["batch_sizes"]
    assert max(sizes) == 40 and sizes.count(40) >= 20
    assert 1 <= splits <= 4  # the workers' first batches, sent before the first 413 came back


def test_max_batch_tokens_still_bounds_every_request() -> None:
    many = [f"text {i} " + "word " * (i % 40) for i in range(600)]
    seen: list[int] = []

    def handle(request: Request) -> Response:
        inputs = request.json()["input"]
        seen.append(sum(map(estimate_tokens, inputs)) if len(inputs) > 1 else 0)
        data = [{"index": i, "embedding": [0.5, 0.5]} for i in range(len(inputs))]
        return Response(200, {}, json.dumps({"data": data}).encode())

    with Embedder(
        base_url="http://127.0.0.1:9/v1",
        transport=MockTransport(handle),
        cache=False,
        batch_size="auto",
        max_batch_tokens=250,
    ) as emb:
        assert emb.embed(many).shape == (600, 2)
    assert 0 < max(seen) <= 250


def test_the_cache_and_partial_results_work_as_with_a_fixed_size(tmp_path: Path) -> None:
    many = texts(400)
    bad = many[123]

    def handle(request: Request) -> Response:
        inputs = request.json()["input"]
        if bad in inputs:
            return Response(400, {}, b'{"code": 20015, "message": "bad input", "data": null}')
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(inputs)]
        return Response(200, {}, json.dumps({"data": data}).encode())

    options: dict[str, Any] = {
        "base_url": "http://127.0.0.1:9/v1",
        "transport": MockTransport(handle),
        "cache": str(tmp_path),
        "batch_size": "auto",
    }
    with Embedder(**options) as emb:
        result = emb.embed(many, errors="return", max_concurrent=3)
        assert not result.ok[123] and result.ok.sum() >= 400 - 32
        assert 123 in result.failed_indices
        assert np.isnan(result.vectors[123]).all()
        with pytest.raises(embedsdk.BadRequestError) as info:
            emb.embed(many)  # the failed batch again, the rest from the cache
        assert info.value.failed_indices is not None and 123 in info.value.failed_indices
        requests = emb.stats.requests
        good = [t for i, t in enumerate(many) if result.ok[i]]
        assert (emb.embed(good) == result.vectors[result.ok]).all()
        assert emb.stats.requests == requests  # every one from the cache


# -- every entry point ---------------------------------------------------------------------


@pytest.fixture
def sim(simulated_provider_factory: Any) -> SimulatedProvider:
    provider: SimulatedProvider = simulated_provider_factory(dim=8)
    return provider


def sizes_seen(sim: SimulatedProvider) -> list[int]:
    sizes: list[int] = sim.stats()["batch_sizes"]
    return sizes


def check(vectors: Any, many: list[str], sim: SimulatedProvider) -> None:
    assert (vectors == expected_matrix(many, dim=8)).all()
    assert max(sizes_seen(sim)) == CAP  # not the 20 of a fixed default


ENTRY_POINTS: dict[str, Callable[[list[str], dict[str, Any]], Any]] = {
    "get_batch_embeddings": lambda t, o: embedsdk.get_batch_embeddings(t, batch_size="auto", **o),
    "get_batch_embeddings_concurrent": lambda t, o: embedsdk.get_batch_embeddings_concurrent(
        t, 3, "auto", **o
    ),
    "get_batch_embeddings_async": lambda t, o: asyncio.run(
        embedsdk.get_batch_embeddings_async(t, 3, "auto", **o)
    ),
}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_module_functions_take_auto(name: str, sim: SimulatedProvider) -> None:
    many = texts(500)
    options = {"base_url": sim.base_url, "cache": False, "provider": "siliconflow"}
    check(ENTRY_POINTS[name](many, options), many, sim)


@pytest.mark.parametrize("where", ["client", "call"])
def test_embedder_takes_auto_per_client_and_per_call(where: str, sim: SimulatedProvider) -> None:
    many = texts(500)
    client = {"batch_size": "auto"} if where == "client" else {}
    call: dict[str, Any] = {"batch_size": "auto"} if where == "call" else {}
    with Embedder(base_url=sim.base_url, cache=False, provider="siliconflow", **client) as emb:
        check(emb.embed(many, **call), many, sim)
        check(emb.embed_threaded(many[:300], max_workers=2, **call), many[:300], sim)
        blocks = list(emb.embed_stream(iter(many), window=200, **call))
    assert [start for start, _ in blocks] == [0, 200, 400]
    check(np.concatenate([b for _, b in blocks]), many, sim)


@pytest.mark.parametrize("where", ["client", "call"])
def test_async_embedder_takes_auto_per_client_and_per_call(
    where: str, sim: SimulatedProvider
) -> None:
    many = texts(500)
    client = {"batch_size": "auto"} if where == "client" else {}
    call: dict[str, Any] = {"batch_size": "auto"} if where == "call" else {}

    async def main() -> None:
        async with AsyncEmbedder(
            base_url=sim.base_url, cache=False, provider="siliconflow", **client
        ) as emb:
            check(await emb.embed(many, **call), many, sim)
            blocks = [b async for b in emb.embed_stream(many, window=300, **call)]
        check(np.concatenate([b for _, b in blocks]), many, sim)

    asyncio.run(main())


def test_a_text_repeated_across_a_window_boundary_is_fetched_once_with_auto() -> None:
    """The stream's window borrowing, as in tests/test_stream.py, with batches cut as they go."""
    shared = [f"text {i}" for i in range(25)]
    many = [f"text {i}" for i in range(50)] + shared + [f"text {i}" for i in range(100, 125)]
    gates: list[asyncio.Event] = []  # made on the loop (Python 3.9 binds it at creation)
    inputs_seen: list[str] = []

    async def handle(request: Request) -> Response:
        gate = gates[0]
        inputs = request.json()["input"]
        if any(int(t.split()[1]) >= 100 for t in inputs):
            gate.set()  # window 1 is fetching its own texts: it planned while 0 was busy
        else:
            await asyncio.wait_for(gate.wait(), 10)  # never hang the suite
        inputs_seen.extend(inputs)
        data = [{"index": i, "embedding": [float(t.split()[1]), 1.0]} for i, t in enumerate(inputs)]
        return Response(200, {}, json.dumps({"data": data}).encode())

    async def main() -> list[Any]:
        gates.append(asyncio.Event())
        async with AsyncEmbedder(
            base_url="http://127.0.0.1:9/v1", transport=MockTransport(handle), cache=False
        ) as emb:
            return [
                (start, block.copy())
                async for start, block in emb.embed_stream(
                    many, window=50, batch_size="auto", max_concurrent=8
                )
            ]

    blocks = asyncio.run(main())
    got = np.concatenate([b for _, b in blocks])
    assert got[:, 0].tolist() == [float(t.split()[1]) for t in many]
    assert len(inputs_seen) == 75  # not 100: the 25 shared texts were paid for once


def test_bad_batch_sizes_are_refused_naming_the_option() -> None:
    for bad in (0, -1, "Auto", "big", 2.5, True):
        with pytest.raises(embedsdk.ConfigurationError, match=r'batch_size must be .* or "auto"'):
            AsyncEmbedder(base_url="http://127.0.0.1:9/v1", batch_size=bad)  # type: ignore[arg-type]
    emb = Embedder(base_url="http://127.0.0.1:9/v1", transport=MockTransport(lambda r: None))
    with emb, pytest.raises(embedsdk.ConfigurationError, match="got 'big'"):
        emb.embed(["a"], batch_size="big")  # type: ignore[call-overload]
    assert Embedder(base_url="http://127.0.0.1:9/v1", batch_size="auto").options.batch_size == (
        "auto"
    )


def test_the_command_line_takes_auto(
    sim: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedsdk import cli

    many = texts(1000)
    (tmp_path / "in.txt").write_text("\n".join(many) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    argv = ["embed", str(tmp_path / "in.txt"), "-o", str(out), "--base-url", sim.base_url]
    argv += ["--no-cache", "--provider", "siliconflow", "--batch-size", "auto", "-q"]
    assert cli.main(argv) == 0
    check(np.load(out), many, sim)
    with pytest.raises(SystemExit) as info:
        cli.main([*argv[:-3], "--batch-size", "two"])
    assert info.value.code == 2
    assert "--batch-size: expected a whole number or auto, got 'two'" in capsys.readouterr().err
