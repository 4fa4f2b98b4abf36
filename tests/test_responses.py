"""Pure response handling: error bodies, retry hints, trace ids and decoding of 200 answers."""

from __future__ import annotations

import base64
import email.utils
import json

import numpy as np
import pytest

from embedsdk import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InsufficientQuotaError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
)
from embedsdk.http import (
    MAX_RETRY_AFTER,
    content_type_of,
    decode_embeddings,
    not_found_hint,
    parse_error_body,
    parse_retry_after,
    status_error,
    trace_id_of,
)

# -- error bodies: every shape in provider-facts.md ------------------------------------------

ERROR_BODIES = [
    pytest.param(
        b'{"error":{"message":"You exceeded your current quota","type":"insufficient_quota",'
        b'"param":null,"code":"insufficient_quota"}}',
        "You exceeded your current quota",
        "insufficient_quota",
        id="openai-nested",
    ),
    pytest.param(
        b'{"error":{"message":"Invalid model","type":"invalid_request_error","param":null,'
        b'"code":null}}',
        "Invalid model",
        "invalid_request_error",  # no code: the type stands in for it
        id="openai-nested-type-only",
    ),
    pytest.param(
        b'{"code":20012,"message":"Model does not exist. Please check it carefully.","data":null}',
        "Model does not exist. Please check it carefully.",
        20012,
        id="siliconflow-code-message-data",
    ),
    pytest.param(
        b'{"message":"Request was rejected due to rate limiting. Details:TPM limit reached.",'
        b'"data":null}',
        "Request was rejected due to rate limiting. Details:TPM limit reached.",
        None,
        id="siliconflow-429-no-code",
    ),
    pytest.param(
        b'{"code":50505,"message":"Model service overloaded. Please try again later."}',
        "Model service overloaded. Please try again later.",
        50505,
        id="siliconflow-503",
    ),
    pytest.param(
        b'{"code":20042,"message":"input batch size 83 > maximum allowed batch size 64",'
        b'"data":null}',
        "input batch size 83 > maximum allowed batch size 64",
        20042,
        id="siliconflow-413",
    ),
    pytest.param(
        b'{"error":"batch size 77 > maximum allowed batch size 32","error_type":"Validation"}',
        "batch size 77 > maximum allowed batch size 32",
        "Validation",
        id="tei-flat",
    ),
    pytest.param(
        b'{"message":"Input validation error","code":422,"type":"Validation"}',
        "Input validation error",
        422,
        id="tei-message-code-type",
    ),
    pytest.param(b"Invalid token", "Invalid token", None, id="bare-text"),
    pytest.param(b"  Invalid token\n", "Invalid token", None, id="bare-text-padded"),
    pytest.param(b'{"detail":"Not Found"}', "Not Found", None, id="fastapi-detail"),
    pytest.param(b"", "(empty body)", None, id="empty"),
    pytest.param(
        "模型不存在".encode(),
        "模型不存在",
        None,
        id="bare-text-utf8",
    ),
]


@pytest.mark.parametrize(("body", "message", "code"), ERROR_BODIES)
def test_parse_error_body_every_shape(body: bytes, message: str, code: object) -> None:
    assert parse_error_body(body) == (message, code)


def test_parse_error_body_fastapi_validation_list_keeps_the_words() -> None:
    body = json.dumps(
        {"detail": [{"loc": ["body", "encoding_format"], "msg": "unexpected value"}]}
    ).encode()
    message, code = parse_error_body(body)
    assert "encoding_format" in message and "unexpected value" in message
    assert code is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "detail": [
                    {"loc": ["body", "input", 0], "msg": "String should have at most 8 characters"}
                ]
            },
            "input.0: String should have at most 8 characters",
        ),
        (
            {"detail": [{"loc": ["query"], "msg": "bad"}, {"msg": "no place"}]},
            "query: bad; no place",
        ),
        ({"detail": [{"type": "x"}]}, '{"type": "x"}'),  # no msg: the item as JSON, not a repr
        (
            {"errors": [{"loc": ["body", "model"], "msg": "Field required"}]},
            "model: Field required",
        ),
        ([{"loc": ["body", "model"], "msg": "Field required"}], "model: Field required"),
        ({"message": "a\n  b\t c"}, "a b c"),  # one line
    ],
    ids=["fastapi-index", "several", "no-msg", "errors-key", "bare-list", "blanks"],
)
def test_parse_error_body_validation_lists_read_as_sentences(body: object, message: str) -> None:
    assert parse_error_body(json.dumps(body).encode())[0] == message


def test_parse_error_body_long_provider_message_is_capped() -> None:
    message, _ = parse_error_body(json.dumps({"message": "m" * 5000}).encode())
    assert len(message) == 500 and message.endswith("…")


