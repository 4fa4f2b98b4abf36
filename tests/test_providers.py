"""Provider quirks: profiles, dimensions, base64 fallback, batch caps, error shapes, keys.

The first half runs the whole client against :class:`MockTransport` handlers (no socket); the
second half runs it against the simulated provider configured with each server's quirks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import zlib
from collections.abc import Awaitable, Sequence
from typing import Any, Callable

import numpy as np
import pytest

import embedsdk
from embedsdk import (
    APIStatusError,
    AsyncEmbedder,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InsufficientQuotaError,
    InternalServerError,
    MockTransport,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Request,
    Response,
    UnprocessableEntityError,
)
from embedsdk import testing as sim
from embedsdk.client import PROFILES, resolve_options
from embedsdk.http import is_input_too_large, is_retryable, should_split, status_error

SILICONFLOW = "https://api.siliconflow.cn/v1"
LOCAL = "http://127.0.0.1:9/v1"  # never contacted: every test here has a transport or a sim
KEY = "sk-test-0123456789abcdef"

# -- profiles from the base URL --------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "name", "max_batch"),
    [
        ("https://api.siliconflow.cn/v1", "siliconflow", 64),
        ("https://api.siliconflow.com/v1/", "siliconflow", 64),
        ("https://API.SiliconFlow.cn/v1", "siliconflow", 64),
        ("https://api.openai.com/v1", "openai", 2048),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", "dashscope", 10),
        ("https://dashscope-intl.aliyuncs.com/compatible-mode/v1", "dashscope", 10),
        ("https://open.bigmodel.cn/api/paas/v4", "zhipu", 64),
        ("http://127.0.0.1:8080/v1", "generic", 32),
        ("http://localhost:11434/v1", "generic", 32),
        ("https://embeddings.example.com/v1", "generic", 32),
        # a look-alike host is not the provider
        ("https://api.siliconflow.cn.example.com/v1", "generic", 32),
    ],
)
def test_profile_is_chosen_from_the_base_url(base_url: str, name: str, max_batch: int) -> None:
    chosen = resolve_options(base_url=base_url, api_key=KEY).provider
    assert (chosen, PROFILES[chosen].max_batch) == (name, max_batch)


def test_published_limits_of_each_profile() -> None:
    assert PROFILES["tei"].max_batch == 32
    assert PROFILES["openai"].max_batch_tokens == 300_000
    assert PROFILES["dashscope"].float_only
    assert not any(PROFILES[n].float_only for n in ("siliconflow", "openai", "tei", "generic"))
    for profile in PROFILES.values():  # a full batch of short texts always fits the budget
        assert profile.max_batch_tokens >= profile.max_batch * 64


@pytest.mark.parametrize(
    ("provider", "model", "tokens"),
    [
        ("siliconflow", "BAAI/bge-m3", 8192),
        ("siliconflow", "Pro/BAAI/bge-m3", 8192),
        ("siliconflow", "BAAI/bge-large-zh-v1.5", 512),
        ("siliconflow", "netease-youdao/bce-embedding-base_v1", 512),
        ("siliconflow", "Qwen/Qwen3-Embedding-8B", 32768),
        ("siliconflow", "some/new-model", None),
        ("openai", "text-embedding-3-large", 8192),
        ("dashscope", "text-embedding-v4", 8192),
        ("zhipu", "embedding-3", 3072),
        ("zhipu", "embedding-2", 512),
        ("generic", "anything", None),
    ],
)
def test_tokens_per_input(provider: str, model: str, tokens: int | None) -> None:
    assert PROFILES[provider].max_input_tokens(model) == tokens


def test_provider_argument_overrides_the_url() -> None:
    assert resolve_options(base_url=SILICONFLOW, provider="tei", api_key=KEY).provider == "tei"
    local = resolve_options(base_url="http://127.0.0.1:8080/v1", provider="SiliconFlow")  # type: ignore[arg-type]
    assert local.provider == "siliconflow"
    options = resolve_options(base_url=LOCAL, provider="dashscope", batch_size=50)
    assert (options.provider, options.batch_size, options.encoding_format) == (
        "dashscope",
        10,
        "float",
    )


def test_unknown_provider_is_a_clear_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown provider 'vllmm'.*siliconflow"):
        resolve_options(base_url=LOCAL, provider="vllmm")


@pytest.mark.parametrize(
    ("base_url", "batch_size", "expected"),
    [
        (SILICONFLOW, 100, 64),
        (SILICONFLOW, 20, 20),
        ("https://api.openai.com/v1", 5000, 2048),
        ("https://dashscope.aliyuncs.com/compatible-mode/v1", 20, 10),
        (LOCAL, 100, 100),  # the generic profile's cap is a guess: a 413 would lower it
    ],
)
def test_batch_size_is_capped_by_the_provider(
    base_url: str, batch_size: int, expected: int
) -> None:
    options = resolve_options(base_url=base_url, api_key=KEY, batch_size=batch_size)
    assert options.batch_size == expected


def test_dashscope_is_float_only_even_when_base64_is_asked() -> None:
    url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    options = resolve_options(base_url=url, api_key=KEY, encoding_format="base64")
    assert options.encoding_format == "float"
    assert resolve_options(base_url=SILICONFLOW, api_key=KEY).encoding_format == "base64"


# -- dimensions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model", "allowed"),
    [
        ("siliconflow", "BAAI/bge-m3", False),
        ("siliconflow", "BAAI/bge-large-zh-v1.5", False),
        ("siliconflow", "Qwen/Qwen3-Embedding-8B", True),
        ("siliconflow", "Qwen/Qwen3-Embedding-0.6B", True),
        ("openai", "text-embedding-3-small", True),
        ("openai", "text-embedding-ada-002", False),
        ("dashscope", "text-embedding-v4", True),
        ("zhipu", "embedding-3", True),
        ("zhipu", "embedding-2", False),
        ("tei", "BAAI/bge-m3", False),
        ("generic", "BAAI/bge-m3", True),
    ],
)
def test_which_models_take_dimensions(provider: str, model: str, allowed: bool) -> None:
    assert PROFILES[provider].dimensions_for(model) is allowed
    options = {"base_url": LOCAL, "provider": provider, "model": model, "api_key": KEY}
    if allowed:
        assert resolve_options(**options, dimensions=256).dimensions == 256
    else:
        with pytest.raises(ConfigurationError, match="dimensions"):
            resolve_options(**options, dimensions=256)
    resolve_options(**options, dimensions=None)  # leaving it out is always fine


def test_dimensions_for_bge_on_siliconflow_is_refused_before_any_request() -> None:
    calls: list[Request] = []
    with pytest.raises(ConfigurationError) as info:
        AsyncEmbedder(
            "BAAI/bge-m3",
            base_url=SILICONFLOW,
            api_key=KEY,
            dimensions=512,
            transport=MockTransport(lambda r: calls.append(r) or Response(200, {}, b"")),
        )
    message = str(info.value)
    assert "siliconflow" in message and "'BAAI/bge-m3'" in message and "Qwen3" in message
    assert "provider='generic'" in message
    assert calls == []
    # the module functions refuse it the same way
    with pytest.raises(ConfigurationError, match="Qwen3"):
        embedsdk.get_batch_embeddings(["x"], base_url=SILICONFLOW, api_key=KEY, dimensions=512)


# -- a fake server behind MockTransport ------------------------------------------------------


def vector(text: str, dim: int = 8) -> np.ndarray:
    """A deterministic float32 vector per text."""
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    return rng.standard_normal(dim).astype(np.float32)


def ok(payload: dict[str, Any], *, ignore_base64: bool = False) -> Response:
    """A 200 answer in the format asked for (floats when ``ignore_base64``), index order
    reversed so that placement by ``index`` is exercised."""
    dim = payload.get("dimensions") or 8
    items = []
    for i, text in reversed(list(enumerate(payload["input"]))):
        v = vector(text, dim)
        if payload.get("encoding_format") == "base64" and not ignore_base64:
            emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode()
        else:
            emb = v.tolist()
        items.append({"object": "embedding", "index": i, "embedding": emb})
    body = {"data": items, "usage": {"prompt_tokens": 3 * len(items)}}
    return Response(200, {"x-siliconcloud-trace-id": "ti-ok"}, json.dumps(body).encode())


def error(status: int, body: Any, trace: str = "ti-err") -> Response:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return Response(status, {"x-siliconcloud-trace-id": trace}, raw)


Handler = Callable[[Request], Awaitable[Response]]


class Recorder:
    """Wraps a handler; keeps every request payload, and the peak of requests in flight."""

    def __init__(self, handler: Callable[[dict[str, Any]], Awaitable[Response] | Response]):
        self.handler = handler
        self.payloads: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.peak = 0

    async def __call__(self, request: Request) -> Response:
        payload = request.json()
        self.payloads.append(payload)
        self.headers.append(dict(request.headers))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            result = self.handler(payload)
            if not isinstance(result, Response):
                result = await result
            return result
        finally:
            self.in_flight -= 1

    @property
    def sizes(self) -> list[int]:
        return [len(p["input"]) for p in self.payloads]


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


async def embed_with(
    handler: Recorder,
    texts: Sequence[str],
    *,
    calls: int = 1,
    **options: Any,
) -> tuple[list[np.ndarray], AsyncEmbedder]:
    options.setdefault("base_url", LOCAL)
    options.setdefault("cache", False)
    results = []
    async with AsyncEmbedder(transport=MockTransport(handler), **options) as emb:
        for _ in range(calls):
            results.append(await emb.embed(texts))
    return results, emb


def texts_for(n: int) -> list[str]:
    return [f"文本 {i} text" if i % 2 else f"text number {i}" for i in range(n)]


def expected(texts: Sequence[str], dim: int = 8) -> np.ndarray:
    return np.vstack([vector(t, dim) for t in texts])


def test_qwen3_dimensions_are_sent_and_honoured() -> None:
    rec = Recorder(ok)
    texts = texts_for(3)
    [vecs], _ = run(
        embed_with(
            rec, texts, model="Qwen/Qwen3-Embedding-8B", provider="siliconflow", dimensions=64
        )
    )
    assert [p["dimensions"] for p in rec.payloads] == [64]
    assert vecs.shape == (3, 64)
    np.testing.assert_array_equal(vecs, expected(texts, 64))


def test_no_dimensions_key_unless_asked() -> None:
    rec = Recorder(ok)
    run(embed_with(rec, ["a"], provider="siliconflow"))
    assert "dimensions" not in rec.payloads[0]


def test_per_call_batch_size_reaches_the_provider_cap() -> None:
    """A client made with the default batch size still sends 64 when a call asks for 100."""
    rec = Recorder(ok)

    async def main() -> None:
        async with AsyncEmbedder(
            base_url=SILICONFLOW, api_key=KEY, cache=False, transport=MockTransport(rec)
        ) as emb:
            await emb.embed(texts_for(130), batch_size=100, max_concurrent=1)
            assert rec.sizes == [64, 64, 2]
            rec.payloads.clear()
            await emb.embed(texts_for(45), max_concurrent=1)  # the default, "auto": the cap
            assert rec.sizes == [45]
            rec.payloads.clear()
            await emb.embed(texts_for(45), batch_size=20, max_concurrent=1)
            assert rec.sizes == [20, 20, 5]

    run(main())


def test_dashscope_batches_of_ten_in_floats() -> None:
    rec = Recorder(ok)
    url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
    texts = texts_for(25)
    [vecs], _ = run(
        embed_with(rec, texts, base_url=url, api_key=KEY, model="text-embedding-v4", batch_size=64)
    )
    assert sorted(rec.sizes) == [5, 10, 10]
    assert {p["encoding_format"] for p in rec.payloads} == {"float"}
    np.testing.assert_array_equal(vecs, expected(texts))


# -- base64: refused, ignored ----------------------------------------------------------------

REFUSALS = [
    pytest.param(400, {"object": "error", "message": "base64 encoding is not currently supported",
                       "type": "BadRequestError", "param": None, "code": 400}, id="vllm-flat"),
    pytest.param(400, {"error": {"message": "base64 encoding is not currently supported",
                                 "type": "invalid_request_error", "code": None}}, id="nested"),
    pytest.param(422, "Failed to deserialize the JSON body into the target type: encoding_format: "
                      "unknown variant `base64`, expected `float`", id="tei-axum-422"),
    pytest.param(422, {"detail": [{"loc": ["body", "encoding_format"],
                                   "msg": "unexpected value; permitted: 'float'"}]}, id="fastapi"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body"), REFUSALS)
def test_base64_refusal_falls_back_to_floats_without_a_failed_call(status: int, body: Any) -> None:
    def handler(payload: dict[str, Any]) -> Response:
        if payload["encoding_format"] == "base64":
            return error(status, body)
        return ok(payload)

    rec = Recorder(handler)
    texts = texts_for(50)
    results, emb = run(embed_with(rec, texts, calls=2, batch_size=10, max_concurrent=1))
    for vecs in results:
        np.testing.assert_array_equal(vecs, expected(texts))
    formats = [p["encoding_format"] for p in rec.payloads]
    # one refused request, then floats for ever: 5 batches in the first call, 5 in the second
    assert formats == ["base64"] + ["float"] * 10
    assert emb.stats.retries == 0


def test_base64_refusal_with_many_batches_in_flight() -> None:
    """Batches already sent in base64 when the first refusal arrives are re-sent in floats
    too, each within its own attempt: no failed call, no retry counted."""
    arrived = 0
    events: list[asyncio.Event] = []  # made inside the loop: on 3.9 an Event binds one early

    async def handler(payload: dict[str, Any]) -> Response:
        nonlocal arrived
        if not events:
            events.append(asyncio.Event())
        all_in = events[0]
        if payload["encoding_format"] == "base64":
            arrived += 1
            if arrived == 4:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 5)  # hold until 4 base64 requests are in
            return error(400, "base64 encoding is not currently supported")
        return ok(payload)

    rec = Recorder(handler)
    texts = texts_for(80)
    [vecs], emb = run(embed_with(rec, texts, batch_size=10, max_concurrent=4, max_retries=0))
    np.testing.assert_array_equal(vecs, expected(texts))
    formats = [p["encoding_format"] for p in rec.payloads]
    assert formats.count("base64") == 4 and formats.count("float") == 8
    assert formats[4:] == ["float"] * 8
    assert rec.peak == 4 and emb.stats.retries == 0 and emb.stats.requests == 12


def test_a_400_about_something_else_is_not_a_base64_refusal() -> None:
    rec = Recorder(lambda p: error(400, {"code": 20015, "message": "dimensions not supported"}))
    with pytest.raises(BadRequestError, match="dimensions not supported"):
        run(embed_with(rec, ["a", "b"]))
    assert [p["encoding_format"] for p in rec.payloads] == ["base64"]


def test_a_float_request_refused_is_not_retried_as_float_again() -> None:
    rec = Recorder(lambda p: error(400, "encoding_format must be float or base64"))
    with pytest.raises(BadRequestError):
        run(embed_with(rec, ["a"], encoding_format="float"))
    assert len(rec.payloads) == 1


def test_floats_sent_for_a_base64_request_are_accepted() -> None:
    rec = Recorder(lambda p: ok(p, ignore_base64=True))
    texts = texts_for(30)
    results, _ = run(embed_with(rec, texts, calls=2, batch_size=8))
    np.testing.assert_array_equal(results[0], expected(texts))
    np.testing.assert_array_equal(results[1], expected(texts))
    # nothing was refused, so the client keeps asking for base64
    assert {p["encoding_format"] for p in rec.payloads} == {"base64"}


# -- batch caps: 413 and "batch size" ----------------------------------------------------------


def capped(limit: int, status: int, message: str) -> Callable[[dict[str, Any]], Response]:
    def handler(payload: dict[str, Any]) -> Response:
        n = len(payload["input"])
        if n > limit:
            return error(status, {"code": 20042, "message": message.format(n=n, max=limit)})
        return ok(payload)

    return handler


@pytest.mark.parametrize(
    "message",
    [
        "input batch size {n} > maximum allowed batch size {max}",  # SiliconFlow, TEI
        "batch size {n} > maximum allowed batch size {max}",
    ],
)
def test_413_with_the_limit_in_the_message_sets_the_cap(message: str) -> None:
    rec = Recorder(capped(8, 413, message))
    texts = texts_for(60)
    results, emb = run(embed_with(rec, texts, calls=2, batch_size=30, max_concurrent=1))
    for vecs in results:
        np.testing.assert_array_equal(vecs, expected(texts))
    # first call: one 413 for 30 texts, then batches of 8; the second call starts at 8
    assert rec.sizes[0] == 30
    assert max(rec.sizes[1:]) == 8 and sum(rec.sizes[1:]) == 120
    assert emb.stats.splits == 1 and emb.stats.retries == 0


def test_batch_size_400_without_a_number_halves_until_it_fits() -> None:
    rec = Recorder(capped(5, 400, "batch size too large"))
    texts = texts_for(24)

    async def main() -> None:
        async with AsyncEmbedder(base_url=LOCAL, cache=False, transport=MockTransport(rec)) as emb:
            vecs = await emb.embed(texts, batch_size=24, max_concurrent=1)
            np.testing.assert_array_equal(vecs, expected(texts))
            assert rec.sizes[:3] == [24, 12, 6]  # halved until a batch passed
            assert emb.stats.splits == 3 and emb.stats.retries == 0
            rec.payloads.clear()
            vecs = await emb.embed(texts, batch_size=24, max_concurrent=1)
            np.testing.assert_array_equal(vecs, expected(texts))
            assert rec.sizes == [3] * 8  # the next call starts at the lowered cap

    run(main())


def test_413_for_a_single_input_fails_naming_it() -> None:
    rec = Recorder(lambda p: error(413, {"error": "Payload Too Large", "error_type": "Validation"}))
    with pytest.raises(BadRequestError, match=r"request for input 0\b"):
        run(embed_with(rec, ["a very long text"]))
    assert len(rec.payloads) == 1


# -- error answers through the client ----------------------------------------------------------

LLAMA_TOO_LARGE = {
    "error": {
        "code": 500,
        "message": "input is too large to process. increase the physical batch size",
        "type": "server_error",
    }
}


def test_llama_cpp_input_too_large_is_never_retried_and_names_the_input() -> None:
    def handler(payload: dict[str, Any]) -> Response:
        if any(len(t) > 100 for t in payload["input"]):
            return error(500, LLAMA_TOO_LARGE)
        return ok(payload)

    texts = texts_for(30)
    texts[14] = "long " * 100
    rec = Recorder(handler)
    with pytest.raises(InternalServerError) as info:
        run(embed_with(rec, texts, batch_size=10, max_concurrent=1, max_retries=6))
    exc = info.value
    assert "input is too large to process" in str(exc)
    assert "request for input 14)" in str(exc) and exc.batch_indices == [14]
    assert "longer than the server takes" in str(exc)
    # The first batch, then one attempt at the second and at each part of it that was split
    # off to find the long text: never the same request twice.
    assert rec.sizes[:2] == [10, 10] and len(rec.sizes) <= 2 + 2 * 4
    sent = [tuple(p["input"]) for p in rec.payloads]
    assert len(set(sent)) == len(sent)
    assert exc.failed_indices is not None and 14 in exc.failed_indices


def test_too_large_hint_names_the_models_limit() -> None:
    rec = Recorder(lambda p: error(413, {"error": "Input validation error: `inputs` must have "
                                         "less than 512 tokens. Given: 900",
                                         "error_type": "Validation"}))  # fmt: skip
    with pytest.raises(BadRequestError, match=r"BAAI/bge-large-zh-v1\.5 takes 512 tokens"):
        run(embed_with(rec, ["x"], model="BAAI/bge-large-zh-v1.5", provider="siliconflow"))


def test_request_range_names_first_positions_of_duplicates() -> None:
    rec = Recorder(lambda p: error(400, {"code": 20015, "message": "bad model"}))
    with pytest.raises(BadRequestError, match=r"request for inputs 0\.\.1\b"):
        run(embed_with(rec, ["a", "b", "a", "b"]))


def test_siliconflow_tpm_429_is_retried() -> None:
    answers = iter(
        [
            error(429, {"message": "Request was rejected due to rate limiting. If you want "
                        "more, please contact us. Details:TPM limit reached.", "data": None}),
            error(503, {"code": 50505, "message": "Model service overloaded. Please try again "
                        "later."}),
        ]
    )  # fmt: skip

    def handler(payload: dict[str, Any]) -> Response:
        return next(answers, None) or ok(payload)

    rec = Recorder(handler)
    [vecs], emb = run(embed_with(rec, ["a", "b"]))
    np.testing.assert_array_equal(vecs, expected(["a", "b"]))
    assert len(rec.payloads) == 3 and emb.stats.retries == 2


def test_insufficient_quota_is_not_retried() -> None:
    body = {
        "error": {
            "message": "You exceeded your current quota, please check your plan.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }
    rec = Recorder(lambda p: error(429, body))
    with pytest.raises(InsufficientQuotaError, match="exceeded your current quota"):
        run(embed_with(rec, ["a"], max_retries=5))
    assert len(rec.payloads) == 1


def test_401_says_the_key_came_from_the_argument_never_its_value() -> None:
    rec = Recorder(lambda p: error(401, "Invalid token", trace="ti-401"))
    with pytest.raises(AuthenticationError) as info:
        run(embed_with(rec, ["a", "b"], api_key=KEY, max_retries=5))
    text = str(info.value)
    assert "Invalid token" in text and "api_key argument" in text and "ti-401" in text
    assert KEY not in text and KEY not in repr(info.value)
    assert len(rec.payloads) == 1
    assert rec.headers[0]["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("variable", ["SILICONFLOW_API_KEY", "siliconflow_api_key"])
def test_401_names_the_environment_variable(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, KEY)
    rec = Recorder(lambda p: error(401, "Invalid token"))
    with pytest.raises(AuthenticationError, match=f"environment variable {variable}") as info:
        run(embed_with(rec, ["a"], base_url=SILICONFLOW))
    assert KEY not in str(info.value)


def test_a_key_echoed_by_the_server_is_masked() -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "invalid_api_key"}}
    rec = Recorder(lambda p: error(401, body))
    with pytest.raises(AuthenticationError) as info:
        run(embed_with(rec, ["a"], api_key=KEY))
    exc = info.value
    assert KEY not in str(exc) and KEY not in exc.message and KEY not in exc.body
    assert "Incorrect API key provided: ***" in exc.message


def test_403_without_a_key_says_none_was_sent() -> None:
    rec = Recorder(lambda p: error(403, "Forbidden"))
    with pytest.raises(PermissionDeniedError, match="no API key was sent"):
        run(embed_with(rec, ["a"]))


# -- error shapes: the right class and whether it is retried ----------------------------------

SHAPES = [
    (404, {"code": 20012, "message": "Model does not exist. Please check it carefully.",
           "data": None}, NotFoundError, "Model does not exist", False),
    (429, {"message": "Request was rejected due to rate limiting. Details:TPM limit reached.",
           "data": None}, RateLimitError, "TPM limit reached", True),
    (503, {"code": 50505, "message": "Model service overloaded. Please try again later."},
     InternalServerError, "overloaded", True),
    (401, "Invalid token", AuthenticationError, "Invalid token", False),
    (403, "Forbidden: account not verified", PermissionDeniedError, "not verified", False),
    (400, {"error": {"message": "'$.input' is invalid.", "type": "invalid_request_error",
                     "param": None, "code": None}}, BadRequestError, "is invalid", False),
    (429, {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                     "param": None, "code": "insufficient_quota"}},
     InsufficientQuotaError, "current quota", False),
    (429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                     "param": None, "code": "rate_limit_exceeded"}},
     RateLimitError, "Rate limit reached", True),
    (413, {"error": "batch size 77 > maximum allowed batch size 32", "error_type": "Validation"},
     BadRequestError, "maximum allowed batch size 32", False),
    (424, {"error": "Inference failed", "error_type": "Backend"}, APIStatusError,
     "Inference failed", False),
    (422, {"message": "Input validation error", "code": 422, "type": "validation"},
     UnprocessableEntityError, "Input validation error", False),
    (400, {"object": "error", "message": "This model does not support dimensions",
           "type": "BadRequestError", "param": None, "code": 400}, BadRequestError,
     "does not support", False),
    (500, LLAMA_TOO_LARGE, InternalServerError, "too large to process", False),
    (500, {"error": {"message": "CUDA out of memory", "type": "server_error"}},
     InternalServerError, "out of memory", True),
    (429, {"error": {"code": "1113", "message": "您的账户已欠费，请充值后重试。"}},
     InsufficientQuotaError, "欠费", False),
    (429, {"error": {"code": "1302", "message": "您当前使用该API的并发数过高"}},
     RateLimitError, "并发数过高", True),
    (502, "", InternalServerError, "(empty body)", True),
    (502, "<html><body>502 Bad Gateway</body></html>", InternalServerError, "Bad Gateway", True),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "cls", "words", "retried"), SHAPES)
def test_error_shape(status: int, body: Any, cls: type, words: str, retried: bool) -> None:
    response = error(status, body, trace="ti-abc123")
    exc = status_error(response.status, response.headers, response.body)
    assert type(exc) is cls
    assert words in exc.message and words in str(exc)
    assert exc.trace_id == "ti-abc123" and "ti-abc123" in str(exc)
    assert is_retryable(exc) is retried


def test_split_and_too_large_decisions() -> None:
    def make(status: int, message: str) -> APIStatusError:
        return status_error(status, {}, json.dumps({"message": message}).encode())

    assert should_split(make(413, "Payload Too Large"))
    assert should_split(make(400, "input batch size 83 > maximum allowed batch size 64"))
    assert not should_split(make(400, "input must not be empty"))
    assert not should_split(make(500, "batch size too large"))  # a 5xx is retried, not split
    assert is_input_too_large(make(500, "input is too large to process"))
    assert is_input_too_large(make(400, "This model's maximum context length is 8192 tokens"))
    assert not is_input_too_large(make(413, "batch size 77 > maximum allowed batch size 32"))


# -- against the simulated provider, configured with each server's quirks ---------------------

STYLES = ["siliconflow", "openai", "tei", "text"]

SimFactory = Callable[..., Any]


def embedder(server: Any, **options: Any) -> embedsdk.Embedder:
    options.setdefault("cache", False)
    return embedsdk.Embedder(base_url=server.base_url, **options)


def test_sim_siliconflow_batches_of_64_without_a_413(
    simulated_provider_factory: SimFactory,
) -> None:
    server = simulated_provider_factory(max_batch=64)
    texts = texts_for(300)
    with embedder(server, provider="siliconflow") as emb:
        vecs = emb.embed(texts, batch_size=100, max_concurrent=3)
    np.testing.assert_array_equal(vecs, sim.expected_matrix(texts))
    stats = server.stats()
    assert max(stats["batch_sizes"]) == 64 and sum(stats["batch_sizes"]) == 300
    assert set(stats["status"]) == {200}


@pytest.mark.parametrize("style", STYLES)
def test_sim_base64_refused_falls_back_for_good(
    simulated_provider_factory: SimFactory, style: str
) -> None:
    server = simulated_provider_factory(base64="refuse", error_style=style)
    texts = texts_for(120)
    with embedder(server, max_retries=0) as emb:
        first = emb.embed(texts, batch_size=10, max_concurrent=4)
        refused = server.stats()["status"].get(400, 0)
        second = emb.embed(texts[::-1], batch_size=10, max_concurrent=4)
        assert emb.stats.retries == 0
    np.testing.assert_array_equal(first, sim.expected_matrix(texts))
    np.testing.assert_array_equal(second, sim.expected_matrix(texts[::-1]))
    status = server.stats()["status"]
    assert 1 <= refused <= 4  # at most one refusal per batch in flight
    assert status[400] == refused  # none in the second call
    assert status[200] == 24


def test_sim_base64_refused_through_the_thread_pool(simulated_provider_factory: SimFactory) -> None:
    server = simulated_provider_factory(base64="refuse")
    texts = texts_for(90)
    vecs = embedsdk.get_batch_embeddings_concurrent(
        texts, max_workers=3, batch_size=10, base_url=server.base_url, cache=False, max_retries=0
    )
    np.testing.assert_array_equal(vecs, sim.expected_matrix(texts))
    assert server.stats()["status"][200] == 9


def test_sim_floats_for_a_base64_request(simulated_provider_factory: SimFactory) -> None:
    server = simulated_provider_factory(base64="ignore")
    texts = texts_for(40)
    with embedder(server) as emb:
        assert emb.options.encoding_format == "base64"
        vecs = emb.embed(texts, batch_size=16)
    np.testing.assert_array_equal(vecs, sim.expected_matrix(texts))
    assert set(server.stats()["status"]) == {200}


@pytest.mark.parametrize("style", STYLES)
def test_sim_413_lowers_the_cap_for_later_calls(
    simulated_provider_factory: SimFactory, style: str
) -> None:
    """TEI's default: 32 inputs. A client that believes in 64 is told once, then sends 32s."""
    server = simulated_provider_factory(max_batch=32, error_style=style)
    texts = texts_for(200)
    with embedder(server, provider="siliconflow") as emb:
        first = emb.embed(texts, batch_size=64, max_concurrent=1)
        assert server.stats()["status"][413] == 1
        second = emb.embed(texts[::-1], batch_size=64, max_concurrent=2)
        assert emb.stats.splits == 1 and emb.stats.retries == 0
    np.testing.assert_array_equal(first, sim.expected_matrix(texts))
    np.testing.assert_array_equal(second, sim.expected_matrix(texts[::-1]))
    stats = server.stats()
    assert stats["status"][413] == 1  # the second call never met one
    assert max(stats["batch_sizes"]) == 32 and sum(stats["batch_sizes"]) == 400


