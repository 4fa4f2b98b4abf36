"""The async core against MockTransport: batching, order, decoding, retries, splits, stats.

Private access: the waits the retry loop chooses are recorded at the sender's own names for
its wait generator and backoff handler (``client._sending``), since they are never slept in
tests and so never seen through the public surface.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, Callable, TypeVar

import backoff
import numpy as np
import pytest

import embedsdk
from embedsdk import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncEmbedder,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    InsufficientQuotaError,
    InternalServerError,
    InvalidInputError,
    MockTransport,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Request,
    Response,
    ResponseValidationError,
    estimate_tokens,
    set_testing,
)
from embedsdk.client import _sending  # the retry waits are its own: patched below
from embedsdk.http import wait_gen

T = TypeVar("T")
LOCAL = "http://127.0.0.1:9/v1"  # MockTransport answers: nothing is ever sent there
DIM = 4


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def vec(text: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def expected(texts: list[str], dim: int = DIM) -> np.ndarray:
    return np.stack([vec(t, dim) for t in texts]) if texts else np.empty((0, dim), np.float32)


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} {i} 你好" for i in range(n)]


def ok_body(
    inputs: list[str],
    *,
    fmt: str = "base64",
    dim: int = DIM,
    shuffle: bool = False,
    usage: int | None = None,
) -> bytes:
    items = []
    for i, text in enumerate(inputs):
        v = vec(text, dim)
        emb: Any = (
            base64.b64encode(v.astype("<f4").tobytes()).decode()
            if fmt == "base64"
            else [float(x) for x in v]
        )
        items.append({"object": "embedding", "index": i, "embedding": emb})
    if shuffle:
        random.Random(len(inputs)).shuffle(items)
    payload: dict[str, Any] = {"object": "list", "data": items, "model": "m"}
    if usage is not None:
        payload["usage"] = {"prompt_tokens": usage, "total_tokens": usage}
    return json.dumps(payload).encode()


def error(status: int, body: Any, **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


Step = Callable[[dict[str, Any]], Response]


class Server:
    """A fake provider: answers correctly unless ``script`` says otherwise for the next request.

    ``script`` items are Responses (used once, in order) or functions of the request body.
    ``answer`` is how a correct answer is built (format follows the request unless ``fmt``).
    """

    def __init__(
        self,
        *script: Response | Step,
        fmt: str | None = None,
        dim: int = DIM,
        shuffle: bool = False,
        usage: bool = False,
        max_batch: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script: list[Response | Step] = list(script)
        self.fmt, self.dim, self.shuffle, self.usage = fmt, dim, shuffle, usage
        self.max_batch, self.delay = max_batch, delay
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        self.in_flight = self.peak = 0

    @property
    def inputs(self) -> list[list[str]]:
        return [b["input"] for b in self.bodies]

    @property
    def sizes(self) -> list[int]:
        return [len(b["input"]) for b in self.bodies]

    def answer(self, body: dict[str, Any]) -> Response:
        inputs = body["input"]
        if self.max_batch is not None and len(inputs) > self.max_batch:
            message = (
                f"input batch size {len(inputs)} > maximum allowed batch size {self.max_batch}"
            )
            return error(413, {"code": 20042, "message": message, "data": None})
        fmt = self.fmt or body.get("encoding_format", "float")
        usage = sum(estimate_tokens(t) for t in inputs) - 1 if self.usage else None
        return Response(
            200,
            {"x-siliconcloud-trace-id": f"tr-{len(self.bodies)}"},
            ok_body(inputs, fmt=fmt, dim=self.dim, shuffle=self.shuffle, usage=usage),
        )

    async def __call__(self, request: Request) -> Response:
        body = request.json()
        self.requests.append(request)
        self.bodies.append(body)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script:
                step = self.script.pop(0)
                return step if isinstance(step, Response) else step(body)
            return self.answer(body)
        finally:
            self.in_flight -= 1


def client(server: Callable[[Request], Awaitable[Response]], **options: Any) -> AsyncEmbedder:
    options.setdefault("base_url", LOCAL)
    options.setdefault("cache", False)
    return AsyncEmbedder(transport=MockTransport(server), **options)


async def embed(server: Server, texts: list[str], **options: Any) -> np.ndarray:
    call = {k: options.pop(k) for k in ("batch_size", "max_concurrent", "errors") if k in options}
    async with client(server, **options) as emb:
        return await emb.embed(texts, **call)


def check(result: np.ndarray, texts: list[str], dim: int = DIM) -> None:
    assert result.dtype == np.float32
    assert result.shape == (len(texts), dim)
    assert result.flags.c_contiguous
    np.testing.assert_array_equal(result, expected(texts, dim))


# -- the request ------------------------------------------------------------------------------


def test_request_body_and_headers() -> None:
    server = Server()
    run(embed(server, ["hello", "你好"], api_key="sk-test", model="my-model"))
    (request,) = server.requests
    assert request.url == LOCAL + "/embeddings"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["Content-Type"] == "application/json"
    assert server.bodies[0] == {
        "model": "my-model",
        "input": ["hello", "你好"],
        "encoding_format": "base64",
    }
    assert "你好".encode() in request.body  # UTF-8, not \\u escapes
    assert request.timeout > 0


def test_no_key_no_authorization_header() -> None:
    server = Server()
    run(embed(server, ["a"]))
    assert "Authorization" not in server.requests[0].headers


def test_no_cache_needs_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """cache=False opens nothing: the call never hops to a thread (in simulated time, a
    thread is not waited for, and a pending timer would jump the clock past it)."""

    def no_thread(*args: Any) -> None:
        raise AssertionError("a thread was used")

    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", no_thread)
    server = Server()
    texts = texts_for(3)
    check(run(embed(server, texts, cache=False)), texts)


def test_dimensions_and_float_format_are_sent() -> None:
    server = Server(dim=8)
    result = run(embed(server, ["a"], dimensions=8, encoding_format="float", provider="generic"))
    assert server.bodies[0]["dimensions"] == 8
    assert server.bodies[0]["encoding_format"] == "float"
    check(result, ["a"], 8)


# -- batching ---------------------------------------------------------------------------------


def test_batches_by_count() -> None:
    server = Server()
    texts = texts_for(45)
    check(run(embed(server, texts, batch_size=20)), texts)
    assert sorted(server.sizes) == [5, 20, 20]
    assert sorted(t for batch in server.inputs for t in batch) == sorted(texts)


def test_client_batch_size_is_the_default_and_call_overrides_it() -> None:
    async def go() -> tuple[list[int], list[int]]:
        server = Server()
        async with client(server, batch_size=7) as emb:
            await emb.embed(texts_for(15))
            first = list(server.sizes)
            server.bodies.clear()
            await emb.embed(texts_for(15, "u"), batch_size=10)
            return first, list(server.sizes)

    first, second = run(go())
    assert sorted(first) == [1, 7, 7]
    assert sorted(second) == [5, 10]  # a per-call size above the client's default is honoured


def test_batch_size_never_exceeds_the_provider_cap() -> None:
    server = Server()
    run(embed(server, texts_for(100), batch_size=1000, provider="siliconflow"))
    assert max(server.sizes) == 64  # SiliconFlow's cap


def test_a_generic_servers_cap_is_a_guess_that_a_chosen_size_goes_past() -> None:
    """The generic profile's 32 is a guess: a size the user chose goes as chosen (the
    server's 413 would lower it), not lowered to the guess without a word."""
    server = Server()
    run(embed(server, texts_for(100), batch_size=1000, provider="generic"))
    assert server.sizes == [100]


