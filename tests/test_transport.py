"""The aiohttp transport's proxy settings: read from the environment once per origin.

Each request goes through the real ``AiohttpTransport.send`` into its aiohttp session, whose
request aioresponses patches (no socket is opened) and records with the proxy it was given;
it answers with a cut-off payload, as no answer is needed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from embedsdk import AiohttpTransport, APIConnectionError, Request

PROXY = "http://proxy.example:3128"


def proxies_used(*steps: str | Callable[[], None]) -> list[str | None]:
    """Send a request to each URL of ``steps`` in turn on one transport (a callable step runs
    between them); the proxy each request went through, in order."""
    urls = [step for step in steps if isinstance(step, str)]

    async def go() -> list[str | None]:
        transport = AiohttpTransport()
        try:
            with aioresponses() as mocked:
                for url in urls:
                    mocked.post(url, exception=aiohttp.ClientPayloadError("cut"), repeat=True)
                for step in steps:
                    if not isinstance(step, str):
                        step()
                        continue
                    with pytest.raises(APIConnectionError):
                        await transport.send(Request(step, {}, b"{}", 5.0))
                calls = [mocked.requests[("POST", URL(url))] for url in urls]
        finally:
            await transport.aclose()
        seen: dict[str, int] = {}
        used = []
        for url, made in zip(urls, calls):  # the n-th request to a URL is its n-th call
            n = seen[url] = seen.get(url, -1) + 1
            used.append(made[n].kwargs.get("proxy"))
        return used

    return asyncio.run(go())


def test_proxy_from_environment_with_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    used = proxies_used(
        "https://api.siliconflow.cn/v1/embeddings", "http://127.0.0.1:8000/v1/embeddings"
    )
    assert used == [PROXY, None]


def test_proxy_is_looked_up_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    used = proxies_used(
        "https://api.openai.com/v1/embeddings",
        lambda: monkeypatch.setenv("HTTPS_PROXY", PROXY),
        # Same origin: the first answer stands (no per-request environment reads).
        "https://api.openai.com/v1/other",
        "https://api.siliconflow.cn/v1/embeddings",
    )
    assert used[0] is None and used[1] is None
    assert used[2] is not None
