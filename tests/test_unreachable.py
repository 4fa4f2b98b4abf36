"""Servers out of reach: a URL aiohttp cannot use is refused before any request, a host name
that does not resolve is retried at most twice, a refused connection is said at INFO once and
given up within the retry budget; every message names the host (and port).

No test resolves a real name: DNS goes to a fake resolver, connections only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import types
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from _aiohttp_raises import raised_by_send

import embedsdk
from embedsdk import (
    APIConnectionError,
    APITimeoutError,
    AsyncEmbedder,
    ConfigurationError,
    Embedder,
    EmbeddingResult,
    MockTransport,
    Request,
    Response,
)

# -- a URL aiohttp cannot use: ConfigurationError before any request --------------------------

UNUSABLE = {
    "http://127.0.0.1:99999/v1": "port",
    "http://127.0.0.1:0/v1": "port",
    "http://localhost:80a/v1": "port",
    "http://exa mple.com/v1": "blanks",
    "http://example.com\t/v1": "blanks",
    "https://api..example.com/v1": "not a valid host name",
    "https://-bad-.example.com/v1": "not a valid host name",
    "https://a%20b.example.com/v1": "not a valid host name",
    "https://" + "a" * 64 + ".example.com/v1": "not a valid host name",
    "http://1.2.3.4.5/v1": "not an IP address",
    "http://999.1.1.1/v1": "not an IP address",
    "http://[::1/v1": "http(s) URL",
}


@pytest.mark.parametrize("url", list(UNUSABLE))
def test_a_url_aiohttp_cannot_use_is_a_configuration_error_before_any_request(url: str) -> None:
    sent: list[Request] = []
    transport = MockTransport(lambda request: sent.append(request) or Response(500, {}, b""))
    with pytest.raises(ConfigurationError, match="base_url") as caught:
        AsyncEmbedder(base_url=url, api_key="sk-test", transport=transport)
    assert UNUSABLE[url] in str(caught.value)
    with pytest.raises(ConfigurationError):
        embedsdk.get_batch_embeddings(["a"], base_url=url, api_key="sk-test")
    assert sent == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://[::1]:8080/v1",
        "http://localhost:65535/v1",
        "http://my_tei_service:80/v1",  # docker-compose service names may hold underscores
        "https://例子.测试/v1",  # an internationalised name
        "https://api.siliconflow.cn/v1",
        "https://example.com./v1",  # a fully qualified name
    ],
)
def test_usable_urls_pass(url: str) -> None:
    transport = MockTransport(lambda request: Response(500, {}, b""))
    emb = AsyncEmbedder(base_url=url, api_key="sk-test", allow_insecure=True, transport=transport)
    assert emb.options.base_url == url


def test_the_check_never_echoes_user_info() -> None:
    with pytest.raises(ConfigurationError) as caught:
        AsyncEmbedder(base_url="http://user:s3cret@127.0.0.1:99999/v1")
    assert "s3cret" not in str(caught.value)


# -- aiohttp's exceptions, mapped most specific first ------------------------------------------

KEY = types.SimpleNamespace(host="api.example.com", port=443, ssl=True)  # a ConnectionKey


def connector_error(cls: type[Exception], cause: BaseException) -> Exception:
    return cls(KEY, cause)


DNS = getattr(aiohttp, "ClientConnectorDNSError", aiohttp.ClientConnectorError)
GAIERROR = socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    ("error", "reason", "words"),
    [
        (connector_error(DNS, GAIERROR), "dns", "cannot resolve the host name 'api.example.com'"),
        (  # aiohttp before 3.10: a ClientConnectorError of a gaierror
            connector_error(aiohttp.ClientConnectorError, GAIERROR),
            "dns",
            "Name or service not known",
        ),
        (
            connector_error(aiohttp.ClientConnectorError, ConnectionRefusedError(111, "refused")),
            "refused",
            "cannot connect to api.example.com:443: connection refused",
        ),
        (
            connector_error(aiohttp.ClientConnectorError, OSError(101, "Network is unreachable")),
            "unreachable",
            "cannot connect to api.example.com:443: Network is unreachable",
        ),
        (
            connector_error(
                aiohttp.ClientConnectorCertificateError,
                ssl.SSLCertVerificationError(1, "certificate verify failed"),
            ),
            "certificate",
            "TLS certificate of api.example.com:443 could not be verified",
        ),
        (
            connector_error(aiohttp.ClientProxyConnectionError, OSError(113, "No route to host")),
            "proxy",
            "cannot connect to the proxy api.example.com:443",
        ),
        (aiohttp.ServerDisconnectedError(), "disconnected", "closed the connection"),
        (
            aiohttp.ClientPayloadError("Response payload is not completed"),
            "disconnected",
            "cut off",
        ),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), None, "Connection reset by peer"),
    ],
    ids=[
        "dns",
        "dns-old-aiohttp",
        "refused",
        "unreachable",
        "certificate",
        "proxy",
        "disconnected",
        "cut",
        "reset",
    ],
)
def test_aiohttp_errors_are_mapped_with_host_port_and_reason(
    error: Exception, reason: str | None, words: str
) -> None:
    exc = raised_by_send(error, "https://api.example.com/v1/embeddings")
    assert isinstance(exc, APIConnectionError) and not isinstance(exc, APITimeoutError)
    assert exc.reason == reason and words in str(exc)
    assert exc.host == "api.example.com" and exc.port == 443


@pytest.mark.parametrize(
    "error", [aiohttp.InvalidURL("http://x:99999/v1/embeddings"), UnicodeError("label too long")]
)
def test_a_url_aiohttp_refuses_at_request_time_is_a_configuration_error(error: Exception) -> None:
    exc = raised_by_send(error, "http://x:9999/v1/embeddings")
    assert isinstance(exc, ConfigurationError) and "check base_url" in str(exc)


# -- a host name that does not resolve: retried at most twice ----------------------------------


class NoDNS:
    """A resolver that resolves nothing (stands in for aiohttp's DefaultResolver)."""

    lookups = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def resolve(self, host: str, port: int = 0, family: Any = None) -> Any:
        NoDNS.lookups += 1
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        pass


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[NoDNS]]:
    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", NoDNS)
    NoDNS.lookups = 0
    yield NoDNS