def test_batches_by_tokens() -> None:
    server = Server()
    texts = [("x" * 30 if i % 3 else "你" * 40) + str(i) for i in range(40)]
    budget = 100
    result = run(embed(server, texts, batch_size=64, max_batch_tokens=budget))
    check(result, texts)
    for batch in server.inputs:
        assert sum(estimate_tokens(t) for t in batch) <= budget
    assert max(server.sizes) < 20  # the budget, not the count, cut these batches


def test_input_larger_than_token_budget_goes_alone() -> None:
    server = Server()
    texts = ["short", "y" * 3000, "also short"]
    check(run(embed(server, texts, max_batch_tokens=50)), texts)
    assert ["y" * 3000] in server.inputs


def test_duplicates_sent_once() -> None:
    server = Server()
    texts = ["a", "b", "a", "c", "b", "a", "d", "a"]
    result = run(embed(server, texts, batch_size=2))
    check(result, texts)
    sent = Counter(t for batch in server.inputs for t in batch)
    assert sent == Counter({"a": 1, "b": 1, "c": 1, "d": 1})


def test_all_duplicates_one_request() -> None:
    server = Server()
    check(run(embed(server, ["same"] * 50)), ["same"] * 50)
    assert server.inputs == [["same"]]


# -- order and decoding -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["base64", "float"])
def test_exact_order_with_shuffled_index(fmt: str) -> None:
    server = Server(shuffle=True, fmt=fmt)
    texts = texts_for(57)
    check(run(embed(server, texts, batch_size=19, max_concurrent=3)), texts)


