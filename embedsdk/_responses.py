"""Turning HTTP answers into vectors or exceptions. Pure functions: no I/O, no loop."""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._exceptions import APIStatusError, ResponseValidationError, status_error_class

#: Servers have sent absurd hints (41165011 s); never wait longer than this for one.
MAX_RETRY_AFTER = 120.0

#: Error codes of a 429 that means "out of credit", not "slow down": never retried.
#: OpenAI's (and DashScope's compatible mode) ``insufficient_quota``; Zhipu's 1113 (account
#: in arrears).
_QUOTA_CODES = frozenset({"insufficient_quota", "1113"})

TRACE_HEADERS = ("x-siliconcloud-trace-id", "x-request-id", "request-id", "x-trace-id")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` ignoring case: aiohttp's headers are case-insensitive, but the plain
    dicts a :class:`~embedsdk.MockTransport` handler returns may say ``Retry-After``."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # not a multidict: scan it
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    for name in TRACE_HEADERS:
        value = _header(headers, name)
        if value:
            return value
    return None


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be seconds or an HTTP date. Returns ``None`` when there is no usable
    hint; caps the answer at :data:`MAX_RETRY_AFTER`.
    """
    value: float | None = None
    ms = _header(headers, "retry-after-ms")
    if ms:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = None
    raw = _header(headers, "retry-after")
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
    return min(value, MAX_RETRY_AFTER)


def parse_error_body(body: bytes) -> tuple[str, Any]:
    """The provider's message and error code from any body shape we have met.

    OpenAI ``{"error": {"message", "code", ...}}``; SiliconFlow ``{"code", "message",
    "data"}``; text-embeddings-inference ``{"error": "...", "error_type": "..."}``; FastAPI
    ``{"detail": ...}``; or bare text such as ``Invalid token``.
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return (text[:500] or "(empty body)"), None
    if not isinstance(data, dict):
        return text[:500], None
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error), error.get("code") or error.get("type")
    if isinstance(error, str):
        return error, data.get("error_type") or data.get("code")
    if "message" in data:
        return str(data["message"]), data.get("code")
    if "detail" in data:
        return str(data["detail"]), None
    return text[:500], None


def is_quota(status: int, code: Any) -> bool:
    """A 429 that means "out of credit" (never retried, not a rate limit)."""
    return status == 429 and str(code) in _QUOTA_CODES


def status_error(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """The exception for an HTTP error answer, with the provider's words and trace id."""
    message, code = parse_error_body(body)
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
) -> tuple[np.ndarray, int | None]:
    """The ``(count, D)`` float32 rows of a 200 answer, placed by ``data[].index``.

    Accepts base64 strings or float lists whatever was asked for. Checks that every index
    from 0 to count-1 comes exactly once, that all vectors have one length (``dimensions``
    when given) and that they are finite. Returns the rows and ``usage.prompt_tokens``.
    Raises :class:`ResponseValidationError` for anything else.
    """
    try:
        payload = json.loads(body)
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list):
            # Some gateways answer 200 with an error body: keep the provider's words.
            raise ValueError(f"no list of embeddings in 'data': {parse_error_body(body)[0]:.200}")
        if len(data) != count:
            raise ValueError(f"expected {count} embeddings, got {len(data)}")
        items: list[Any] = [None] * count
        for item in data:
            index = item["index"]
            if type(index) is not int or not 0 <= index < count or items[index] is not None:
                raise ValueError(f"bad or repeated index {index!r}")
            items[index] = item["embedding"]
        if count and all(type(item) is str for item in items):
            matrix = _decode_base64_rows(items)
        else:
            rows = [_decode_one(item, index) for index, item in enumerate(items)]
            dims = {len(r) for r in rows}
            if len(dims) != 1 or 0 in dims:
                raise ValueError(f"vector lengths {sorted(dims)}, expected one")
            matrix = np.vstack(rows) if count else np.empty((0, 0), np.float32)
        if dimensions is not None and matrix.shape[1] != dimensions:
            raise ValueError(f"vectors of {matrix.shape[1]} dimensions, expected {dimensions}")
        if not np.isfinite(matrix).all():
            raise ValueError("vector contains NaN or infinity")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ResponseValidationError(f"untrustworthy response: {exc}", trace_id=trace_id) from exc
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return matrix, tokens if isinstance(tokens, int) else None
