"""Error answers in the shapes real providers use (see shared provider facts). Pure functions."""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class ErrorKind(NamedTuple):
    """One kind of error answer: its status and the code or type each style attaches."""

    status: int
    siliconflow_code: int | None  # SiliconFlow's numeric code (None: the body has none)
    openai_type: str
    openai_code: str | None
    tei_type: str
    openai_param: str | None = None  # the request field OpenAI's body blames


BAD_REQUEST = ErrorKind(400, 20015, "invalid_request_error", None, "Validation")
# A text the provider will not take (content, an empty string): OpenAI names the field.
REFUSED_INPUT = ErrorKind(400, 20015, "invalid_request_error", None, "Validation", "input")
REFUSED_MESSAGE = "input contains content that cannot be processed"
NO_MODEL = ErrorKind(404, 20012, "invalid_request_error", "model_not_found", "Validation")
BATCH_TOO_LARGE = ErrorKind(413, 20042, "invalid_request_error", None, "Validation")
# llama.cpp's answer to an input longer than its batch: a 500 that must not be retried forever.
INPUT_TOO_LARGE = ErrorKind(500, None, "server_error", None, "Backend")
RATE_LIMITED = ErrorKind(429, None, "requests", "rate_limit_exceeded", "Overloaded")
SERVER_ERROR = ErrorKind(500, 50000, "server_error", None, "Backend")
OVERLOADED = ErrorKind(503, 50505, "server_error", "overloaded", "Overloaded")

MESSAGES = {
    "500": "Internal server error (simulated fault)",
    "503": "Model service overloaded. Please try again later.",
}
# nginx's page for limit_req_status / limit_conn_status 429: it names no limit.
GATEWAY_429 = (
    b"<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n"
    b"<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. (simulated)"
)


def error_body(style: str, kind: ErrorKind, message: str) -> tuple[bytes, str]:
    """The body and content type of an error answer in ``style``.

    ``siliconflow``: ``{"code", "message", "data": null}`` (no ``code`` on a 429, as seen);
    ``openai``: ``{"error": {"message", "type", "param", "code"}}``; ``tei``:
    ``{"error", "error_type"}``; ``text``: the bare message.
    """
    if style == "text":
        return message.encode(), "text/plain; charset=utf-8"
    payload: dict[str, Any]
    if style == "openai":
        payload = {
            "error": {
                "message": message,
                "type": kind.openai_type,
                "param": kind.openai_param,
                "code": kind.openai_code,
            }
        }
    elif style == "tei":
        payload = {"error": message, "error_type": kind.tei_type}
    else:
        payload = {"message": message, "data": None}
        if kind.siliconflow_code is not None:
            payload = {"code": kind.siliconflow_code, **payload}
    return json.dumps(payload).encode(), "application/json"


def quota_body() -> bytes:
    """OpenAI's permanent 429 (whatever the style: that is where clients meet it)."""
    error = {
        "message": QUOTA_MESSAGE,
        "type": "insufficient_quota",
        "param": None,
        "code": "insufficient_quota",
    }
    return json.dumps({"error": error}).encode()


def rate_limit_message(style: str, which: str, model: str, limit: float, wait: float) -> str:
    """The 429 message: SiliconFlow's words, or OpenAI's in the openai style.

    ``which`` is ``"RPM"``, ``"TPM"`` or ``"concurrency"`` (requests in flight); ``wait``
    seconds until the limit would take the request.
    """
    if which == "concurrency":
        if style == "openai":
            return f"Too many concurrent requests for {model}: limit {limit:g} in flight."
        return "Request was rejected due to rate limiting. Details: concurrency limit reached."
    if style == "openai":
        unit = "requests" if which == "RPM" else "tokens"
        return (
            f"Rate limit reached for {model} on {unit} per min ({which}): Limit {limit:g}. "
            f"Please try again in {wait:.3f}s."
        )
    return f"Request was rejected due to rate limiting. Details: {which} limit reached."