def test_sim_413_with_requests_in_flight(simulated_provider_factory: SimFactory) -> None:
    server = simulated_provider_factory(max_batch=24, latency=0.02)
    texts = texts_for(500)
    with embedder(server, provider="siliconflow") as emb:
        vecs = emb.embed(texts, batch_size=64, max_concurrent=4)
    np.testing.assert_array_equal(vecs, sim.expected_matrix(texts))
    stats = server.stats()
    assert 1 <= stats["status"][413] <= 4  # the batches already in flight, no more
    assert max(stats["batch_sizes"]) == 24


@pytest.mark.parametrize("style", STYLES)
def test_sim_input_too_large_is_never_retried_and_names_the_input(
    simulated_provider_factory: SimFactory, style: str
) -> None:
    server = simulated_provider_factory(max_input_tokens=50, error_style=style)
    texts = texts_for(40)
    texts[25] = "a long text " * 40
    with embedder(server, max_retries=6) as emb, pytest.raises(InternalServerError) as info:
        emb.embed(texts, batch_size=10, max_concurrent=1)
    message = str(info.value)
    assert "too large to process" in message and "request for input 25)" in message
    status = server.stats()["status"]
    # Batches 0..9 and 10..19; 20..29 refused, then halved until 25 stands alone (20..24
    # and 25..29, 25..26 and 27..29, 25 and 26): one 500 per round, for the part holding
    # 25, and never a retry.
    assert status == {200: 2 + 3, 500: 1 + 3}
    assert info.value.failed_indices == [25, *range(30, 40)]


