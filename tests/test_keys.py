"""Which key goes where: a provider-named variable only to its provider's hosts,
``EMBEDSDK_API_KEY`` and ``api_key=`` wherever the user points, ``api_key=""`` nowhere.

Checked on the options and on the requests the whole client sends (MockTransport records the
headers); nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import pytest
from test_live import LIVE

from embedsdk import AsyncEmbedder, ConfigurationError, Embedder, MockTransport, Request, Response
from embedsdk.client import API_KEY_VARIABLES, PROFILES, resolve_options

KEY = "sk-PROVIDER-KEY-7c1e"

#: Each provider-named variable, and a base URL of its provider.
OWN_HOSTS = [
    ("SILICONFLOW_API_KEY", "https://api.siliconflow.cn/v1"),
    ("siliconflow_api_key", "https://api.siliconflow.com/v1"),
    ("OPENAI_API_KEY", "https://api.openai.com/v1"),
    ("DASHSCOPE_API_KEY", "https://dashscope.aliyuncs.com/compatible-mode/v1"),
    ("DASHSCOPE_API_KEY", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
    ("ZHIPUAI_API_KEY", "https://open.bigmodel.cn/api/paas/v4"),
]
OTHER_HOSTS = [
    "https://api.siliconflow.cn/v1",
    "https://api.openai.com/v1",
    "https://dashscope.aliyuncs.com/compatible-mode/v1",
    "https://open.bigmodel.cn/api/paas/v4",
    "https://embeddings.example.com/v1",
    "https://api.siliconflow.cn.example.com/v1",  # a look-alike host is not the provider
]
LOCAL = "http://127.0.0.1:9/v1"


def variables_read(monkeypatch: pytest.MonkeyPatch, base_url: str) -> tuple[str, ...]:
    """The environment variables a client of ``base_url`` takes its key from, in order of
    precedence: every variable set at once, and the one the client took removed, until it
    takes none. The environment is as it was afterwards."""
    read: list[str] = []
    with monkeypatch.context() as env:
        for name in API_KEY_VARIABLES:
            env.setenv(name, f"sk-from-{name}")
        while True:
            try:
                source = resolve_options(base_url=base_url).api_key_source
            except ConfigurationError:  # a provider's host, and no key it would take
                break
            if not source.startswith("environment variable "):
                break
            read.append(source.split()[-1])
            env.delenv(read[-1])
    return tuple(read)


def own_variable(variable: str, url: str) -> bool:
    """Whether ``variable`` names the key of the provider whose host ``url`` is (as the
    profiles declare)."""
    host = urlsplit(url).hostname
    return any(variable in p.key_variables and host in p.hosts for p in PROFILES.values())


def test_every_provider_with_hosts_names_its_key_variables() -> None:
    for profile in PROFILES.values():
        assert bool(profile.hosts) == bool(profile.key_variables), profile.name
    assert set(API_KEY_VARIABLES) == {"EMBEDSDK_API_KEY"} | {v for v, _ in OWN_HOSTS}


@pytest.mark.parametrize("live", LIVE, ids=lambda live: live.provider)
def test_the_live_tests_read_the_same_variables(
    live: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables, base_url = live.variables, live.base_url  # type: ignore[attr-defined]
    assert variables_read(monkeypatch, base_url) == ("EMBEDSDK_API_KEY", *variables)


@pytest.mark.parametrize(("variable", "url"), OWN_HOSTS)
def test_a_provider_key_goes_to_its_provider(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, KEY)
    o = resolve_options(base_url=url)
    assert (o.api_key, o.api_key_source) == (KEY, f"environment variable {variable}")


ELSEWHERE = [
    (variable, url)
    for variable, _ in OWN_HOSTS
    for url in OTHER_HOSTS
    if not own_variable(variable, url)
]


@pytest.mark.parametrize(("variable", "url"), ELSEWHERE)
def test_a_provider_key_goes_nowhere_else(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    monkeypatch.setenv(variable, KEY)
    with pytest.raises(ConfigurationError, match="no API key") as info:
        resolve_options(base_url=url)
    message = str(info.value)
    own_hosts = next(p.hosts for p in PROFILES.values() if variable in p.key_variables)
    assert f"{variable} is set, but only sent to {', '.join(own_hosts)}" in message
    assert KEY not in message


@pytest.mark.parametrize("variable", [v for v, _ in OWN_HOSTS])
def test_a_provider_key_is_not_sent_to_a_local_server(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, KEY)
    assert resolve_options(base_url=LOCAL).api_key is None


def test_provider_name_alone_does_not_unlock_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy that speaks SiliconFlow's dialect is not SiliconFlow's host.
    monkeypatch.setenv("SILICONFLOW_API_KEY", KEY)
    with pytest.raises(ConfigurationError, match=r"no API key for proxy\.example\.com"):
        resolve_options(base_url="https://proxy.example.com/v1", provider="siliconflow")


@pytest.mark.parametrize("url", [*OTHER_HOSTS, LOCAL])
def test_the_generic_variable_goes_wherever_the_user_points(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", KEY)
    for variable in {v for v, _ in OWN_HOSTS}:
        monkeypatch.setenv(variable, "sk-provider-specific")
    o = resolve_options(base_url=url)  # it comes first, for every host
    assert (o.api_key, o.api_key_source) == (KEY, "environment variable EMBEDSDK_API_KEY")


def test_the_argument_goes_wherever_the_user_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    for url in OTHER_HOSTS:
        assert resolve_options(base_url=url, api_key=KEY).api_key == KEY


def test_no_key_message_names_the_variables_of_this_host(monkeypatch: pytest.MonkeyPatch) -> None:
    read = variables_read(monkeypatch, "https://api.openai.com/v1")
    assert read == ("EMBEDSDK_API_KEY", "OPENAI_API_KEY")
    with pytest.raises(ConfigurationError) as info:
        resolve_options(base_url="https://api.openai.com/v1")
    message = str(info.value)
    assert "api.openai.com" in message and "EMBEDSDK_API_KEY or OPENAI_API_KEY" in message
    assert "SILICONFLOW" not in message
    with pytest.raises(ConfigurationError) as info:
        resolve_options(base_url="https://tei.example.com/v1")
    message = str(info.value)
    assert "set EMBEDSDK_API_KEY;" in message and 'api_key=""' in message


# -- on the wire ------------------------------------------------------------------------------


class Recorder:
    """A server answering 2-d vectors, keeping the headers of every request."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def __call__(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        texts = request.json()["input"]
        data = [{"index": i, "embedding": [1.0, float(i)]} for i in range(len(texts))]
        return Response(200, {}, json.dumps({"data": data}).encode())


