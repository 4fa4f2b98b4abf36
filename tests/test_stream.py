"""embed_stream: lazy, ordered, bounded-memory embedding of any iterable (async and sync).

The network is a :class:`MockTransport` whose vectors are a function of the text, so each
block can be checked row by row, and whose counters show how far the stream read ahead of
what it handed out, how many requests it made and how many were in flight at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import AsyncEmbedder, Embedder, InternalServerError, MockTransport, Request, Response
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 4


def run_async(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh event loop (no pytest-asyncio in the test deps)."""

    @functools.wraps(test)
    def wrapper() -> None:
        asyncio.run(test())

    return wrapper


def text(i: int) -> str:
    return f"text {i}"


def vector(t: str) -> list[float]:
    """The mock's vector for ``t``: its number and a few things derived from it."""
    i = int(t.split()[1])
    return [float(i), i % 7 - 3.0, 0.5, float(len(t))]


def expected(texts: list[str]) -> np.ndarray:
    return np.array([vector(t) for t in texts], dtype=np.float32).reshape(len(texts), DIM)


class Server:
    """Counts requests, inputs and requests in flight; optionally fails on one text."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.requests = 0
        self.inputs = 0
        self.in_flight = 0
        self.peak = 0
        self.closed_at: int | None = None  # requests seen when the stream was closed

    def answer(self, request: Request) -> Response:
        inputs = request.json()["input"]
        self.requests += 1
        self.inputs += len(inputs)
        if self.fail_on in inputs:
            return Response(500, {}, b'{"code": 50000, "message": "boom", "data": null}')
        data = [{"index": i, "embedding": vector(t)} for i, t in enumerate(inputs)]
        usage = {"prompt_tokens": 2 * len(inputs), "total_tokens": 2 * len(inputs)}
        return Response(200, {}, json.dumps({"data": data, "usage": usage}).encode())

    async def handle(self, request: Request) -> Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self.answer(request)
        finally:
            self.in_flight -= 1


class Source:
    """A lazy generator of ``n`` texts that records how far it ran ahead of the consumer."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0
        self.consumed = 0  # set by the test as blocks arrive: end of the last block
        self.max_ahead = 0

    def __iter__(self) -> Iterator[str]:
        for i in range(self.n):
            self.read += 1
            self.max_ahead = max(self.max_ahead, self.read - self.consumed)
            yield text(i)


def client(server: Server, cls: Any = AsyncEmbedder, **options: Any) -> Any:
    options.setdefault("cache", False)
    return cls(
        base_url="http://127.0.0.1:9/v1",
        transport=MockTransport(server.handle),
        **options,
    )


def check_blocks(blocks: list[tuple[int, np.ndarray]], n: int) -> None:
    """Blocks come in input order, each starting where the last ended, with the right rows."""
    start = 0
    for offset, block in blocks:
        assert offset == start
        assert block.dtype == np.float32 and block.ndim == 2 and block.shape[1] == DIM
        np.testing.assert_array_equal(
            block, expected([text(i) for i in range(start, start + len(block))])
        )
        start += len(block)
    assert start == n


def check_blocks_of(blocks: list[tuple[int, np.ndarray]], texts: list[str]) -> None:
    assert [start for start, _ in blocks] == list(range(0, len(texts), len(blocks[0][1])))
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), expected(texts))


# -- bounded memory ------------------------------------------------------------------------


@run_async
async def test_async_stream_of_50000_texts_reads_a_bounded_window_ahead() -> None:
    n, window = 50_000, 1_000
    server, source = Server(), Source(n)
    blocks = []
    async with client(server, batch_size=32, max_concurrent=4) as emb:
        async for start, block in emb.embed_stream(source, window=window):
            source.consumed = start + len(block)
            blocks.append((start, block))
        stats = emb.stats
    check_blocks(blocks, n)
    # At most the window being handed out and the next one (whose requests are in flight) are
    # read and not yet consumed: memory does not grow with the input.
    assert 0 < source.max_ahead <= 2 * window
    assert all(len(block) == window for _, block in blocks)
    assert server.inputs == n and stats.inputs_sent == n
    assert server.requests == stats.requests == n // window * -(-window // 32)


