"""Cancellation: an async cancel or a Ctrl-C stops the requests in flight, leaves no threads,
sockets or sessions behind, and keeps what arrived (in the cache).

Each test lets some batches arrive, then makes every later request hang on the simulated
provider (an hour, with no client timeout: only the interruption can end them), interrupts
once all workers hang, and checks the server's own in-flight count, the threads and sockets
of the process, and that a re-run asks the server only for what had not arrived. No time is
asserted: the waits below are guards that fail a test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import AsyncEmbedder, Embedder
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 16
WORKERS = 4
TEXTS = [f"第{i}句 sentence {i}" for i in range(600)] + [f"第{i}句 sentence {i}" for i in range(50)]
EXPECTED = expected_matrix(TEXTS, "BAAI/bge-m3", DIM)
N_UNIQUE = 600
#: No timeout: a hanging request that is not cancelled never ends, and check_after's guard
#: fails the test.
OPTIONS: dict[str, Any] = {"batch_size": 10, "timeout": None, "max_retries": 0}
#: Seconds a hang lasts: longer than any guard below.
HANG = 3600.0
#: Seconds a guard waits for a condition before failing the test (a stuck machine, not a
#: slow one, reaches it).
GUARD = 60.0

Factory = Callable[..., SimulatedProvider]

#: Seconds from the interruption's return to the server's in-flight count reaching 0, and
#: texts kept (``pytest -s`` prints them; the tests assert order and counts, not time).
DRAINS: list[tuple[float, int]] = []


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    if DRAINS:
        print(f"\nin flight -> 0 after (s, texts kept): {[(round(t, 3), n) for t, n in DRAINS]}")


def _wait_for(condition: Callable[[], bool], seconds: float = GUARD) -> float:
    """Poll ``condition`` every 5 ms; return the seconds it took (fail after ``seconds``)."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > seconds:
            raise AssertionError("condition not reached")
        time.sleep(0.005)
    return time.perf_counter() - start


async def _await_for(condition: Callable[[], bool], seconds: float = GUARD) -> None:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > seconds:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def _sockets() -> int:
    """Open sockets of this process (Linux); -1 elsewhere."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


class Scene:
    """A provider that serves ~1/3 of the batches, then hangs every request."""

    def __init__(self, factory: Factory) -> None:
        self.sim = factory(dim=DIM, latency=0.05)
        self.threads = set(threading.enumerate())
        self.sockets = _sockets()

    def served(self) -> int:
        return sum(self.sim.stats()["batch_sizes"])

    def hang_after_some(self) -> bool:
        """Poll target: once 200 texts arrived, make every new request hang."""
        if self.served() >= 200 and not self.sim.stats()["faults"]:
            self.sim.configure(fault_rate=1.0, faults=("hang",), hang=HANG)
        return self.all_hanging()

    def all_hanging(self) -> bool:
        # Hanging requests never end, so WORKERS hangs started = every worker hangs, and
        # each one finished (stored and cached) its previous batch before sending this one.
        stats = self.sim.stats()
        return stats["faults"].get("hang", 0) >= WORKERS and stats["in_flight"] == WORKERS

    def check_after(self) -> tuple[int, float]:
        """The server's in-flight count drops to 0 (only the cancel can do that); returns
        (texts served, seconds it took)."""
        took = _wait_for(lambda: self.sim.stats()["in_flight"] == 0)
        DRAINS.append((took, self.served()))
        return self.served(), took

    def heal(self) -> None:
        self.sim.configure(fault_rate=0.0, latency=0.0)
        self.sim.reset_stats()

    def check_rerun(self, got: np.ndarray, served: int) -> None:
        """The re-run's answer is exact and cost only what had not arrived."""
        assert np.array_equal(got, EXPECTED)
        assert self.sim.stats()["inputs"] == N_UNIQUE - served

    def rerun_asks_only_for_the_rest(self, served: int, embed: Callable[[], np.ndarray]) -> None:
        self.heal()
        self.check_rerun(embed(), served)

    def check_nothing_left(self) -> None:
        _wait_for(lambda: set(threading.enumerate()) <= self.threads)
        if self.sockets >= 0:  # the server's end of each connection closes too
            _wait_for(lambda: _sockets() <= self.sockets)