@pytest.mark.parametrize(
    ("asked", "sent"),
    [("base64", "float"), ("float", "base64"), ("base64", "base64"), ("float", "float")],
)
def test_accepts_whatever_format_the_server_sends(asked: str, sent: str) -> None:
    server = Server(fmt=sent)
    texts = texts_for(5)
    check(run(embed(server, texts, encoding_format=asked)), texts)
    assert server.bodies[0]["encoding_format"] == asked


def test_base64_is_bit_exact() -> None:
    # Values that do not survive a trip through decimal text without care.
    vector = np.array([1e-38, -3.4028235e38, 0.1, 1 / 3], dtype=np.float32)

    def answer(body: dict[str, Any]) -> Response:
        b64 = base64.b64encode(vector.astype("<f4").tobytes()).decode()
        return Response(200, {}, json.dumps({"data": [{"index": 0, "embedding": b64}]}).encode())

    result = run(embed(Server(answer), ["x"]))
    assert result.tobytes() == vector.tobytes()


def test_base64_refused_falls_back_to_float_for_good() -> None:
    refused = error(
        400, {"object": "error", "message": "base64 encoding is not currently supported"}
    )
    server = Server(refused)
    texts = texts_for(30)

    async def go() -> tuple[np.ndarray, np.ndarray, AsyncEmbedder]:
        async with client(server, batch_size=10, max_concurrent=1) as emb:
            return await emb.embed(texts), await emb.embed(texts_for(3, "again")), emb

    first, second, emb = run(go())
    check(first, texts)
    check(second, texts_for(3, "again"))
    formats = [b["encoding_format"] for b in server.bodies]
    assert formats == ["base64"] + ["float"] * (len(formats) - 1)
    assert len(formats) == 1 + 3 + 1  # the refused request was sent again, once
    assert emb.stats.retries == 0


def test_base64_refused_as_fastapi_422() -> None:
    detail = {"detail": [{"loc": ["body", "encoding_format"], "msg": "unexpected value"}]}
    server = Server(error(422, detail))
    check(run(embed(server, ["a"])), ["a"])
    assert [b["encoding_format"] for b in server.bodies] == ["base64", "float"]


def test_other_400_is_not_taken_for_a_base64_refusal() -> None:
    server = Server(error(400, {"code": 20015, "message": "dimensions not supported"}))
    with pytest.raises(BadRequestError, match="dimensions not supported"):
        run(embed(server, ["a"]))
    assert len(server.bodies) == 1


# -- empty and invalid input ------------------------------------------------------------------


def test_empty_input_no_request() -> None:
    server = Server()
    result = run(embed(server, []))
    assert result.shape == (0, 1024)  # BAAI/bge-m3
    assert result.dtype == np.float32 and result.flags.c_contiguous
    assert server.bodies == []


@pytest.mark.parametrize(("model", "width"), [("my-own-model", 0), ("BAAI/bge-m3", 1024)])
def test_empty_input_has_the_same_shape_whatever_ran_before(model: str, width: int) -> None:
    async def go() -> list[tuple[int, ...]]:
        async with client(Server(), model=model) as emb:
            before = (await emb.embed([])).shape
            await emb.embed(["a"])  # DIM-wide vectors arrive
            return [before, (await emb.embed([])).shape]

    assert run(go()) == [(0, width), (0, width)]


@pytest.mark.parametrize("bad", [None, 7, b"bytes", "", "   ", "\n\t"])
def test_invalid_input_rejected_naming_index_no_request(bad: Any) -> None:
    server = Server()
    texts = ["fine", "also fine", bad, "after"]
    with pytest.raises(InvalidInputError, match=r"texts\[2\]") as info:
        run(embed(server, texts))
    assert info.value.index == 2
    assert server.bodies == []


def test_invalid_input_later_in_a_long_list_still_sends_nothing() -> None:
    server = Server()
    texts = [*texts_for(500), ""]
    with pytest.raises(InvalidInputError, match=r"texts\[500\]"):
        run(embed(server, texts, batch_size=10))
    assert server.bodies == []


def test_a_single_string_is_a_type_error() -> None:
    server = Server()
    with pytest.raises(TypeError, match="wrap it in a list"):
        run(embed(server, "hello"))  # type: ignore[arg-type]
    assert server.bodies == []


def test_any_sequence_of_str_works() -> None:
    server = Server()
    texts = ("a", "b", "c")
    check(run(embed(server, texts)), list(texts))  # type: ignore[arg-type]


# -- untrustworthy answers: retried, then ResponseValidationError -----------------------------


