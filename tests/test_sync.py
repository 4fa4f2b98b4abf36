"""The sync clients and the three module functions against real servers on 127.0.0.1.

A small aiohttp provider served from its own thread measures concurrency server-side (peak
requests in flight, connections used) and sees what aiohttp really sends. Nothing here waits
for wall-clock time to pass: requests are held by events, and the client loop's clock is
frozen where a rate limit must be seen to wait.

Private access: an Embedder's loop thread (``_portal``) is reached to freeze its loop's clock
and to call from that thread, and its AsyncEmbedder (``_core``) to see it closed once the
Embedder is collected; no public name leads to either.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import gc
import hashlib
import multiprocessing
import os
import threading
from collections.abc import Awaitable, Iterator
from typing import Any, Callable

import numpy as np
import pytest
from aiohttp import web

import embedsdk
from embedsdk import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ClientClosedError,
    Embedder,
)
from embedsdk.client import client_for

DIM = 4


def vec(text: str, dim: int = DIM) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def expected(texts: list[str]) -> np.ndarray:
    return np.stack([vec(t) for t in texts])


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} {i} 你好" for i in range(n)]


def answer(inputs: list[str], fmt: str = "base64") -> dict[str, Any]:
    data = []
    for i, text in enumerate(reversed(inputs)):  # answered out of order, by index
        v = vec(text)
        emb: Any = base64.b64encode(v.tobytes()).decode() if fmt == "base64" else v.tolist()
        data.append({"object": "embedding", "index": len(inputs) - 1 - i, "embedding": emb})
    return {"object": "list", "data": data, "usage": {"prompt_tokens": 3 * len(inputs)}}


def check(result: np.ndarray, texts: list[str]) -> None:
    assert result.dtype == np.float32 and result.flags.c_contiguous
    assert result.shape == (len(texts), DIM)
    np.testing.assert_array_equal(result, expected(texts))


Hook = Callable[[list[str]], Awaitable[None]]


class Provider:
    """A real OpenAI-compatible provider on 127.0.0.1, on its own thread and event loop.

    Counts are kept on the server's loop: ``peak`` requests in flight, ``sizes`` of the
    batches, ``peers`` (client addresses, i.e. connections). ``hook(inputs)`` runs before
    each answer, on the server's loop.
    """

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.hook: Hook | None = None
        self.in_flight = self.peak = self.requests = 0
        self.sizes: list[int] = []
        self.peers: set[Any] = set()
        self.seen: list[tuple[dict[str, str], dict[str, Any]]] = []  # (headers, body)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-provider")
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def __enter__(self) -> Provider:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the server's loop (e.g. to make an Event there)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((dict(request.headers), body))
        inputs = body["input"]
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        self.requests += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.hook is not None:
                await self.hook(inputs)
            elif self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.sizes.append(len(inputs))
        return web.json_response(answer(inputs, body.get("encoding_format", "float")))


@pytest.fixture
def provider() -> Iterator[Provider]:
    with Provider() as p:
        yield p


def options(provider: Provider, **extra: Any) -> dict[str, Any]:
    return {"base_url": provider.base_url, "cache": False, **extra}


def slow_first(provider: Provider, n_batches: int, slow_text: str) -> None:
    """The batch starting with ``slow_text`` is answered only after all the others.

    With waves of N batches, the batches after the first wave would wait for it, and it for
    them: the call would hang (and the guard below fail the test).
    """

    async def make() -> asyncio.Event:
        return asyncio.Event()

    others_done: asyncio.Event = provider.run(make())
    answered = 0

    async def hook(inputs: list[str]) -> None:
        nonlocal answered
        if inputs[0] == slow_text:
            await asyncio.wait_for(others_done.wait(), timeout=20)
        else:
            await asyncio.sleep(0.001)
            answered += 1
            if answered == n_batches - 1:
                others_done.set()

    provider.hook = hook


def hold_until_in_flight(provider: Provider, n: int) -> None:
    """Hold every request until ``n`` are in flight at once, then let them all through.

    So the peak reaches the bound whatever the machine's load (a fixed delay would let the
    first answer go before the last request of the first round came in). A bound below ``n``
    never fills the gate: after 30 s the requests go anyway and the peak shows it.
    """

    async def make() -> asyncio.Event:
        return asyncio.Event()

    full: asyncio.Event = provider.run(make())

    async def hook(inputs: list[str]) -> None:
        if provider.in_flight >= n:
            full.set()
        try:
            await asyncio.wait_for(full.wait(), timeout=30)
        except asyncio.TimeoutError:
            full.set()

    provider.hook = hook


def in_thread(fn: Callable[[], Any], timeout: float = 60) -> Any:
    """Run ``fn`` on a helper thread; a hang fails the test instead of blocking the suite."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout)


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("embedsdk")]


