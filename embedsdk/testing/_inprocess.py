"""The simulated provider without a socket, and an event loop whose clock skips idle time.

Together they run the real client against any simulated limit for minutes of simulated time
in a fraction of a second, the same on a loaded machine as on an idle one:

>>> from embedsdk.testing import SimulatedTransport, run_in_virtual_time   # doctest: +SKIP
>>> async def main():
...     sim = SimulatedTransport(rpm=600, limiter="token_bucket", latency=0.05)
...     async with embedsdk.AsyncEmbedder(transport=sim, cache=False) as emb:
...         await emb.embed(texts)
...     return sim.stats()
>>> stats, seconds = run_in_virtual_time(main())   # seconds: simulated time it took
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import selectors
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from .._exceptions import APIConnectionError, APITimeoutError
from ..http import Request, Response, Transport
from ._config import SimConfig
from ._server import SimServer

T = TypeVar("T")

#: Simulated seconds each turn of a VirtualTimeLoop takes.
TURN = 1e-6


@dataclasses.dataclass(frozen=True)
class TimingNoise:
    """What real time brings that an exact simulated clock does not (seconds).

    A loop whose timers fire exactly on time, whose requests cost no CPU and reach the server
    at the instant they are sent flatters a rate controller: one that relies on its waits
    ending on time passes there and fails on a loaded machine. With noise, each wait for a
    timer ends up to ``late`` seconds late (uniform), and one in ``1 / spike_rate`` ends
    ``spike`` seconds late as well (a garbage collection, another process on the core); each
    request sent through :class:`SimulatedTransport` costs ``cpu_per_request`` seconds of the
    loop's time (the clock moves while nothing else runs) and reaches the server up to
    ``arrival_jitter`` seconds after it was sent (uniform), as does its answer coming back.
    ``seed`` makes a run repeatable.

    The defaults are this project's 2-core machine with other jobs running (timers measured
    late by 1 ms at the median, 4 ms at the 90th percentile, 10 ms at the 99th, 29 ms at
    most, under the client's own load; 2026-12-05): up to 4 ms, and 10 ms more one time in
    fifty. :meth:`harsh` is a machine much busier than that.
    """

    late: float = 0.004
    spike: float = 0.01
    spike_rate: float = 0.02
    cpu_per_request: float = 0.0003
    arrival_jitter: float = 0.001
    seed: int = 0

    @classmethod
    def harsh(cls, seed: int = 0) -> TimingNoise:
        """Timers up to 20 ms late, and 100 ms late one time in fifty; 5 ms of jitter."""
        return cls(0.02, 0.1, 0.02, 0.0005, 0.005, seed)


class SimulatedTransport(Transport):
    """The simulated provider, answering in-process through the client's transport seam.

    Takes the fields of :class:`SimConfig`; latency, limits and faults behave as over HTTP
    (a ``"reset"`` fault raises ``APIConnectionError``, a request past its ``timeout`` raises
    ``APITimeoutError``). Use it on the loop of the client that holds it.
    """

    def __init__(self, config: SimConfig | None = None, **fields: Any) -> None:
        base = SimConfig() if config is None else config
        self.server = SimServer(base.replace(**fields) if fields else base)

    @property
    def config(self) -> SimConfig:
        return self.server.config

    def configure(self, **fields: Any) -> None:
        """Change :class:`SimConfig` fields (the limits keep their counts when unchanged)."""
        self.server.configure(**fields)

    def stats(self, texts: bool = True) -> dict[str, Any]:
        """The counters, as :meth:`SimulatedProvider.stats` gives them."""
        return self.server.snapshot(texts=texts)

    async def send(self, request: Request) -> Response:
        auth = _get(request.headers, "Authorization")
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop) and loop.noise is not None:
            loop.spend(loop.noise.cpu_per_request)
        serve = self._serve(request.body, auth, loop)
        try:
            answer = await asyncio.wait_for(serve, request.timeout)
        except asyncio.TimeoutError:
            raise APITimeoutError(f"no answer within {request.timeout} s (simulated)") from None
        if answer is None or answer.reset:
            raise APIConnectionError("connection reset by the simulated provider")
        return Response(answer.status, answer.headers, answer.body)

    async def _serve(self, body: bytes, auth: str | None, loop: asyncio.AbstractEventLoop) -> Any:
        """The server's answer, each way delayed by the loop's arrival jitter (if any)."""
        jitter = loop.jitter if isinstance(loop, VirtualTimeLoop) else None
        if jitter is not None:
            await asyncio.sleep(jitter())
        answer = await self.server.serve(body, auth)
        if jitter is not None:
            await asyncio.sleep(jitter())
        return answer


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


class _Clock:
    __slots__ = ("now",)

    #: Where the last simulated clock stopped: the next one starts there or later, so that
    #: state kept across loops (a shared rate controller) never sees time run backwards.
    last = 0.0

    def __init__(self) -> None:
        self.now = max(time.monotonic(), _Clock.last)


class _SkippingSelector(selectors.BaseSelector):
    """A selector that, when nothing is ready, moves the clock to the next timer instead of
    waiting for it. With no timer at all it really waits (a thread may call back)."""

    def __init__(self, clock: _Clock, late: Callable[[], float] | None = None) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock
        self._late = late

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Every turn of the loop takes a microsecond, as real turns take some time: code
        # that re-arms a timer for "now plus a rounding error" (aiolimiter does) moves on.
        self._clock.now += TURN
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return self._real.select(None)
        self._clock.now += timeout + (self._late() if self._late is not None else 0.0)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` jumps over every wait in which nothing is ready.

    ``asyncio.sleep``, timeouts, aiolimiter and the client's pacing all follow it. Blocking
    work on other threads (the disk cache, reading a pipe) is not waited for in simulated
    time: use it with ``cache=False`` and in-memory inputs. With ``noise`` (a
    :class:`TimingNoise`) its timers fire late and requests cost time, as in real time.
    """

    def __init__(self, noise: TimingNoise | None = None) -> None:
        self._virtual = _Clock()
        self.noise = noise
        self._rng = random.Random(noise.seed if noise is not None else 0)
        late = self._lateness if noise is not None else None
        super().__init__(selector=_SkippingSelector(self._virtual, late))

    def time(self) -> float:
        return self._virtual.now

    def spend(self, seconds: float) -> None:
        """The loop is busy for ``seconds`` (CPU work): its clock moves on."""
        self._virtual.now += seconds

    @property
    def jitter(self) -> Callable[[], float] | None:
        """A draw of the one-way network delay's jitter, or ``None`` without noise."""
        noise = self.noise
        if noise is None or noise.arrival_jitter <= 0:
            return None
        return lambda: self._rng.uniform(0.0, noise.arrival_jitter)

    def _lateness(self) -> float:
        noise = self.noise
        assert noise is not None
        late = self._rng.uniform(0.0, noise.late)
        if self._rng.random() < noise.spike_rate:
            late += noise.spike
        return late

    def close(self) -> None:
        _Clock.last = max(_Clock.last, self._virtual.now)
        super().close()


def run_in_virtual_time(
    coro: Coroutine[Any, Any, T], noise: TimingNoise | None = None
) -> tuple[T, float]:
    """Run ``coro`` on a :class:`VirtualTimeLoop` (with ``noise``: timers late, requests
    costing time, see :class:`TimingNoise`); returns its result and the simulated seconds it
    took. A ``RateController`` made inside ``coro`` follows the loop's clock."""
    loop = VirtualTimeLoop(noise)
    try:
        start = loop.time()
        result = loop.run_until_complete(coro)
        return result, loop.time() - start
    finally:
        try:
            _cancel_all(loop)  # after Ctrl-C or a failure, as asyncio.run does
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


#: Rounds of cancelling the tasks left on a loop: their clean-up may start others, or raise
#: the interrupt again from a task that had caught it.
CANCEL_ROUNDS = 5


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks left on ``loop`` and let them finish (their ``finally`` blocks run):
    else closing it destroys them pending, with a warning for each."""
    for _ in range(CANCEL_ROUNDS):
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        except (KeyboardInterrupt, SystemExit):
            continue  # the interrupt, again: what is left is cancelled in the next round