def test_sim_dimensions_refused_locally_or_by_the_server(
    simulated_provider_factory: SimFactory,
) -> None:
    server = simulated_provider_factory(dimensions="refuse")
    with pytest.raises(ConfigurationError, match="Qwen3"):
        embedder(server, provider="siliconflow", dimensions=256)
    # a server we know nothing about is asked, and its refusal is one clear error
    with (
        embedder(server, dimensions=256, max_retries=3) as emb,
        pytest.raises(BadRequestError, match="dimensions not supported") as info,
    ):
        emb.embed(["a", "b"])
    assert info.value.code == 20015
    assert server.stats()["status"] == {400: 1}


def test_sim_qwen3_dimensions(simulated_provider_factory: SimFactory) -> None:
    server = simulated_provider_factory()
    model = "Qwen/Qwen3-Embedding-8B"
    texts = texts_for(5)
    with embedder(server, model=model, provider="siliconflow", dimensions=256) as emb:
        vecs = emb.embed(texts)
    np.testing.assert_array_equal(vecs, sim.expected_matrix(texts, model=model, dim=256))


def test_sim_insufficient_quota_fails_fast(simulated_provider_factory: SimFactory) -> None:
    server = simulated_provider_factory(insufficient_quota=True)
    with embedder(server, max_retries=6) as emb, pytest.raises(InsufficientQuotaError) as info:
        emb.embed(texts_for(3))
    assert "exceeded your current quota" in info.value.message
    assert server.stats()["requests"] == 1