# -- the in-flight bound of each variant, measured by the server --------------------------------


def test_serial_one_request_at_a_time(provider: Provider) -> None:
    texts = texts_for(90)
    check(embedsdk.get_batch_embeddings(texts, **options(provider)), texts)
    assert provider.peak == 1
    assert provider.sizes == [32, 32, 26]  # batch_size="auto": a generic server's cap


def test_serial_batch_size(provider: Provider) -> None:
    texts = texts_for(25)
    check(embedsdk.get_batch_embeddings(texts, batch_size=10, **options(provider)), texts)
    assert provider.sizes == [10, 10, 5]


@pytest.mark.parametrize("workers", [2, 4])
def test_thread_pool_bound_is_max_workers(provider: Provider, workers: int) -> None:
    texts = texts_for(60)
    hold_until_in_flight(provider, workers)
    result = embedsdk.get_batch_embeddings_concurrent(
        texts, max_workers=workers, batch_size=3, **options(provider)
    )
    check(result, texts)
    assert provider.peak == workers
    assert sorted(provider.sizes) == [3] * 20


@pytest.mark.parametrize("limit", [2, 4])
def test_async_bound_is_max_concurrent(provider: Provider, limit: int) -> None:
    texts = texts_for(60)
    hold_until_in_flight(provider, limit)

    async def main() -> np.ndarray:
        return await embedsdk.get_batch_embeddings_async(
            texts, max_concurrent=limit, batch_size=3, **options(provider)
        )

    check(asyncio.run(main()), texts)
    assert provider.peak == limit


def test_embedder_bound_is_max_concurrent(provider: Provider) -> None:
    texts = texts_for(40)
    with Embedder(max_concurrent=3, batch_size=2, **options(provider)) as emb:
        hold_until_in_flight(provider, 3)
        check(emb.embed(texts), texts)
        assert provider.peak == 3
        provider.peak = 0
        hold_until_in_flight(provider, 5)
        check(emb.embed(texts_for(40, "u"), max_concurrent=5), texts_for(40, "u"))
        assert provider.peak == 5


# -- no waves ---------------------------------------------------------------------------------


def test_no_waves_thread_pool(provider: Provider) -> None:
    texts = texts_for(12)
    slow_first(provider, 12, texts[0])
    result = in_thread(
        lambda: embedsdk.get_batch_embeddings_concurrent(
            texts, max_workers=3, batch_size=1, **options(provider)
        )
    )
    check(result, texts)


def test_no_waves_async(provider: Provider) -> None:
    texts = texts_for(12)
    slow_first(provider, 12, texts[0])

    async def main() -> np.ndarray:
        return await embedsdk.get_batch_embeddings_async(
            texts, max_concurrent=3, batch_size=1, **options(provider)
        )

    check(in_thread(lambda: asyncio.run(main())), texts)


def test_no_waves_embedder(provider: Provider) -> None:
    texts = texts_for(12)
    slow_first(provider, 12, texts[0])
    with Embedder(max_concurrent=3, batch_size=1, **options(provider)) as emb:
        check(in_thread(lambda: emb.embed(texts)), texts)


# -- threads, running loops, sharing ----------------------------------------------------------


def test_one_embedder_from_many_threads(provider: Provider) -> None:
    groups = [texts_for(25, f"thread{i}") for i in range(8)]
    with Embedder(max_concurrent=2, batch_size=5, **options(provider)) as emb:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(emb.embed, groups))
        for group, result in zip(groups, results):
            check(result, group)
        assert len([t for t in loop_threads() if t.name == "embedsdk-loop"]) == 1
        assert emb.stats.requests == 8 * 5 == provider.requests


def test_sync_call_from_inside_a_running_event_loop(provider: Provider) -> None:
    """As in Jupyter: a plain sync call from code that already runs a loop."""
    texts = texts_for(30)

    async def notebook_cell() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with Embedder(**options(provider)) as emb:
            a = emb.embed(texts)
        b = embedsdk.get_batch_embeddings(texts, **options(provider))
        c = embedsdk.get_batch_embeddings_concurrent(texts, max_workers=2, **options(provider))
        return a, b, c

    for result in in_thread(lambda: asyncio.run(notebook_cell())):
        check(result, texts)


