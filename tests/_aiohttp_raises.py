"""What the real AiohttpTransport raises when aiohttp raises an error inside its session:
aioresponses patches the session's request, so no socket is opened."""

from __future__ import annotations

import asyncio

from aioresponses import aioresponses

from embedsdk import AiohttpTransport, Request


def raised_by_send(error: BaseException, url: str, body: bytes = b"{}") -> BaseException:
    """The exception ``AiohttpTransport().send`` raises for a POST to ``url`` when aiohttp
    raises ``error``."""

    async def go() -> BaseException:
        transport = AiohttpTransport()
        try:
            with aioresponses() as mocked:
                mocked.post(url, exception=error)
                try:
                    await transport.send(
                        Request(url, {"Content-Type": "application/json"}, body, 5.0)
                    )
                except BaseException as raised:
                    return raised
        finally:
            await transport.aclose()
        raise AssertionError("no exception")

    return asyncio.run(go())