def test_a_host_that_does_not_resolve_is_tried_three_times_and_named(
    no_dns: type[NoDNS], caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://embeddings.example.invalid/v1"
    with (
        caplog.at_level(logging.INFO, logger="embedsdk"),
        Embedder(
            base_url=url, api_key="sk-test", cache=False, max_retries=6, max_concurrent=1
        ) as emb,
    ):
        with pytest.raises(APIConnectionError) as caught:
            emb.embed(["a", "b"])
        requests = emb.stats.requests
    exc = caught.value
    assert requests == 3 and no_dns.lookups == 3  # 1 try + at most 2 retries, not 7
    assert exc.reason == "dns" and exc.host == "embeddings.example.invalid"
    assert "cannot resolve the host name 'embeddings.example.invalid'" in str(exc)
    assert "gave up after 3 attempts" in str(exc)
    (info,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert "embeddings.example.invalid" in info.getMessage()
    assert "retrying up to 2 times" in info.getMessage()


# -- a server that is down: INFO at once, then give up within the budget -----------------------


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_refused_connection_is_said_at_info_once_and_given_up_within_the_budget(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port}/v1"
    with (
        caplog.at_level(logging.INFO, logger="embedsdk"),
        Embedder(base_url=url, cache=False, max_retries=4, max_concurrent=3, batch_size=2) as emb,
    ):
        with pytest.raises(APIConnectionError) as caught:
            emb.embed([f"t{i}" for i in range(20)])
        requests = emb.stats.requests
    exc = caught.value
    assert exc.reason == "refused" and exc.port == closed_port
    assert f"cannot connect to 127.0.0.1:{closed_port}: connection refused" in str(exc)
    assert "gave up after 5 attempts" in str(exc)
    assert 5 <= requests <= 3 * 5  # the batches in flight, each within its retries; no more
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and f"127.0.0.1:{closed_port}" in infos[0]
    assert "retrying up to 4 times" in infos[0]


def test_a_refused_connection_stops_a_call_that_keeps_going_too(closed_port: int) -> None:
    result = embedsdk.get_batch_embeddings(
        [f"t{i}" for i in range(50)],
        base_url=f"http://127.0.0.1:{closed_port}/v1",
        batch_size=10,
        max_retries=2,
        cache=False,
        errors="return",
    )
    assert isinstance(result, EmbeddingResult) and not result.ok.any()
    (exc,) = result.errors
    assert isinstance(exc, APIConnectionError) and exc.failed_indices == list(range(50))
    assert "connection refused" in str(exc)


@pytest.mark.parametrize(
    "error",
    [
        APITimeoutError("no answer from http://127.0.0.1:9 within 1 s"),
        APIConnectionError("127.0.0.1:9 closed the connection", reason="disconnected"),
        APIConnectionError("the connection to 127.0.0.1:9 failed: reset"),
    ],
)
def test_a_timeout_or_a_reset_is_not_said_at_info(
    error: APIConnectionError, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(request: Request) -> Response:
        raise error

    async def main() -> None:
        async with AsyncEmbedder(
            base_url="http://127.0.0.1:9/v1", transport=MockTransport(failing), max_retries=1
        ) as emb:
            with pytest.raises(APIConnectionError):
                await emb.embed(["a"])

    with caplog.at_level(logging.INFO, logger="embedsdk"):
        asyncio.run(main())
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


def test_a_dropped_connection_is_one_batchs_own_when_the_call_keeps_going() -> None:
    def answer(request: Request) -> Response:
        texts = request.json()["input"]
        if "poison" in texts:  # the server hangs up on this one request, every time
            raise APIConnectionError("127.0.0.1:9 closed the connection", reason="disconnected")
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        return Response(200, {}, json.dumps({"data": data}).encode())

    texts = [f"t{i}" for i in range(30)]
    texts[12] = "poison"
    with Embedder(
        base_url="http://127.0.0.1:9/v1", transport=MockTransport(answer), batch_size=5
    ) as emb:
        result = emb.embed(texts, errors="return")
    (exc,) = result.errors
    assert exc.failed_indices == list(range(10, 15))
    assert result.ok.sum() == 25  # the other batches were sent and arrived