def test_async_function_awaited_from_a_user_loop(provider: Provider) -> None:
    groups = [texts_for(20, f"g{i}") for i in range(3)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(
            *(
                embedsdk.get_batch_embeddings_async(g, max_concurrent=2, **options(provider))
                for g in groups
            )
        )

    for group, result in zip(groups, asyncio.run(main())):
        check(result, group)


def test_embed_async_on_embedder_from_two_loops(provider: Provider) -> None:
    texts = texts_for(10)
    with Embedder(**options(provider)) as emb:
        for _ in range(2):  # each asyncio.run is a new loop; the client's own loop stays
            check(asyncio.run(emb.embed_async(texts)), texts)


def test_variants_share_one_client_pool_and_limiter(provider: Provider) -> None:
    opts = options(provider, rpm=100_000, tpm=10_000_000)
    texts = texts_for(60)
    check(embedsdk.get_batch_embeddings(texts, **opts), texts)
    check(
        embedsdk.get_batch_embeddings_concurrent(texts_for(60, "b"), max_workers=3, **opts),
        texts_for(60, "b"),
    )

    async def main() -> np.ndarray:
        return await embedsdk.get_batch_embeddings_async(
            texts_for(60, "c"), max_concurrent=3, **opts
        )

    check(asyncio.run(main()), texts_for(60, "c"))
    client = client_for("get_batch_embeddings", opts)  # one client for the three functions
    assert client.stats.requests == provider.requests >= 3
    # One keep-alive pool: never more connections than requests were ever in flight at once.
    assert len(provider.peers) <= 3
    assert len([t for t in loop_threads() if t.name == "embedsdk-loop"]) == 1


def test_different_options_get_different_clients(provider: Provider) -> None:
    embedsdk.get_batch_embeddings(["a"], **options(provider))
    embedsdk.get_batch_embeddings(["a"], **options(provider, model="other-model"))
    embedsdk.get_batch_embeddings(["a"], batch_size=5, **options(provider))  # per call: shared
    one = client_for("get_batch_embeddings", options(provider))
    other = client_for("get_batch_embeddings", options(provider, model="other-model"))
    assert one is not other
    assert (one.stats.requests, other.stats.requests) == (2, 1) and provider.requests == 3


class FrozenClock:
    """A client's loop clock that stands still until told to move (aiolimiter's own tests
    patch the loop's clock the same way): a rate limit's wait ends when the test says so.

    ``settle()`` waits until the next call has been handed to the loop, then lets the loop run
    a hundred turns: that call has gone as far as it can without time passing.
    """

    def __init__(self, client: Embedder) -> None:
        client.embed([])  # starts the loop thread; sends nothing
        loop = client._portal.started_loop()
        assert loop is not None
        self.loop, self.now = loop, loop.time()
        self.handed = threading.Event()
        submit = client._portal.submit

        def noting(coro: Any) -> Any:
            future = submit(coro)
            self.handed.set()
            return future

        client._portal.submit = noting  # type: ignore[method-assign]
        loop.time = lambda: self.now  # type: ignore[method-assign]

    def settle(self) -> None:
        assert self.handed.wait(60), "the call never reached the client's loop"

        async def turns() -> None:
            for _ in range(100):
                await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(turns(), self.loop).result(60)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.loop.call_soon_threadsafe(lambda: None)  # wake it up to look at its timers

    def thaw(self) -> None:
        del self.loop.time


def test_variants_share_one_rate_limit(provider: Provider) -> None:
    """rpm=1: each variant's request waits for the one sent before it, whichever variant
    sent that one; it goes once the client's clock (frozen here) has moved on a minute."""
    opts = options(provider, rpm=1)
    client = client_for("get_batch_embeddings", opts)
    clock = FrozenClock(client)
    try:
        embedsdk.get_batch_embeddings(["a"], **opts)  # the one request of this minute
        assert client.stats.requests == provider.requests == 1
        later = [
            lambda: embedsdk.get_batch_embeddings_concurrent(["b"], max_workers=2, **opts),
            lambda: asyncio.run(embedsdk.get_batch_embeddings_async(["c"], **opts)),
        ]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            for sent, call in enumerate(later, start=1):
                clock.handed.clear()
                future = pool.submit(call)
                clock.settle()
                assert client.stats.requests == sent  # waiting for the shared bucket
                clock.advance(61.0)  # a minute later the bucket has room for one
                future.result(60)
                assert client.stats.requests == provider.requests == sent + 1
    finally:
        clock.thaw()


def hold(provider: Provider, which: Callable[[int], bool]) -> asyncio.Event:
    """Hold the requests ``which(n)`` picks (n counts from 1) until the returned event is set:
    only the client's timeout ends them within the test."""

    async def make() -> asyncio.Event:
        return asyncio.Event()

    release: asyncio.Event = provider.run(make())

    async def hook(inputs: list[str]) -> None:
        if which(provider.requests):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(release.wait(), timeout=600)

    provider.hook = hook
    return release


def test_client_timeout_is_retried(provider: Provider) -> None:
    # The first answer never comes; the retry is answered at once, far within the timeout
    # (were it late on a loaded machine, it would be retried too: the count is "at least").
    release = hold(provider, lambda n: n == 1)
    try:
        with Embedder(timeout=1.0, **options(provider)) as emb:
            check(emb.embed(["a", "b"]), ["a", "b"])
            assert emb.stats.retries >= 1 and emb.stats.requests == emb.stats.retries + 1
    finally:
        provider.loop.call_soon_threadsafe(release.set)


def test_client_timeout_gives_up_as_api_timeout_error(provider: Provider) -> None:
    release = hold(provider, lambda n: True)  # no answer ever comes: each attempt times out
    try:
        with pytest.raises(APITimeoutError, match=r"within 0\.1 s") as info:
            embedsdk.get_batch_embeddings(["a"], timeout=0.1, max_retries=1, **options(provider))
        assert provider.base_url.split("/")[2] in str(info.value)  # 127.0.0.1:port
        client = client_for("get_batch_embeddings", options(provider, timeout=0.1, max_retries=1))
        assert client.stats.requests == 2 and client.stats.retries == 1
    finally:
        provider.loop.call_soon_threadsafe(release.set)


def test_connection_refused_is_an_api_connection_error() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(APIConnectionError, match=rf"127\.0\.0\.1:{port}") as info:
        embedsdk.get_batch_embeddings(
            ["a"], base_url=f"http://127.0.0.1:{port}/v1", cache=False, max_retries=2
        )
    assert type(info.value) is APIConnectionError
    assert info.value.failed_indices == [0]


# -- close -------------------------------------------------------------------------------------


def test_close_then_use(provider: Provider) -> None:
    emb = Embedder(**options(provider))
    emb.embed(["a"])
    assert not emb.closed
    emb.close()
    emb.close()  # twice is fine
    assert emb.closed
    with pytest.raises(ClientClosedError):
        emb.embed(["b"])
    with pytest.raises(ClientClosedError):
        emb.embed_threaded(["b"], max_workers=2)
    with pytest.raises(ClientClosedError):
        asyncio.run(emb.embed_async(["b"]))
    with pytest.raises(ClientClosedError):
        list(emb.embed_stream(["b"]))
    assert provider.requests == 1


@pytest.mark.parametrize("cache", [False, True])
def test_no_threads_left_after_close(provider: Provider, cache: bool) -> None:
    before = set(threading.enumerate())
    with Embedder(**options(provider, cache=cache)) as emb:
        emb.embed(texts_for(30))
        emb.embed_threaded(texts_for(30, "x"), max_workers=3)
        assert loop_threads()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


def test_dropped_embedder_releases_its_thread_and_connections(provider: Provider) -> None:
    """An Embedder that is never closed must not leave a thread running forever, nor an
    unclosed aiohttp session (a ResourceWarning, an error in this suite)."""
    before = set(threading.enumerate())

    def use_and_forget() -> None:
        emb = Embedder(**options(provider))
        emb.embed(texts_for(30))
        assert loop_threads()

    use_and_forget()
    gc.collect()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []


def test_unused_embedder_starts_no_thread(provider: Provider) -> None:
    before = set(threading.enumerate())
    Embedder(**options(provider)).close()
    with Embedder(**options(provider)):
        pass
    assert set(threading.enumerate()) <= before


def _embed_in_child(base_url: str, queue: Any) -> None:
    try:
        result = embedsdk.get_batch_embeddings(["from the child"], base_url=base_url, cache=False)
        queue.put(("ok", result.tolist()))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_default_client_works_in_a_forked_child(provider: Provider) -> None:
    """multiprocessing with fork copies the default client, used, into the child: there it
    needs its own loop thread, session and limiters, not the parent's."""
    embedsdk.get_batch_embeddings(["from the parent"], **options(provider))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_embed_in_child, args=(provider.base_url, queue))
    child.start()
    try:
        status, value = queue.get(timeout=60)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
        queue.close()
        queue.join_thread()
    assert status == "ok", value
    np.testing.assert_array_equal(np.asarray(value, np.float32), expected(["from the child"]))
    check(embedsdk.get_batch_embeddings(["parent again"], **options(provider)), ["parent again"])


