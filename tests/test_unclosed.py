"""A client nobody closed: one ResourceWarning of ours that says what to do, none of aiohttp's
("Unclosed client session", "Unclosed connector"), and its connections released anyway.

Runs the real aiohttp transport against the simulated provider on 127.0.0.1.

Private access: the client's own aiohttp session and the cache it opened (``_sender``,
``_cache``) are held, to see them released once the client is collected; no public name
leads to either.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

from embedsdk import AsyncEmbedder, ConfigurationError, Embedder
from embedsdk.testing import SimulatedProvider

DIM = 4
AIOHTTP_NOISE = ("Unclosed client session", "Unclosed connector")


def _ours(record: Any) -> list[str]:
    return [str(w.message) for w in record if "never closed" in str(w.message)]


def _noise(record: Any) -> list[str]:
    return [str(w.message) for w in record if any(n in str(w.message) for n in AIOHTTP_NOISE)]


async def _used_client(base_url: str, **options: Any) -> tuple[AsyncEmbedder, Any]:
    emb = AsyncEmbedder(base_url=base_url, cache=False, **options)
    assert (await emb.embed(["a", "b"])).shape == (2, DIM)
    session = emb._sender.transport._session  # type: ignore[union-attr]  # to see it released
    assert session is not None and not session.closed
    return emb, session


def test_dropped_while_its_loop_runs() -> None:
    """The notebook case: a client replaced in a later cell, the kernel's loop still running."""
    handled: list[dict[str, Any]] = []

    async def go() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: handled.append(ctx))
        async with SimulatedProvider(dim=DIM) as sim:
            emb, session = await _used_client(sim.base_url)
            with pytest.warns(ResourceWarning) as record:
                del emb
                gc.collect()
            assert len(_ours(record)) == 1 and _noise(record) == []
            message = _ours(record)[0]
            assert "aclose()" in message and "async with" in message
            assert session.closed
            with warnings.catch_warnings(record=True) as later:
                warnings.simplefilter("always")
                for _ in range(5):  # let the connections finish closing
                    await asyncio.sleep(0)
                gc.collect()
            assert [str(w.message) for w in later] == []

    asyncio.run(go())
    assert handled == []  # aiohttp reports unclosed sessions to the loop's handler too


def test_dropped_after_its_loop_closed() -> None:
    """``asyncio.run(...)`` finished, the client kept in a global and collected later.

    The session is closed; asyncio itself may still report the socket that its closed loop can
    no longer close (ResourceWarnings are shown only in development mode and under pytest).
    """
    kept: list[AsyncEmbedder] = []
    sessions: list[Any] = []

    async def go(base_url: str) -> None:
        emb, session = await _used_client(base_url)
        kept.append(emb)
        sessions.append(session)

    with SimulatedProvider(dim=DIM) as sim:
        asyncio.run(go(sim.base_url))
        with pytest.warns(ResourceWarning) as record:
            kept.clear()
            gc.collect()
    assert len(_ours(record)) == 1 and _noise(record) == []
    assert sessions[0].closed


def test_closed_clients_and_unused_ones_say_nothing() -> None:
    async def go(base_url: str) -> None:
        async with AsyncEmbedder(base_url=base_url, cache=False) as emb:
            await emb.embed(["a"])
        unused = AsyncEmbedder(base_url=base_url, cache=False)
        del emb, unused
        gc.collect()

    with warnings.catch_warnings(record=True) as record, SimulatedProvider(dim=DIM) as sim:
        warnings.simplefilter("always")
        asyncio.run(go(sim.base_url))
        gc.collect()
    assert [str(w.message) for w in record] == []


def test_a_sync_client_never_closed_closes_its_core_quietly() -> None:
    with warnings.catch_warnings(record=True) as record, SimulatedProvider(dim=DIM) as sim:
        warnings.simplefilter("always")
        emb = Embedder(base_url=sim.base_url, cache=False)
        assert emb.embed(["a"]).shape == (1, DIM)
        del emb
        gc.collect()
    assert [str(w.message) for w in record] == []


def test_a_client_whose_options_were_refused_leaves_nothing_behind() -> None:
    # __init__ raised before the attributes __del__ reads were set: no error from __del__
    # (pytest would report it as an unraisable exception).
    with pytest.raises(ConfigurationError):
        AsyncEmbedder(base_url="http://127.0.0.1:9/v1", rpm=-1)
    gc.collect()


def test_a_cache_it_opened_is_closed_too(tmp_path: Any) -> None:
    async def go(base_url: str) -> tuple[Any, bytes]:
        emb = AsyncEmbedder(base_url=base_url, cache=str(tmp_path / "cache"))
        await emb.embed(["a"])
        cache, namespace = emb._cache.opened, emb._cache.namespace
        assert cache.get_many(namespace, ["a"])[1].tolist() == [True]
        return cache, namespace

    with SimulatedProvider(dim=DIM) as sim, pytest.warns(ResourceWarning, match="never closed"):
        cache, namespace = asyncio.run(go(sim.base_url))
        gc.collect()
    assert cache.get_many(namespace, ["a"])[1].tolist() == [False]  # closed: lookups miss