def test_sync_stream_reads_a_bounded_window_ahead() -> None:
    n, window = 12_000, 500
    server, source = Server(), Source(n)
    blocks = []
    with client(server, Embedder, batch_size=25, max_concurrent=3) as emb:
        for start, block in emb.embed_stream(source, window=window):
            source.consumed = start + len(block)
            blocks.append((start, block))
    check_blocks(blocks, n)
    assert 0 < source.max_ahead <= 2 * window
    assert server.inputs == n


def test_default_window_is_bounded_too() -> None:
    """Without ``window=``, the stream still reads a fixed amount ahead, whatever the length."""
    server, source = Server(), Source(20_000)
    with client(server, Embedder, batch_size=20, max_concurrent=5) as emb:
        for start, block in emb.embed_stream(iter(source)):
            source.consumed = start + len(block)
    assert source.read == 20_000
    assert source.max_ahead <= 2 * max(1024, 8 * 5 * 20)


# -- order, slots, duplicates ----------------------------------------------------------------


@run_async
async def test_blocks_stay_in_order_when_answers_do_not() -> None:
    """Later windows' requests may finish first; blocks still come out in input order."""
    n = 3_000
    delays = iter(np.random.default_rng(1).uniform(0, 0.003, size=10_000))

    async def handle(request: Request) -> Response:
        await asyncio.sleep(next(delays))
        return server.answer(request)

    server = Server()
    async with AsyncEmbedder(
        base_url="http://127.0.0.1:9/v1", transport=MockTransport(handle), cache=False
    ) as emb:
        blocks = [b async for b in emb.embed_stream([text(i) for i in range(n)], window=200)]
    check_blocks(blocks, n)
    assert len(blocks) == n // 200


@run_async
async def test_two_windows_share_the_concurrency_slots() -> None:
    """Two windows run at once, yet never more than ``max_concurrent`` requests in flight, and
    the slots are all used."""
    server = Server(delay=0.002)
    async with client(server, batch_size=8, max_concurrent=4) as emb:
        async for _ in emb.embed_stream((text(i) for i in range(2_000)), window=64):
            pass
    assert server.peak == 4


@run_async
async def test_duplicates_inside_and_across_windows() -> None:
    texts = [text(i % 37) for i in range(1_000)]
    server = Server()
    async with client(server, batch_size=16) as emb:
        blocks = [b async for b in emb.embed_stream(texts, window=100)]
    got = np.concatenate([b for _, b in blocks])
    np.testing.assert_array_equal(got, expected(texts))
    assert [s for s, _ in blocks] == list(range(0, 1_000, 100))
    # each window sends each of its distinct texts at most once (fewer when it can borrow them
    # from the window before, see below)
    assert 37 <= server.inputs <= 10 * 37


@run_async
async def test_a_text_repeated_across_a_window_boundary_is_fetched_once() -> None:
    """With the cache off, window 1 borrows the texts it shares with window 0 while window 0
    is still fetching them, even if the caller then changes window 0's block in place."""
    shared = [f"text {i}" for i in range(25)]
    texts = [f"text {i}" for i in range(50)] + shared + [f"text {i}" for i in range(100, 125)]
    gate = asyncio.Event()

    async def handle(request: Request) -> Response:
        inputs = request.json()["input"]
        if any(int(t.split()[1]) >= 100 for t in inputs):
            gate.set()  # window 1 is fetching its own texts: it planned while 0 was busy
        else:
            await asyncio.wait_for(gate.wait(), 10)  # never hang the suite
        return server.answer(request)

    server = Server()
    async with AsyncEmbedder(
        base_url="http://127.0.0.1:9/v1", transport=MockTransport(handle), cache=False
    ) as emb:
        blocks = []
        async for start, block in emb.embed_stream(
            texts, window=50, batch_size=10, max_concurrent=8
        ):
            blocks.append((start, block.copy()))
            block[:] = 0  # the caller owns the block
    check_blocks_of(blocks, texts)
    assert server.inputs == 75  # not 100: the 25 shared texts were paid for once


@run_async
async def test_async_iterable_input() -> None:
    async def texts() -> AsyncIterator[str]:
        for i in range(777):
            await asyncio.sleep(0)
            yield text(i)

    server = Server()
    async with client(server) as emb:
        blocks = [b async for b in emb.embed_stream(texts(), window=100)]
    check_blocks(blocks, 777)


@run_async
async def test_empty_and_bad_input() -> None:
    server = Server()
    async with client(server) as emb:
        assert [b async for b in emb.embed_stream([])] == []
        with pytest.raises(TypeError, match="not one str"):
            async for _ in emb.embed_stream("one string"):
                pass
    assert server.requests == 0