def test_close_default_clients_then_use_again(provider: Provider) -> None:
    embedsdk.get_batch_embeddings(["a"], **options(provider))
    used = client_for("get_batch_embeddings", options(provider))
    embedsdk.close_default_clients()
    assert used.closed
    check(embedsdk.get_batch_embeddings(["b"], **options(provider)), ["b"])
    again = client_for("get_batch_embeddings", options(provider))
    assert again is not used and again.stats.requests == 1  # a new client took the call


def test_sync_call_on_the_client_loop_thread_is_refused(provider: Provider) -> None:
    with Embedder(**options(provider)) as emb:

        async def on_loop_thread() -> Any:
            return emb.embed(["a"])  # would wait for itself forever

        with pytest.raises(RuntimeError, match="deadlock"):
            emb._portal.call(on_loop_thread())


def test_thread_pool_error_propagates(provider: Provider) -> None:
    async def hook(inputs: list[str]) -> None:
        if inputs[0] == "t 5 你好":
            raise web.HTTPUnauthorized(text="Invalid token")

    provider.hook = hook
    with pytest.raises(AuthenticationError, match="Invalid token") as info:
        embedsdk.get_batch_embeddings_concurrent(
            texts_for(20), max_workers=3, batch_size=1, **options(provider)
        )
    assert info.value.failed_indices is not None and 5 in info.value.failed_indices


