"""The real AiohttpTransport against small local servers (127.0.0.1 only) that answer what a
self-hosted server's front sometimes does: a redirect, the other scheme (TLS where http:// was
given, plain HTTP where https:// was), a gzip body that does not decompress.

Each of these is the same on every attempt: the client says what is wrong and what base_url
to use, at the first attempt, instead of retrying or following into a misleading answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Callable

import pytest
from aiohttp import web

import embedsdk
from embedsdk import AsyncEmbedder, ConfigurationError

KEY = "sk-transport-servers-0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class Seen:
    """What one request brought to a server."""

    method: str
    path: str
    authorization: str | None
    body: bytes


@dataclasses.dataclass
class Server:
    url: str  # http(s)://127.0.0.1:PORT
    seen: list[Seen]

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


async def _embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    data = [{"index": i, "embedding": [1.0, 0.0]} for i in range(len(body["input"]))]
    return web.json_response({"data": data})


@asynccontextmanager
async def serve(handler: Handler = _embeddings) -> AsyncIterator[Server]:
    """A server on 127.0.0.1 answering every path and method with ``handler``, recording
    what each request brought."""
    seen: list[Seen] = []

    async def record(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        seen.append(Seen(request.method, request.path, auth, await request.read()))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Server(f"http://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


def client(base_url: str, **options: Any) -> AsyncEmbedder:
    options.setdefault("api_key", KEY)
    return AsyncEmbedder(base_url=base_url, cache=False, **options)


async def failure(emb: AsyncEmbedder, texts: list[str]) -> BaseException:
    async with emb:
        with pytest.raises(embedsdk.EmbedSDKError) as caught:
            await emb.embed(texts)
    assert emb.stats.retries == 0  # the same answer every time: not retried
    return caught.value


# -- redirects -----------------------------------------------------------------------------


def redirect(status: int, location: str) -> Handler:
    async def answer(request: web.Request) -> web.Response:
        if request.method == "POST" and request.path == "/v1/embeddings":
            return web.Response(status=status, headers={"Location": location})
        return web.Response(status=405, text="Method Not Allowed")

    return answer


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_that_would_turn_the_post_into_a_get_names_the_new_base_url(
    status: int,
) -> None:
    async def go() -> None:
        async with serve(redirect(405, "")) as target:
            location = target.base_url + "/embeddings"
            async with serve(redirect(status, location)) as front:
                exc = await failure(client(front.base_url), ["a", "b"])
            assert isinstance(exc, ConfigurationError)
            message = str(exc)
            assert f"HTTP {status}" in message and location in message
            assert f'base_url="{target.base_url}"' in message and "HTTP 405" not in message
            assert [s.method for s in front.seen] == ["POST"]
            assert target.seen == []  # the GET it would have become was never sent
            assert KEY not in message

    asyncio.run(go())


def test_a_relative_redirect_is_named_as_the_full_url() -> None:
    async def go() -> None:
        async with serve(redirect(301, "/api/v1/embeddings")) as front:
            exc = await failure(client(front.base_url), ["a"])
        assert isinstance(exc, ConfigurationError)
        assert f'base_url="{front.url}/api/v1"' in str(exc)

    asyncio.run(go())


def test_a_redirect_elsewhere_than_an_embeddings_endpoint_says_to_check_base_url() -> None:
    async def go() -> None:
        async with serve(redirect(302, "https://login.example.test/sso?next=x")) as front:
            exc = await failure(client(front.base_url), ["a"])
        assert isinstance(exc, ConfigurationError)
        assert "https://login.example.test/sso?next=x" in str(exc) and "base_url" in str(exc)

    asyncio.run(go())


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_is_followed_with_the_key_only_to_the_same_origin(status: int) -> None:
    async def go() -> None:
        async with serve() as target, serve(redirect(status, "/moved")) as same:
            # Same origin: the key goes along. (The front then answers /moved itself.)
            moved = redirect(status, target.base_url + "/embeddings")
            async with serve(moved) as other, client(other.base_url) as emb:
                assert (await emb.embed(["a", "b"])).shape == (2, 2)
            assert [(s.method, s.authorization) for s in target.seen] == [("POST", None)]
            assert b'"input": ["a", "b"]' in target.seen[0].body  # the body went along
            assert other.seen[0].authorization == f"Bearer {KEY}"
            same_origin = client(same.base_url)
            await failure(same_origin, ["a"])  # /moved answers 405: enough to see the key
            assert [s.authorization for s in same.seen] == [f"Bearer {KEY}"] * 2

    asyncio.run(go())
