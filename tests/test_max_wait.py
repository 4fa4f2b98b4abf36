"""Absurd waits fail fast: a 429 asking for longer than ``max_wait`` (Azure's "retry after
86400 seconds" when a quota is spent) raises :class:`WaitTooLongError` at once, before any
sleep; shorter waits are waited for, and said at INFO and on the progress bar.

The server is a MockTransport handler; waits run in simulated time (``run_in_virtual_time``,
whose clock skips idle time), so that "no sleep" is measured, not timed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tqdm.auto
from aiohttp import web

import embedsdk
from embedsdk import (
    AsyncEmbedder,
    EmbeddingResult,
    MockTransport,
    RateLimitError,
    Request,
    Response,
    WaitTooLongError,
    cli,
)
from embedsdk.http import wait_beyond
from embedsdk.testing import run_in_virtual_time

LOCAL = "http://127.0.0.1:9/v1"
AZURE_429 = {
    "error": {
        "code": "429",
        "message": "Requests to the Embeddings_Create Operation under Azure OpenAI API version "
        "2024-02-01 have exceeded call rate limit of your current OpenAI S0 pricing tier. "
        "Please retry after 86400 seconds.",
    }
}


def limited(**headers: str) -> Response:
    return Response(429, headers, json.dumps(AZURE_429).encode())


def vectors_of(request: Request) -> Response:
    texts = request.json()["input"]
    data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
    return Response(200, {}, json.dumps({"data": data}).encode())


class Script:
    """Answers with ``answers`` in turn (the last one for ever); counts the requests."""

    def __init__(self, *answers: Response | Callable[[Request], Response]) -> None:
        self.answers = list(answers)
        self.requests = 0

    def __call__(self, request: Request) -> Response:
        answer = self.answers[min(self.requests, len(self.answers) - 1)]
        self.requests += 1
        return answer if isinstance(answer, Response) else answer(request)


def client(server: Script, **options: Any) -> AsyncEmbedder:
    options.setdefault("cache", False)
    return AsyncEmbedder(base_url=LOCAL, transport=MockTransport(server), **options)


@pytest.fixture
def real_waits() -> Iterator[None]:
    """Waits really wait (in simulated time: no test sleeps)."""
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


# -- what a 429 asks for ---------------------------------------------------------------------


def announced(headers: dict[str, str]) -> tuple[float, str] | None:
    """The wait ``headers`` ask for and the header that says so: every wait is beyond 0 s."""
    return wait_beyond(headers, 0.0)


def test_the_announced_wait_is_read_uncapped_from_each_header() -> None:
    assert announced({"Retry-After": "86400"}) == (86400.0, "Retry-After: 86400")
    assert announced({"retry-after-ms": "90000"}) == (90.0, "retry-after-ms: 90000")
    in_two_days = email.utils.formatdate(time.time() + 2 * 86400, usegmt=True)
    seconds, said = announced({"Retry-After": in_two_days}) or (0.0, "")
    assert 2 * 86400 - 5 <= seconds <= 2 * 86400 and said == f"Retry-After: {in_two_days}"
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "25h0m0s"}
    spent |= {"x-ratelimit-remaining-tokens": "9000", "x-ratelimit-reset-tokens": "30h"}
    assert announced(spent) == (90000.0, "x-ratelimit-reset-requests: 25h0m0s")
    left = {"x-ratelimit-remaining-tokens": "9000", "x-ratelimit-reset-tokens": "6m0s"}
    assert announced(left) is None  # a limit with some left says nothing
    assert announced({}) is None


def test_only_a_wait_beyond_the_bound_is_refused() -> None:
    day = {"Retry-After": "86400"}
    assert wait_beyond(day, 300.0) == (86400.0, "Retry-After: 86400")
    assert wait_beyond(day, None) is None  # no bound
    assert wait_beyond(day, 86400.0) is None
    assert wait_beyond({"Retry-After": "45"}, 300.0) is None
    assert wait_beyond({}, 0.0) is None


# -- through the client ----------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [True, False])
def test_a_day_long_retry_after_fails_at_once_and_says_how_to_allow_it(
    real_waits: None, adaptive: bool
) -> None:
    server = Script(limited(**{"Retry-After": "86400"}), vectors_of)

    async def main() -> tuple[WaitTooLongError, np.ndarray, float]:
        async with client(server, adaptive=adaptive) as emb:
            with pytest.raises(WaitTooLongError) as info:
                await emb.embed(["a", "b"])
            failed_at = asyncio.get_running_loop().time()
            again = await emb.embed(["a", "b"])  # the next call is not held in a pause
            return info.value, again, asyncio.get_running_loop().time() - failed_at

    (exc, again, later), seconds = run_in_virtual_time(main())
    assert seconds < 1.0 and later < 1.0  # no sleep at all: neither 86,400 s nor 120 s
    assert isinstance(exc, RateLimitError) and exc.status_code == 429
    assert exc.requested_wait == 86400.0 and exc.max_wait == 300.0
    message = str(exc)
    assert "retry after 86400 seconds" in message  # the server's words
    assert "86,400 s (24 h)" in message and "Retry-After: 86400" in message
    assert "max_wait=300 s" in message and "--max-wait" in message
    assert "gave up" not in message and exc.failed_indices == [0, 1]
    assert server.requests == 2 and again.shape == (2, 2)  # one request each, no retry


def test_an_exhausted_limit_resetting_beyond_the_bound_fails_at_once() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "25h0m0s"}
    server = Script(limited(**headers))

    async def main() -> None:
        async with client(server) as emb:
            await emb.embed(["a"])

    with pytest.raises(WaitTooLongError, match="x-ratelimit-reset-requests: 25h0m0s"):
        asyncio.run(main())
    assert server.requests == 1


def test_errors_return_stops_the_call_on_it() -> None:
    server = Script(limited(**{"Retry-After": "86400"}))

    async def main() -> EmbeddingResult:
        async with client(server, batch_size=2, max_concurrent=1) as emb:
            return await emb.embed(["a", "b", "c", "d", "e", "f"], errors="return")

    result = asyncio.run(main())
    assert server.requests == 1  # the other batches are not sent: the quota is spent for all
    (error,) = result.errors
    assert isinstance(error, WaitTooLongError) and result.failed_indices == list(range(6))


@pytest.mark.parametrize("max_wait", [None, 86400.0])
def test_a_wait_within_the_bound_is_waited_for(max_wait: float | None) -> None:
    server = Script(limited(**{"Retry-After": "86400"}), vectors_of)

    async def main() -> np.ndarray:
        async with client(server, max_wait=max_wait) as emb:
            return await emb.embed(["a", "b"])

    assert asyncio.run(main()).shape == (2, 2)  # retried (no sleeping in testing mode)
    assert server.requests == 2


# -- a wait under the bound is said --------------------------------------------------------


def test_the_senders_own_long_wait_is_said_at_info_and_on_the_bar(
    real_waits: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without adaptive control a 429's Retry-After is the sender's own backoff: it used to
    wait 45 s with nothing said above DEBUG."""
    notes: list[str] = []  # what the bar shows beside its counters
    set_postfix = tqdm.auto.tqdm.set_postfix

    def noting(bar: Any, shown: Any = None, *args: Any, **kwargs: Any) -> None:
        notes.extend(str(value) for value in (shown or {}).values())
        set_postfix(bar, shown, *args, **kwargs)

    monkeypatch.setattr(tqdm.auto.tqdm, "set_postfix", noting)
    caplog.set_level(logging.INFO, logger="embedsdk")
    server = Script(limited(**{"Retry-After": "45"}), vectors_of)

    async def main() -> np.ndarray:
        async with client(server, adaptive=False) as emb:
            return await emb.embed(["a", "b"], progress=True)

    vectors, seconds = run_in_virtual_time(main())
    assert vectors.shape == (2, 2) and 45.0 <= seconds < 60.0
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    said = "HTTP 429: retrying in 4"
    assert any(m.startswith(said) and "as the server asked (Retry-After)" in m for m in infos)
    assert any(n.startswith(said) for n in notes)