@contextlib.contextmanager
def ctrl_c_when(condition: Callable[[], bool]) -> Iterator[None]:
    """Send SIGINT to the main thread once ``condition()`` holds (as Ctrl-C does).

    The handler raises KeyboardInterrupt only while armed, so a late signal cannot escape
    into pytest.
    """
    armed = threading.Event()
    armed.set()
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if armed.is_set():
            armed.clear()
            raise KeyboardInterrupt

    def watch() -> None:
        while not done.is_set():
            if condition():
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                return
            time.sleep(0.005)

    previous = signal.signal(signal.SIGINT, handler)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        armed.clear()
        signal.signal(signal.SIGINT, previous)


def test_cancelling_an_async_call(simulated_provider_factory: Factory) -> None:
    scene = Scene(simulated_provider_factory)

    async def main() -> tuple[int, float]:
        async with AsyncEmbedder(
            base_url=scene.sim.base_url, max_concurrent=WORKERS, **OPTIONS
        ) as emb:
            task = asyncio.ensure_future(emb.embed(TEXTS))
            await _await_for(scene.hang_after_some)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            served, took = scene.check_after()
            scene.heal()
            scene.check_rerun(await emb.embed(TEXTS), served)
            return served, took

    served, _ = asyncio.run(main())
    assert 200 <= served < N_UNIQUE
    scene.check_nothing_left()


needs_signals = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="Ctrl-C is simulated with pthread_kill (POSIX)"
)


@needs_signals
@pytest.mark.parametrize("how", ["embed", "embed_threaded"])
def test_ctrl_c_during_a_sync_call(simulated_provider_factory: Factory, how: str) -> None:
    scene = Scene(simulated_provider_factory)
    with Embedder(base_url=scene.sim.base_url, max_concurrent=WORKERS, **OPTIONS) as emb:
        call = (
            (lambda: emb.embed(TEXTS))
            if how == "embed"
            else (lambda: emb.embed_threaded(TEXTS, max_workers=WORKERS))
        )
        with pytest.raises(KeyboardInterrupt), ctrl_c_when(scene.hang_after_some):
            call()
        served, _ = scene.check_after()
        assert 200 <= served < N_UNIQUE
        scene.rerun_asks_only_for_the_rest(served, call)
    scene.check_nothing_left()


@needs_signals
def test_ctrl_c_during_the_module_function(simulated_provider_factory: Factory) -> None:
    scene = Scene(simulated_provider_factory)

    def call() -> np.ndarray:
        return embedsdk.get_batch_embeddings_concurrent(
            TEXTS, max_workers=WORKERS, base_url=scene.sim.base_url, **OPTIONS
        )

    with pytest.raises(KeyboardInterrupt), ctrl_c_when(scene.hang_after_some):
        call()
    served, _ = scene.check_after()
    scene.rerun_asks_only_for_the_rest(served, call)
    embedsdk.close_default_clients()
    scene.check_nothing_left()


def test_cancelling_the_async_module_function_from_another_loop(
    simulated_provider_factory: Factory,
) -> None:
    scene = Scene(simulated_provider_factory)

    async def main() -> None:
        task = asyncio.ensure_future(
            embedsdk.get_batch_embeddings_async(
                TEXTS, max_concurrent=WORKERS, base_url=scene.sim.base_url, **OPTIONS
            )
        )
        await _await_for(scene.hang_after_some)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    served, _ = scene.check_after()
    scene.rerun_asks_only_for_the_rest(
        served,
        lambda: embedsdk.get_batch_embeddings(TEXTS, base_url=scene.sim.base_url, **OPTIONS),
    )
    embedsdk.close_default_clients()
    scene.check_nothing_left()


@pytest.mark.parametrize("how", ["embed", "embed_threaded"])
def test_closing_the_client_mid_call_leaves_nothing_behind(
    simulated_provider_factory: Factory, how: str
) -> None:
    scene = Scene(simulated_provider_factory)
    emb = Embedder(base_url=scene.sim.base_url, max_concurrent=WORKERS, **OPTIONS)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            if how == "embed":
                emb.embed(TEXTS)
            else:
                emb.embed_threaded(TEXTS, max_workers=WORKERS)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    _wait_for(scene.hang_after_some)
    emb.close()
    thread.join(timeout=GUARD)
    assert not thread.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], embedsdk.ClientClosedError)
    served, _ = scene.check_after()
    with Embedder(base_url=scene.sim.base_url, **OPTIONS) as again:
        scene.rerun_asks_only_for_the_rest(served, lambda: again.embed(TEXTS))
    scene.check_nothing_left()