# -- stopping early, failing ---------------------------------------------------------------


@run_async
async def test_breaking_out_of_an_async_stream_stops_the_requests() -> None:
    server, source = Server(delay=0.002), Source(100_000)
    async with client(server, batch_size=10, max_concurrent=4) as emb:
        stream = emb.embed_stream(source, window=200)
        async for start, block in stream:
            source.consumed = start + len(block)
            if start >= 400:
                break
        await stream.aclose()  # what `async with contextlib.aclosing(...)` does
        sent = server.requests
        for _ in range(20):
            await asyncio.sleep(0.002)
        assert server.requests == sent  # nothing started after the close
        assert server.in_flight == 0  # and what was in flight was cancelled,
        assert server.inputs < source.read  # not waited for: some texts read were never sent
    assert source.read <= 600 + 2 * 200
    assert sent <= (600 + 2 * 200) // 10


def test_breaking_out_of_a_sync_stream_stops_the_requests() -> None:
    server, source = Server(delay=0.002), Source(100_000)
    with client(server, Embedder, batch_size=10, max_concurrent=4) as emb:
        for start, block in emb.embed_stream(source, window=200):
            source.consumed = start + len(block)
            if start >= 400:
                break  # the generator is closed right here (refcount), stopping the requests
        sent = server.requests
        emb.embed([text(0)])  # a round trip through the loop thread: it did go on working
        assert server.requests == sent + 1
        assert server.in_flight == 0
    assert source.read <= 600 + 2 * 200


@run_async
async def test_a_failure_names_positions_in_the_whole_input() -> None:
    server = Server(fail_on=text(1_234))
    async with client(server, batch_size=10, max_concurrent=1, max_retries=0) as emb:
        seen = []
        with pytest.raises(InternalServerError) as info:
            async for start, _ in emb.embed_stream((text(i) for i in range(5_000)), window=500):
                seen.append(start)
    assert seen == [0, 500]  # the blocks before the failing one arrived
    assert 1_234 in (info.value.failed_indices or [])
    assert all(1_000 <= i < 1_500 for i in info.value.failed_indices or [])
    assert "1230..1239" in str(info.value)


# -- a producer that raises ----------------------------------------------------------------


class ProducerBroke(Exception):
    """What the caller's generator raises."""


def breaking(n: int, error: BaseException) -> Iterator[str]:
    """``n`` texts, then ``error``."""
    for i in range(n):
        yield text(i)
    raise error


async def breaking_async(n: int, error: BaseException) -> AsyncIterator[str]:
    for i in range(n):
        yield text(i)
    raise error


@run_async
async def test_a_generator_that_raises_gives_every_block_read_before_then_its_error() -> None:
    server = Server()
    error = ProducerBroke("disk went away at 1,500")
    blocks: list[tuple[int, np.ndarray]] = []
    async with client(server) as emb:  # the default window: max(1024, 8 x 5 x 32), 32 the cap
        # of a generic server, where batch_size="auto" starts
        with pytest.raises(ProducerBroke) as caught:
            async for start, block in emb.embed_stream(breaking(1_500, error)):
                blocks.append((start, block))
    assert caught.value is error  # the producer's own exception, not a wrapper
    check_blocks(blocks, 1_280)  # the first window, which was held back, arrived
    assert server.inputs == 1_280  # the window it broke off in was not sent


@run_async
async def test_an_async_generator_that_raises_gives_the_blocks_before_too() -> None:
    server = Server()
    error = ProducerBroke("async source failed")
    blocks: list[tuple[int, np.ndarray]] = []
    async with client(server, batch_size=10) as emb:
        with pytest.raises(ProducerBroke) as caught:
            async for start, block in emb.embed_stream(breaking_async(750, error), window=200):
                blocks.append((start, block))
    assert caught.value is error
    check_blocks(blocks, 600)  # three whole windows; the fourth broke off at 750
    assert server.inputs == 600


def test_a_sync_stream_over_a_generator_that_raises_gives_the_blocks_before() -> None:
    server = Server()
    with client(server, Embedder) as emb:
        blocks = []
        with pytest.raises(ProducerBroke):
            for start, block in emb.embed_stream(breaking(1_500, ProducerBroke()), window=500):
                blocks.append((start, block))
    check_blocks(blocks, 1_500)  # broke exactly at a window boundary: nothing lost
    assert server.inputs == 1_500


