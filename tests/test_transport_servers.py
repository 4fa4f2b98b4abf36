"""The real AiohttpTransport against small local servers (127.0.0.1 only) that answer what a
self-hosted server's front sometimes does: a redirect, the other scheme (TLS where http:// was
given, plain HTTP where https:// was), a gzip body that does not decompress.

Each of these is the same on every attempt: the client says what is wrong and what base_url
to use, at the first attempt, instead of retrying or following into a misleading answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
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


# -- http:// and https:// the wrong way round ----------------------------------------------


def _openssl_certificate(directory: Path) -> tuple[Path, Path] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    done = subprocess.run(command, capture_output=True, check=False)
    return (cert, key) if done.returncode == 0 else None


def _cryptography_certificate(directory: Path) -> tuple[Path, Path] | None:
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert, key_file = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key_file


#: A TLS server in a process of its own: Python 3.9's asyncio leaves the server side of a
#: connection that closes right after its handshake unclosed (a ResourceWarning in this
#: process, which the suite turns into an error). It answers every request with a 200.
_TLS_SERVER = """
import asyncio, ssl, sys

async def answer(reader, writer):
    try:
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    writer.close()

async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed

asyncio.run(main())
"""


@pytest.fixture
def tls_port(tmp_path: Path) -> Iterator[int]:
    """The port of a local TLS server with a self-signed certificate made for this test."""
    files = _openssl_certificate(tmp_path) or _cryptography_certificate(tmp_path)
    if files is None:
        pytest.skip("neither the openssl command nor the cryptography package is available")
    command = [sys.executable, "-c", _TLS_SERVER, *map(str, files)]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as server:
        assert server.stdin is not None and server.stdout is not None
        try:
            yield int(server.stdout.readline())
        finally:
            server.stdin.close()  # it stops when its standard input ends
            server.wait()


def test_https_to_a_plain_http_server_suggests_http_at_the_first_attempt() -> None:
    async def go() -> None:
        async with serve() as plain:
            port = plain.url.rsplit(":", 1)[1]
            exc = await failure(client(f"https://127.0.0.1:{port}/v1"), ["a"])
        assert isinstance(exc, ConfigurationError)
        assert "plain HTTP" in str(exc) and f'base_url="http://127.0.0.1:{port}/v1"' in str(exc)
        assert plain.seen == []  # its answer to the TLS handshake was no request

    asyncio.run(go())


def test_http_to_a_tls_server_suggests_https_at_the_first_attempt(tls_port: int) -> None:
    async def go() -> BaseException:
        return await failure(client(f"http://127.0.0.1:{tls_port}/v1"), ["a"])

    exc = asyncio.run(go())
    assert isinstance(exc, ConfigurationError)
    assert "TLS" in str(exc) and f'base_url="https://127.0.0.1:{tls_port}/v1"' in str(exc)


def test_a_plain_server_that_hangs_up_is_still_retried() -> None:
    """A reset from a server that does speak plain HTTP is a real one: retried as before (the
    TLS probe that tells it from a TLS server is made once per server)."""

    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError  # aiohttp.web's way to drop the connection

    async def go() -> None:
        async with serve(hang_up) as plain:
            emb = client(plain.base_url, max_retries=2)
            async with emb:
                with pytest.raises(embedsdk.APIConnectionError) as caught:
                    await emb.embed(["a"])
            assert emb.stats.retries == 2 and len(plain.seen) == 3
            assert "closed the connection" in str(caught.value)

    asyncio.run(go())


# -- a body that does not decompress -------------------------------------------------------


def test_a_gzip_body_that_does_not_decompress_says_so_on_one_line() -> None:
    async def bad_gzip(request: web.Request) -> web.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return web.Response(body=b"this is not gzip", headers=headers)

    async def go() -> None:
        async with serve(bad_gzip) as server:
            emb = client(server.base_url, max_retries=0)
            async with emb:
                with pytest.raises(embedsdk.APIConnectionError) as caught:
                    await emb.embed(["a"])
        message = str(caught.value)
        assert "could not be decompressed (gzip)" in message
        assert "cut off" not in message and "\n" not in message

    asyncio.run(go())
