"""The simulated provider's Batch API (``/files``, ``/batches``), for embeddings only.

It models OpenAI's Batch API as OpenAI's OpenAPI description (``openai/openai-openapi``)
gives it: the ``OpenAIFile`` and ``Batch`` objects, ``ListFilesResponse`` and
``ListBatchesResponse``, the input lines (``BatchRequestInput``), the output and error lines
(``BatchRequestOutput``) and the error body ``{"error": {"message", "type", "param",
"code"}}``; the validation error codes are those OpenAI documents (``invalid_json_line``,
``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``, ``empty_file``,
``too_many_tasks``) and a few of this simulator's own.

A batch goes ``validating`` -> ``in_progress`` -> ``finalizing`` -> ``completed``, or to
``failed`` (validation), ``expired`` (its window ran out) or ``cancelling`` -> ``cancelled``,
in one task on the server's loop that waits with ``asyncio.sleep`` only: under
:func:`~embedsdk.testing.run_in_virtual_time` a 24 h window takes milliseconds. Each line is
answered by the server's own ``/embeddings`` code (:meth:`SimServer.answer_now`), without
its rate limits, latency or faults, so the vectors are bit-identical to ``/embeddings``'.
Files and batches live in memory until the server stops.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from aiohttp import BodyPartReader, web

from ..ratecontrol import loop_time

if TYPE_CHECKING:
    from ._server import Answer, SimServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ENDPOINT = "/v1/embeddings"
WINDOW = "24h"
#: Most validation errors listed in a failed batch's ``errors``.
MAX_ERRORS = 10
#: Seconds a 429 of ``batch_poll_429`` asks the client to wait.
POLL_RETRY_AFTER = 2
#: Bytes of an upload read at a time.
CHUNK = 1 << 20
EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
_LINE_FAILURE = json.dumps(
    {
        "error": {
            "message": "The server had an error while processing your request. (simulated)",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
).encode()
_RESULT_LINE = (
    b'{"id":"%s","custom_id":%s,"response":'
    b'{"status_code":%d,"request_id":"%s","body":%s},"error":null}'
)
_STATUS_AT = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelling": "cancelling_at",
    "cancelled": "cancelled_at",
}


class _File:
    __slots__ = ("content", "info")

    def __init__(self, info: dict[str, Any], content: bytes) -> None:
        self.info = info  # the File object
        self.content = content


class _Line(NamedTuple):
    number: int  # 1-based, in the input file
    custom_id: str
    body: dict[str, Any]


class _Batch:
    """One batch: its Batch object (``info``) and where its processing stands."""

    def __init__(self, info: dict[str, Any], content: bytes, deadline: float) -> None:
        self.info = info
        self.content = content  # of the input file, as it was at creation
        self.deadline = deadline  # loop time at which it expires
        self.lines: list[_Line] = []
        self.done = 0  # lines answered so far, in order
        self.out: list[bytes] = []  # output file lines (status 200)
        self.err: list[bytes] = []  # error file lines
        self.tokens = 0
        self.task: asyncio.Future[None] | None = None


class _Counters:
    __slots__ = (
        "cancelled",
        "created",
        "inputs",
        "polls",
        "texts",
        "tokens",
        "upload_bytes",
        "uploads",
    )

    def __init__(self) -> None:
        self.uploads = 0
        self.upload_bytes = 0
        self.created = 0
        self.cancelled = 0
        self.polls = 0
        self.inputs = 0
        self.tokens = 0
        self.texts: Counter[str] = Counter()


class _Form(NamedTuple):
    purpose: str | None
    filename: str | None
    content: bytes | None  # None: no file field, or one over the size limit
    size: int


def _error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An answer with OpenAI's error body."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return web.json_response({"error": error}, status=status, headers=headers)


def _no_such(what: str, object_id: str, param: str = "id") -> web.Response:
    return _error(404, f"No such {what} object: {object_id}", param=param)


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _problem(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    """One entry of a failed batch's ``errors.data``."""
    return {"code": code, "message": message, "param": param, "line": line}


def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return {
        "object": "list",
        "data": data,
        "first_id": first,
        "last_id": last,
        "has_more": has_more,
    }