@pytest.mark.parametrize("style", STYLES)
def test_sim_rate_limit_is_retried(simulated_provider_factory: SimFactory, style: str) -> None:
    server = simulated_provider_factory(error_style=style, fault_rate=0.5, faults=("429",), seed=3)
    texts = texts_for(100)
    with embedder(server, max_retries=30) as emb:
        vecs = emb.embed(texts, batch_size=10)
        retries = emb.stats.retries
    np.testing.assert_array_equal(vecs, sim.expected_matrix(texts))
    stats = server.stats()
    assert stats["rate_limited"] > 0 and retries == stats["rate_limited"]


@pytest.mark.parametrize("style", STYLES)
def test_sim_rate_limit_error_carries_message_and_trace(
    simulated_provider_factory: SimFactory, style: str
) -> None:
    server = simulated_provider_factory(error_style=style, fault_rate=1.0, faults=("429",))
    with embedder(server, max_retries=2) as emb, pytest.raises(RateLimitError) as info:
        emb.embed(["a"])
    assert "rate limit" in info.value.message.lower()
    assert info.value.trace_id and info.value.trace_id in str(info.value)
    assert server.stats()["requests"] >= 3  # retried (429s may get a budget of their own)


@pytest.mark.parametrize("style", STYLES)
def test_sim_unknown_model_is_not_found(simulated_provider_factory: SimFactory, style: str) -> None:
    server = simulated_provider_factory(error_style=style, models=("BAAI/bge-m3",))
    with (
        embedder(server, model="BAAI/bge-m4", max_retries=3) as emb,
        pytest.raises(NotFoundError, match="Model does not exist") as info,
    ):
        emb.embed(["a"])
    assert info.value.trace_id is not None
    assert server.stats()["requests"] == 1


def test_sim_wrong_key_says_where_it_came_from(simulated_provider_factory: SimFactory) -> None:
    server = simulated_provider_factory(api_key="sk-right-key")
    with (
        embedder(server, api_key=KEY, max_retries=3) as emb,
        pytest.raises(AuthenticationError) as info,
    ):
        emb.embed(["a"])
    text = str(info.value)
    assert "Invalid token" in text and "api_key argument" in text and KEY not in text
    assert server.stats()["requests"] == 1
    with embedder(server, api_key="sk-right-key") as emb:
        np.testing.assert_array_equal(emb.embed(["a"]), sim.expected_matrix(["a"]))