def ok_except(mangle: Callable[[dict[str, Any]], Any]) -> Step:
    """A correct float answer with its JSON payload passed through ``mangle``."""

    def step(body: dict[str, Any]) -> Response:
        payload = json.loads(ok_body(body["input"], fmt="float"))
        mangle(payload)
        return Response(200, {"x-request-id": "req-7"}, json.dumps(payload).encode())

    return step


def _drop_one(p: dict[str, Any]) -> None:
    p["data"].pop()


def _add_one(p: dict[str, Any]) -> None:
    p["data"].append({"index": len(p["data"]), "embedding": [0.0] * DIM})


def _short_vector(p: dict[str, Any]) -> None:
    p["data"][0]["embedding"] = p["data"][0]["embedding"][:-1]


def _all_short(p: dict[str, Any]) -> None:
    for item in p["data"]:
        item["embedding"] = item["embedding"][:-1]


def _nan(p: dict[str, Any]) -> None:
    p["data"][0]["embedding"][1] = float("nan")


def _repeat_index(p: dict[str, Any]) -> None:
    p["data"][1]["index"] = 0


def _no_index(p: dict[str, Any]) -> None:
    del p["data"][0]["index"]


def _no_data(p: dict[str, Any]) -> None:
    del p["data"]


BAD_ANSWERS: list[Any] = [
    pytest.param(Response(200, {}, b'{"object":"list","data":[{"ind'), id="truncated-json"),
    pytest.param(Response(200, {}, b"<html>oops</html>"), id="html"),
    pytest.param(Response(200, {}, b""), id="empty-body"),
    pytest.param(ok_except(_no_data), id="no-data"),
    pytest.param(ok_except(_drop_one), id="short"),
    pytest.param(ok_except(_add_one), id="wrong-count"),
    pytest.param(ok_except(_short_vector), id="ragged-dimension"),
    pytest.param(ok_except(_nan), id="nan"),
    pytest.param(ok_except(_repeat_index), id="repeated-index"),
    pytest.param(ok_except(_no_index), id="no-index"),
]


@pytest.mark.parametrize("bad", BAD_ANSWERS)
def test_bad_answer_retried_then_fails(bad: Response | Step) -> None:
    server = Server(*[bad] * 3)

    async def go() -> AsyncEmbedder:
        async with client(server, max_retries=2) as emb:
            with pytest.raises(ResponseValidationError, match="untrustworthy") as info:
                await emb.embed(["a", "b", "c"])
            assert info.value.failed_indices == [0, 1, 2]
            return emb

    emb = run(go())
    assert len(server.bodies) == 3  # 1 + max_retries
    assert emb.stats.requests == 3 and emb.stats.retries == 2


@pytest.mark.parametrize("bad", BAD_ANSWERS)
def test_bad_answer_once_then_recovers(bad: Response | Step) -> None:
    server = Server(bad)
    texts = ["a", "b", "c"]
    check(run(embed(server, texts)), texts)
    assert len(server.bodies) == 2


def test_a_server_ignoring_dimensions_is_not_retried_and_stops_the_call() -> None:
    """Vectors of another width than dimensions= asked would come again, each attempt billed:
    one request, and with errors="return" the other batches stay unsent."""
    server = Server(dim=6)
    with pytest.raises(ResponseValidationError, match=r"expected 8.*ignores it") as caught:
        run(embed(server, ["a"], dimensions=8, provider="generic", max_retries=3))
    assert not caught.value.retryable
    assert len(server.bodies) == 1
    server = Server(dim=6)
    texts = texts_for(6)
    result = run(
        embed(
            server,
            texts,
            dimensions=8,
            provider="generic",
            batch_size=2,
            max_concurrent=1,
            errors="return",
        )
    )
    assert len(server.bodies) == 1 and not result.ok.any()
    assert isinstance(result.errors[0], ResponseValidationError)


def test_dimension_change_between_batches_is_an_untrustworthy_answer() -> None:
    """Without ``dimensions=``, the first answer sets the dimension for the others."""

    def narrow(body: dict[str, Any]) -> Response:
        return Response(200, {}, ok_body(body["input"], dim=DIM - 1))

    server = Server()
    server.script = [server.answer, narrow, narrow]
    with pytest.raises(ResponseValidationError, match="expected 4"):
        run(embed(server, texts_for(4), batch_size=2, max_concurrent=1, max_retries=1))
    server = Server()
    server.script = [server.answer, narrow]  # a bad answer once: retried and fine
    texts = texts_for(4)
    check(run(embed(server, texts, batch_size=2, max_concurrent=1, max_retries=1)), texts)


