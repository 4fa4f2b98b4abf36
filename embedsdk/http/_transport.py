"""The seam in front of the network: one small interface, aiohttp behind it.

Tests can run the whole client against a function with :class:`MockTransport`, as httpx's
``MockTransport`` allows; everything that needs a socket uses :class:`AiohttpTransport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import inspect
import re
import socket
import ssl
import urllib.request
from collections.abc import Awaitable, Mapping
from types import SimpleNamespace
from typing import Any, Callable, Union
from urllib.parse import urljoin, urlsplit

import aiohttp

from .._exceptions import APIConnectionError, APITimeoutError, ConfigurationError, EmbedSDKError


@dataclasses.dataclass
class Request:
    url: str
    headers: Mapping[str, str] = dataclasses.field(repr=False)  # carries the key
    body: bytes
    timeout: float | None  # seconds for the whole exchange; None: no limit

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
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's
        self._proxies: dict[str, str | None] = {}  # origin -> proxy URL, read once
        self._tls: dict[tuple[str, int], bool] = {}  # (host, port) -> speaks TLS, probed once

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            # No cookie jar: embeddings need none, and it costs time on every answer.
            # No trust_env: with it aiohttp reads ~/.netrc and the proxy settings on a worker
            # thread for every request (two executor hops each); _proxy_for reads them once.
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trace_configs=[_redirect_guard()],
            )
            self._loop = asyncio.get_running_loop()
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        """The proxy for ``url`` from HTTP(S)_PROXY / NO_PROXY, looked up once per origin."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._proxies:
            self._proxies[origin] = proxy_from_environment(url)
        return self._proxies[origin]

    async def send(self, request: Request) -> Response:
        session = self._get_session()
        # Every part left at None: timeout=None means no limit at all, as in openai-python,
        # not aiohttp's session default (5 min in total, 30 s to connect).
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
        except _Redirected as redirect:
            raise ConfigurationError(redirect.message()) from None
        except asyncio.TimeoutError as exc:  # aiohttp raises the built-in TimeoutError
            within = "" if request.timeout is None else f" within {request.timeout:g} s"
            raise APITimeoutError(f"no answer from {_origin(request.url)}{within}") from exc
        except (aiohttp.ClientError, UnicodeError) as exc:
            if proxy is None and _hung_up(exc) and await self._speaks_tls(request):
                raise ConfigurationError(_use_https(request.url)) from exc
            raise _mapped(exc, request.url) from exc

    async def _speaks_tls(self, request: Request) -> bool:
        """Whether the server of an ``http://`` URL that hung up on us answers a TLS
        handshake: then it is a TLS server, and http:// can never work.

        A reset or a hang-up is all a TLS server gives a plain-HTTP request (aiohttp's and
        OpenSSL's servers close without a word, Python's ``ssl`` sockets reset), and on its
        own it is no proof: plain servers reset too. A handshake is (and sends no request,
        so nothing is charged or logged as one). Probed once per server and remembered: a
        plain server that hangs up again is retried at once, as before.
        """
        parts = urlsplit(request.url)
        host, port = _host_and_port(request.url)
        if parts.scheme != "http" or port is None:
            return False
        if (host, port) not in self._tls:
            limit = _PROBE_SECONDS if request.timeout is None else request.timeout
            self._tls[host, port] = await _tls_handshake(host, port, min(limit, _PROBE_SECONDS))
        return self._tls[host, port]

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def close_unawaited(self) -> None:
        """Close the session from synchronous code: the finalizer of a client nobody closed.

        On the session's loop: at once when that is this thread's, else as a callback. Its
        owner has already said what happened, so aiohttp's own "Unclosed client session"
        warnings would only repeat it less helpfully.
        """
        session, loop, self._session = self._session, self._loop, None
        if session is None or session.closed or loop is None:
            return
        if loop.is_running() and not _runs_on(loop):
            try:
                loop.call_soon_threadsafe(_close_session_now, session)
                return
            except RuntimeError:  # closed meanwhile
                pass
        _close_session_now(session)


# -- the answers that show base_url is wrong ------------------------------------------------


