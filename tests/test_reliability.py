"""Reliability under faults: nothing lost, nothing misplaced, failures named and kept.

The fault matrix runs every entry point against the simulated provider with each fault at a
20% rate (and all of them mixed) and checks every row against the provider's deterministic
vectors. Persistent and non-retryable failures, the ``errors="return"`` mode and sharing a
client between threads and tasks follow.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import (
    AsyncEmbedder,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    Embedder,
    EmbeddingResult,
    InsufficientQuotaError,
    InternalServerError,
    MockTransport,
    PermissionDeniedError,
    Request,
    Response,
)
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 16
MODEL = "BAAI/bge-m3"
FAULTS = ("500", "503", "reset", "hang", "malformed", "wrong_count", "shuffle")
QUICK_FAULTS = ("503", "reset", "malformed", "wrong_count")  # no hang: no waiting for timeouts
#: A hang lasts ten minutes: only the client's timeout ends it, and it is retried. The
#: timeout is far above any local answer, and no outcome depends on it, only the run time: an
#: answer later than that on a loaded machine would be retried like a hang. With a 20% fault
#: rate, 40 retries cannot all fail (0.2**41).
HANG = 600.0
FAST: dict[str, Any] = {"cache": False, "timeout": 0.5, "max_retries": 40}

Factory = Callable[..., SimulatedProvider]


def mixed_texts(n_unique: int = 800, n_repeats: int = 1200, seed: int = 7) -> list[str]:
    """Chinese, English and mixed texts of varied length, with repeats spread through."""
    rng = random.Random(seed)
    zh = ["今天", "天气", "很好", "向量", "嵌入", "模型", "缓存", "重试", "北京", "数据"]
    en = ["the", "weather", "is", "nice", "vector", "cache", "retry", "fast", "model", "data"]
    unique = []
    for i in range(n_unique):
        words = rng.choice((zh, en, zh + en))
        sep = "" if words is zh else " "
        unique.append(sep.join(rng.choice(words) for _ in range(rng.randint(1, 30))) + f" #{i}")
    texts = unique + [rng.choice(unique) for _ in range(n_repeats)]
    rng.shuffle(texts)
    return texts


TEXTS = mixed_texts()
EXPECTED = expected_matrix(TEXTS, MODEL, DIM)
N_UNIQUE = len(set(TEXTS))

# -- the entry points, each as f(texts, base_url, **call_options) ------------------------------


def _async_embedder(texts: list[str], url: str, **kw: Any) -> Any:
    async def run() -> Any:
        async with AsyncEmbedder(base_url=url, max_concurrent=8, batch_size=32, **FAST) as emb:
            return await emb.embed(texts, **kw)

    return asyncio.run(run())


def _embedder(texts: list[str], url: str, **kw: Any) -> Any:
    with Embedder(base_url=url, max_concurrent=8, batch_size=32, **FAST) as emb:
        return emb.embed(texts, **kw)


def _embedder_threaded(texts: list[str], url: str, **kw: Any) -> Any:
    with Embedder(base_url=url, batch_size=32, **FAST) as emb:
        return emb.embed_threaded(texts, max_workers=8, **kw)


def _serial(texts: list[str], url: str, **kw: Any) -> Any:
    return embedsdk.get_batch_embeddings(texts, batch_size=32, base_url=url, **FAST, **kw)


def _concurrent(texts: list[str], url: str, **kw: Any) -> Any:
    return embedsdk.get_batch_embeddings_concurrent(
        texts, max_workers=8, batch_size=32, base_url=url, **FAST, **kw
    )


def _async_function(texts: list[str], url: str, **kw: Any) -> Any:
    coro = embedsdk.get_batch_embeddings_async(
        texts, max_concurrent=8, batch_size=32, base_url=url, **FAST, **kw
    )
    return asyncio.run(coro)


def _stream(texts: list[str], url: str, **kw: Any) -> Any:
    assert not kw  # embed_stream raises on failure; it has no errors="return"
    with Embedder(base_url=url, max_concurrent=8, batch_size=32, **FAST) as emb:
        blocks = list(emb.embed_stream(iter(texts), window=400))
    assert [start for start, _ in blocks] == list(range(0, len(texts), 400))
    return np.vstack([block for _, block in blocks])


ENTRY_POINTS = {
    "AsyncEmbedder.embed": _async_embedder,
    "Embedder.embed": _embedder,
    "Embedder.embed_threaded": _embedder_threaded,
    "get_batch_embeddings": _serial,
    "get_batch_embeddings_concurrent": _concurrent,
    "get_batch_embeddings_async": _async_function,
    "Embedder.embed_stream": _stream,
}
RETURNING = [name for name in ENTRY_POINTS if name != "Embedder.embed_stream"]

#: What the fault matrix saw, for the summary printed at the end (``pytest -s``).
LEDGER: dict[str, int] = {"runs": 0, "texts": 0, "requests": 0, "faults": 0, "bad_rows": 0}


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if LEDGER["runs"]:
        print(f"\nfault matrix: {LEDGER}")


def _bad_rows(got: np.ndarray, expected: np.ndarray) -> int:
    """Rows lost (NaN, missing) or misplaced (another text's vector)."""
    if got.shape != expected.shape:
        return expected.shape[0]
    return int((~(got == expected).all(axis=1)).sum())


# -- the fault matrix -------------------------------------------------------------------------


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("fault", [*FAULTS, "mixed"])
def test_fault_matrix_returns_exactly_the_servers_vectors(
    simulated_provider_factory: Factory, fault: str, entry: str
) -> None:
    faults = FAULTS if fault == "mixed" else (fault,)
    seed = sorted(ENTRY_POINTS).index(entry) * 31 + len(fault)
    rate = 0.2
    if fault == "hang":
        # Each hang costs a timeout: few of them. The draws are seeded, so this rate and
        # these seeds give every entry point one or two hangs (checked below).
        rate, seed = 0.05, seed + 129
    sim = simulated_provider_factory(dim=DIM, fault_rate=rate, faults=faults, hang=HANG, seed=seed)

    got = ENTRY_POINTS[entry](TEXTS, sim.base_url)

    stats = sim.stats()
    bad = _bad_rows(got, EXPECTED)
    LEDGER["runs"] += 1
    LEDGER["texts"] += len(TEXTS)
    LEDGER["requests"] += stats["requests"]
    LEDGER["faults"] += sum(stats["faults"].values())
    LEDGER["bad_rows"] += bad
    assert bad == 0
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert sum(stats["faults"].values()) > 0, "the faults must have happened"
    if fault == "hang":
        assert stats["faults"]["hang"] >= 1
    # Every text was served, and the duplicates were never sent on their own.
    assert set(stats["texts"]) == set(TEXTS)
    assert sum(stats["batch_sizes"]) >= N_UNIQUE


# -- persistent failures ----------------------------------------------------------------------


class Server:
    """A MockTransport handler: the simulated provider's vectors, with chosen failures.

    ``fail(request_texts)`` returns ``(status, body)`` for a request to refuse, else None.
    """

    def __init__(self, fail: Callable[[list[str]], tuple[int, dict[str, Any]] | None]) -> None:
        self.fail = fail
        self.requests: list[list[str]] = []

    def __call__(self, request: Request) -> Response:
        payload = request.json()
        texts = payload["input"]
        self.requests.append(texts)
        refusal = self.fail(texts)
        if refusal is not None:
            status, body = refusal
            return Response(status, {}, json.dumps(body).encode())
        matrix = expected_matrix(texts, payload["model"], DIM)
        data = [
            {"index": i, "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode()}
            for i, row in enumerate(matrix)
        ]
        return Response(200, {}, json.dumps({"data": data}).encode())

    @property
    def inputs(self) -> int:
        return sum(map(len, self.requests))


def _poisoned(marker: str, status: int, body: dict[str, Any]) -> Server:
    return Server(lambda texts: (status, body) if any(marker in t for t in texts) else None)


OVERLOADED = {"code": 50505, "message": "Model service overloaded. Please try again later."}
TEXTS_200 = [f"text {i} 文本" for i in range(200)]
TEXTS_200[105] = "POISON 105"


def test_retries_exhausted_names_the_inputs_and_keeps_what_arrived_in_the_cache() -> None:
    server = _poisoned("POISON", 503, OVERLOADED)
    options: dict[str, Any] = {"base_url": "http://127.0.0.1:9/v1", "batch_size": 10}

    emb = Embedder(transport=MockTransport(server), max_retries=3, max_concurrent=1, **options)
    with emb, pytest.raises(InternalServerError) as caught:
        emb.embed(TEXTS_200)

    exc = caught.value
    text = str(exc)
    assert "inputs 100..109" in text and "gave up after 4 attempts" in text
    assert "Model service overloaded" in text and "503" in text
    assert "100 inputs have no vector (inputs 100..199)" in text
    assert exc.batch_indices == list(range(100, 110))
    assert exc.failed_indices == list(range(100, 200))
    assert sum("POISON 105" in batch for batch in server.requests) == 4  # 1 try + 3 retries
    expected = expected_matrix(TEXTS_200, MODEL, DIM)
    assert np.array_equal(exc.partial[:100], expected[:100])
    assert np.isnan(exc.partial[100:]).all()

    # The 100 rows that arrived are in the cache: a re-run asks only for the rest.
    healthy = Server(lambda texts: None)
    with Embedder(transport=MockTransport(healthy), **options) as emb:
        again = emb.embed(TEXTS_200)
    assert healthy.inputs == 100
    assert np.array_equal(again, expected)


def test_a_400_names_the_input_and_the_providers_message_and_is_not_retried() -> None:
    texts = [f"text {i}" for i in range(100)]
    texts[45] = "BAD 45"
    body = {"code": 20015, "message": "The parameter is invalid: xyz-42"}
    server = _poisoned("BAD", 400, body)
    with (
        Embedder(
            transport=MockTransport(server), base_url="http://127.0.0.1:9/v1", batch_size=10
        ) as emb,
        pytest.raises(BadRequestError) as caught,
    ):
        emb.embed(texts)
    text = str(caught.value)
    assert "The parameter is invalid: xyz-42" in text and "request for input 45)" in text
    assert "gave up" not in text
    assert caught.value.batch_indices == [45]
    # Its batch, then smaller and smaller parts holding it (split, never the same again).
    holding = [len(batch) for batch in server.requests if "BAD 45" in batch]
    assert holding == sorted(set(holding), reverse=True) and holding[-1] == 1


def test_401_fails_on_the_first_request_and_names_the_argument(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(dim=DIM, api_key="the-right-key")
    with pytest.raises(AuthenticationError) as caught:
        embedsdk.get_batch_embeddings(
            TEXTS[:200], base_url=sim.base_url, api_key="a-wrong-key-0451", cache=False
        )
    assert sim.stats()["requests"] == 1
    assert "api_key argument" in str(caught.value)
    assert "a-wrong-key-0451" not in str(caught.value)


def test_401_with_concurrency_sends_no_more_than_the_first_wave(
    simulated_provider_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", "a-wrong-key-0452")
    sim = simulated_provider_factory(dim=DIM, api_key="the-right-key")
    emb = Embedder(base_url=sim.base_url, cache=False, max_concurrent=4)
    with emb, pytest.raises(AuthenticationError) as caught:
        emb.embed(TEXTS)
    assert sim.stats()["requests"] <= 4  # those already in flight; no retry, no next batch
    assert "environment variable EMBEDSDK_API_KEY" in str(caught.value)
    assert "a-wrong-key-0452" not in str(caught.value)


def test_403_says_where_the_key_came_from() -> None:
    server = Server(lambda texts: (403, {"message": "account not verified"}))
    with (
        Embedder(
            transport=MockTransport(server),
            base_url="http://127.0.0.1:9/v1",
            api_key="a-wrong-key-0453",
            max_concurrent=1,
        ) as emb,
        pytest.raises(PermissionDeniedError) as caught,
    ):
        emb.embed(["a", "b"])
    assert len(server.requests) == 1
    assert "api_key argument" in str(caught.value) and "account not verified" in str(caught.value)


def test_insufficient_quota_fails_fast(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM, insufficient_quota=True)
    with pytest.raises(InsufficientQuotaError):
        embedsdk.get_batch_embeddings(TEXTS[:300], base_url=sim.base_url, max_retries=10)
    assert sim.stats()["requests"] == 1


# -- errors="return": partial results instead of an exception ---------------------------------


@pytest.mark.parametrize("entry", RETURNING)
def test_errors_return_keeps_going_and_returns_the_mask_and_the_errors(
    simulated_provider_factory: Factory, entry: str
) -> None:
    # The simulated provider answers an input over max_input_tokens with a permanent 500
    # ("input is too large to process"): that batch fails, the others must arrive.
    sim = simulated_provider_factory(
        dim=DIM, max_input_tokens=200, fault_rate=0.2, faults=QUICK_FAULTS, seed=3
    )
    texts = list(TEXTS[:1000])
    long_at = [17, 500, 998]
    for i in long_at:
        texts[i] = f"long {i} " + "词" * 400
    result = ENTRY_POINTS[entry](texts, sim.base_url, errors="return")

    assert isinstance(result, EmbeddingResult)
    expected = expected_matrix(texts, MODEL, DIM)
    failed = result.failed_indices
    assert set(long_at) <= set(failed)
    assert len(result.errors) == 3  # one per batch with a long text
    assert len({texts[i] for i in failed}) <= 3 * 32  # those batches only
    assert np.array_equal(result.vectors[result.ok], expected[result.ok])
    assert np.isnan(result.vectors[~result.ok]).all()
    for exc in result.errors:
        assert isinstance(exc, InternalServerError) and "too large" in str(exc)
        assert exc.failed_indices and exc.batch_indices
    assert sorted(i for exc in result.errors for i in exc.failed_indices or []) == failed
    assert result.error_for(500) is not None and result.error_for(result.ok.argmax()) is None
    with pytest.raises(InternalServerError):
        result.raise_for_errors()


@pytest.mark.parametrize("entry", RETURNING)
def test_errors_return_with_everything_in_order_has_no_errors(
    simulated_provider_factory: Factory, entry: str
) -> None:
    sim = simulated_provider_factory(dim=DIM, fault_rate=0.2, faults=QUICK_FAULTS, seed=5)
    result = ENTRY_POINTS[entry](TEXTS[:600], sim.base_url, errors="return")
    assert result.ok.all() and result.errors == [] and result.failed_indices == []
    assert np.array_equal(result.vectors, EXPECTED[:600])
    result.raise_for_errors()  # nothing to raise


def test_errors_return_a_401_stops_the_sending_and_is_returned(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(dim=DIM, api_key="the-right-key")
    result = embedsdk.get_batch_embeddings(
        TEXTS[:300], base_url=sim.base_url, api_key="wrong", errors="return"
    )
    assert sim.stats()["requests"] == 1
    assert not result.ok.any() and result.vectors.shape == (300, 1024)  # bge-m3's dimension
    assert np.isnan(result.vectors).all()
    (exc,) = result.errors
    assert isinstance(exc, AuthenticationError) and exc.failed_indices == list(range(300))


def test_errors_return_with_retries_exhausted_and_duplicates() -> None:
    texts = [f"t{i % 50}" for i in range(200)]  # 50 unique, each four times
    server = _poisoned("t7", 503, OVERLOADED)
    with Embedder(
        transport=MockTransport(server),
        base_url="http://127.0.0.1:9/v1",
        batch_size=5,
        max_retries=2,
    ) as emb:
        result = emb.embed(texts, errors="return")
    (exc,) = result.errors
    failed = [i for i, t in enumerate(texts) if t in {f"t{j}" for j in range(5, 10)}]
    assert exc.failed_indices == failed == result.failed_indices
    assert "gave up after 3 attempts" in str(exc)
    expected = expected_matrix(texts, MODEL, DIM)
    assert np.array_equal(result.vectors[result.ok], expected[result.ok])


# -- storms: a call that keeps going stops sending when every request fails one way ------------

STORM_NOTE = "requests in a row failed this way after all their retries"


def test_a_500_storm_stops_a_serial_call_after_two_requests_gave_up(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(dim=DIM, fault_rate=1.0, faults=("500",))
    texts = TEXTS_200
    result = embedsdk.get_batch_embeddings(
        texts, base_url=sim.base_url, batch_size=20, max_retries=3, cache=False, errors="return"
    )
    assert sim.stats()["requests"] == 2 * 4  # two batches with their retries, then no more
    assert not result.ok.any() and np.isnan(result.vectors).all()
    first, storm = result.errors
    assert STORM_NOTE not in str(first) and first.failed_indices == list(range(20))
    assert "2 " + STORM_NOTE in str(storm) and "its other batches were not sent" in str(storm)
    assert isinstance(storm, InternalServerError) and storm.batch_indices == list(range(20, 40))
    assert storm.failed_indices == list(range(20, 200))  # its batch and the unsent ones


@pytest.mark.parametrize("entry", ["AsyncEmbedder.embed", "Embedder.embed_threaded"])
def test_a_storm_costs_one_round_of_retries_not_one_per_batch(
    simulated_provider_factory: Factory, entry: str
) -> None:
    sim = simulated_provider_factory(dim=DIM, fault_rate=1.0, faults=("503",))
    texts = [f"storm {i}" for i in range(2_000)]  # 100 batches
    options: dict[str, Any] = {"base_url": sim.base_url, "cache": False, "batch_size": 20}
    if entry == "AsyncEmbedder.embed":

        async def run() -> Any:
            async with AsyncEmbedder(max_concurrent=5, **options) as emb:
                return await emb.embed(texts, errors="return")

        result = asyncio.run(run())
    else:
        with Embedder(**options) as emb:
            result = emb.embed_threaded(texts, max_workers=5, errors="return")
    requests = sim.stats()["requests"]
    # Before: 100 batches x 7 attempts. Now the first 5 in flight, and one or two that a
    # freed worker started before the second gave up, each with its 7 attempts.
    assert 2 * 7 <= requests <= 8 * 7
    assert not result.ok.any()
    assert any(STORM_NOTE in str(exc) for exc in result.errors)
    assert sorted(i for exc in result.errors for i in exc.failed_indices or []) == list(
        range(2_000)
    )


def test_a_short_outage_does_not_stop_the_call() -> None:
    calls = {"n": 0}

    def down_for_six(texts: list[str]) -> tuple[int, dict[str, Any]] | None:
        calls["n"] += 1
        return (503, OVERLOADED) if calls["n"] <= 6 else None

    server = Server(down_for_six)
    with Embedder(
        transport=MockTransport(server),
        base_url="http://127.0.0.1:9/v1",
        batch_size=20,
        max_retries=3,
        max_concurrent=1,
        cache=False,
    ) as emb:
        result = emb.embed(TEXTS_200, errors="return")
    # Batch 1 gave up after 4 attempts; batch 2 got through on its third: the run was broken.
    (exc,) = result.errors
    assert exc.failed_indices == list(range(20)) and STORM_NOTE not in str(exc)
    assert result.ok[20:].all() and len(server.requests) == 6 + 9


def test_random_faults_with_few_retries_lose_single_batches_but_never_trip_the_breaker(
    simulated_provider_factory: Factory,
) -> None:
    # One retry: at a 20 % fault rate, 4 % of the batches fail for good, here and there.
    sim = simulated_provider_factory(dim=DIM, fault_rate=0.2, faults=("500",), seed=17)
    texts = TEXTS[:1_000]
    result = embedsdk.get_batch_embeddings(
        texts, base_url=sim.base_url, batch_size=5, max_retries=1, cache=False, errors="return"
    )
    assert result.errors, "some batches must have failed for the test to mean anything"
    assert not any(STORM_NOTE in str(exc) for exc in result.errors)
    assert all(len(exc.batch_indices or []) <= 5 for exc in result.errors)  # one batch each
    assert result.ok.mean() > 0.9
    assert np.array_equal(result.vectors[result.ok], EXPECTED[:1_000][result.ok])


def test_errors_must_be_raise_or_return() -> None:
    emb = Embedder(
        transport=MockTransport(Server(lambda t: None)), base_url="http://127.0.0.1:9/v1"
    )
    with emb, pytest.raises(ValueError, match="errors"):
        emb.embed(["a"], errors="ignore")  # type: ignore[call-overload]


# -- sharing ----------------------------------------------------------------------------------


def test_threads_share_one_embedder(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM, fault_rate=0.2, hang=HANG, seed=11)
    chunks = [TEXTS[i::6] for i in range(6)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    with Embedder(base_url=sim.base_url, max_concurrent=4, **FAST) as emb:

        def work(k: int) -> None:
            try:
                if k % 2:
                    results[k] = emb.embed(chunks[k], batch_size=16)
                else:
                    results[k] = emb.embed_threaded(chunks[k], max_workers=3, batch_size=16)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    for k in range(len(chunks)):
        assert np.array_equal(results[k], EXPECTED[k::6])


def test_several_async_embedders_in_one_loop(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM, fault_rate=0.2, hang=HANG, seed=13)

    async def main() -> list[np.ndarray]:
        clients = [AsyncEmbedder(base_url=sim.base_url, max_concurrent=3, **FAST) for _ in range(4)]
        try:
            return await asyncio.gather(*(c.embed(TEXTS[k::4]) for k, c in enumerate(clients)))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    for k, got in enumerate(asyncio.run(main())):
        assert np.array_equal(got, EXPECTED[k::4])


def test_every_call_after_close_raises_client_closed() -> None:
    server = Server(lambda texts: None)
    emb = Embedder(transport=MockTransport(server), base_url="http://127.0.0.1:9/v1")
    emb.embed(["warm"])
    emb.close()
    emb.close()  # twice is fine
    with pytest.raises(ClientClosedError):
        emb.embed(["a"])
    with pytest.raises(ClientClosedError):
        emb.embed_threaded(["a"], max_workers=2)
    with pytest.raises(ClientClosedError):
        list(emb.embed_stream(["a"]))
    with pytest.raises(ClientClosedError):
        asyncio.run(emb.embed_async(["a"]))
    assert len(server.requests) == 1

    async def closed_async() -> None:
        client = AsyncEmbedder(transport=MockTransport(server), base_url="http://127.0.0.1:9/v1")
        await client.aclose()
        await client.embed(["a"])

    with pytest.raises(ClientClosedError):
        asyncio.run(closed_async())


def test_close_while_another_thread_waits_ends_that_call(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(dim=DIM, fault_rate=1.0, faults=("hang",), hang=30)
    emb = Embedder(base_url=sim.base_url, cache=False, max_concurrent=2, timeout=60)
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            emb.embed(TEXTS[:100])
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    _wait_for(lambda: sim.stats()["in_flight"] == 2)
    emb.close()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the other thread's call must end when the client closes"
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError)
    _wait_for(lambda: sim.stats()["in_flight"] == 0)


def test_close_while_another_thread_waits_for_the_rate_limit_ends_that_call() -> None:
    server = Server(lambda texts: None)
    # One request per minute: the second batch waits in the limiter, not on the network.
    emb = Embedder(
        transport=MockTransport(server),
        base_url="http://127.0.0.1:9/v1",
        rpm=1,
        batch_size=1,
        max_concurrent=1,
    )
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            emb.embed(["a", "b", "c"])
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    _wait_for(lambda: len(server.requests) == 1)
    emb.close()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the other thread's call must end when the client closes"
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosedError)
    assert len(server.requests) == 1


def _wait_for(condition: Callable[[], bool], polls: int = 6000) -> None:
    """Poll ``condition`` every 10 ms; fail after ``polls`` tries (a guard against a stuck
    test, not a time limit: a minute)."""
    for _ in range(polls):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached")
