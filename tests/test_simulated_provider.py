"""The simulated provider (embedsdk.testing): vectors, faults, limits, errors, modes, CLI.

Private access: the float writer of its JSON answers (``testing._vectors.float_rows_json``) is
checked bit for bit on values no text's vector holds, and process mode by its child process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

import embedsdk
from embedsdk.http import parse_error_body
from embedsdk.testing import (
    SimConfig,
    SimulatedProvider,
    count_tokens,
    expected_matrix,
    expected_vector,
)
from embedsdk.testing.__main__ import build_parser, config_from_args
from embedsdk.testing._vectors import float_rows_json

TEXTS = ["hello world", "你好，世界", "emoji 🙂 and ümlauts", "x" * 300, "hello world", "第二句话"]
Factory = Callable[..., SimulatedProvider]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(
    sim: SimulatedProvider,
    payload: Any,
    headers: dict[str, str] | None = None,
    path: str = "/v1/embeddings",
) -> tuple[int, dict[str, str], bytes]:
    """One POST with urllib: (status, lower-cased headers, body); HTTP errors are answers."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(sim.url + path, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _lower(exc.headers), exc.read()


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def body(texts: list[str], **extra: Any) -> dict[str, Any]:
    return {"model": "BAAI/bge-m3", "input": texts, **extra}