def proxy_from_environment(url: str) -> str | None:
    """The proxy for ``url`` from HTTP(S)_PROXY / NO_PROXY (``None``: go direct)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    bypass = bool(proxies) and urllib.request.proxy_bypass(parts.hostname or "")
    return None if bypass else proxies.get(parts.scheme)


def connection_error(exc: BaseException, url: str) -> EmbedSDKError:
    """aiohttp's exception for a request to ``url`` as the library's (for other sessions
    than the transport's: the Batch API's)."""
    return _mapped(exc, url)


class _Redirected(Exception):
    """Raised inside aiohttp (by :func:`_refuse_method_change`) for a redirect it would follow
    with a GET; :meth:`AiohttpTransport.send` turns it into a ConfigurationError."""

    def __init__(self, status: int, reason: str, url: str, location: str | None) -> None:
        super().__init__(status, url, location)
        self.status, self.reason, self.url = status, reason, url
        self.location = None if location is None else urljoin(url, location)

    def message(self) -> str:
        """What happened, where to, and the base_url to use instead."""
        said = f"HTTP {self.status} {self.reason}".rstrip()
        if self.location is None:
            where = "without saying where to (no Location header)"
        else:
            where = f"to {self.location}"
        head = (
            f"{self.url} answered the POST with a redirect ({said}) {where}; following it "
            "would turn the POST into a GET, which an embeddings endpoint refuses"
        )
        target = self.location or ""
        if urlsplit(target).path.rstrip("/").endswith("/embeddings"):
            base = target.rstrip("/")[: -len("/embeddings")]
            return f'{head}: use the new address, base_url="{base}"'
        return f"{head}: check base_url (is it the server's API address?)"


async def _refuse_method_change(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    """aiohttp's ``on_request_redirect`` hook: stop before a 301/302/303 is followed.

    aiohttp follows those as browsers do, turning the POST into a body-less GET, which the
    server then refuses with a 405 that says nothing of the redirect (the usual http ->
    https redirect in front of a self-hosted server). Raising here is the one way to stop
    aiohttp between the answer and the GET; 307 and 308 keep the POST and its body and are
    followed by aiohttp (which drops the Authorization header for another origin).
    """
    response = params.response
    if params.method != "POST" or response.status not in (301, 302, 303):
        return
    location = response.headers.get("Location")
    response.close()  # aiohttp before 3.9 leaves it open when a hook raises
    raise _Redirected(response.status, response.reason or "", str(params.url), location)


def _redirect_guard() -> aiohttp.TraceConfig:
    guard = aiohttp.TraceConfig()
    guard.on_request_redirect.append(_refuse_method_change)
    return guard


#: Seconds the TLS probe of an http:// server that hung up may take (a TLS server answers a
#: handshake at once; a plain one either answers it with an HTTP 400 or waits for more).
_PROBE_SECONDS = 5.0


def _hung_up(exc: BaseException) -> bool:
    """A disconnect or a reset without an answer: what a TLS server gives a plain request."""
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError)):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET


async def _tls_handshake(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake. Nothing is verified: the answer only
    tells what the server speaks, and nothing is sent after the handshake."""
    # Unverified on purpose: a self-signed certificate still proves the server speaks TLS,
    # and no key or request goes over this connection.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), timeout
        )
    except (OSError, asyncio.TimeoutError):  # ssl.SSLError is an OSError: not TLS
        return False
    writer.close()
    # The server's side of the close may be abrupt or late: it changes nothing.
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return True


#: What OpenSSL says when the answer to its handshake is no TLS at all: a plain-HTTP server's
#: "HTTP/1.1 400" (WRONG_VERSION_NUMBER up to OpenSSL 3.1, RECORD_LAYER_FAILURE from 3.2;
#: the others from older versions and LibreSSL).
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"}
)


def _answered_without_tls(exc: aiohttp.ClientConnectorError) -> bool:
    cause = exc.os_error
    return isinstance(cause, ssl.SSLError) and getattr(cause, "reason", None) in _NOT_TLS


def _base_with_scheme(url: str, scheme: str) -> str:
    """``url``'s base URL (without ``/embeddings``) with the other scheme and an explicit
    port: the server stays where it is, on the port the first scheme implied."""
    parts = urlsplit(url)
    host, port = _host_and_port(url)
    path = parts.path[: -len("/embeddings")] if parts.path.endswith("/embeddings") else parts.path
    return f"{scheme}://{_where(host, port)}{path}"


def _use_https(url: str) -> str:
    host, port = _host_and_port(url)
    return (
        f"{_where(host, port)} speaks TLS (https), and hung up on the plain-HTTP request: "
        f'use base_url="{_base_with_scheme(url, "https")}"'
    )


def _use_http(url: str, why: str) -> str:
    host, port = _host_and_port(url)
    return (
        f"{_where(host, port)} answered the TLS handshake in plain HTTP ({why}): the server "
        f'does not speak https there; use base_url="{_base_with_scheme(url, "http")}" '
        "(with allow_insecure=True when it is not on this machine: the key then goes in "
        "clear text), or check that no proxy or firewall answers in its place"
    )


