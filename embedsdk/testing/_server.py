"""The simulated provider's aiohttp.web application: routes, one lean handler, counters.

Everything here runs on the server's own event loop; :mod:`._provider` decides which loop
(the caller's, a background thread's or a child process's).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any, Callable, NamedTuple

from aiohttp import web

from ..ratecontrol import loop_time
from . import _errors
from ._batches import BatchAPI
from ._config import SimConfig
from ._limits import InFlightCap, RateLimiter, Refusal, make_limiter
from ._vectors import DEFAULT_MODEL, MAX_DIM, VectorMemo, count_tokens, float_rows_json

#: Seconds a stopping server waits for requests still being answered (a hang, say).
SHUTDOWN_TIMEOUT = 0.5
#: Largest request body accepted (aiohttp's default 1 MiB is less than 64 long inputs).
MAX_BODY = 256 << 20
#: Seconds a "429" fault asks the client to wait when ``retry_after`` is on.
FAULT_RETRY_AFTER = 1.0
#: aiohttp >= 3.9 takes shutdown_timeout on the runner (and warns on the site), and cancels
#: a handler whose client went away only when asked to (3.8 never does).
_NEW_RUNNER = "shutdown_timeout" in inspect.signature(web.BaseRunner.__init__).parameters
#: On aiohttp 3.8, a long wait checks this often (seconds) whether its client is still there.
_DISCONNECT_POLL = 0.05

_OK_FAULTS = (None, "hang", "shuffle")  # answers that carry every vector, correctly placed


class Answer(NamedTuple):
    """What the server answers, whatever carries it. ``reset``: drop the connection instead."""

    status: int
    headers: dict[str, str]
    body: bytes
    reset: bool = False
    inputs: int = 0  # inputs embedded (a correct answer's)


async def _sleep(delay: float) -> bool:
    await asyncio.sleep(delay)
    return True


class Stats:
    """Counters since the start or the last reset. See :meth:`SimServer.snapshot`."""

    __slots__ = (
        "batch_sizes",
        "cpu_base",
        "faults",
        "inputs",
        "peak_in_flight",
        "rate_limited",
        "requests",
        "started",
        "status",
        "texts",
        "timeline",
        "tokens",
    )

    def __init__(self, in_flight: int = 0) -> None:
        self.requests = 0
        self.inputs = 0
        self.tokens = 0
        self.peak_in_flight = in_flight
        self.status: Counter[int] = Counter()
        self.rate_limited = 0
        self.faults: Counter[str] = Counter()
        self.batch_sizes: list[tuple[int, int]] = []  # (arrival number, size)
        self.texts: Counter[str] = Counter()
        self.started = time.monotonic()
        self.timeline: list[tuple[float, int, int]] = []  # (loop seconds, status, inputs)
        self.cpu_base = time.thread_time()  # of the thread the server's loop runs on


class _Request:
    """A parsed ``/embeddings`` body."""

    __slots__ = ("dimensions", "encoding", "model", "texts")

    def __init__(self, model: str, texts: list[str], encoding: str, dimensions: int | None) -> None:
        self.model = model
        self.texts = texts
        self.encoding = encoding
        self.dimensions = dimensions


def parse_body(body: bytes) -> _Request | str:
    """The request, or the message of a 400 explaining what is wrong with it."""
    try:
        payload = json.loads(body)
    except ValueError:
        return "request body is not valid JSON"
    return parse_payload(payload)


def parse_payload(payload: Any) -> _Request | str:
    """:func:`parse_body` of a body already decoded from JSON (a Batch API line's)."""
    if not isinstance(payload, dict):
        return "request body must be a JSON object"
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        return "model is required"
    raw = payload.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        return "input must be a non-empty string or array of strings"
    for text in texts:
        if not isinstance(text, str):
            return "input must be a string or an array of strings"
        if not text:
            return "input must not contain empty strings"
    encoding = payload.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return f"encoding_format must be 'float' or 'base64', got {encoding!r}"
    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or not 1 <= dimensions <= MAX_DIM):
        return f"dimensions must be an integer in 1..{MAX_DIM}"
    return _Request(model, texts, encoding, dimensions)