class BatchAPI:
    """The files and batches of one :class:`SimServer`, and their handlers. Loop-only."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}  # in creation order
        self.counts = _Counters()
        self._tasks: set[asyncio.Future[None]] = set()
        self._polls = 0  # GETs of a batch ever (what batch_poll_429 counts)
        # Timestamps: the wall clock at creation plus the loop's seconds since (virtual or not).
        self._wall = time.time()
        self._origin = loop_time()

    # -- wiring ----------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path under the prefix, handler) of every route."""
        table: list[tuple[str, str, Handler]] = [
            ("POST", "/files", self.upload_file),
            ("GET", "/files", self.list_files),
            ("GET", "/files/{id}", self.get_file),
            ("DELETE", "/files/{id}", self.delete_file),
            ("GET", "/files/{id}/content", self.file_content),
            ("POST", "/batches", self.create_batch),
            ("GET", "/batches", self.list_batches),
            ("GET", "/batches/{id}", self.get_batch),
            ("POST", "/batches/{id}/cancel", self.cancel_batch),
        ]
        return [(method, path, self._guarded(handler)) for method, path, handler in table]

    def _guarded(self, handler: Handler) -> Handler:
        """``handler`` behind the switch (``batch_api``) and the API key."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            cfg = self.server.config
            if not cfg.batch_api:
                return _error(404, f"Invalid URL ({request.method} {request.path})")
            key = cfg.api_key
            if key is not None and request.headers.get("Authorization") != "Bearer " + key:
                return _error(401, "Incorrect API key provided.", code="invalid_api_key")
            return await handler(request)

        return guarded

    async def stop(self) -> None:
        """Cancel every batch still being processed (their state stays as it is)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def reset_stats(self) -> None:
        self.counts = _Counters()

    def snapshot(self, texts: bool = True) -> dict[str, Any]:
        """The counters: ``uploads`` / ``upload_bytes`` (files uploaded), ``created`` and
        ``cancelled`` (batches), ``polls`` (GETs of one batch), ``inputs`` / ``tokens``
        embedded by lines answered 200, and (with ``texts`` and ``track_texts``) ``texts``:
        times each text was embedded through a batch."""
        c = self.counts
        data: dict[str, Any] = {
            "uploads": c.uploads,
            "upload_bytes": c.upload_bytes,
            "created": c.created,
            "cancelled": c.cancelled,
            "polls": c.polls,
            "inputs": c.inputs,
            "tokens": c.tokens,
        }
        if texts and self.server.config.track_texts:
            data["texts"] = dict(c.texts)
        return data

    def now(self) -> int:
        """The Unix-like timestamp of now: it follows the loop's clock."""
        return int(self._wall + loop_time() - self._origin)

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Future[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- files -----------------------------------------------------------------------------

    async def upload_file(self, request: web.Request) -> web.StreamResponse:
        if not request.content_type.startswith("multipart/"):
            return _error(400, "Send multipart/form-data with the fields 'purpose' and 'file'.")
        try:
            form = await self._read_form(request)
        except ValueError as exc:
            return _error(400, f"Could not parse the multipart form: {exc}")
        limit = self.server.config.batch_max_bytes
        if form.purpose is None:
            return _error(400, "Missing required parameter: 'purpose'.", param="purpose")
        if form.purpose != "batch":
            message = f"Invalid purpose {form.purpose!r}: this server takes only 'batch'."
            return _error(400, message, param="purpose")
        if form.filename is None:
            return _error(
                400, "Missing required parameter: 'file' (with a filename).", param="file"
            )
        if form.content is None:
            message = f"File is too large: {form.size} bytes, at most {limit} are allowed."
            return _error(400, message, param="file")
        self.counts.uploads += 1
        self.counts.upload_bytes += form.size
        return web.json_response(self._store(form.content, form.filename, "batch"))

    async def _read_form(self, request: web.Request) -> _Form:
        """The form's purpose, file name and file bytes (not kept beyond the size limit)."""
        limit = self.server.config.batch_max_bytes
        purpose = filename = None
        content: bytes | None = None
        size = 0
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "purpose":
                purpose = (await part.read(decode=True)).decode("utf-8", "replace")
            elif part.name == "file":
                filename = part.filename
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = await part.read_chunk(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size <= limit:
                        chunks.append(chunk)
                content = b"".join(chunks) if size <= limit else None
            else:
                await part.release()
        return _Form(purpose, filename, content, size)

    def _store(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = _new_id("file-")
        info: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": self.now(),
            "expires_at": None,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        self.files[file_id] = _File(info, content)
        return info

    async def list_files(self, request: web.Request) -> web.StreamResponse:
        purpose = request.query.get("purpose")
        data = [
            f.info
            for f in reversed(list(self.files.values()))
            if purpose is None or f.info["purpose"] == purpose
        ]
        return web.json_response(_list(data, False))

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return _no_such("File", request.match_info["id"])
        return web.json_response(found.info)

    async def file_content(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.match_info["id"])
        if found is None:
            return _no_such("File", request.match_info["id"])
        return web.Response(body=found.content, content_type="application/octet-stream")

    async def delete_file(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["id"]
        if self.files.pop(file_id, None) is None:
            return _no_such("File", file_id)
        return web.json_response({"id": file_id, "object": "file", "deleted": True})

    # -- batches: the routes ---------------------------------------------------------------

    async def create_batch(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(payload, dict):
            return _error(400, "The request body must be a JSON object.")
        refused = _refuse_create(payload)
        if refused is not None:
            return refused
        file_id = payload["input_file_id"]
        found = self.files.get(file_id)
        if found is None:
            return _no_such("File", file_id, "input_file_id")
        if found.info["purpose"] != "batch":
            message = f"File {file_id} has purpose {found.info['purpose']!r}, not 'batch'."
            return _error(400, message, param="input_file_id")
        batch = self._new_batch(file_id, found.content, payload.get("metadata"))
        batch.task = self._spawn(self._run(batch))
        self.counts.created += 1
        return web.json_response(batch.info)

    def _new_batch(self, file_id: str, content: bytes, metadata: Any) -> _Batch:
        now = self.now()
        expire_after = self.server.config.batch_expire_after
        info: dict[str, Any] = {
            "id": _new_id("batch_"),
            "object": "batch",
            "endpoint": ENDPOINT,
            "model": None,
            "errors": None,
            "input_file_id": file_id,
            "completion_window": WINDOW,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + int(expire_after),
            **{field: None for field in list(_STATUS_AT.values())[1:]},
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
            "usage": None,
        }
        batch = _Batch(info, content, loop_time() + expire_after)
        self.batches[info["id"]] = batch
        return batch

    async def get_batch(self, request: web.Request) -> web.StreamResponse:
        self._polls += 1
        self.counts.polls += 1
        every = self.server.config.batch_poll_429
        if every and self._polls % every == 0:
            message = f"Rate limit reached for requests. Please try again in {POLL_RETRY_AFTER}s."
            headers = {"Retry-After": str(POLL_RETRY_AFTER)}
            return _error(
                429, message, code="rate_limit_exceeded", kind="requests", headers=headers
            )
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _no_such("Batch", request.match_info["id"])
        return web.json_response(batch.info)

    async def list_batches(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return _error(400, "limit must be an integer between 1 and 100.", param="limit")
        newest = list(reversed(list(self.batches)))
        after = request.query.get("after")
        start = 0
        if after is not None:
            if after not in self.batches:
                return _no_such("Batch", after, "after")
            start = newest.index(after) + 1
        page = [self.batches[i].info for i in newest[start : start + limit]]
        return web.json_response(_list(page, start + limit < len(newest)))

    async def cancel_batch(self, request: web.Request) -> web.StreamResponse:
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _no_such("Batch", request.match_info["id"])
        status = batch.info["status"]
        if status == "cancelling":
            return web.json_response(batch.info)
        if status not in ("validating", "in_progress"):
            return _error(400, f"Cannot cancel a batch with status '{status}'.")
        if batch.task is not None:
            batch.task.cancel()  # it waits between lines: the line under way is not answered
        self._set(batch, "cancelling")
        self.counts.cancelled += 1
        self._spawn(self._cancel(batch))
        return web.json_response(batch.info)

    # -- batches: the processing -----------------------------------------------------------

    async def _run(self, batch: _Batch) -> None:
        """Validate, answer every line in order, finalize; or fail, or expire."""
        problems = self._validate(batch)
        if not await self._wait(batch, self.server.config.batch_validation):
            self._expire(batch)
            return
        if not problems:
            problems = self._over_enqueued(batch)
        if problems:
            batch.info["errors"] = {"object": "list", "data": problems[:MAX_ERRORS]}
            self._finish(batch, "failed")
            return
        self._set(batch, "in_progress")
        for line in batch.lines:
            if not await self._wait(batch, self.server.config.batch_per_request):
                self._expire(batch)
                return
            self._answer(batch, line)
        self._set(batch, "finalizing")
        await asyncio.sleep(self.server.config.batch_finalizing)
        self._finish(batch, "completed")

    async def _cancel(self, batch: _Batch) -> None:
        await asyncio.sleep(self.server.config.batch_finalizing)
        self._finish(batch, "cancelled")

    async def _wait(self, batch: _Batch, seconds: float) -> bool:
        """Sleep ``seconds``; ``False`` (having slept until then) if the batch expires first."""
        left = batch.deadline - asyncio.get_running_loop().time()
        if seconds > left:
            await asyncio.sleep(max(left, 0.0))
            return False
        await asyncio.sleep(seconds)
        return True

    def _validate(self, batch: _Batch) -> list[dict[str, Any]]:
        """Read the input file into ``batch.lines``; the problems found (empty: valid)."""
        cfg = self.server.config
        problems: list[dict[str, Any]] = []
        if cfg.batch_fail_validation:
            problems.append(_problem("invalid_request", cfg.batch_fail_validation, None))
        seen: set[str] = set()
        numbered = [(n, raw) for n, raw in enumerate(batch.content.split(b"\n"), 1) if raw.strip()]
        for number, raw in numbered:
            line = _read_line(number, raw, seen)
            if isinstance(line, dict):
                problems.append(line)
            else:
                batch.lines.append(line)
        batch.info["request_counts"]["total"] = len(numbered)
        if batch.lines:
            batch.info["model"] = batch.lines[0].body["model"]
        problems.extend(_file_problems(numbered, batch.lines, cfg.batch_max_requests))
        problems.extend(_input_problems(batch.lines, cfg.batch_max_inputs))
        return problems

    def _over_enqueued(self, batch: _Batch) -> list[dict[str, Any]]:
        """``token_limit_exceeded`` when this batch's inputs and those of the batches in
        progress pass ``batch_enqueued_inputs`` (OpenAI fails such a batch at validation)."""
        limit = self.server.config.batch_enqueued_inputs
        if not limit:
            return []
        busy = ("in_progress", "finalizing")
        enqueued = sum(
            _inputs(other) for other in self.batches.values() if other.info["status"] in busy
        )
        if enqueued + _inputs(batch) <= limit:
            return []
        model = batch.info.get("model")
        message = (
            f"Enqueued token limit reached for {model} in organization org-sim. Limit: "
            f"{limit} enqueued inputs. Please try submitting your batch again later."
        )
        return [_problem("token_limit_exceeded", message, None)]

    def _answer(self, batch: _Batch, line: _Line) -> None:
        """Answer one line as ``/embeddings`` would (or with a drawn 500), and record it."""
        cfg = self.server.config
        rate = cfg.batch_line_failure_rate
        if rate > 0 and self.server.rng.random() < rate:
            status, body = 500, _LINE_FAILURE
        else:
            answer, texts, tokens = self.server.answer_now(line.body)
            status, body = answer.status, _json_body(answer)
            if status == 200:
                self.counts.inputs += len(texts)
                self.counts.tokens += tokens
                batch.tokens += tokens
                if cfg.track_texts:
                    self.counts.texts.update(texts)
        (batch.out if status == 200 else batch.err).append(
            _result_line(line.custom_id, status, body)
        )
        batch.done += 1
        batch.info["request_counts"]["completed" if status == 200 else "failed"] += 1

    def _expire(self, batch: _Batch) -> None:
        """Expired: every line not answered goes to the error file as ``batch_expired``."""
        batch.err.extend(_expired_line(line.custom_id) for line in batch.lines[batch.done :])
        self._finish(batch, "expired")

    def _finish(self, batch: _Batch, status: str) -> None:
        """Write the output and error files (those with lines), then enter ``status``."""
        shuffle = self.server.config.batch_shuffle
        batch_id = batch.info["id"]
        for lines, field, name in (
            (batch.out, "output_file_id", "output"),
            (batch.err, "error_file_id", "error"),
        ):
            if not lines:
                continue
            if shuffle:
                self.server.rng.shuffle(lines)
            content = b"".join(line + b"\n" for line in lines)
            stored = self._store(content, f"{batch_id}_{name}.jsonl", "batch_output")
            batch.info[field] = stored["id"]
        batch.info["usage"] = {
            "input_tokens": batch.tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": batch.tokens,
        }
        self._set(batch, status)

    def _set(self, batch: _Batch, status: str) -> None:
        batch.info["status"] = status
        batch.info[_STATUS_AT[status]] = self.now()


def _inputs(batch: _Batch) -> int:
    """Inputs over a batch's lines (a string input is one)."""
    total = 0
    for line in batch.lines:
        given = line.body.get("input")
        total += len(given) if isinstance(given, list) else 1
    return total


def _refuse_create(payload: dict[str, Any]) -> web.Response | None:
    """The 400 for a ``POST /batches`` body this server will not take, else ``None``."""
    if not isinstance(payload.get("input_file_id"), str):
        return _error(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
    endpoint = payload.get("endpoint")
    if endpoint != ENDPOINT:
        message = f"Invalid endpoint {endpoint!r}: this server batches only {ENDPOINT!r}."
        return _error(400, message, param="endpoint")
    window = payload.get("completion_window")
    if window != WINDOW:
        message = f"Invalid completion_window {window!r}: the only one supported is {WINDOW!r}."
        return _error(400, message, param="completion_window")
    metadata = payload.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= 16
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        message = "metadata must be an object of at most 16 string keys and string values."
        return _error(400, message, param="metadata")
    return None


def _read_line(number: int, raw: bytes, seen: set[str]) -> _Line | dict[str, Any]:
    """One input line, or the problem with it (``seen``: the custom_ids met so far)."""
    try:
        item = json.loads(raw)
    except ValueError:
        item = None
    if not isinstance(item, dict):
        return _problem("invalid_json_line", "This line is not parseable as valid JSON.", number)
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        message = "custom_id must be a non-empty string."
        return _problem("missing_required_parameter", message, number, "custom_id")
    if custom_id in seen:
        message = f"The custom_id {custom_id!r} is used more than once in this file."
        return _problem("duplicate_custom_id", message, number, "custom_id")
    seen.add(custom_id)
    if item.get("method") != "POST":
        return _problem("invalid_method", "method must be 'POST'.", number, "method")
    url = item.get("url")
    if url != ENDPOINT:
        message = f"The url {url!r} does not match the batch's endpoint {ENDPOINT!r}."
        return _problem("url_mismatch", message, number, "url")
    body = item.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        message = "body must be a JSON object with a model."
        return _problem("missing_required_parameter", message, number, "body.model")
    return _Line(number, custom_id, body)


def _file_problems(
    numbered: list[tuple[int, bytes]], lines: list[_Line], max_requests: int
) -> list[dict[str, Any]]:
    """The problems of the file as a whole: empty, too many lines, more than one model."""
    if not numbered:
        return [_problem("empty_file", "The input file has no requests.", None)]
    problems = []
    if len(numbered) > max_requests:
        message = (
            f"The input file has {len(numbered)} requests; at most {max_requests} are allowed."
        )
        problems.append(_problem("too_many_tasks", message, numbered[max_requests][0]))
    model = lines[0].body["model"] if lines else None
    for line in lines:
        if line.body["model"] != model:
            first = f"line {lines[0].number}'s ({model!r})"
            message = f"The model {line.body['model']!r} differs from {first}: one model a batch."
            problems.append(_problem("model_mismatch", message, line.number, "body.model"))
            break
    return problems


def _input_problems(lines: list[_Line], max_inputs: int) -> list[dict[str, Any]]:
    """``too_many_inputs`` at the line where the inputs over the file pass ``max_inputs``."""
    total = 0
    for line in lines:
        value = line.body.get("input")
        total += len(value) if isinstance(value, list) else 1
        if total > max_inputs:
            message = f"The input file has more than {max_inputs} inputs over its requests."
            return [_problem("too_many_inputs", message, line.number, "body.input")]
    return []


def _json_body(answer: Answer) -> bytes:
    """The answer's body as a JSON value (a text body becomes a JSON string)."""
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        return answer.body
    return json.dumps(answer.body.decode("utf-8", "replace")).encode()


def _result_line(custom_id: str, status: int, body: bytes) -> bytes:
    """A line of the output or error file: the answer's body, bytes as served."""
    ids = (_new_id("batch_req_").encode(), json.dumps(custom_id).encode())
    return _RESULT_LINE % (*ids, status, _new_id("req_").encode(), body)


def _expired_line(custom_id: str) -> bytes:
    line = {
        "id": _new_id("batch_req_"),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": "batch_expired", "message": EXPIRED_MESSAGE},
    }
    return json.dumps(line).encode()