NOT_JSON = "a body of type {}, not JSON: {}"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            b"<html><title>502 Bad Gateway</title></html>",
            "text/html",
            NOT_JSON.format("text/html", "502 Bad Gateway"),
        ),
        (b"<h1>Oops &amp; sorry</h1>", "", "a body of no type, not JSON: Oops & sorry"),
        (
            b"<script>var x = 1;</script><style>p {}</style><p>Login</p>",
            "text/html",
            NOT_JSON.format("text/html", "Login"),
        ),
        (b"Invalid token", "text/plain", "Invalid token"),
        (
            b"key=value",
            "application/x-www-form-urlencoded",
            NOT_JSON.format("application/x-www-form-urlencoded", "key=value"),
        ),
        (b"<html></html>", "text/html", NOT_JSON.format("text/html", "(no text)")),
    ],
)
def test_parse_error_body_that_is_not_json(body: bytes, content_type: str, message: str) -> None:
    assert parse_error_body(body, content_type) == (message, None)


def test_a_page_of_megabytes_is_read_only_as_far_as_needed() -> None:
    page = b"<html><body>" + b"<script>" * 200_000 + b"</body></html>"
    message, _ = parse_error_body(page, "text/html")
    assert len(message) <= 240


def test_content_type_of() -> None:
    assert content_type_of({"Content-Type": "Text/HTML; charset=utf-8"}) == "text/html"
    assert content_type_of({}) == ""


NO_MODEL = b'{"code":20012,"message":"Model does not exist"}'
NO_MODEL_OPENAI = b'{"error":{"message":"x","code":"model_not_found"}}'


@pytest.mark.parametrize(
    ("endpoint", "body", "fix"),
    [
        ("http://h:8080/embeddings", b"Not Found", "end base_url with /v1"),
        ("http://h:8080/api/embeddings", b"Not Found", "end base_url with /v1"),
        ("http://h/v1/embeddings/embeddings", b"Not Found", "already ends in /embeddings"),
        ("http://h/embeddings/embeddings", b"Not Found", "already ends in /embeddings"),
        ("https://h/v1/embeddings", NO_MODEL, "the model 'm'"),
        ("https://h/v1/embeddings", NO_MODEL_OPENAI, "the model 'm'"),
        ("https://open.bigmodel.cn/api/paas/v4/embeddings", b"Not Found", "check base_url, and"),
        ("https://h/compatible-mode/v1/embeddings", b"Not Found", "check base_url, and"),
    ],
)
def test_not_found_hint(endpoint: str, body: bytes, fix: str) -> None:
    exc = status_error(404, {}, body)
    hint = not_found_hint(endpoint, "m", exc)
    assert hint.startswith(f"POST {endpoint} was not found; ") and fix in hint


def test_parse_error_body_json_that_is_not_an_object() -> None:
    assert parse_error_body(b"[1, 2]") == ("[1, 2]", None)


def test_parse_error_body_truncates_long_text() -> None:
    message, _ = parse_error_body(b"x" * 5000)
    assert message == "x" * 199 + "…"


def test_parse_error_body_survives_invalid_utf8() -> None:
    message, code = parse_error_body(b"bad \xff\xfe gateway")
    assert message.startswith("bad ") and message.endswith(" gateway") and code is None


# -- status_error: class, message, code, trace id -------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, b'{"code":20015,"message":"dimensions not supported"}', BadRequestError),
        (401, b"Invalid token", AuthenticationError),
        (403, b'{"code":30011,"message":"account not verified"}', PermissionDeniedError),
        (404, b'{"code":20012,"message":"Model does not exist"}', NotFoundError),
        (
            413,
            b'{"code":20042,"message":"input batch size 83 > maximum allowed batch size 64"}',
            BadRequestError,
        ),
        (429, b'{"message":"TPM limit reached.","data":null}', RateLimitError),
        (429, b'{"error":{"message":"quota","code":"insufficient_quota"}}', InsufficientQuotaError),
        (500, b'{"code":50000,"message":"unknown"}', InternalServerError),
        (503, b'{"code":50505,"message":"Model service overloaded"}', InternalServerError),
        (504, b"Gateway Timeout", InternalServerError),
        (409, b"conflict", APIStatusError),
    ],
)
def test_status_error_class(status: int, body: bytes, cls: type[APIStatusError]) -> None:
    exc = status_error(status, {}, body)
    assert type(exc) is cls
    assert exc.status_code == status
    assert isinstance(exc, APIStatusError)


def test_status_error_carries_message_code_trace_id_and_hint() -> None:
    headers = {"x-siliconcloud-trace-id": "trace-123", "retry-after": "7"}
    exc = status_error(429, headers, b'{"code":42900,"message":"TPM limit reached."}')
    assert exc.message == "TPM limit reached."
    assert exc.code == 42900
    assert exc.trace_id == "trace-123"
    assert exc.retry_after == 7.0
    assert "HTTP 429" in str(exc) and "TPM limit reached." in str(exc)
    assert "trace-123" in str(exc) and "42900" in str(exc)
    assert exc.body == '{"code":42900,"message":"TPM limit reached."}'