def test_empty_input_every_variant(provider: Provider) -> None:
    assert embedsdk.get_batch_embeddings([], **options(provider)).shape == (0, 1024)
    assert embedsdk.get_batch_embeddings_concurrent([], **options(provider)).shape == (0, 1024)
    assert asyncio.run(embedsdk.get_batch_embeddings_async([], **options(provider))).shape == (
        0,
        1024,
    )
    assert provider.requests == 0


# -- what aiohttp really sends -----------------------------------------------------------------


def test_request_on_the_wire(provider: Provider) -> None:
    """The body and headers as the server receives them (MockTransport sees only what the
    core hands to the transport, not what aiohttp makes of it)."""
    texts = texts_for(5)
    check(embedsdk.get_batch_embeddings(texts, api_key="sk-x", **options(provider)), texts)
    ((headers, body),) = provider.seen
    assert body == {"model": "BAAI/bge-m3", "input": texts, "encoding_format": "base64"}
    assert headers["Authorization"] == "Bearer sk-x"
    assert headers["User-Agent"].startswith("embedsdk/")
    assert headers["Content-Type"] == "application/json"


# -- the simulated provider shipped with embedsdk ---------------------------------------------


def test_simulated_provider_all_variants(simulated_provider_factory: Any) -> None:
    from embedsdk.testing import expected_matrix

    sim = simulated_provider_factory(dim=16, latency=0.002)
    texts = [f"sim {i}" for i in range(45)] + ["sim 3"]
    want = expected_matrix(texts, dim=16)
    opts = {"base_url": sim.base_url, "cache": False}
    np.testing.assert_array_equal(embedsdk.get_batch_embeddings(texts, **opts), want)
    np.testing.assert_array_equal(
        embedsdk.get_batch_embeddings_concurrent(texts, max_workers=3, **opts), want
    )
    got = asyncio.run(embedsdk.get_batch_embeddings_async(texts, max_concurrent=3, **opts))
    np.testing.assert_array_equal(got, want)
    stats = sim.stats()
    assert stats["inputs"] == 3 * 45  # the duplicate is never sent
    assert max(stats["batch_sizes"]) == 32  # batch_size="auto": a generic server's cap


def test_evicted_default_client_is_not_closed_under_its_caller(provider: Provider) -> None:
    """Past eight option sets the oldest default client is dropped, not closed: a thread still
    holding it finishes its call; the client is closed once nobody refers to it."""
    first = client_for("get_batch_embeddings", options(provider, max_retries=0))
    for retries in range(1, 10):  # nine more option sets: `first` is evicted
        embedsdk.get_batch_embeddings(["x"], **options(provider, max_retries=retries))
    check(first.embed(["still works"]), ["still works"])
    assert client_for("get_batch_embeddings", options(provider, max_retries=0)) is not first
    core = first._core
    del first
    gc.collect()
    assert core.closed


def test_a_script_exits_quietly_after_the_module_functions(
    simulated_provider: Any, tmp_path: Any
) -> None:
    """The default clients are closed at exit; on Python 3.12+ a loop's default-executor
    shutdown there started a thread and printed "can't create new thread at interpreter
    shutdown". A script that used the functions (and the cache) must exit with nothing on
    stderr."""
    import subprocess
    import sys

    script = (
        "import embedsdk\n"
        f"v = embedsdk.get_batch_embeddings(['a', 'b'], base_url={simulated_provider.base_url!r})\n"
        "print(v.shape)\n"
    )
    env = {**os.environ, "EMBEDSDK_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 1024)"
    assert done.stderr == ""