def _sent_headers(**options: object) -> dict[str, str]:
    recorder = Recorder()

    async def go() -> None:
        async with AsyncEmbedder(transport=MockTransport(recorder), cache=False, **options) as emb:
            await emb.embed(["a"])

    asyncio.run(go())
    assert len(recorder.headers) == 1
    return recorder.headers[0]


def test_openai_key_is_sent_to_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    headers = _sent_headers(base_url="https://api.openai.com/v1", model="text-embedding-3-small")
    assert headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    "url",
    ["https://tei.example.com/v1", "http://10.0.0.7:8080/v1", "https://api.siliconflow.cn/v1"],
)
def test_empty_key_sends_no_authorization_header(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", KEY)
    monkeypatch.setenv("SILICONFLOW_API_KEY", KEY)
    headers = _sent_headers(base_url=url, api_key="")
    assert "Authorization" not in headers
    assert KEY not in json.dumps(headers)


def test_empty_key_on_the_sync_client_and_functions() -> None:
    recorder = Recorder()
    url = "https://infinity.example.com/v1"
    with Embedder(base_url=url, api_key="", transport=MockTransport(recorder), cache=False) as emb:
        assert emb.embed(["a", "b"]).shape == (2, 2)
        assert emb.options.api_key is None
    assert recorder.headers and all("Authorization" not in h for h in recorder.headers)