def test_status_error_body_is_capped() -> None:
    exc = status_error(500, {}, b"y" * 10_000)
    assert len(exc.body) == 2000


def test_headers_are_case_insensitive_even_in_a_plain_dict() -> None:
    # MockTransport users write headers as they read them in docs: Retry-After, X-Request-Id.
    headers = {"Retry-After": "3", "X-SiliconCloud-Trace-Id": "abc"}
    assert parse_retry_after(headers) == 3.0
    assert trace_id_of(headers) == "abc"


@pytest.mark.parametrize(
    "name", ["x-siliconcloud-trace-id", "x-request-id", "request-id", "x-trace-id"]
)
def test_trace_id_headers(name: str) -> None:
    assert trace_id_of({name: "t-1"}) == "t-1"


def test_trace_id_prefers_siliconflow_and_ignores_empty() -> None:
    assert trace_id_of({"x-request-id": "b", "x-siliconcloud-trace-id": "a"}) == "a"
    assert trace_id_of({"x-siliconcloud-trace-id": "", "x-request-id": "b"}) == "b"
    assert trace_id_of({}) is None


# -- retry hints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "5"}, 5.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms is more precise: wins
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),  # bad ms: fall back
        ({"retry-after": "41165011"}, MAX_RETRY_AFTER),  # an absurd value seen in the wild
        ({"retry-after-ms": "41165011000"}, MAX_RETRY_AFTER),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "garbage"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30.0)


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == 0.0


def test_parse_retry_after_far_http_date_is_capped() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 86_400 * 400, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == MAX_RETRY_AFTER


# -- decoding 200 answers --------------------------------------------------------------------


def b64(vector: list[float], dtype: str = "<f4") -> str:
    return base64.b64encode(np.asarray(vector, dtype=dtype).tobytes()).decode()


def answer(data: object, **extra: object) -> bytes:
    return json.dumps({"object": "list", "data": data, **extra}).encode()


def item(index: int, embedding: object) -> dict[str, object]:
    return {"object": "embedding", "index": index, "embedding": embedding}


def test_decode_float_lists_in_index_order() -> None:
    body = answer([item(2, [3.0, 3.5]), item(0, [1.0, 1.5]), item(1, [2.0, 2.5])])
    matrix, tokens = decode_embeddings(body, 3)
    assert matrix.dtype == np.float32 and matrix.shape == (3, 2)
    assert matrix.flags.c_contiguous
    np.testing.assert_array_equal(matrix, [[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]])
    assert tokens is None


def test_decode_base64_little_endian_float32() -> None:
    vectors = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    body = answer([item(i, b64(list(vectors[i]))) for i in (1, 2, 0)], usage={"prompt_tokens": 9})
    matrix, tokens = decode_embeddings(body, 3, dimensions=5)
    np.testing.assert_array_equal(matrix, vectors)  # bit-exact
    assert tokens == 9


def test_decode_mixed_base64_and_floats() -> None:
    body = answer([item(0, b64([1.0, 2.0])), item(1, [3.0, 4.0])])
    matrix, _ = decode_embeddings(body, 2)
    np.testing.assert_array_equal(matrix, [[1.0, 2.0], [3.0, 4.0]])


def test_decode_result_is_writable() -> None:
    matrix, _ = decode_embeddings(answer([item(0, b64([1.0, 2.0]))]), 1)
    matrix[0, 0] = 5.0  # a frombuffer view would be read-only