def test_validation_error_names_trace_id() -> None:
    server = Server(ok_except(_drop_one))
    with pytest.raises(ResponseValidationError, match="req-7"):
        run(embed(server, ["a", "b"], max_retries=0))


# -- statuses ---------------------------------------------------------------------------------

RETRYABLE = [
    (408, b"Request Timeout", APIStatusError),
    (409, b'{"error":{"message":"conflict","code":null}}', APIStatusError),
    (
        429,
        b'{"message":"Request was rejected due to rate limiting. Details:TPM limit reached.",'
        b'"data":null}',
        RateLimitError,
    ),
    (500, b'{"code":50000,"message":"unknown error"}', InternalServerError),
    (502, b"<html>Bad Gateway</html>", InternalServerError),
    (
        503,
        b'{"code":50505,"message":"Model service overloaded. Please try again later."}',
        InternalServerError,
    ),
    (504, b"Gateway Timeout", InternalServerError),
]


@pytest.mark.parametrize(("status", "body", "cls"), RETRYABLE, ids=[str(s[0]) for s in RETRYABLE])
def test_retryable_status_retried_then_succeeds(status: int, body: bytes, cls: type) -> None:
    server = Server(error(status, body), error(status, body))

    async def go() -> tuple[np.ndarray, AsyncEmbedder]:
        async with client(server, max_retries=3) as emb:
            return await emb.embed(["a", "b"]), emb

    result, emb = run(go())
    check(result, ["a", "b"])
    assert len(server.bodies) == 3
    assert emb.stats.retries == 2 and emb.stats.requests == 3


@pytest.mark.parametrize(("status", "body", "cls"), RETRYABLE, ids=[str(s[0]) for s in RETRYABLE])
def test_retryable_status_gives_up_after_max_retries(status: int, body: bytes, cls: type) -> None:
    server = Server(*[error(status, body, x_siliconcloud_trace_id="tid-1")] * 20)
    # adaptive=False: the budget of plain retries (adaptive rate control gives 429s more).
    with pytest.raises(cls) as info:
        run(embed(server, ["a", "b"], max_retries=4, adaptive=False))
    assert type(info.value) is cls
    assert info.value.status_code == status
    assert info.value.trace_id == "tid-1"
    assert len(server.bodies) == 5


def test_max_retries_zero_is_one_attempt() -> None:
    server = Server(*[error(503, b"busy")] * 3)
    with pytest.raises(InternalServerError):
        run(embed(server, ["a"], max_retries=0))
    assert len(server.bodies) == 1


