"""The aiohttp transport's proxy settings: read from the environment once per origin."""

from __future__ import annotations

import pytest

from embedsdk import AiohttpTransport


def test_proxy_from_environment_with_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    transport = AiohttpTransport()
    assert transport._proxy_for("https://api.siliconflow.cn/v1/embeddings") == (
        "http://proxy.example:3128"
    )
    assert transport._proxy_for("http://127.0.0.1:8000/v1/embeddings") is None


def test_proxy_is_looked_up_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    transport = AiohttpTransport()
    assert transport._proxy_for("https://api.openai.com/v1/embeddings") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    # Same origin: the first answer stands (no per-request environment reads).
    assert transport._proxy_for("https://api.openai.com/v1/other") is None
    assert transport._proxy_for("https://api.siliconflow.cn/v1/embeddings") is not None