class SimServer:
    """State and handlers of one simulated provider. Use from its event loop only."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.memo = VectorMemo()
        self._limiter_shape: tuple[Any, ...] | None = None
        self._rate_limiter: RateLimiter | None = None
        self._limiter_origin = 0.0
        self._limiter_phase = 0.0
        self._in_flight_cap: InFlightCap | None = None
        self._origin = loop_time()  # timeline seconds count from here (the loop's clock)
        self.rng = random.Random(config.seed)
        self.in_flight = 0
        self.stats = Stats()
        self._arrivals = 0
        self._trace_prefix = f"sim{os.getpid():x}-"
        self._runner: web.AppRunner | None = None
        self.batches = BatchAPI(self)
        self._line_stats = Stats()  # what answer_now's helpers count: thrown away

    # -- control ---------------------------------------------------------------------------

    def configure(self, **fields: Any) -> None:
        """Change the config (unknown fields: ``TypeError``; bad values: ``ValueError``)."""
        self.config = self.config.replace(**fields)
        if "seed" in fields:
            self.rng.seed(self.config.seed)

    def reset_stats(self) -> None:
        """Start counting afresh (requests still in flight keep counting in the old ones)."""
        self.stats = Stats(self.in_flight)
        self._origin = loop_time()
        self.batches.reset_stats()

    def snapshot(self, texts: bool = True) -> dict[str, Any]:
        """The counters as plain data.

        ``requests``: POSTs to ``/embeddings``; ``inputs`` / ``tokens``: inputs and tokens
        (the server's count) of the well-formed ones among them; ``status``: answers by
        HTTP status; ``rate_limited``: 429 answers (limits, faults, quota); ``faults``:
        injected faults by kind; ``batch_sizes``: sizes of the requests answered correctly,
        in arrival order; ``texts``: times each text was answered correctly (if tracked);
        ``in_flight`` / ``peak_in_flight``: requests being handled now / at most at once;
        ``elapsed``: seconds counted; ``cpu_seconds``: CPU time of the server's thread;
        ``batch``: the Batch API's counters (see :meth:`BatchAPI.snapshot`).
        """
        s = self.stats
        data: dict[str, Any] = {
            "requests": s.requests,
            "inputs": s.inputs,
            "tokens": s.tokens,
            "in_flight": self.in_flight,
            "peak_in_flight": s.peak_in_flight,
            "status": dict(s.status),
            "rate_limited": s.rate_limited,
            "faults": dict(s.faults),
            "batch_sizes": [size for _, size in sorted(s.batch_sizes)],
            "elapsed": time.monotonic() - s.started,
            "cpu_seconds": time.thread_time() - s.cpu_base,
        }
        if texts:
            data["texts"] = dict(s.texts)
        if self.config.timeline:
            data["timeline"] = [[t - self._origin, status, n] for t, status, n in s.timeline]
        data["batch"] = self.batches.snapshot(texts)
        return data

    # -- serving ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for prefix in ("/v1", ""):
            app.router.add_post(prefix + "/embeddings", self.handle_embeddings)
            app.router.add_get(prefix + "/models", self.handle_models)
            for method, path, handler in self.batches.routes():
                app.router.add_route(method, prefix + path, handler)
        app.router.add_get("/stats", self.handle_stats)
        app.router.add_post("/reset", self.handle_reset)
        app.router.add_post("/config", self.handle_config)
        app.router.add_get("/health", self.handle_health)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        runner_kw: dict[str, Any] = {"access_log": None}
        site_kw: dict[str, Any] = {}
        if _NEW_RUNNER:
            runner_kw["shutdown_timeout"] = SHUTDOWN_TIMEOUT
            runner_kw["handler_cancellation"] = True
        else:  # pragma: no cover - aiohttp 3.8
            site_kw["shutdown_timeout"] = SHUTDOWN_TIMEOUT
        runner = web.AppRunner(self.app(), **runner_kw)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, host, port, **site_kw)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        self.stats = Stats(self.in_flight)  # count CPU time from here, on this thread
        self._origin = loop_time()
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listening socket and every connection. Safe to call twice."""
        runner, self._runner = self._runner, None
        await self.batches.stop()
        if runner is not None:
            await runner.cleanup()

    async def handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        answer = await self.serve(
            await request.read(),
            request.headers.get("Authorization"),
            lambda delay: _wait(request, delay),
        )
        if answer is None:
            return web.Response(status=499)  # nobody to answer (and nothing counted)
        if answer.reset:
            # Close without a word: the client sees the connection drop (no status counted).
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    async def serve(
        self,
        body: bytes,
        authorization: str | None,
        wait: Callable[[float], Awaitable[bool]] = _sleep,
    ) -> Answer | None:
        """Answer one ``POST /embeddings``, whatever carries it (aiohttp, or an in-process
        transport). ``wait(seconds)`` sleeps and says whether the client is still there;
        ``None``: it went away."""
        stats = self.stats
        self.in_flight += 1
        if self.in_flight > stats.peak_in_flight:
            stats.peak_in_flight = self.in_flight
        stats.requests += 1
        self._arrivals += 1
        arrived = asyncio.get_running_loop().time()
        answer: Answer | None = None
        try:
            answer = await self._embeddings(body, authorization, wait, stats, self._arrivals)
            return answer
        finally:
            self.in_flight -= 1
            if self.config.timeline:
                self._note(stats, arrived, answer)

    async def _embeddings(
        self,
        raw: bytes,
        authorization: str | None,
        wait: Callable[[float], Awaitable[bool]],
        stats: Stats,
        n: int,
    ) -> Answer | None:
        cfg = self.config
        headers = {"x-siliconcloud-trace-id": f"{self._trace_prefix}{n}"} if cfg.trace_ids else {}
        if cfg.api_key is not None and authorization != "Bearer " + cfg.api_key:
            return _respond(stats, 401, b"Invalid token", headers, "text/plain; charset=utf-8")
        parsed = self._checked(cfg, parse_body(raw), stats, headers)
        if isinstance(parsed, Answer):
            return parsed
        tokens = [count_tokens(text) for text in parsed.texts]
        size, total = len(tokens), sum(tokens)
        stats.inputs += size
        stats.tokens += total
        refusal = self._refusal(cfg, parsed, max(tokens), stats, headers)
        if refusal is not None:
            return refusal
        cap = self._cap()
        if cap is not None:
            busy = cap.enter()
            if busy is not None:
                return self._over_limit(stats, busy, parsed.model, headers)
        try:
            return await self._admitted(cfg, parsed, total, wait, stats, headers, n)
        finally:
            if cap is not None:
                cap.leave()

    def _checked(
        self, cfg: SimConfig, parsed: _Request | str, stats: Stats, headers: dict[str, str]
    ) -> _Request | Answer:
        """The parsed request, or the error answer for a malformed one or an unknown model."""
        if isinstance(parsed, str):
            return self._error(stats, _errors.BAD_REQUEST, parsed, headers)
        if cfg.models is not None and parsed.model not in cfg.models:
            message = "Model does not exist. Please check it carefully."
            return self._error(stats, _errors.NO_MODEL, message, headers)
        return parsed

    def answer_now(self, payload: Any) -> tuple[Answer, list[str], int]:
        """Answer an ``/embeddings`` body (decoded JSON) at once, as :meth:`serve` would with
        no rate limit, latency or fault (a Batch API line): the answer, the texts it embedded
        (none unless a 200) and their tokens. Counted by the Batch API, not in :attr:`stats`."""
        cfg = self.config
        stats = self._line_stats
        headers: dict[str, str] = {}
        parsed = self._checked(cfg, parse_payload(payload), stats, headers)
        if isinstance(parsed, Answer):
            return parsed, [], 0
        tokens = [count_tokens(text) for text in parsed.texts]
        total = sum(tokens)
        refusal = self._refusal(cfg, parsed, max(tokens), stats, headers)
        if refusal is not None:
            return refusal, [], 0
        return self._vectors(stats, parsed, total, headers, shuffle=False), parsed.texts, total

    async def _admitted(
        self,
        cfg: SimConfig,
        parsed: _Request,
        total: int,
        wait: Callable[[float], Awaitable[bool]],
        stats: Stats,
        headers: dict[str, str],
        n: int,
    ) -> Answer | None:
        """Past the in-flight cap: the rate limits, the latency, then the answer or a fault."""
        limiter = self._limiter()
        if limiter is not None:
            now = asyncio.get_running_loop().time() - self._limiter_origin
            limited = limiter.admit(now, total)
            if cfg.ratelimit_headers:
                headers.update(limiter.headers(now))
            if limited is not None:
                return self._over_limit(stats, limited, parsed.model, headers)
        fault = self._roll_fault(cfg, stats)
        size = len(parsed.texts)
        delay = cfg.latency + cfg.per_input * size
        if cfg.jitter:
            delay += cfg.jitter * self.rng.random()
        if fault == "hang":
            delay += cfg.hang
        if delay > 0 and not await wait(delay):
            return None
        if fault in _OK_FAULTS:
            stats.batch_sizes.append((n, size))
            if cfg.track_texts:
                stats.texts.update(parsed.texts)
            answer = self._vectors(stats, parsed, total, headers, shuffle=fault == "shuffle")
            return answer._replace(inputs=size)
        return self._fault(stats, fault, parsed, total, headers)

    def _note(self, stats: Stats, arrived: float, answer: Answer | None) -> None:
        """Add the request to the timeline: when it arrived, its status (0: the connection
        was dropped, 499: the client went away), and how many inputs it embedded."""
        if answer is None or answer.reset:
            stats.timeline.append((arrived, 0 if answer else 499, 0))
            return
        stats.timeline.append((arrived, answer.status, answer.inputs))

    def _limiter(self) -> RateLimiter | None:
        """The rate limiter the config asks for, kept (with its counts) while it is the same."""
        cfg = self.config
        shape = (cfg.limiter, cfg.rpm, cfg.tpm, cfg.window, cfg.burst)
        if shape != self._limiter_shape or cfg.phase != self._limiter_phase:
            self._limiter_shape, self._limiter_phase = shape, cfg.phase
            self._rate_limiter = make_limiter(*shape)
            # Its clock starts now (less the phase): a fixed window's periods start where the
            # config says, not at some multiple of the loop's clock, so runs are the same
            # whenever they run.
            self._limiter_origin = loop_time() - cfg.phase
        return self._rate_limiter

    def _cap(self) -> InFlightCap | None:
        limit = self.config.max_in_flight
        if limit is None:
            return None
        if self._in_flight_cap is None or self._in_flight_cap.limit != limit:
            busy = 0 if self._in_flight_cap is None else self._in_flight_cap.busy
            self._in_flight_cap = InFlightCap(limit)
            self._in_flight_cap.busy = busy
        return self._in_flight_cap

    def _over_limit(
        self, stats: Stats, refusal: Refusal, model: str, headers: dict[str, str]
    ) -> Answer:
        cfg = self.config
        if refusal.which == "concurrency" and cfg.in_flight_status == 503:
            message = _errors.MESSAGES["503"]
            return self._error(stats, _errors.OVERLOADED, message, headers)
        limit = {"RPM": cfg.rpm, "TPM": cfg.tpm}.get(refusal.which) or cfg.max_in_flight or 0
        message = _errors.rate_limit_message(
            cfg.error_style, refusal.which, model, limit, refusal.wait
        )
        return self._rate_limited(stats, message, refusal.wait, headers)

    def _refusal(
        self,
        cfg: SimConfig,
        req: _Request,
        longest: int,
        stats: Stats,
        headers: dict[str, str],
    ) -> Answer | None:
        """The error answer for a request this server will not take, else ``None``."""
        size = len(req.texts)
        if cfg.max_batch is not None and size > cfg.max_batch:
            message = f"input batch size {size} > maximum allowed batch size {cfg.max_batch}"
            return self._error(stats, _errors.BATCH_TOO_LARGE, message, headers)
        if cfg.refuse_inputs and _holds_any(req.texts, cfg.refuse_inputs):
            return self._error(stats, _errors.REFUSED_INPUT, _errors.REFUSED_MESSAGE, headers)
        if cfg.max_input_tokens is not None and longest > cfg.max_input_tokens:
            message = "input is too large to process. increase the physical batch size"
            return self._error(stats, _errors.INPUT_TOO_LARGE, message, headers)
        if req.encoding == "base64" and cfg.base64 == "refuse":
            message = "base64 encoding is not currently supported"
            return self._error(stats, _errors.BAD_REQUEST, message, headers)
        if req.dimensions is not None and cfg.dimensions == "refuse":
            message = f"dimensions not supported for model {req.model}"
            return self._error(stats, _errors.BAD_REQUEST, message, headers)
        if cfg.insufficient_quota:
            stats.rate_limited += 1
            return _respond(stats, 429, _errors.quota_body(), headers)
        return None

    def _roll_fault(self, cfg: SimConfig, stats: Stats) -> str | None:
        if cfg.fault_rate <= 0 or self.rng.random() >= cfg.fault_rate:
            return None
        kind = cfg.faults[0] if len(cfg.faults) == 1 else self.rng.choice(cfg.faults)
        stats.faults[kind] += 1
        return kind

    def _fault(
        self,
        stats: Stats,
        kind: str | None,
        req: _Request,
        tokens: int,
        headers: dict[str, str],
    ) -> Answer:
        if kind == "reset":
            return Answer(500, headers, b"", reset=True)
        if kind == "429":
            cfg = self.config
            message = _errors.rate_limit_message(
                cfg.error_style, "RPM", req.model, cfg.rpm or 0, FAULT_RETRY_AFTER
            )
            return self._rate_limited(stats, message, FAULT_RETRY_AFTER, headers)
        if kind in ("500", "503"):
            error = _errors.SERVER_ERROR if kind == "500" else _errors.OVERLOADED
            return self._error(stats, error, _errors.MESSAGES[kind], headers)
        items = self._items(req)
        if kind == "wrong_count":
            del items[self.rng.randrange(len(items))]
            return _respond(stats, 200, _list_body(items, req.model, tokens), headers)
        # "malformed": a 200 whose JSON stops half-way, as a proxy cutting it short sends.
        body = _list_body(items, req.model, tokens)
        return _respond(stats, 200, body[: len(body) // 2], headers)

    def _vectors(
        self, stats: Stats, req: _Request, tokens: int, headers: dict[str, str], shuffle: bool
    ) -> Answer:
        items = self._items(req)
        if shuffle:
            self.rng.shuffle(items)
        return _respond(stats, 200, _list_body(items, req.model, tokens), headers)

    def _items(self, req: _Request) -> list[bytes]:
        """One JSON object per input, in input order, base64 or float lists as asked."""
        dim = req.dimensions or self.config.dim
        if req.encoding == "base64" and self.config.base64 != "ignore":
            return [
                b'{"object":"embedding","index":%d,"embedding":"%s"}' % pair
                for pair in enumerate(self.memo.b64(req.model, dim, req.texts))
            ]
        rows = float_rows_json(self.memo.rows(req.model, dim, req.texts))
        return [
            b'{"object":"embedding","index":%d,"embedding":%s}' % pair for pair in enumerate(rows)
        ]

    def _error(
        self, stats: Stats, kind: _errors.ErrorKind, message: str, headers: dict[str, str]
    ) -> Answer:
        body, content_type = _errors.error_body(self.config.error_style, kind, message)
        return _respond(stats, kind.status, body, headers, content_type)

    def _rate_limited(
        self, stats: Stats, message: str, wait: float, headers: dict[str, str]
    ) -> Answer:
        stats.rate_limited += 1
        if self.config.gateway_429:
            return _respond(stats, 429, _errors.GATEWAY_429, headers, "text/html")
        if self.config.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            headers["retry-after-ms"] = str(math.ceil(wait * 1000))
        return self._error(stats, _errors.RATE_LIMITED, message, headers)

    # -- other routes ----------------------------------------------------------------------

    async def handle_models(self, request: web.Request) -> web.Response:
        models = self.config.models or (DEFAULT_MODEL,)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "embedsdk-simulator"}
            for m in models
        ]
        return web.json_response({"object": "list", "data": data})

    async def handle_stats(self, request: web.Request) -> web.Response:
        texts = request.query.get("texts", "") not in ("", "0", "false")
        return web.json_response(self.snapshot(texts=texts))

    async def handle_reset(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response({"ok": True})

    async def handle_config(self, request: web.Request) -> web.Response:
        try:
            fields = await request.json()
            if not isinstance(fields, dict):
                raise TypeError("the body must be a JSON object of SimConfig fields")
            self.configure(**fields)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


def _holds_any(texts: list[str], markers: tuple[str, ...]) -> bool:
    """Whether a text of ``texts`` contains one of ``markers``."""
    return any(marker in text for text in texts for marker in markers)


async def _wait(request: web.Request, delay: float) -> bool:
    """Sleep ``delay`` seconds; ``False`` if the client went away meanwhile.

    aiohttp >= 3.9 cancels the handler itself (``handler_cancellation``); on 3.8 a long wait
    looks at the connection now and then, so abandoned requests leave ``in_flight`` promptly.
    """
    if _NEW_RUNNER or delay <= _DISCONNECT_POLL:
        await asyncio.sleep(delay)
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return True
        await asyncio.sleep(min(left, _DISCONNECT_POLL))
        if request.transport is None or request.transport.is_closing():
            return False


_LIST_BODY = (
    b'{"object":"list","data":[%s],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}'
)


def _list_body(items: list[bytes], model: str, tokens: int) -> bytes:
    return _LIST_BODY % (b",".join(items), json.dumps(model).encode(), tokens, tokens)


def _respond(
    stats: Stats,
    status: int,
    body: bytes,
    headers: dict[str, str],
    content_type: str = "application/json",
) -> Answer:
    stats.status[status] += 1
    headers["Content-Type"] = content_type
    return Answer(status, headers, body)
