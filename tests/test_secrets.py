"""The API key never shows: not in reprs, exceptions, tracebacks, logs (at DEBUG) or the
cache; and it is not sent in clear text to a host that is not this machine."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import embedsdk
from embedsdk import (
    APIConnectionError,
    AsyncEmbedder,
    AuthenticationError,
    ConfigurationError,
    Embedder,
)
from embedsdk.client import resolve_options
from embedsdk.testing import SimulatedProvider

KEY = "sk-SeCrEt-0xC0FFEE-d1st1nct1ve-4c8e"
Factory = Callable[..., SimulatedProvider]


def _leaks(text: str) -> bool:
    return KEY in text or KEY[3:20] in text


def _all_text(exc: BaseException) -> str:
    """Everything a user could print of an exception: str, repr, args, the chain, traceback."""
    parts = [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
    parts += traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "\n".join(parts)


def _closed_port() -> int:
    """A port on 127.0.0.1 with nobody listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("embedsdk", "aiohttp", "asyncio", ""):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _check_logs(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        if record.exc_info and record.exc_info[1] is not None:
            text += _all_text(record.exc_info[1])
        assert not _leaks(text), record


def test_reprs_never_show_the_key() -> None:
    options: dict[str, Any] = {"base_url": "https://api.siliconflow.cn/v1", "api_key": KEY}
    emb = Embedder(**options)
    aemb = AsyncEmbedder(**options)
    try:
        for thing in (emb, aemb, emb.options, aemb.options, resolve_options(**options)):
            assert not _leaks(repr(thing)) and not _leaks(str(thing))
        assert emb.options.api_key == KEY  # it is there, just never shown
    finally:
        emb.close()
        asyncio.run(aemb.aclose())


def test_a_401_and_its_logs_never_show_the_key(
    simulated_provider_factory: Factory, debug_logs: pytest.LogCaptureFixture
) -> None:
    sim = simulated_provider_factory(dim=16, api_key="the-right-key", fault_rate=0.3, seed=2)
    with pytest.raises(AuthenticationError) as caught:
        embedsdk.get_batch_embeddings(["a", "b"], base_url=sim.base_url, api_key=KEY)
    assert "api_key argument" in str(caught.value)
    assert not _leaks(_all_text(caught.value))
    _check_logs(debug_logs)


def test_a_server_echoing_the_key_does_not_leak_it() -> None:
    def echo(request: embedsdk.Request) -> embedsdk.Response:
        said = request.headers["Authorization"]
        body = f'{{"error": {{"message": "Incorrect API key provided: {said}"}}}}'
        return embedsdk.Response(401, {}, body.encode())

    with (
        Embedder(
            transport=embedsdk.MockTransport(echo), base_url="http://127.0.0.1:9/v1", api_key=KEY
        ) as emb,
        pytest.raises(AuthenticationError) as caught,
    ):
        emb.embed(["a"])
    assert not _leaks(_all_text(caught.value)) and not _leaks(caught.value.body)


def test_connection_errors_and_their_logs_never_show_the_key(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    emb = Embedder(base_url=url, api_key=KEY, max_retries=2)
    with emb, pytest.raises(APIConnectionError) as caught:
        emb.embed(["a"])
    assert not _leaks(_all_text(caught.value))
    _check_logs(debug_logs)


def test_a_timeout_never_shows_the_key(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=16, fault_rate=1.0, faults=("hang",), hang=600)
    emb = Embedder(base_url=sim.base_url, api_key=KEY, timeout=0.05, max_retries=1)
    with emb, pytest.raises(embedsdk.APITimeoutError) as caught:
        emb.embed(["a"])
    assert not _leaks(_all_text(caught.value))


def test_a_successful_run_logs_nothing_secret_and_the_cache_holds_no_key(
    simulated_provider_factory: Factory, debug_logs: pytest.LogCaptureFixture
) -> None:
    sim = simulated_provider_factory(dim=16, api_key=KEY, fault_rate=0.3, seed=4)
    texts = [f"text {i} 文本" for i in range(300)]
    with Embedder(base_url=sim.base_url, api_key=KEY, max_concurrent=3) as emb:
        emb.embed(texts)
        assert emb.stats.cache_misses == 300
    with Embedder(base_url=sim.base_url, api_key=KEY) as emb:
        emb.embed(texts)
        assert emb.stats.cache_hits == 300  # the cache was written and is read back
    _check_logs(debug_logs)
    cache_dir = Path(os.environ["EMBEDSDK_CACHE_DIR"])
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert KEY.encode() not in data and KEY.encode("utf-16-le") not in data, path


# -- plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://example.com/v1", "http://10.0.0.5:8000/v1", "http://api.siliconflow.cn/v1"]
)
def test_a_key_is_not_sent_in_clear_text_to_another_host(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure=True") as caught:
        Embedder(base_url=url, api_key=KEY)
    assert not _leaks(_all_text(caught.value))
    with pytest.raises(ConfigurationError):
        embedsdk.get_batch_embeddings(["a"], base_url=url, api_key=KEY)


def test_a_key_from_the_environment_is_refused_over_http_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", KEY)
    with pytest.raises(ConfigurationError, match="clear text"):
        AsyncEmbedder(base_url="http://example.com/v1")


def test_allow_insecure_opts_in() -> None:
    options = resolve_options(base_url="http://10.0.0.5:8000/v1", api_key=KEY, allow_insecure=True)
    assert options.base_url == "http://10.0.0.5:8000/v1"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1"]
)
def test_loopback_over_http_is_fine(url: str) -> None:
    assert resolve_options(base_url=url, api_key=KEY).api_key == KEY


def test_https_is_fine_and_no_key_over_http_is_fine_for_a_local_server() -> None:
    assert resolve_options(base_url="https://example.com/v1", api_key=KEY).api_key == KEY
    assert resolve_options(base_url="http://127.0.0.1:8000/v1").api_key is None
