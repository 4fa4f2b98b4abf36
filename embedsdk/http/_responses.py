"""Turning HTTP answers into vectors or exceptions. Pure functions: no I/O, no loop."""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import math
import re
import sys
import time
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np

from .._exceptions import APIStatusError, ResponseValidationError, status_error_class
from .._text import excerpt, plural

#: Servers have sent absurd hints (41165011 s); never wait longer than this for one at a
#: time. A hint longer than the client's ``max_wait`` fails the call before any wait
#: (``_sending``); one between this and ``max_wait`` is waited for in steps of this length,
#: each retry asking the server again how long is left.
MAX_RETRY_AFTER = 120.0

#: Error codes of a 429 that means "out of credit", not "slow down": never retried.
#: OpenAI's (and DashScope's compatible mode) ``insufficient_quota``; Zhipu's 1113 (account
#: in arrears).
_QUOTA_CODES = frozenset({"insufficient_quota", "1113"})

TRACE_HEADERS = ("x-siliconcloud-trace-id", "x-request-id", "request-id", "x-trace-id")


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` ignoring case: aiohttp's headers are case-insensitive, but the plain
    dicts a :class:`~embedsdk.MockTransport` handler returns may say ``Retry-After``."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # not a multidict: scan it
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    for name in TRACE_HEADERS:
        value = header(headers, name)
        if value:
            return value
    return None


def parse_retry_after(
    headers: Mapping[str, str],
    now: float | None = None,
    limit: float | None = MAX_RETRY_AFTER,
) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be seconds or an HTTP date. Returns ``None`` when there is no usable
    hint; caps the answer at ``limit`` (:data:`MAX_RETRY_AFTER`; ``None``: as asked).
    """
    value: float | None = None
    ms = header(headers, "retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = None
    raw = header(headers, "retry-after")
    if value is None and raw:
        try:
            value = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            value = when - (time.time() if now is None else now)
    if value is None or value != value or value < 0:  # NaN or negative
        return None if value is None or value != value else 0.0
    return value if limit is None else min(value, limit)


class RateLimitHeaders(NamedTuple):
    """``x-ratelimit-*`` values; ``None`` where absent. Reset times in seconds from now."""

    remaining_requests: float | None
    reset_requests: float | None
    remaining_tokens: float | None
    reset_tokens: float | None


def parse_duration(value: str) -> float | None:
    """Seconds from ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"`` or a bare number."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, number) if math.isfinite(number) else None
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = header(headers, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _duration(headers: Mapping[str, str], name: str) -> float | None:
    raw = header(headers, name)
    return None if raw is None else parse_duration(raw)


def parse_ratelimit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """The OpenAI-style rate-limit headers of an answer (any case), or ``None``."""
    requests = _number(headers, "x-ratelimit-remaining-requests")
    tokens = _number(headers, "x-ratelimit-remaining-tokens")
    if requests is None and tokens is None:
        return None
    return RateLimitHeaders(
        requests,
        _duration(headers, "x-ratelimit-reset-requests"),
        tokens,
        _duration(headers, "x-ratelimit-reset-tokens"),
    )


def content_type_of(headers: Mapping[str, str]) -> str:
    """The media type of an answer (``text/html``), lower case, without its parameters."""
    return (header(headers, "content-type") or "").split(";")[0].strip().lower()


def parse_error_body(body: bytes, content_type: str = "") -> tuple[str, Any]:
    """The provider's message and error code from any body shape we have met.

    OpenAI ``{"error": {"message", "code", ...}}``; SiliconFlow ``{"code", "message",
    "data"}``; text-embeddings-inference ``{"error": "...", "error_type": "..."}``; FastAPI
    ``{"detail": ...}`` (a 422's list of ``{"loc", "msg"}`` becomes ``input: Field required``);
    bare text such as ``Invalid token``; or a page that is not JSON at all (a proxy's HTML),
    of which the message quotes the content type and about 200 characters.
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        kind, quote = _not_json(text, content_type)
        return (f"{kind}, not JSON: {quote}" if kind else quote), None
    if not isinstance(data, dict):
        listed = isinstance(data, list) and any(isinstance(item, dict) for item in data)
        return (_words(data) if listed else excerpt(text, MESSAGE_LIMIT)), None
    error = data.get("error")
    if isinstance(error, dict):
        return _words(error.get("message") or error), error.get("code") or error.get("type")
    if isinstance(error, str):
        return _words(error), data.get("error_type") or data.get("code")
    for field in ("message", "detail", "errors"):
        if field in data:
            return _words(data[field]), data.get("code") if field == "message" else None
    return excerpt(text, MESSAGE_LIMIT), None


#: Characters of a provider's own message kept in an exception.
MESSAGE_LIMIT = 500
#: Characters of a body looked at to find its words (the rest cannot fit in a message).
_SCANNED = 20_000

# A pydantic error as Python prints it (vLLM puts ``str(exc)`` of a validation error in
# its message): {'type': 'missing', 'loc': ('body', 'input'), 'msg': 'Field required', ...}
_REPR_ERROR = re.compile(
    r"""'loc': \(([^)]*)\),\s*'msg': (?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")"""
)


def _not_json(text: str, content_type: str) -> tuple[str, str]:
    """What kind of answer a body that is not JSON is, and an excerpt of its words.

    Bare text (``Invalid token``) has no kind: it is the provider's message. A page (a
    proxy's 502, a login portal) is quoted without its tags, at most about 200 characters.
    """
    if not text:
        return "", "(empty body)"
    text = text[:_SCANNED]  # a page of megabytes: its start says what it is
    markup = "html" in content_type or text.startswith("<")
    if not markup and content_type in ("", "text/plain"):
        return "", excerpt(text)
    kind = f"a body of type {content_type}" if content_type else "a body of no type"
    if markup:
        text = _page_words(text) or "(no text)"
    return kind, excerpt(text)


class _PageWords(HTMLParser):
    """The words of an HTML page: text outside tags, scripts and styles. The stdlib parser
    is linear on any input, where a regular expression for tags can take seconds on a page
    of unclosed comments."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.words: list[str] = []
        self.hidden = 0  # inside <script> or <style>

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.words.append(data)


def _page_words(page: str) -> str:
    parser = _PageWords()
    parser.feed(page)
    return " ".join(" ".join(parser.words).split())


def _words(value: Any) -> str:
    """A message fit to read from whatever a server put where its message goes."""
    if isinstance(value, list):
        parts = [_validation_item(item) for item in value]
        return excerpt("; ".join(part for part in parts if part) or "(no message)", MESSAGE_LIMIT)
    if isinstance(value, dict):
        return _validation_item(value)
    text = str(value)[:_SCANNED]
    found = _REPR_ERROR.findall(text)
    if found:
        text = "; ".join(_located(loc.replace("'", "").split(","), a or b) for loc, a, b in found)
    return excerpt(text, MESSAGE_LIMIT)


def _validation_item(item: Any) -> str:
    """``input.0: Field required`` from FastAPI's ``{"loc": [...], "msg": "..."}``."""
    if not isinstance(item, dict):
        return excerpt(str(item), MESSAGE_LIMIT)
    message = item.get("msg") or item.get("message")
    if message is None:
        return excerpt(json.dumps(item, ensure_ascii=False), MESSAGE_LIMIT)
    loc = item.get("loc")
    return _located(loc if isinstance(loc, (list, tuple)) else [], str(message))


def _located(loc: Any, message: str) -> str:
    parts = [str(part).strip() for part in loc]
    if parts and parts[0] == "body":  # FastAPI's "where": the body is the only place we send
        parts = parts[1:]
    where = ".".join(part for part in parts if part)
    return excerpt(f"{where}: {message}" if where else message, MESSAGE_LIMIT)


def not_found_hint(endpoint: str, model: str, exc: APIStatusError) -> str:
    """What a 404 from ``POST endpoint`` most often means, and what to try.

    A base URL that already ends in ``/embeddings`` (the client adds it), one without the
    ``/v1`` most servers put their OpenAI routes under, or a model the server does not have.
    """
    path = urlsplit(endpoint).path.rstrip("/")
    base = path[: -len("/embeddings")] if path.endswith("/embeddings") else path
    if base.endswith("/embeddings"):
        fix = "base_url already ends in /embeddings, which embedsdk adds: leave it out"
    elif str(exc.code) in _NO_MODEL_CODES or "model" in exc.message.lower():
        fix = f"check that the server has the model {model!r}"
    elif not _VERSIONED.search(base):
        fix = "OpenAI-compatible servers usually serve it under /v1: end base_url with /v1"
    else:
        fix = f"check base_url, and that the server has the model {model!r}"
    return f"POST {endpoint} was not found; {fix}"


#: Codes of a 404 about the model rather than the URL (OpenAI's, SiliconFlow's).
_NO_MODEL_CODES = frozenset({"model_not_found", "20012"})
#: The end of a base URL with an API version: /v1, /v4 (Zhipu), /api/v3, /compatible-mode/v1.
_VERSIONED = re.compile(r"/v\d+[a-z0-9]*$", re.I)


def is_quota(status: int, code: Any) -> bool:
    """A 429 that means "out of credit" (never retried, not a rate limit)."""
    return status == 429 and str(code) in _QUOTA_CODES


def status_error(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """The exception for an HTTP error answer, with the provider's words and trace id."""
    message, code = parse_error_body(body, content_type_of(headers))
    quota = is_quota(status, code)
    cls = status_error_class(status, "insufficient_quota" if quota else code)
    return cls(
        message,
        status_code=status,
        code=code,
        trace_id=trace_id_of(headers),
        retry_after=parse_retry_after(headers),
        body=body.decode("utf-8", "replace"),
    )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _decode_one(item: Any, index: int) -> np.ndarray:
    if isinstance(item, str):
        raw = base64.b64decode(item, validate=True)
        if len(raw) % 4:
            raise ValueError(f"base64 vector at index {index} is not whole float32s")
        return np.frombuffer(raw, dtype="<f4")
    if isinstance(item, list):
        # No dtype on the first pass: strings, None, booleans or nested lists must not be
        # coerced into a plausible-looking float vector.
        vector = np.asarray(item)
        if vector.ndim != 1 or vector.dtype.kind not in "fiu":
            raise ValueError(f"embedding at index {index} is not a flat list of numbers")
        # Checked before the cast, which would make infinities (and a numpy RuntimeWarning).
        if vector.size and not np.abs(vector).max() <= _FLOAT32_MAX:
            raise ValueError(
                f"embedding at index {index} has values beyond float32's range (or NaN)"
            )
        return vector.astype(np.float32)
    raise ValueError(f"embedding at index {index} is {type(item).__name__}")


def _decode_base64_rows(items: list[str]) -> np.ndarray:
    """Decode base64 vectors straight into one ``(n, D)`` float32 matrix.

    The hot path of a fast server: one ``a2b_base64`` per row, copied into a single buffer
    (no per-row arrays, no ``vstack``). ``a2b_base64`` skips characters outside the alphabet
    instead of failing, so every string must have exactly the length that ``D`` floats
    encode to, and decode to exactly ``4 * D`` bytes: a damaged row cannot pass as a vector.
    """
    first = binascii.a2b_base64(items[0])
    width = len(first)
    if not width or width % 4:
        raise ValueError(f"base64 vector at index 0 is {width} bytes, not whole float32s")
    encoded = 4 * -(-width // 3)
    buffer = bytearray(width * len(items))
    view = memoryview(buffer)
    view[:width] = first
    for index in range(1, len(items)):
        text = items[index]
        raw = binascii.a2b_base64(text) if len(text) == encoded else b""
        if len(raw) != width:
            raise ValueError(f"base64 vector at index {index} is not {width // 4} float32s")
        view[index * width : (index + 1) * width] = raw
    if len(items[0]) != encoded:
        raise ValueError("base64 vector at index 0 is not padded base64")
    matrix = np.frombuffer(buffer, dtype="<f4").reshape(len(items), width // 4)
    return matrix if sys.byteorder == "little" else matrix.astype(np.float32)


def decode_embeddings(
    body: bytes,
    count: int,
    dimensions: int | None = None,
    trace_id: str | None = None,
    content_type: str = "",
    asked: bool = False,
) -> tuple[np.ndarray, int | None]:
    """The ``(count, D)`` float32 rows of a 200 answer, placed by ``data[].index``.

    Accepts base64 strings or float lists whatever was asked for. Checks that every index
    from 0 to count-1 comes exactly once, that all vectors have one length (``dimensions``
    when given) and that they are finite float32s. Returns the rows and
    ``usage.prompt_tokens`` (``None`` when absent, not a count, or 0). Raises
    :class:`ResponseValidationError` for anything else, naming the field at fault
    (``data[1] has no 'embedding'``).

    ``asked``: ``dimensions`` is what the request asked for (not the width of earlier
    answers). Vectors of another width then mean a server that ignores ``dimensions``: every
    retry would be billed and answered the same, so that error is not retryable. Another
    width than earlier answers' may be one bad backend of several: retried.
    """
    try:
        payload = _json_answer(body, content_type)
        items = _embeddings_by_index(payload, count)
        matrix = _matrix(items, count)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            raise ValueError(f"embedding at index {int(np.argmin(finite))} has NaN or infinity")
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ResponseValidationError(f"untrustworthy response: {exc}", trace_id=trace_id) from exc
    if dimensions is not None and matrix.shape[1] != dimensions:
        why = (
            "as dimensions= asked: the server ignores it, or serves another model"
            if asked
            else "as this client's earlier answers had"
        )
        raise ResponseValidationError(
            f"untrustworthy response: vectors of {matrix.shape[1]} dimensions, expected "
            f"{dimensions} ({why})",
            trace_id=trace_id,
            retryable=not asked,
        )
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    # Some gateways send a zero usage object they never fill: no count, so the estimate is
    # used (and marked as one). A bool is an int to Python, not a count.
    counted = isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0
    return matrix, tokens if counted else None


def embeddings_of(payload: dict[str, Any], count: int) -> np.ndarray:
    """The ``(count, D)`` float32 rows of an already parsed 200 answer (a Batch API output
    line's body), checked as :func:`decode_embeddings` checks them; ``ValueError`` if not."""
    matrix = _matrix(_embeddings_by_index(payload, count), count)
    if not np.isfinite(matrix).all():
        raise ValueError("an embedding has NaN or infinity")
    return matrix


def _json_answer(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON object of a 200 answer (a login portal's page is not one)."""
    try:
        payload = json.loads(body)
    except ValueError:
        kind, quote = _not_json(body.decode("utf-8", "replace").strip(), content_type)
        raise ValueError(f"HTTP 200 with {kind or 'a text body'}, not JSON: {quote}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"HTTP 200 with a JSON {type(payload).__name__}, not an object")
    return payload


def _embeddings_by_index(payload: dict[str, Any], count: int) -> list[Any]:
    """``data[].embedding`` in ``index`` order; each index from 0 to count-1 exactly once."""
    data = payload.get("data")
    if not isinstance(data, list):
        # Some gateways answer 200 with an error body: keep the provider's words.
        message = parse_error_body(json.dumps(payload).encode())[0]
        raise ValueError(f"no list of embeddings in 'data': {excerpt(message)}")
    if len(data) != count:
        raise ValueError(f"expected {plural(count, 'embedding')}, got {len(data)}")
    items: list[Any] = [None] * count
    seen = [False] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"data[{position}] is a {type(item).__name__}, not an object")
        for field in ("index", "embedding"):
            if field not in item:
                raise ValueError(f"data[{position}] has no {field!r}")
        index = item["index"]
        if type(index) is not int or not 0 <= index < count:
            raise ValueError(f"data[{position}].index is {index!r}, not in 0..{count - 1}")
        if seen[index]:
            raise ValueError(f"data[{position}].index {index} is repeated")
        seen[index] = True
        items[index] = item["embedding"]
    return items


def _matrix(items: list[Any], count: int) -> np.ndarray:
    if count and all(type(item) is str for item in items):
        return _decode_base64_rows(items)
    rows = [_decode_one(item, index) for index, item in enumerate(items)]
    dims = {len(r) for r in rows}
    if len(dims) != 1 or 0 in dims:
        raise ValueError(f"vector lengths {sorted(dims)}, expected one")
    return np.vstack(rows) if count else np.empty((0, 0), np.float32)