BAD_BODIES = [
    pytest.param(b'{"data": [', id="truncated-json"),
    pytest.param(b"<html>502 Bad Gateway</html>", id="html"),
    pytest.param(b'{"object": "list"}', id="no-data"),
    pytest.param(b'{"data": {"0": [1.0]}}', id="data-not-a-list"),
    pytest.param(b"[]", id="not-an-object"),
    pytest.param(answer([item(0, [1.0, 2.0])]), id="short"),
    pytest.param(answer([item(i, [1.0, 2.0]) for i in range(3)]), id="long"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(0, [1.0, 2.0])]), id="repeated-index"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(2, [1.0, 2.0])]), id="index-out-of-range"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(-1, [1.0, 2.0])]), id="negative-index"),
    pytest.param(answer([item(0, [1.0, 2.0]), item("1", [1.0, 2.0])]), id="string-index"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(True, [1.0, 2.0])]), id="bool-index"),
    pytest.param(answer([item(0, [1.0, 2.0]), {"embedding": [1.0, 2.0]}]), id="no-index"),
    pytest.param(answer([item(0, [1.0, 2.0]), {"index": 1}]), id="no-embedding"),
    pytest.param(answer([item(0, [1.0, 2.0]), "x"]), id="item-not-an-object"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(1, [1.0])]), id="ragged"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(1, None)]), id="null-embedding"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(1, 7)]), id="number-embedding"),
    pytest.param(answer([item(0, [1.0, 2.0]), item(1, "not base64!")]), id="bad-base64"),
    pytest.param(
        answer([item(0, [1.0, 2.0]), item(1, base64.b64encode(b"12345").decode())]),
        id="base64-not-whole-floats",
    ),
    pytest.param(answer([item(0, [1.0, float("nan")]), item(1, [1.0, 2.0])]), id="nan"),
    pytest.param(answer([item(0, [1.0, float("inf")]), item(1, [1.0, 2.0])]), id="inf"),
    pytest.param(answer([item(0, b64([1.0, float("nan")])), item(1, [1.0, 2.0])]), id="b64-nan"),
    pytest.param(answer([item(0, [1.0, None]), item(1, [1.0, 2.0])]), id="null-in-vector"),
    pytest.param(answer([item(0, [[1.0, 2.0]]), item(1, [[1.0, 2.0]])]), id="nested-lists"),
    pytest.param(answer([item(0, []), item(1, [])]), id="empty-vectors"),
    pytest.param(answer([item(0, ""), item(1, "")]), id="empty-base64"),
    pytest.param(answer([item(0, ["a", "b"]), item(1, [1.0, 2.0])]), id="strings-in-vector"),
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_decode_rejects_untrustworthy_answers(body: bytes) -> None:
    with pytest.raises(ResponseValidationError, match="untrustworthy") as caught:
        decode_embeddings(body, 2)
    assert not isinstance(caught.value.__cause__, (KeyError, TypeError))  # our words, not Python's


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ([item(0, [1.0]), {"embedding": [1.0]}], "data[1] has no 'index'"),
        ([item(0, [1.0]), {"index": 1}], "data[1] has no 'embedding'"),
        ([item(0, [1.0]), [1, [1.0]]], "data[1] is a list, not an object"),
        ([item(1, [1.0]), item(1, [1.0])], "data[1].index 1 is repeated"),
        ([item(0, [1.0]), item(2, [1.0])], "data[1].index is 2, not in 0..1"),
        ([item(0, [1.0]), item(1, [1e300])], "embedding at index 1 has values beyond float32"),
        ([item(0, [1.0]), item(1, b64([float("inf")]))], "embedding at index 1 has NaN or inf"),
        ([item(0, [1.0])], "expected 2 embeddings, got 1"),
    ],
)
def test_decode_names_the_field_at_fault(data: object, named: str) -> None:
    with pytest.raises(ResponseValidationError) as caught:
        decode_embeddings(answer(data), 2)
    assert named in str(caught.value)


def test_decode_names_one_embedding_in_the_singular() -> None:
    with pytest.raises(ResponseValidationError, match="expected 1 embedding, got 0"):
        decode_embeddings(answer([]), 1)


def test_decode_a_200_page_gives_the_content_type_and_an_excerpt() -> None:
    page = b"<html><head><title>Portal</title></head><body>" + b"log in " * 500 + b"</body></html>"
    with pytest.raises(ResponseValidationError) as caught:
        decode_embeddings(page, 1, content_type="text/html")
    text = str(caught.value)
    assert "HTTP 200 with a body of type text/html, not JSON: Portal log in" in text
    assert len(text) < 300


def test_decode_checks_requested_dimensions() -> None:
    body = answer([item(0, [1.0, 2.0, 3.0])])
    with pytest.raises(ResponseValidationError, match="expected 4"):
        decode_embeddings(body, 1, dimensions=4)
    matrix, _ = decode_embeddings(body, 1, dimensions=3)
    assert matrix.shape == (1, 3)


def test_decode_error_names_the_trace_id() -> None:
    with pytest.raises(ResponseValidationError, match="trace id t-9") as info:
        decode_embeddings(b"{", 1, trace_id="t-9")
    assert info.value.trace_id == "t-9"


@pytest.mark.parametrize("usage", [None, {}, {"prompt_tokens": "7"}, [], {"total_tokens": 3}])
def test_decode_ignores_missing_or_odd_usage(usage: object) -> None:
    _, tokens = decode_embeddings(answer([item(0, [1.0])], usage=usage), 1)
    assert tokens is None


def test_decode_200_with_an_error_body_keeps_the_providers_words() -> None:
    body = b'{"code":50507,"message":"Unknown error, please retry","data":null}'
    with pytest.raises(ResponseValidationError, match="Unknown error, please retry"):
        decode_embeddings(body, 1)
    body = b'{"error":{"message":"upstream failed","type":"server_error"}}'
    with pytest.raises(ResponseValidationError, match="upstream failed"):
        decode_embeddings(body, 1)
