"""The Batch API's few calls (``/files``, ``/batches``) over one aiohttp session.

The ``/embeddings`` path has its own transport, tuned for thousands of small POSTs a minute;
a batch job makes a handful of uploads, downloads and polls an hour, with multipart bodies
and streamed downloads, so it has this small client instead. Errors are the library's
(:func:`~embedsdk.http.status_error`, the transport's mapping of aiohttp's), transient ones
are retried with backoff's full jitter, and a ``Retry-After`` is honoured.

Shapes: OpenAI's OpenAPI description (``openai/openai-openapi``): ``File``, ``Batch``,
``ListBatchesResponse``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from typing import Any, Callable

import aiohttp
import backoff

from .._exceptions import APIConnectionError, APIStatusError, APITimeoutError, EmbedSDKError
from ..http import connection_error, is_retryable, proxy_from_environment, status_error

logger = logging.getLogger("embedsdk.batchapi")

#: Tries of one control-plane call before its error is raised (transient errors only).
TRIES = 8
#: Longest wait between two tries, seconds (a Retry-After may ask for more, up to MAX_WAIT).
MAX_BACKOFF = 60.0
#: Longest Retry-After honoured as asked; longer ones are cut to this (seconds).
MAX_WAIT = 600.0
#: Seconds to connect, and the longest silence while reading an answer (a download of a
#: gigabyte may take longer than any total; a connection that stops sending does not).
CONNECT_TIMEOUT = 60.0
READ_TIMEOUT = 300.0


class NoBatchAPI(EmbedSDKError):
    """The server has no Batch API (404 on ``/files`` or ``/batches``)."""


def _json_body(data: Any) -> bytes:
    import json

    return json.dumps(data, separators=(",", ":")).encode()


class BatchAPI:
    """``base_url``'s Batch API, with ``api_key`` (never logged or shown)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._key = api_key or None
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._answered = False  # whether the server has answered any call yet
        # HTTP(S)_PROXY / NO_PROXY read once, as the /embeddings transport reads them (not
        # aiohttp's trust_env, which reads them on a worker thread at every request).
        self._proxy = proxy_from_environment(self.base_url)

    def __repr__(self) -> str:
        return f"BatchAPI({self.base_url!r})"

    async def __aenter__(self) -> BatchAPI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
                ),
            )
        return self._session

    # -- the calls ---------------------------------------------------------------------------

    async def upload(self, path: Path, filename: str, tries: int = TRIES) -> dict[str, Any]:
        """``POST /files`` (purpose ``batch``), streaming ``path`` from disk a chunk at a
        time (read on the loop's thread: a megabyte reads in a millisecond, and a worker
        thread's file object would leave the loop idle, which a simulated clock skips)."""

        async def send() -> aiohttp.ClientResponse:
            with aiohttp.MultipartWriter("form-data") as form:
                purpose = form.append("batch")
                purpose.set_content_disposition("form-data", name="purpose")
                part = form.append(_chunks(path), {"Content-Type": "application/jsonl"})
                part.set_content_disposition("form-data", name="file", filename=filename)
            return await self._get_session().post(
                self.base_url + "/files", data=form, headers=self._headers, proxy=self._proxy
            )

        return await self._call("POST", "/files", send, tries=tries)

    async def create(
        self, file_id: str, endpoint: str, metadata: Mapping[str, str], tries: int = TRIES
    ) -> dict[str, Any]:
        body = {
            "input_file_id": file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": dict(metadata),
        }
        return await self._json("POST", "/batches", body, tries=tries)

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/batches/{batch_id}")

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/batches/{batch_id}/cancel", {})

    async def delete_file(self, file_id: str) -> None:
        await self._json("DELETE", f"/files/{file_id}")

    async def files(self) -> list[dict[str, Any]]:
        """The account's files of purpose ``batch`` (one page: the newest)."""
        answer = await self._json("GET", "/files?purpose=batch")
        return list(answer.get("data") or [])

    async def batches(self, pages: int = 10) -> AsyncIterator[dict[str, Any]]:
        """The account's batches, newest first, up to ``pages`` pages of 100."""
        after = None
        for _ in range(pages):
            query = "?limit=100" + (f"&after={after}" if after else "")
            answer = await self._json("GET", "/batches" + query)
            data = list(answer.get("data") or [])
            for batch in data:
                yield batch
            if not answer.get("has_more") or not data:
                return
            after = data[-1].get("id")

    async def download(self, file_id: str, path: Path) -> None:
        """``GET /files/{id}/content`` into ``path`` (written whole, then renamed)."""
        partial = path.with_name(path.name + ".part")

        async def send() -> aiohttp.ClientResponse:
            return await self._get_session().get(
                f"{self.base_url}/files/{file_id}/content", headers=self._headers, proxy=self._proxy
            )

        async def save(resp: aiohttp.ClientResponse) -> dict[str, Any]:
            with open(partial, "wb") as out:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, path)
            return {}

        await self._call("GET", f"/files/{file_id}/content", send, save)

    # -- plumbing ----------------------------------------------------------------------------

    async def _json(
        self, method: str, route: str, body: Any = None, tries: int = TRIES
    ) -> dict[str, Any]:
        async def send() -> aiohttp.ClientResponse:
            headers = dict(self._headers)
            data = None
            if body is not None:
                headers["Content-Type"] = "application/json"
                data = _json_body(body)
            return await self._get_session().request(
                method, self.base_url + route, data=data, headers=headers, proxy=self._proxy
            )

        return await self._call(method, route, send, tries=tries)

    async def exactly_once(
        self,
        what: str,
        call: Callable[[], Awaitable[dict[str, Any]]],
        made_before: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> dict[str, Any]:
        """``call()`` (one try: an upload, a batch made), retried only after
        ``made_before()`` says the failed try left nothing behind: an answer lost on the way
        back (a timeout, a reset, a 502 from a proxy) must not make a second batch, which
        would be paid for twice."""
        return await self._retried(what, call, TRIES, made_before)

    async def _call(
        self,
        method: str,
        route: str,
        send: Callable[[], Any],
        read: Callable[[aiohttp.ClientResponse], Any] | None = None,
        tries: int = TRIES,
    ) -> dict[str, Any]:
        """One call, tried up to ``tries`` times while its failures are transient."""
        return await self._retried(
            f"{method} {route}", lambda: self._once(method, route, send, read), tries
        )

    async def _retried(
        self,
        what: str,
        call: Callable[[], Awaitable[dict[str, Any]]],
        tries: int,
        made_before: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    ) -> dict[str, Any]:
        """``call()`` up to ``tries`` times while it fails for a transient reason, waiting as a
        ``Retry-After`` asks or with backoff's full jitter; before each retry, ``made_before()``
        (when given) may find what the failed try did after all."""
        delays = backoff.expo(base=2, factor=1, max_value=MAX_BACKOFF)
        next(delays)  # the generator's first value is a priming None
        for attempt in range(1, tries + 1):
            try:
                return await call()
            except EmbedSDKError as exc:
                if attempt >= tries or not is_retryable(exc) or self._never_there(exc):
                    raise
                found = None if made_before is None else await made_before()
                if found is not None:
                    return found
                delay = _asked(exc)
                delay = backoff.full_jitter(next(delays)) if delay is None else delay
                logger.info("%s: %s; again in %.1f s", what, exc, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        route: str,
        send: Callable[[], Any],
        read: Callable[[aiohttp.ClientResponse], Any] | None,
    ) -> dict[str, Any]:
        url = self.base_url + route
        try:
            resp = await send()
            self._answered = True
            async with resp:
                if resp.status >= 400:
                    raise self._error(method, route, resp.status, resp.headers, await resp.read())
                if read is not None:
                    result: dict[str, Any] = await read(resp)
                    return result
                answer = await resp.json(content_type=None)
        except asyncio.TimeoutError as exc:
            raise APITimeoutError(
                f"no answer from {url} (connect {CONNECT_TIMEOUT:g} s, silence {READ_TIMEOUT:g} s)"
            ) from exc
        except aiohttp.ClientError as exc:
            raise connection_error(exc, url) from exc
        except ValueError as exc:  # not JSON
            raise APIConnectionError(f"{method} {url}: the answer is not JSON ({exc})") from exc
        if not isinstance(answer, dict):
            raise APIConnectionError(f"{method} {url}: the answer is not a JSON object")
        return answer

    def _never_there(self, exc: EmbedSDKError) -> bool:
        """Nothing listens at the base URL, and never has in this run: a wrong URL or a
        server that is down fails at once. Once it has answered, an outage in a job of hours
        is waited out like any transient error."""
        return (
            not self._answered
            and isinstance(exc, APIConnectionError)
            and exc.reason in ("refused", "dns", "unreachable")
        )

    def _error(
        self, method: str, route: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> EmbedSDKError:
        if self._key:  # a gateway may echo the Authorization header back
            body = body.replace(self._key.encode(), b"***")
        exc = status_error(status, headers, body)
        first = route.split("?")[0].split("/")[1]  # "files" or "batches"
        if status in (404, 405) and (
            route in ("/files", "/batches") or route.startswith(("/batches?", "/files?"))
        ):
            return NoBatchAPI(
                f"{self.base_url} has no Batch API ({method} /{first} answered HTTP {status}: "
                f"{exc.message}); use the default route (leave out --via batch / "
                "via='batch'), which sends the texts to /embeddings"
            )
        said = exc.args[0] if exc.args else str(exc)
        if status == 404 and route.startswith("/batches/"):
            said += (
                f" (the job's batch is not at {self.base_url} for this key: was the job "
                "started with another API key or account?)"
            )
        exc.args = (f"{method} {route.split('?')[0]}: {said}",)
        return exc


async def _chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(size)
            if not chunk:
                return
            yield chunk


def _asked(exc: EmbedSDKError) -> float | None:
    """The wait a 429 or 503 asked for (``Retry-After``), at most :data:`MAX_WAIT`."""
    if isinstance(exc, APIStatusError) and exc.retry_after is not None:
        return min(float(exc.retry_after), MAX_WAIT)
    return None


__all__ = ["BatchAPI", "NoBatchAPI"]