@pytest.mark.parametrize("at", [0, 300])
def test_a_producer_that_raises_in_the_first_window_sends_nothing(at: int) -> None:
    server = Server()
    with client(server, Embedder) as emb, pytest.raises(ProducerBroke):
        list(emb.embed_stream(breaking(at, ProducerBroke()), window=500))
    assert server.requests == 0  # bad input stops the call before any request


# -- progress ------------------------------------------------------------------------------


def test_progress_bar_on_a_stream(capsys: pytest.CaptureFixture[str]) -> None:
    server = Server()
    texts = [text(i) for i in range(300)]
    with client(server, Embedder) as emb:
        for _ in emb.embed_stream(texts, window=100, progress=True):
            pass
    err = capsys.readouterr().err
    assert "300/300" in err  # a Sized input gives the bar its total
    assert "tokens=600" in err and "cached=0" in err and "retries=0" in err


def test_progress_bar_on_every_call(
    simulated_provider: SimulatedProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """``progress=True`` shows the same bar on the calls as on streams, cache hits included."""
    texts = [text(i) for i in range(40)]
    options = {"base_url": simulated_provider.base_url, "dimensions": DIM}
    calls: list[Callable[[], Any]] = [
        lambda: embedsdk.get_batch_embeddings(texts, progress=True, **options),
        lambda: embedsdk.get_batch_embeddings_concurrent(texts, 2, progress=True, **options),
        lambda: asyncio.run(
            embedsdk.get_batch_embeddings_async(texts, 2, progress=True, **options)
        ),
    ]
    for number, call in enumerate(calls):
        call()
        err = capsys.readouterr().err
        assert "40/40" in err and "text/s" in err
        assert f"cached={0 if number == 0 else 40}" in err  # the first call filled the cache
    embedsdk.get_batch_embeddings(texts, **options)
    assert capsys.readouterr().err == ""  # no bar unless asked for


def test_a_blocking_generator_does_not_stall_the_requests_in_flight(
    simulated_provider_factory: Callable[..., SimulatedProvider],
) -> None:
    """A generator is read off the event loop: while it waits (a slow pipe), the requests of
    the window already read go out and are answered."""
    import time

    sim = simulated_provider_factory(dim=8)
    texts = [text(i) for i in range(200)]

    def slow_source() -> Iterator[str]:
        yield from texts[:100]
        deadline = time.monotonic() + 60  # a guard: a stuck loop, not a slow one, fails
        while sim.stats()["inputs"] < 100:  # the first window must be served meanwhile
            assert time.monotonic() < deadline, "the first window waited for the reader"
            time.sleep(0.005)
        yield from texts[100:]

    with embedsdk.Embedder(base_url=sim.base_url, cache=False) as emb:
        blocks = list(emb.embed_stream(slow_source(), window=100))
    assert [start for start, _ in blocks] == [0, 100]
    got = np.vstack([block for _, block in blocks])
    np.testing.assert_array_equal(got, expected_matrix(texts, dim=8))


def test_a_window_takes_the_rows_the_previous_window_already_fetched() -> None:
    """A text repeated in the next window after the previous one has finished (no cache, or
    its vectors written after the next window looked): taken from the previous window's
    rows, not sent again. In simulated time: the producer pauses 5 s between the windows."""
    from embedsdk.testing import SimulatedTransport, run_in_virtual_time

    first = [text(i) for i in range(4)]
    second = [first[2], text(99), first[0], first[3]]

    async def produce() -> AsyncIterator[str]:
        for t in first:
            yield t
        await asyncio.sleep(5.0)  # the first window is answered meanwhile
        for t in second:
            yield t

    async def main() -> tuple[list[tuple[int, np.ndarray]], int]:
        sim = SimulatedTransport(dim=8, latency=0.1)
        async with embedsdk.AsyncEmbedder(transport=sim, cache=False, api_key="sk-test") as emb:
            got = [b async for b in emb.embed_stream(produce(), window=4, max_concurrent=2)]
        return got, sim.stats()["inputs"]

    (blocks, sent), _ = run_in_virtual_time(main())
    assert [start for start, _ in blocks] == [0, 4]
    np.testing.assert_array_equal(
        np.vstack([b for _, b in blocks]), expected_matrix(first + second, dim=8)
    )
    assert sent == 5  # the four of the first window, and text(99)
