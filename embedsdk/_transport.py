"""The seam in front of the network: one small interface, aiohttp behind it.

Tests can run the whole client against a function with :class:`MockTransport`, as httpx's
``MockTransport`` allows; everything that needs a socket uses :class:`AiohttpTransport`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import urllib.request
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, Union
from urllib.parse import urlsplit

import aiohttp

from ._exceptions import APIConnectionError, APITimeoutError


@dataclasses.dataclass
class Request:
    url: str
    headers: Mapping[str, str] = dataclasses.field(repr=False)  # carries the key
    body: bytes
    timeout: float

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclasses.dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport:
    """Sends one request and returns the whole answer.

    Raises :class:`APIConnectionError` / :class:`APITimeoutError` when no answer arrives;
    HTTP error statuses are answers, not exceptions, at this level.
    """

    async def send(self, request: Request) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections. Safe to call twice."""


class AiohttpTransport(Transport):
    """One ``aiohttp.ClientSession`` per transport, created lazily on the loop that uses it."""

    def __init__(self, connection_limit: int = 100) -> None:
        self._limit = connection_limit
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}  # origin -> proxy URL, read once

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            # No cookie jar: embeddings need none, and it costs time on every answer.
            # No trust_env: with it aiohttp reads ~/.netrc and the proxy settings on a worker
            # thread for every request (two executor hops each); _proxy_for reads them once.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` from HTTP(S)_PROXY / NO_PROXY, looked up once per origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            proxies = urllib.request.getproxies_environment()
            bypass = bool(proxies) and urllib.request.proxy_bypass(parts.hostname or "")
            self._proxies[origin] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[origin]

    async def send(self, request: Request) -> Response:
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=request.timeout)
        proxy = self._proxy_for(request.url)
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                proxy=proxy,
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except asyncio.TimeoutError as exc:  # aiohttp raises the built-in TimeoutError
            raise APITimeoutError(
                f"no answer from {_origin(request.url)} within {request.timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise APIConnectionError(
                f"connection to {_origin(request.url)} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


Handler = Callable[[Request], Union[Response, Awaitable[Response]]]


class MockTransport(Transport):
    """Answers every request with ``handler(request)`` (plain or async function)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def send(self, request: Request) -> Response:
        result = self.handler(request)
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, Response)
        return result
