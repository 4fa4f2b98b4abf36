"""What an error says, through the real core: a 404 names the URL and the usual fixes, a 422 is
an ``UnprocessableEntityError`` with readable validation messages, a page that is not JSON is
quoted briefly (in the exception and the log), a 200 missing a field names it, and counts of
one are singular."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any, Callable

import numpy as np
import pytest

import embedsdk
from embedsdk import (
    APIStatusError,
    Embedder,
    EmbeddingResult,
    InternalServerError,
    MockTransport,
    NotFoundError,
    Request,
    Response,
    ResponseValidationError,
    UnprocessableEntityError,
)
from embedsdk.testing import SimulatedProvider, expected_matrix

LOCAL = "http://127.0.0.1:9/v1"  # MockTransport answers: nothing is sent there
DIM = 8
Factory = Callable[..., SimulatedProvider]


class Answers:
    """A MockTransport handler: ``answer(request)`` for every request, counted."""

    def __init__(self, answer: Callable[[Request], Response]) -> None:
        self.answer = answer
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return self.answer(request)


def always(status: int, body: bytes, content_type: str = "application/json") -> Answers:
    return Answers(lambda request: Response(status, {"Content-Type": content_type}, body))


def embedder(server: Answers, **options: Any) -> Embedder:
    options.setdefault("base_url", LOCAL)
    options.setdefault("cache", False)
    return Embedder(transport=MockTransport(server), **options)


def failure(server: Answers, texts: list[str], **options: Any) -> BaseException:
    with embedder(server, **options) as emb, pytest.raises(embedsdk.EmbedSDKError) as caught:
        emb.embed(texts)
    return caught.value


# -- 404: the URL requested and what usually fixes it ------------------------------------------


def test_a_404_for_a_base_url_without_v1_names_the_url_and_suggests_v1(
    simulated_provider: SimulatedProvider,
) -> None:
    root = simulated_provider.base_url.rsplit("/v1", 1)[0]  # the real server, wrong path
    with pytest.raises(NotFoundError) as caught:
        embedsdk.get_batch_embeddings(["a"], base_url=root + "/api", cache=False)
    text = str(caught.value)
    assert f"POST {root}/api/embeddings was not found" in text
    assert "end base_url with /v1" in text
    assert simulated_provider.stats()["requests"] == 0  # aiohttp.web's 404, not the route


def test_a_404_for_a_base_url_ending_in_embeddings_says_to_leave_it_out(
    simulated_provider: SimulatedProvider,
) -> None:
    url = simulated_provider.base_url + "/embeddings"
    with pytest.raises(NotFoundError) as caught:
        embedsdk.get_batch_embeddings(["a"], base_url=url, cache=False, max_retries=3)
    text = str(caught.value)
    assert f"POST {url}/embeddings was not found" in text
    assert "already ends in /embeddings" in text and "gave up" not in text


@pytest.mark.parametrize("style", ["siliconflow", "openai", "tei", "text"])
def test_a_404_about_the_model_names_the_model(
    simulated_provider_factory: Factory, style: str
) -> None:
    sim = simulated_provider_factory(dim=DIM, models=("BAAI/bge-m3",), error_style=style)
    with pytest.raises(NotFoundError) as caught:
        embedsdk.get_batch_embeddings(["a"], base_url=sim.base_url, model="no/such-model")
    assert "check that the server has the model 'no/such-model'" in str(caught.value)
    assert sim.stats()["requests"] == 1  # not retried


# -- 422: UnprocessableEntityError with the validation messages joined -------------------------

FASTAPI_422 = {
    "detail": [
        {"type": "missing", "loc": ["body", "input"], "msg": "Field required", "input": {}},
        {"type": "int_parsing", "loc": ["body", "dimensions"], "msg": "Input should be an int"},
    ]
}
INFINITY_422 = {"error": {"message": "dimensions 4096 > 1024", "type": None, "code": 422}}
TEI_422 = {
    "error": "Input validation error: inputs must have less than 512 tokens",
    "error_type": "Validation",
}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (FASTAPI_422, "input: Field required; dimensions: Input should be an int"),
        (INFINITY_422, "dimensions 4096 > 1024"),
        (TEI_422, "inputs must have less than 512 tokens"),
    ],
    ids=["fastapi", "infinity", "tei"],
)
def test_a_422_is_unprocessable_entity_with_readable_messages(body: Any, words: str) -> None:
    server = always(422, json.dumps(body).encode())
    exc = failure(server, ["a", "b"], max_retries=4)
    assert isinstance(exc, UnprocessableEntityError) and isinstance(exc, APIStatusError)
    assert exc.status_code == 422 and words in exc.message and words in str(exc)
    assert "{" not in exc.message and "'loc'" not in str(exc)  # no repr of the body
    if body is TEI_422:  # about an input's length: each is tried alone, none retried
        assert [len(r.json()["input"]) for r in server.requests] == [2, 1, 1]
        assert "in the request for input 0)" in str(exc)
    else:
        assert len(server.requests) == 1  # a 422 about the request: not retried nor split
    assert isinstance(exc, embedsdk.UnprocessableEntityError)  # exported


def test_a_validation_error_printed_by_python_is_made_readable() -> None:
    # vLLM puts str() of FastAPI's validation error in its message.
    message = (
        "1 validation error:\n  {'type': 'missing', 'loc': ('body', 'input'), "
        "'msg': 'Field required', 'input': {'model': 'm'}}"
    )
    body = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
    exc = failure(always(400, json.dumps(body).encode()), ["a"])
    assert isinstance(exc, APIStatusError) and exc.message == "input: Field required"


# -- bodies that are not JSON: status, content type, ~200 characters ---------------------------

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    + b"<!-- a padding comment to defeat IE's friendly error page -->\r\n" * 40
    + b"<p>"
    + b"filler " * 2000
    + b"</p></body>\r\n</html>\r\n"
)


def test_an_html_error_page_gives_status_content_type_and_a_short_excerpt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = always(502, NGINX_502, "text/html; charset=utf-8")
    with caplog.at_level(logging.DEBUG, logger="embedsdk"):
        exc = failure(server, ["a"], max_retries=2)
    assert isinstance(exc, InternalServerError)
    assert exc.message.startswith("a body of type text/html, not JSON: 502 Bad Gateway")
    assert "nginx/1.18.0" in exc.message and "<" not in exc.message
    assert len(exc.message) <= 240
    assert str(exc).startswith("HTTP 502: a body of type text/html")
    assert len(server.requests) == 3  # a 502 is retried
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and all(len(line) <= 260 for line in retries)


def test_a_200_from_a_login_portal_is_untrustworthy_and_quoted_briefly() -> None:
    page = (
        b"<html><head><title>Sign in</title></head><body>" + b"Sign in to use this network. " * 50
    )
    server = always(200, page + b"</body></html>", "text/html")
    exc = failure(server, ["a"], max_retries=1)
    assert isinstance(exc, ResponseValidationError)
    text = str(exc)
    assert "HTTP 200 with a body of type text/html, not JSON: Sign in Sign in to use" in text
    assert len(text.split("not JSON: ")[1].split(" (in the request")[0]) <= 200
    assert len(server.requests) == 2  # retried like a 5xx


def test_a_plain_text_error_stays_the_providers_words(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM, api_key="right", error_style="text")
    with pytest.raises(embedsdk.AuthenticationError) as caught:
        embedsdk.get_batch_embeddings(["a"], base_url=sim.base_url, api_key="wrong", cache=False)
    assert caught.value.message == "Invalid token"  # bare text: no "text/plain" noise


def test_an_xml_answer_names_its_content_type() -> None:
    exc = failure(
        always(503, b"<?xml version='1.0'?><Error>Busy</Error>", "application/xml"), ["a"]
    )
    assert isinstance(exc, APIStatusError)
    assert exc.message == "a body of type application/xml, not JSON: Busy"


# -- a 200 missing a field, or out of float32's range ------------------------------------------


def b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ([{"embedding": [1.0, 2.0]}], "data[0] has no 'index'"),
        ([{"index": 0}], "data[0] has no 'embedding'"),
        ([{"index": 0, "embeddings": [1.0]}], "data[0] has no 'embedding'"),
        (["x"], "data[0] is a str, not an object"),
        ([{"index": "0", "embedding": [1.0]}], "data[0].index is '0'"),
        ([{"index": 0, "embedding": [1e39, 2.0]}], "embedding at index 0 has values beyond"),
        ([{"index": 0, "embedding": [-3.5e38, 2.0]}], "embedding at index 0 has values beyond"),
    ],
)
def test_a_200_with_a_missing_field_or_overflow_names_it(data: Any, named: str) -> None:
    # pytest turns warnings into errors: an overflowing cast would fail here with numpy's.
    server = always(200, json.dumps({"object": "list", "data": data}).encode())
    exc = failure(server, ["a"], max_retries=0)
    assert isinstance(exc, ResponseValidationError)
    assert named in str(exc)
    assert "KeyError" not in str(exc) and not str(exc.__cause__).startswith("'")


def test_the_largest_float32_values_pass() -> None:
    big = float(np.finfo(np.float32).max)
    data = [{"index": 0, "embedding": [big, -big]}, {"index": 1, "embedding": b64([1.0, 2.0])}]
    server = always(200, json.dumps({"data": data}).encode())
    with embedder(server) as emb:
        vectors = emb.embed(["a", "b"])
    assert vectors[0].tolist() == [big, -big] and vectors[1].tolist() == [1.0, 2.0]


# -- counts of one -----------------------------------------------------------------------------


def test_one_input_one_attempt_are_singular() -> None:
    exc = failure(always(503, b'{"message":"busy"}'), ["only"], max_retries=0)
    text = str(exc)
    assert "gave up after 1 attempt;" in text
    assert "1 input has no vector (input 0)" in text
    assert "1 inputs" not in text and "attempts" not in text


def test_two_inputs_are_plural() -> None:
    exc = failure(always(503, b'{"message":"busy"}'), ["a", "b"], max_retries=1)
    assert "gave up after 2 attempts" in str(exc)
    assert "2 inputs have no vector (inputs 0..1)" in str(exc)


def test_a_returned_result_keeps_the_messages_too(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM, max_input_tokens=50)
    texts = ["short", "long " + "词" * 100, "short too"]
    result = embedsdk.get_batch_embeddings(
        texts, base_url=sim.base_url, batch_size=1, cache=False, errors="return"
    )
    assert isinstance(result, EmbeddingResult)
    (exc,) = result.errors
    assert "too large" in str(exc) and "(in the request for input 1)" in str(exc)
    assert np.array_equal(
        result.vectors[[0, 2]], expected_matrix(texts, "BAAI/bge-m3", DIM)[[0, 2]]
    )