def _runs_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _close_session_now(session: aiohttp.ClientSession) -> None:
    """Run ``session.close()`` as far as it goes without waiting, on the session's thread.

    Its connections are closed synchronously (their sockets once the loop turns again, if it
    ever does; a loop already closed has nothing left to run). What remains is waiting for
    them to be gone, which nobody is there to do: the session is then detached, which marks
    it closed without another warning.
    """
    closing = session.close().__await__()
    try:
        closing.send(None)
    except StopIteration:
        return
    except Exception:  # a finalizer must not raise
        pass
    closing.close()
    session.detach()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Absent(Exception):
    """Stands for an aiohttp exception class that the installed version does not have."""


# aiohttp 3.10 added the DNS class (before it: a ClientConnectorError of a socket.gaierror)
# and 3.9 the non-HTTP URL one (before it: InvalidURL).
_DNS_ERROR: type[Exception] = getattr(aiohttp, "ClientConnectorDNSError", _Absent)
_NON_HTTP_URL: type[Exception] = getattr(aiohttp, "NonHttpUrlClientError", _Absent)


def _mapped(exc: BaseException, url: str) -> EmbedSDKError:
    """aiohttp's exception as ours, most specific first (as httpx's
    ``map_httpcore_exceptions``): each message names the host and port, and what to check."""
    if isinstance(exc, (aiohttp.InvalidURL, _NON_HTTP_URL, UnicodeError)):
        # _config checks base_url; this is for a URL it let through all the same.
        return ConfigurationError(f"aiohttp cannot use the URL {url} ({exc}): check base_url")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _not_connected(exc, url)
    host, port = _host_and_port(url)
    where = _where(host, port)
    encoding = _ENCODING_ERROR.search(str(exc))
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        message, reason = f"{where} closed the connection without answering", "disconnected"
    elif isinstance(exc, aiohttp.ClientPayloadError) and encoding:
        message = (
            f"the answer from {where} could not be decompressed ({encoding.group(1)}): its "
            f"body is not the {encoding.group(1)} data its Content-Encoding header says"
        )
        reason = "disconnected"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        message, reason = f"the answer from {where} was cut off ({_one_line(exc)})", "disconnected"
    elif isinstance(exc, aiohttp.ClientHttpProxyError):
        message = f"the proxy would not forward the request to {where}: HTTP {exc.status}"
        reason = "proxy"
    elif isinstance(exc, OSError):  # ClientOSError, ClientConnectionResetError: reset
        message, reason = f"the connection to {where} failed: {exc.strerror or exc}", None
    else:
        message = f"the connection to {where} failed: {type(exc).__name__}: {_one_line(exc)}"
        reason = None
    return APIConnectionError(message, host=host, port=port, reason=reason)


#: aiohttp's words for a body its Content-Encoding does not decode ("Can not decode
#: content-encoding: gzip"), inside a ClientPayloadError whose text spans two lines.
_ENCODING_ERROR = re.compile(r"decode content-encoding:\s*([\w-]+)", re.I)


def _one_line(exc: BaseException) -> str:
    """``str(exc)`` on one line: aiohttp's HTTP errors put their message on a second one."""
    return " ".join(str(exc).split())


def _not_connected(exc: aiohttp.ClientConnectorError, url: str) -> EmbedSDKError:
    """No connection was made: the name did not resolve, nothing listens, TLS, a proxy; or
    the server answered the TLS handshake in plain HTTP (a ConfigurationError: base_url)."""
    host, port = exc.host, exc.port
    where = _where(host, port)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):  # no os_error before 3.9
        message = (
            f"the TLS certificate of {where} could not be verified "
            f"({exc.certificate_error}): check the host name, or the system's CA certificates"
        )
        return APIConnectionError(message, host=host, port=port, reason="certificate")
    if _answered_without_tls(exc):
        return ConfigurationError(_use_http(url, _one_line(exc.os_error)))
    cause = exc.os_error
    why = cause.strerror or str(cause) or type(cause).__name__
    if isinstance(exc, _DNS_ERROR) or isinstance(cause, socket.gaierror):
        message = f"cannot resolve the host name {host!r} ({why}): check base_url and the DNS"
        return APIConnectionError(message, host=host, port=port, reason="dns")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        message = f"cannot connect to the proxy {where} (HTTPS_PROXY / HTTP_PROXY): {why}"
        return APIConnectionError(message, host=host, port=port, reason="proxy")
    if isinstance(cause, ConnectionRefusedError):
        message = f"cannot connect to {where}: connection refused (is the server running there?)"
        return APIConnectionError(message, host=host, port=port, reason="refused")
    message = f"cannot connect to {where}: {why}"  # no route, network down...
    return APIConnectionError(message, host=host, port=port, reason="unreachable")


def _host_and_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return parts.hostname or "", None
    return parts.hostname or "", port if port is not None else {"https": 443}.get(parts.scheme, 80)


def _where(host: str, port: int | None) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


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