def test_a_short_backoff_says_nothing_at_info(
    real_waits: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="embedsdk")
    server = Script(limited(**{"Retry-After": "1"}), vectors_of)

    async def main() -> np.ndarray:
        async with client(server, adaptive=False) as emb:
            return await emb.embed(["a"])

    run_in_virtual_time(main())
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_the_controllers_pause_for_a_retry_after_is_said_too(
    real_waits: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="embedsdk")
    server = Script(limited(**{"Retry-After": "45"}), vectors_of)

    async def main() -> np.ndarray:
        async with client(server) as emb:
            return await emb.embed(["a", "b"])

    run_in_virtual_time(main())
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("paused 45.0 s after HTTP 429" in m for m in infos), infos


# -- the command line ----------------------------------------------------------------------


class DayLongQuota:
    """An HTTP server on 127.0.0.1 answering every request as Azure does when a quota is
    spent: 429 with ``Retry-After: 86400``."""

    def __init__(self) -> None:
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.json_response(AZURE_429, status=429, headers={"Retry-After": "86400"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"

    def __enter__(self) -> DayLongQuota:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_the_command_fails_at_once_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("in.txt").write_text("a\nb\n")
    with DayLongQuota() as server:
        status = cli.main(["embed", "in.txt", "-o", "o.npy", "--base-url", server.base_url])
        requests = server.requests
    err = capsys.readouterr().err
    assert status == 1 and requests == 1
    assert "embedsdk: error: HTTP 429" in err and "Retry-After: 86400" in err
    assert "--max-wait" in err
    assert not Path("o.npy").exists()