NOT_RETRYABLE = [
    # About the request (an option), not an input: not split to find one (tests/test_refusals.py)
    (400, {"code": 20015, "message": "The parameter is invalid: dimensions"}, BadRequestError),
    (401, b"Invalid token", AuthenticationError),
    (
        403,
        {"code": 30001, "message": "Sorry, your account balance is insufficient"},
        PermissionDeniedError,
    ),
    (
        404,
        {"code": 20012, "message": "Model does not exist. Please check it carefully."},
        NotFoundError,
    ),
    (
        429,
        {
            "error": {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
        InsufficientQuotaError,
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "cls"), NOT_RETRYABLE, ids=["400", "401", "403", "404", "insufficient_quota"]
)
def test_non_retryable_status_fails_at_once(status: int, body: Any, cls: type) -> None:
    server = Server(*[error(status, body, x_request_id="rq-5")] * 5)
    texts = texts_for(30)

    async def go() -> AsyncEmbedder:
        async with client(server, max_retries=5, batch_size=10, max_concurrent=1) as emb:
            with pytest.raises(cls) as info:
                await emb.embed(texts)
            exc = info.value
            assert exc.status_code == status and exc.trace_id == "rq-5"
            assert exc.message and exc.message in str(exc)
            assert exc.failed_indices == list(range(30))  # nothing arrived
            return emb

    emb = run(go())
    assert len(server.bodies) == 1  # not retried, and the other batches were not sent
    assert emb.stats.retries == 0


def test_failure_cancels_the_batches_in_flight_and_reports_partial() -> None:
    gate = asyncio.Event

    async def go() -> None:
        release = gate()

        async def handler(request: Request) -> Response:
            inputs = request.json()["input"]
            if inputs[0] == "t 1 你好":
                return error(401, b"Invalid token")
            if inputs[0] == "t 0 你好":
                return Response(200, {}, ok_body(inputs))
            await release.wait()  # never set: only cancellation ends this
            raise AssertionError("not cancelled")

        async with client(handler, batch_size=1, max_concurrent=3) as emb:
            with pytest.raises(AuthenticationError) as info:
                await asyncio.wait_for(emb.embed(texts_for(3)), timeout=30)
        exc = info.value
        assert exc.failed_indices == [1, 2]
        assert exc.partial is not None and exc.partial.shape == (3, DIM)
        np.testing.assert_array_equal(exc.partial[0], vec("t 0 你好"))
        assert np.isnan(exc.partial[1:]).all()
        assert "2 inputs have no vector" in str(exc)

    run(go())


def test_connection_errors_and_timeouts_are_retried() -> None:
    calls = 0

    async def handler(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise APIConnectionError("connection reset")
        if calls == 2:
            raise APITimeoutError("no answer within 60 s")
        return Response(200, {}, ok_body(request.json()["input"]))

    check(run(embed(handler, ["a"])), ["a"])  # type: ignore[arg-type]
    assert calls == 3


def test_connection_error_gives_up() -> None:
    async def handler(request: Request) -> Response:
        raise APIConnectionError("refused")

    with pytest.raises(APIConnectionError, match="refused"):
        run(embed(handler, ["a"], max_retries=2))  # type: ignore[arg-type]


def test_key_echoed_by_the_server_is_not_in_the_error() -> None:
    key = "sk-echoed-SECRET-99"
    server = Server(error(401, {"error": {"message": f"Incorrect API key provided: {key}"}}))
    with pytest.raises(AuthenticationError) as info:
        run(embed(server, ["a"], api_key=key))
    assert key not in str(info.value) and key not in info.value.body
    assert key not in repr(info.value.args)


# -- Retry-After ------------------------------------------------------------------------------


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The waits the retry logic chose, recorded; backoff itself is told to sleep 0 s."""
    chosen: list[float] = []
    real = wait_gen

    def recording(*args: Any, **kwargs: Any) -> Any:
        inner = real(*args, **kwargs)
        exc = yield inner.send(None)
        while True:
            chosen.append(inner.send(exc))
            exc = yield 0.0

    # The sender's own name for it (it imported it from embedsdk.http).
    monkeypatch.setattr(_sending, "wait_gen", recording)
    set_testing(False)  # the real waits, as a user would get them (conftest restores it)
    yield chosen


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"retry_after": "3"}, 3.0, 3.0 * 1.1 + 0.05),
        ({"retry_after_ms": "1500"}, 1.5, 1.5 * 1.1 + 0.05),
        ({"retry_after_ms": "250", "retry_after": "9"}, 0.25, 0.25 * 1.1 + 0.05),
        ({"Retry_After": "2"}, 2.0, 2.0 * 1.1 + 0.05),  # any case, even in a plain dict
        ({"retry_after": "41165011"}, 100.0, 120.0 * 1.1 + 0.05),  # absurd: capped
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_honoured(
    waits: list[float], headers: dict[str, str], low: float, high: float, status: int
) -> None:
    server = Server(error(status, {"message": "slow down"}, **headers))
    # adaptive=False: the retry logic's own wait (the adaptive controller, on by default,
    # honours a 429's hint in its shared pause instead and is tested with its own clock).
    # max_wait=None: a 429 asking for more than 300 s would fail at once (test_max_wait.py).
    check(run(embed(server, ["a"], adaptive=False, max_wait=None)), ["a"])
    assert len(waits) == 1
    assert low <= waits[0] <= high


def test_retry_after_http_date_honoured(waits: list[float]) -> None:
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    server = Server(error(429, {"message": "slow down"}, retry_after=date))
    check(run(embed(server, ["a"], adaptive=False)), ["a"])
    assert 25.0 <= waits[0] <= 30 * 1.1 + 0.05


def test_without_hint_waits_grow_exponentially(
    waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    server = Server(*[error(503, b"busy")] * 6)
    jitter = backoff.full_jitter
    monkeypatch.setattr(backoff, "full_jitter", lambda ceiling: ceiling)  # the ceilings bare
    check(run(embed(server, ["a"], max_retries=6, adaptive=False)), ["a"])
    assert waits == ceilings
    # With the jitter: each wait somewhere in (0, ceiling], the later ones free to be longer.
    monkeypatch.setattr(backoff, "full_jitter", jitter)
    random.seed(11)
    waits.clear()
    check(run(embed(Server(*[error(503, b"busy")] * 6), ["a"], max_retries=6)), ["a"])
    assert len(waits) == 6 and all(0.0 < w <= c for w, c in zip(waits, ceilings))
    assert max(waits[3:]) > ceilings[0]


def test_testing_mode_does_not_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[float] = []
    real = _sending.Sender._on_backoff

    def on_backoff(sender: _sending.Sender, details: dict[str, Any]) -> None:
        chosen.append(details["wait"])
        real(sender, details)

    # Before the client is made: its retry loop takes the handler once, when it is built.
    monkeypatch.setattr(_sending.Sender, "_on_backoff", on_backoff)
    server = Server(error(429, {"message": "slow"}, retry_after="30"))
    run(embed(server, ["a"]))
    assert chosen == [0.0]


# -- one retry loop per client ----------------------------------------------------------------


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How many retrying callables backoff made, of either kind (a decorator each)."""
    made: list[str] = []
    for kind in ("on_exception", "on_predicate"):
        real = getattr(backoff, kind)

        def counting(*args: Any, _real: Any = real, _kind: str = kind, **kwargs: Any) -> Any:
            made.append(_kind)
            return _real(*args, **kwargs)

        monkeypatch.setattr(backoff, kind, counting)
    return made


def test_the_retry_loop_is_built_once_per_client_not_per_request(built: list[str]) -> None:
    server = Server(error(503, b"busy"), error(503, b"busy"))  # two retries among the requests
    texts = texts_for(6)

    async def go() -> AsyncEmbedder:
        async with client(server, max_concurrent=2) as emb:
            check(await emb.embed(texts, batch_size=2), texts)
            check(await emb.embed(texts_for(4, "more"), batch_size=1), texts_for(4, "more"))
            return emb

    emb = run(go())
    assert emb.stats.requests == 3 + 4 + 2 and emb.stats.retries == 2
    assert len(built) == 1
    client(server)  # another client: a loop of its own
    assert len(built) == 2


def test_each_request_has_a_retry_budget_of_its_own() -> None:
    """The loop is the client's, the budget each request's: five requests that each fail
    once all go through with max_retries=1."""
    failed: set[str] = set()

    def once(body: dict[str, Any]) -> Response | None:
        text = body["input"][0]
        if text in failed:
            return None
        failed.add(text)
        return error(503, b"busy")

    def answer(body: dict[str, Any]) -> Response:
        return once(body) or server.answer(body)

    server = Server(*[answer] * 10)
    texts = texts_for(5)

    async def go() -> AsyncEmbedder:
        async with client(server, max_retries=1) as emb:
            check(await emb.embed(texts, batch_size=1, max_concurrent=1), texts)
            return emb

    assert run(go()).stats.retries == 5


# -- 413 and "batch size" 400: split and continue ---------------------------------------------


def test_413_splits_and_lowers_the_batch_cap() -> None:
    server = Server(max_batch=8)
    texts = texts_for(30)

    async def go() -> AsyncEmbedder:
        async with client(server, batch_size=20, max_concurrent=1) as emb:
            check(await emb.embed(texts), texts)
            # 20 refused -> 8 + 8 + 4; the batch of 10 planned before is cut to 8 + 2 unsent
            assert server.sizes == [20, 8, 8, 4, 8, 2]
            assert emb.stats.splits == 1
            server.bodies.clear()
            again = texts_for(20, "again")
            check(await emb.embed(again), again)
            assert server.sizes == [8, 8, 4]  # the lowered cap holds for later calls
            assert emb.stats.splits == 1
            return emb

    emb = run(go())
    assert emb.stats.retries == 0


def test_batch_size_400_tei_style_splits() -> None:
    def step(body: dict[str, Any]) -> Response:
        n = len(body["input"])
        message = f"batch size {n} > maximum allowed batch size 4"
        return error(400, {"error": message, "error_type": "Validation"})

    server = Server(step)
    texts = texts_for(10)
    check(run(embed(server, texts, batch_size=10)), texts)
    assert server.sizes == [10, 4, 4, 2]


def test_413_without_a_limit_halves() -> None:
    def refuse_big(body: dict[str, Any]) -> Response:
        return error(413, b"<html>413 Request Entity Too Large</html>")

    server = Server()
    server.script = [refuse_big]
    texts = texts_for(16)
    check(run(embed(server, texts, batch_size=16)), texts)
    assert server.sizes == [16, 8, 8]


def test_413_on_a_single_input_is_raised() -> None:
    server = Server(max_batch=0)
    with pytest.raises(BadRequestError) as info:
        run(embed(server, ["a"]))
    assert info.value.status_code == 413
    assert len(server.bodies) == 1


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 5])
def test_in_flight_bound(limit: int) -> None:
    server = Server(delay=0.005)
    texts = texts_for(60)
    check(run(embed(server, texts, batch_size=2, max_concurrent=limit)), texts)
    assert server.peak == limit
    assert len(server.bodies) == 30


def test_call_concurrency_override() -> None:
    async def go() -> int:
        server = Server(delay=0.005)
        async with client(server, max_concurrent=2) as emb:
            await emb.embed(texts_for(20), batch_size=1, max_concurrent=6)
        return server.peak

    assert run(go()) == 6


def test_no_waves_a_slow_batch_does_not_hold_the_others() -> None:
    """The first batch answers only after every other batch has been answered.

    With waves of ``max_concurrent`` batches, the batches after the first wave would wait for
    the slow one, which waits for them: the call would never finish.
    """

    async def go() -> None:
        others_done = asyncio.Event()
        answered = 0
        n_batches = 12

        async def handler(request: Request) -> Response:
            nonlocal answered
            inputs = request.json()["input"]
            if inputs[0] == "t 0 你好":
                await others_done.wait()
            else:
                await asyncio.sleep(0)
                answered += 1
                if answered == n_batches - 1:
                    others_done.set()
            return Response(200, {}, ok_body(inputs))

        async with client(handler, batch_size=1, max_concurrent=3) as emb:
            texts = texts_for(n_batches)
            check(await asyncio.wait_for(emb.embed(texts), timeout=30), texts)

    run(go())


def test_concurrent_calls_on_one_client() -> None:
    async def go() -> None:
        server = Server(delay=0.002, shuffle=True)
        async with client(server, max_concurrent=2) as emb:
            groups = [texts_for(15, f"g{g}") for g in range(4)]
            results = await asyncio.gather(*(emb.embed(g, batch_size=4) for g in groups))
            for g, r in zip(groups, results):
                check(r, g)

    run(go())


# -- pacing -----------------------------------------------------------------------------------


def test_request_larger_than_the_token_bucket_is_metered_in_full() -> None:
    """A told ``tpm`` holds half a second of tokens; a larger request is metered in full
    before it goes: not never, not at once (simulated time: no real waiting)."""
    from embedsdk.testing import run_in_virtual_time

    big = ["z" * 600]  # about 200 tokens against a bucket of 5 (600 a minute)

    async def go() -> None:
        server = Server()
        async with client(server, tpm=600, rpm=100) as emb:
            first = await emb.embed(["a"])  # spends the bucket
            check(first, ["a"])
            check(await emb.embed(big), big)

    embedsdk.set_testing(False)
    try:
        _, seconds = run_in_virtual_time(go())
    finally:
        embedsdk.set_testing(True)
    tokens = embedsdk.estimate_tokens(big[0])
    assert tokens / 10 * 0.95 <= seconds <= tokens / 10 / 0.99 + 1.0


# -- stats and life cycle ---------------------------------------------------------------------


def test_stats_counters() -> None:
    server = Server(error(503, b"busy"), max_batch=5, usage=True)
    texts = [*texts_for(12), "t 0 你好"]  # one duplicate

    async def go() -> AsyncEmbedder:
        async with client(server, batch_size=10, max_concurrent=1) as emb:
            check(await emb.embed(texts), texts)
            return emb

    emb = run(go())
    s = emb.stats
    # 503 (retried) -> 10 refused (413) -> 5 + 5 -> 2
    assert server.sizes == [10, 10, 5, 5, 2]
    assert s.requests == 5
    assert s.retries == 1
    assert s.splits == 1
    assert s.inputs_sent == 12  # the duplicate was not sent
    unique = texts_for(12)
    assert s.tokens == sum(estimate_tokens(t) for t in unique) - 3  # usage.prompt_tokens wins
    assert (s.cache_hits, s.cache_misses) == (0, 0)


def test_stats_tokens_fall_back_to_the_estimate() -> None:
    async def go() -> int:
        async with client(Server()) as emb:
            await emb.embed(["hello world", "你好"])
            return emb.stats.tokens

    assert run(go()) == estimate_tokens("hello world") + estimate_tokens("你好")


def test_closed_client_refuses_calls() -> None:
    async def go() -> None:
        server = Server()
        emb = client(server)
        await emb.embed(["a"])
        assert not emb.closed
        await emb.aclose()
        await emb.aclose()  # twice is fine
        assert emb.closed
        with pytest.raises(ClientClosedError):
            await emb.embed(["b"])
        assert len(server.bodies) == 1

    run(go())


def test_repr_names_model_and_url() -> None:
    emb = client(Server(), model="m1")
    assert "m1" in repr(emb) and LOCAL in repr(emb)


def test_second_event_loop_is_refused_clearly() -> None:
    server = Server()
    emb = client(server)
    check(run(emb.embed(["a"])), ["a"])
    with pytest.raises(RuntimeError, match="another event loop"):
        run(emb.embed(["b"]))  # asyncio.run makes a new loop: the first one is gone
    assert server.inputs == [["a"]]