def decode(raw: bytes) -> np.ndarray:
    """The rows of a 200 answer, placed by index (base64 or floats)."""
    data = json.loads(raw)["data"]
    rows: list[Any] = [None] * len(data)
    for item in data:
        value = item["embedding"]
        if isinstance(value, str):
            rows[item["index"]] = np.frombuffer(base64.b64decode(value), "<f4")
        else:
            rows[item["index"]] = np.asarray(value, dtype=np.float32)
    return np.vstack(rows)


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll (no timing asserted): the server's state changes on its own thread. The bound
    (a minute) only keeps a broken test from hanging the suite."""
    for _ in range(6000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("condition not reached")


# -- vectors ----------------------------------------------------------------------------


def test_expected_vector_is_deterministic_unit_float32() -> None:
    v = expected_vector("hello")
    assert v.dtype == np.float32 and v.shape == (1024,)
    assert abs(float(np.linalg.norm(v.astype(np.float64))) - 1.0) < 1e-6
    assert np.array_equal(v, expected_vector("hello"))
    assert not np.array_equal(v, expected_vector("hello "))
    assert not np.array_equal(v, expected_vector("hello", model="other"))
    assert expected_vector("hello", dim=8).shape == (8,)
    matrix = expected_matrix(TEXTS)
    assert matrix.shape == (len(TEXTS), 1024)
    for row, text in zip(matrix, TEXTS):  # a row alone equals the row in a batch, bit for bit
        assert row.tobytes() == expected_vector(text).tobytes()


def test_float_lists_read_back_to_the_same_float32_bits() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    # Every binary exponent, with the neighbours of its power of two (the tightest spacing).
    near = [np.arange(max(0, (k << 23) - 50), (k << 23) + 50, dtype=np.uint32) for k in range(255)]
    edge = np.concatenate(near).view(np.float32)
    values = np.concatenate([values, edge, -edge, np.float32([0.0, 1.0, -1.0])])
    (text,) = float_rows_json(values.reshape(1, -1))
    back = np.asarray(json.loads(text), dtype=np.float64).astype(np.float32)
    assert back.view(np.uint32).tolist() == values.view(np.uint32).tolist()


def test_count_tokens_never_exceeds_the_sdk_estimate() -> None:
    for text in [*TEXTS, "a", "ab c", "中", "中文和English混合 text"]:
        assert 1 <= count_tokens(text) <= embedsdk.estimate_tokens(text)
    assert count_tokens("你好世界") == 5  # four CJK characters + 1


# -- through the real SDK ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_sdk_results_equal_expected_matrix(
    simulated_provider: SimulatedProvider, encoding: str
) -> None:
    texts = [f"sentence {i} 第{i}句" for i in range(45)] + TEXTS
    vectors = embedsdk.get_batch_embeddings(
        texts, base_url=simulated_provider.base_url, cache=False, encoding_format=encoding
    )
    assert vectors.dtype == np.float32
    assert np.array_equal(vectors, expected_matrix(texts))
    stats = simulated_provider.stats()
    assert sum(stats["batch_sizes"]) == stats["inputs"] == len(set(texts))
    assert stats["texts"]["hello world"] == 1  # the duplicate was sent once
    assert stats["status"] == {200: stats["requests"]}


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("500", embedsdk.InternalServerError),
        ("503", embedsdk.InternalServerError),
        ("429", embedsdk.RateLimitError),
        ("reset", embedsdk.APIConnectionError),
        ("malformed", embedsdk.ResponseValidationError),
        ("wrong_count", embedsdk.ResponseValidationError),
        ("hang", embedsdk.APITimeoutError),
    ],
)
def test_sdk_sees_each_fault(
    simulated_provider_factory: Factory, kind: str, error: type[Exception]
) -> None:
    sim = simulated_provider_factory(fault_rate=1.0, faults=(kind,), hang=600.0)
    # Only a hang meets the timeout: it lasts ten minutes; the other answers come at once,
    # far within a timeout no loaded machine reaches by accident.
    timeout = 0.3 if kind == "hang" else 30.0
    with pytest.raises(error):
        embedsdk.get_batch_embeddings(
            ["a", "b"], base_url=sim.base_url, cache=False, max_retries=0, timeout=timeout
        )
    assert sim.stats()["faults"] == {kind: 1}
    if kind == "hang":  # the client gave up; the server cancels the abandoned answer
        wait_until(lambda: sim.stats()["in_flight"] == 0)


def test_sdk_is_unaffected_by_shuffled_answers(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(fault_rate=1.0, faults=("shuffle",))
    texts = [f"t{i}" for i in range(30)]
    vectors = embedsdk.get_batch_embeddings(texts, base_url=sim.base_url, cache=False)
    assert np.array_equal(vectors, expected_matrix(texts))
    assert sim.stats()["faults"]["shuffle"] == sim.stats()["requests"]


def test_sdk_splits_on_413_and_falls_back_from_refused_base64(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(max_batch=4, base64="refuse")
    texts = [f"t{i}" for i in range(10)]
    vectors = embedsdk.get_batch_embeddings(
        texts, base_url=sim.base_url, cache=False, batch_size=10
    )
    assert np.array_equal(vectors, expected_matrix(texts))
    stats = sim.stats()
    assert stats["status"][413] >= 1 and stats["status"][400] >= 1
    assert max(stats["batch_sizes"]) <= 4


# -- faults over raw HTTP ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "503", "malformed", "wrong_count", "shuffle", "429"])
def test_each_fault_kind_over_http(simulated_provider_factory: Factory, kind: str) -> None:
    sim = simulated_provider_factory(fault_rate=1.0, faults=(kind,), seed=3)
    texts = [f"t{i}" for i in range(12)]
    status, _, raw = post(sim, body(texts, encoding_format="base64"))
    if kind in ("500", "503", "429"):
        assert status == int(kind)
        assert parse_error_body(raw)[0]
    elif kind == "malformed":
        assert status == 200
        with pytest.raises(ValueError):
            json.loads(raw)
    elif kind == "wrong_count":
        assert status == 200 and len(json.loads(raw)["data"]) == len(texts) - 1
    else:
        indices = [item["index"] for item in json.loads(raw)["data"]]
        assert sorted(indices) == list(range(12)) and indices != list(range(12))
        assert np.array_equal(decode(raw), expected_matrix(texts))
    stats = sim.stats()
    assert stats["faults"] == {kind: 1}
    assert stats["batch_sizes"] == ([12] if kind == "shuffle" else [])
    assert stats["rate_limited"] == (1 if kind == "429" else 0)


def test_reset_closes_the_connection_without_an_answer(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(fault_rate=1.0, faults=("reset",))

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.post(sim.base_url + "/embeddings", json=body(["a"])) as r:
                    await r.read()

    asyncio.run(run())
    stats = sim.stats()
    assert stats["faults"] == {"reset": 1} and stats["status"] == {}


def test_hang_answers_late_but_correctly(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(fault_rate=1.0, faults=("hang",), hang=0.05)
    status, _, raw = post(sim, body(["a", "b"]))
    assert status == 200 and np.array_equal(decode(raw), expected_matrix(["a", "b"]))
    assert sim.stats()["faults"] == {"hang": 1}


def test_fault_rate_draws_are_seeded(simulated_provider_factory: Factory) -> None:
    def run() -> list[int]:
        sim = simulated_provider_factory(fault_rate=0.5, faults=("500", "503"), seed=11)
        return [post(sim, body(["a"]))[0] for _ in range(20)]

    first = run()
    assert first == run()
    assert {200, 500, 503} <= set(first)


# -- limits, key, errors ----------------------------------------------------------------


def test_batch_above_max_batch_is_413(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(max_batch=4)
    status, _, raw = post(sim, body(["a"] * 5))
    assert status == 413
    assert json.loads(raw) == {
        "code": 20042,
        "message": "input batch size 5 > maximum allowed batch size 4",
        "data": None,
    }
    assert post(sim, body(["a"] * 4))[0] == 200


@pytest.mark.parametrize("retry_after", [False, True])
def test_rpm_limit_answers_429(simulated_provider_factory: Factory, retry_after: bool) -> None:
    sim = simulated_provider_factory(rpm=2, retry_after=retry_after)
    assert [post(sim, body(["a"]))[0] for _ in range(2)] == [200, 200]
    status, headers, raw = post(sim, body(["a"]))
    assert status == 429
    assert json.loads(raw)["message"] == (
        "Request was rejected due to rate limiting. Details: RPM limit reached."
    )
    if retry_after:
        assert 1 <= int(headers["retry-after"]) <= 60
        assert 0 < int(headers["retry-after-ms"]) <= 60_000
    else:
        assert "retry-after" not in headers and "retry-after-ms" not in headers
    stats = sim.stats()
    assert stats["rate_limited"] == 1 and stats["status"] == {200: 2, 429: 1}


def test_a_gateways_429_names_no_limit(simulated_provider_factory: Factory) -> None:
    """``gateway_429``: refusals come as nginx's limit pages do (HTML, no limit named,
    no Retry-After), whichever limit refused."""
    sim = simulated_provider_factory(rpm=1, gateway_429=True, retry_after=True)
    assert post(sim, body(["a"]))[0] == 200
    status, headers, raw = post(sim, body(["a"]))
    assert status == 429 and headers["content-type"].startswith("text/html")
    assert b"429 Too Many Requests" in raw and b"RPM" not in raw
    assert "retry-after" not in headers
    assert sim.stats()["rate_limited"] == 1


def test_rate_window_is_configurable(simulated_provider_factory: Factory) -> None:
    """``window`` is the period a per-minute limit counts over: 1 RPM over 120 s admits 2.
    (How each kind counts over time is tested with explicit times in test_simulated_limits.)
    """
    sim = simulated_provider_factory(rpm=1, window=120.0, retry_after=True)
    assert [post(sim, body(["a"]))[0] for _ in range(3)] == [200, 200, 429]
    sim.configure(window=60.0)  # a new limit starts counting afresh
    assert [post(sim, body(["a"]))[0] for _ in range(2)] == [200, 429]


def test_tpm_limit_and_ratelimit_headers(simulated_provider_factory: Factory) -> None:
    text = "x" * 39  # 10 + 1 tokens by the server's count
    sim = simulated_provider_factory(tpm=25, rpm=100, ratelimit_headers=True)
    status, headers, raw = post(sim, body([text, text]))
    assert status == 200 and json.loads(raw)["usage"]["prompt_tokens"] == 22
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-tokens"] == "3"
    status, _, raw = post(sim, body([text]))
    assert status == 429 and "TPM limit reached" in json.loads(raw)["message"]


def test_api_key_is_checked(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(api_key="sk-sim")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, got, raw = post(sim, body(["a"]), headers)
        assert (status, raw) == (401, b"Invalid token")
        assert got["content-type"].startswith("text/plain")
    assert post(sim, body(["a"]), {"Authorization": "Bearer sk-sim"})[0] == 200
    vectors = embedsdk.get_batch_embeddings(
        ["a"], base_url=sim.base_url, api_key="sk-sim", cache=False
    )
    assert np.array_equal(vectors, expected_matrix(["a"]))
    assert "sk-sim" not in repr(sim) and "sk-sim" not in repr(sim.config)


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("siliconflow", {"code": 20012, "message": "MSG", "data": None}),
        (
            "openai",
            {
                "error": {
                    "message": "MSG",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
        ),
        ("tei", {"error": "MSG", "error_type": "Validation"}),
        ("text", "MSG"),
    ],
)
def test_error_styles(simulated_provider_factory: Factory, style: str, expected: Any) -> None:
    sim = simulated_provider_factory(models=("only/this",), error_style=style)
    message = "Model does not exist. Please check it carefully."
    status, headers, raw = post(sim, body(["a"]))
    assert status == 404
    if style == "text":
        assert raw.decode() == message and headers["content-type"].startswith("text/plain")
    else:
        assert json.loads(raw) == json.loads(json.dumps(expected).replace("MSG", message))
    assert parse_error_body(raw)[0] == message  # the SDK reads every style
    assert post(sim, {"model": "only/this", "input": "a"})[0] == 200


def test_insufficient_quota_is_openai_shaped(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(insufficient_quota=True)
    status, _, raw = post(sim, body(["a"]))
    assert status == 429 and json.loads(raw)["error"]["code"] == "insufficient_quota"
    with pytest.raises(embedsdk.InsufficientQuotaError):
        embedsdk.get_batch_embeddings(["a"], base_url=sim.base_url, cache=False)
    assert sim.stats()["requests"] == 2  # never retried


def test_input_too_large_is_500(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(max_input_tokens=10)
    status, _, raw = post(sim, body(["short", "y" * 100]))
    assert status == 500 and "input is too large to process" in parse_error_body(raw)[0]


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("siliconflow", {"code": 20015, "message": "MSG", "data": None}),
        (
            "openai",
            {
                "error": {
                    "message": "MSG",
                    "type": "invalid_request_error",
                    "param": "input",
                    "code": None,
                }
            },
        ),
        ("tei", {"error": "MSG", "error_type": "Validation"}),
        ("text", "MSG"),
    ],
)
def test_refused_inputs_are_400_in_each_style(
    simulated_provider_factory: Factory, style: str, expected: Any
) -> None:
    sim = simulated_provider_factory(refuse_inputs=("<bad>", "forbidden"), error_style=style)
    message = "input contains content that cannot be processed"
    for texts in (["ok", "this is <bad> text"], ["forbidden"]):
        status, _, raw = post(sim, body(texts))
        assert status == 400
        if style == "text":
            assert raw.decode() == message
        else:
            assert json.loads(raw) == json.loads(json.dumps(expected).replace("MSG", message))
        assert parse_error_body(raw)[0] == message
    assert post(sim, body(["ok", "fine", "b a d"]))[0] == 200
    assert SimConfig(refuse_inputs="x, y").refuse_inputs == ("x", "y")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refuse_inputs"):
        SimConfig(refuse_inputs=("",))
    flags = build_parser().parse_args(["--refuse-inputs", "<bad>,x"])
    assert config_from_args(flags).refuse_inputs == ("<bad>", "x")


def test_bad_requests_are_400(simulated_provider: SimulatedProvider) -> None:
    for payload in (b"{not json", {"input": ["a"]}, body([]), body(["a", ""]), body([1])):
        assert post(simulated_provider, payload)[0] == 400
    assert post(simulated_provider, body(["a"], encoding_format="int8"))[0] == 400
    assert simulated_provider.stats()["status"] == {400: 6}


@pytest.mark.parametrize("mode", ["ok", "refuse", "ignore"])
def test_base64_modes(simulated_provider_factory: Factory, mode: str) -> None:
    sim = simulated_provider_factory(base64=mode)
    status, _, raw = post(sim, body(["a", "b"], encoding_format="base64"))
    if mode == "refuse":
        assert status == 400
        assert parse_error_body(raw)[0] == "base64 encoding is not currently supported"
        return
    assert status == 200
    kind = str if mode == "ok" else list
    assert all(isinstance(item["embedding"], kind) for item in json.loads(raw)["data"])
    assert np.array_equal(decode(raw), expected_matrix(["a", "b"]))


def test_dimensions(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=768)
    _, _, raw = post(sim, body(["a"], dimensions=256, encoding_format="base64"))
    assert np.array_equal(decode(raw)[0], expected_vector("a", dim=256))
    _, _, raw = post(sim, body(["a"]))
    assert np.array_equal(decode(raw)[0], expected_vector("a", dim=768))
    sim.configure(dimensions="refuse")
    status, _, raw = post(sim, body(["a"], dimensions=256))
    assert status == 400 and json.loads(raw)["code"] == 20015
    assert "dimensions not supported" in json.loads(raw)["message"]
    assert post(sim, body(["a"]))[0] == 200


def test_trace_ids_and_models_route(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(models=("m1", "m2"))
    _, headers, _ = post(sim, {"model": "m1", "input": "a"})
    assert headers["x-siliconcloud-trace-id"]
    with _OPENER.open(sim.base_url + "/models", timeout=10) as response:
        assert [m["id"] for m in json.loads(response.read())["data"]] == ["m1", "m2"]
    sim.configure(trace_ids=False)
    assert "x-siliconcloud-trace-id" not in post(sim, {"model": "m1", "input": "a"})[1]


# -- counters and control ---------------------------------------------------------------


def test_stats_count_requests_inputs_tokens(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(max_batch=3)
    texts = ["一二三", "four five six seven", "x"]
    _, _, raw = post(sim, body(texts))
    assert json.loads(raw)["usage"]["prompt_tokens"] == sum(map(count_tokens, texts))
    post(sim, body(["a"] * 4))  # 413
    stats = sim.stats()
    assert stats["requests"] == 2 and stats["inputs"] == 7
    assert stats["tokens"] == sum(map(count_tokens, texts)) + 4 * count_tokens("a")
    assert stats["status"] == {200: 1, 413: 1} and stats["batch_sizes"] == [3]
    assert stats["texts"] == {t: 1 for t in texts}
    assert stats["in_flight"] == 0 and stats["peak_in_flight"] == 1
    sim.configure(track_texts=False)
    post(sim, body(["new"]))
    assert "new" not in sim.stats()["texts"]


def test_peak_in_flight_counts_concurrent_requests(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(latency=60.0)

    async def run() -> None:
        async with aiohttp.ClientSession() as session:

            async def one() -> None:
                async with session.post(sim.base_url + "/embeddings", json=body(["a"])) as r:
                    await r.read()

            tasks = [asyncio.ensure_future(one()) for _ in range(4)]
            while sim.stats()["in_flight"] < 4:
                await asyncio.sleep(0.01)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    assert sim.stats()["peak_in_flight"] == 4
    wait_until(lambda: sim.stats()["in_flight"] == 0)  # abandoned answers are cancelled


def test_configure_and_reset_stats(simulated_provider: SimulatedProvider) -> None:
    sim = simulated_provider
    assert post(sim, body(["a"] * 3))[0] == 200
    sim.configure(max_batch=2, error_style="openai")
    assert sim.config.max_batch == 2
    status, _, raw = post(sim, body(["a"] * 3))
    assert status == 413 and "error" in json.loads(raw)
    sim.reset_stats()
    stats = sim.stats()
    assert (stats["requests"], stats["status"], stats["batch_sizes"]) == (0, {}, [])
    with pytest.raises(TypeError):
        sim.configure(no_such_field=1)
    with pytest.raises(ValueError):
        sim.configure(fault_rate=2.0)
    assert sim.config.max_batch == 2


def test_config_validation_and_json_round_trip() -> None:
    config = SimConfig(faults="500, reset", models=["a"], rpm=10)  # type: ignore[arg-type]
    assert config.faults == ("500", "reset") and config.models == ("a",)
    assert SimConfig.from_mapping(json.loads(json.dumps(config.to_json()))) == config
    for bad in ({"faults": ("boom",)}, {"latency": -1}, {"error_style": "xml"}, {"dim": 0}):
        with pytest.raises(ValueError):
            SimConfig(**bad)
    with pytest.raises(TypeError):
        SimulatedProvider(nope=1)


# -- modes ------------------------------------------------------------------------------


def test_async_mode_serves_on_the_running_loop() -> None:
    async def run() -> None:
        async with SimulatedProvider(latency=0.01) as sim:
            assert sim.base_url.startswith("http://127.0.0.1:")
            async with aiohttp.ClientSession() as session:
                payload = body(["a", "b"], encoding_format="base64")
                async with session.post(sim.base_url + "/embeddings", json=payload) as r:
                    raw = await r.read()
            assert np.array_equal(decode(raw), expected_matrix(["a", "b"]))
            sim.configure(max_batch=1)
            assert sim.stats()["requests"] == 1
            sim.reset_stats()
            assert sim.stats()["requests"] == 0
        with pytest.raises(RuntimeError):
            sim.base_url  # noqa: B018 - stopped

    asyncio.run(run())


def test_thread_mode_leaves_no_thread_behind() -> None:
    before = threading.active_count()
    with SimulatedProvider() as sim:
        assert threading.active_count() == before + 1
        assert post(sim, body(["a"]))[0] == 200
    assert threading.active_count() == before
    sim.stop()  # twice is fine


def test_process_mode() -> None:
    with SimulatedProvider(process=True, dim=16, api_key="k") as sim:
        proc = sim._proc
        assert proc is not None and proc.pid
        status, _, raw = post(sim, body(["a"]), {"Authorization": "Bearer k"})
        assert status == 200 and np.array_equal(decode(raw)[0], expected_vector("a", dim=16))
        stats = sim.stats()
        assert stats["status"] == {200: 1} and "texts" not in stats
        assert sim.stats(texts=True)["texts"] == {"a": 1}
        sim.configure(max_batch=1)
        assert post(sim, body(["a", "b"]), {"Authorization": "Bearer k"})[0] == 413
        sim.reset_stats()
        assert sim.stats()["requests"] == 0
    assert proc.returncode == 0  # stopped by SIGTERM, cleanly
    assert proc.stdout is not None and proc.stdout.closed


def test_command_line() -> None:
    command = [sys.executable, "-m", "embedsdk.testing", "--port", "0", "--dim", "8"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("embedsdk simulated provider on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        request = urllib.request.Request(
            url + "/embeddings",
            data=json.dumps(body(["a"], encoding_format="base64")).encode(),
            headers={"Content-Type": "application/json"},
        )
        with _OPENER.open(request, timeout=10) as response:
            assert np.array_equal(decode(response.read())[0], expected_vector("a", dim=8))
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_pytest_fixtures(
    simulated_provider: SimulatedProvider, simulated_provider_factory: Factory
) -> None:
    other = simulated_provider_factory(SimConfig(dim=4), latency=0.0)
    assert other.port != simulated_provider.port
    _, _, raw = post(other, body(["a"]))
    assert decode(raw).shape == (1, 4)
