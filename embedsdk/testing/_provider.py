"""Where the simulated provider runs: the caller's loop, a background thread, or a child process.

>>> from embedsdk.testing import SimulatedProvider, expected_matrix        # doctest: +SKIP
>>> with SimulatedProvider(latency=0.05, max_batch=32) as sim:
...     vecs = embedsdk.get_batch_embeddings(texts, base_url=sim.base_url)
...     assert (vecs == expected_matrix(texts)).all()
...     print(sim.stats()["requests"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ._config import SimConfig
from ._server import SimServer

HOST = "127.0.0.1"
#: Seconds to wait for a server (thread or child process) to start or stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
#: The first stdout line of ``python -m embedsdk.testing`` starts with this, then the URL.
BANNER = "embedsdk simulated provider on "

T = TypeVar("T")

# Control requests go straight to 127.0.0.1, whatever *_proxy variables say.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulatedProvider:
    """An OpenAI-compatible ``/embeddings`` server on 127.0.0.1 with deterministic vectors.

    ``config`` and/or keyword fields of :class:`SimConfig` set its behaviour; ``port=0``
    takes any free port. Run it one of three ways:

    - ``async with SimulatedProvider() as sim:`` serves on the running event loop;
    - ``with SimulatedProvider() as sim:`` serves on its own background thread and loop;
    - ``with SimulatedProvider(process=True) as sim:`` serves from a child process
      (``python -m embedsdk.testing``), so that the client's CPU time is its own.

    ``sim.base_url`` is ``http://127.0.0.1:PORT/v1``. :meth:`stats`, :meth:`reset_stats`
    and :meth:`configure` work from any thread in every mode.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        process: bool = False,
        port: int = 0,
        **fields: Any,
    ) -> None:
        base = SimConfig() if config is None else config
        self._config = base.replace(**fields) if fields else base
        self.process = process
        self._requested_port = port
        self.port: int | None = None
        self._mode: str | None = None  # "async" | "thread" | "process" while running
        self._server: SimServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        where = self.base_url if self.port is not None else "not started"
        return f"<SimulatedProvider {self._mode or ''} {where}>".replace("  ", " ")

    # -- addresses and config -------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the control routes ``/stats``, ``/reset``, ``/config``)."""
        if self.port is None:
            raise RuntimeError("the simulated provider is not running")
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: pass it as the client's base URL."""
        return self.url + "/v1"

    @property
    def config(self) -> SimConfig:
        """The current config (after any :meth:`configure`)."""
        return self._server.config if self._server is not None else self._config

    # -- thread and process modes ---------------------------------------------------------

    def start(self) -> SimulatedProvider:
        """Start serving on a background thread (or a child process if ``process=True``)."""
        if self._mode is not None:
            raise RuntimeError("the simulated provider is already running")
        if self.process:
            self._start_process()
        else:
            self._start_thread()
        return self

    def stop(self) -> None:
        """Stop serving and release the thread, loop, process and sockets. Safe to call twice."""
        mode, self._mode = self._mode, None
        if mode == "thread":
            self._stop_thread()
        elif mode == "process":
            self._stop_process()
        elif mode == "async":
            self._mode = mode
            raise RuntimeError("started with 'async with': stop it with 'await sim.astop()'")
        self.port = None

    def __enter__(self) -> SimulatedProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_thread(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_forever, args=(loop,), name="embedsdk-simulated-provider", daemon=True
        )
        thread.start()
        server = SimServer(self._config)
        future = asyncio.run_coroutine_threadsafe(server.start(HOST, self._requested_port), loop)
        try:
            port = future.result(START_TIMEOUT)
        except BaseException:
            _close_loop(loop, thread, server)
            raise
        self._loop, self._thread, self._server = loop, thread, server
        self.port, self._mode = port, "thread"

    def _stop_thread(self) -> None:
        loop, thread, server = self._loop, self._thread, self._server
        self._loop = self._thread = self._server = None
        assert loop is not None and thread is not None and server is not None
        self._config = server.config
        _close_loop(loop, thread, server)

    def _start_process(self) -> None:
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        env = dict(os.environ)
        # The child imports the very embedsdk the parent runs, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "embedsdk.testing", "--port", str(self._requested_port)]
        # The config (API key included) goes through stdin rather than the visible command
        # line; the child stops by itself when stdin closes, so it never outlives us.
        command += ["--host", HOST, "--config-stdin"]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self._proc = proc
        try:
            self.port = _read_port(proc, self._config)
        except BaseException:
            self._stop_process()
            raise
        self._mode = "process"

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the child closes its server and exits
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - a wedged child
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # the child already gone
                    pipe.close()

    # -- async mode -----------------------------------------------------------------------

    async def astart(self) -> SimulatedProvider:
        """Start serving on the running event loop (``process=True``: start the child)."""
        if self.process:
            return self.start()
        if self._mode is not None:
            raise RuntimeError("the simulated provider is already running")
        server = SimServer(self._config)
        self.port = await server.start(HOST, self._requested_port)
        self._server, self._loop, self._mode = server, asyncio.get_running_loop(), "async"
        return self

    async def astop(self) -> None:
        """Stop serving (whichever way it was started). Safe to call twice."""
        if self._mode != "async":
            self.stop()
            return
        server = self._server
        self._mode, self._server, self._loop, self.port = None, None, None, None
        if server is not None:
            self._config = server.config
            await server.stop()

    async def __aenter__(self) -> SimulatedProvider:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    # -- counters and control ---------------------------------------------------------------

    def stats(self, texts: bool | None = None) -> dict[str, Any]:
        """The counters (see :meth:`SimServer.snapshot`): requests, inputs, tokens, in_flight,
        peak_in_flight, status (code -> count), rate_limited, faults (kind -> count),
        batch_sizes, texts, elapsed and cpu_seconds.

        ``texts`` defaults to included, except in process mode where it costs a transfer of
        every text: pass ``texts=True`` there to get it.
        """
        if self._mode == "process":
            data = self._http("GET", "/stats?texts=1" if texts else "/stats")
            data["status"] = {int(code): n for code, n in data["status"].items()}
            return dict(data)
        server = self._running_server()
        return self._on_loop(lambda: server.snapshot(texts=texts is not False))

    def reset_stats(self) -> None:
        """Zero the counters (the rate-limit window and the vector memo are kept)."""
        if self._mode == "process":
            self._http("POST", "/reset")
            return
        self._on_loop(self._running_server().reset_stats)

    def configure(self, **fields: Any) -> None:
        """Change :class:`SimConfig` fields while running (or before starting)."""
        new = self.config.replace(**fields)  # TypeError / ValueError here, in the caller
        if self._mode == "process":
            self._http("POST", "/config", fields)
        elif self._server is not None:
            server = self._server
            self._on_loop(lambda: server.configure(**fields))
        self._config = new

    def _running_server(self) -> SimServer:
        if self._server is None:
            raise RuntimeError("the simulated provider is not running")
        return self._server

    def _on_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (directly when already there) and return its result."""
        loop = self._loop
        assert loop is not None
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            return fn()

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(STOP_TIMEOUT)

    def _http(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=STOP_TIMEOUT) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"simulated provider refused {method} {path}: {detail}") from None


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


async def _shutdown(server: SimServer) -> None:
    """Stop the server, then cancel whatever still runs on this loop (a hanging answer)."""
    await server.stop()
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def _close_loop(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, server: SimServer
) -> None:
    try:
        asyncio.run_coroutine_threadsafe(_shutdown(server), loop).result(STOP_TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()


def _read_port(proc: subprocess.Popen[bytes], config: SimConfig) -> int:
    """Send the child its config and read the port from its first stdout line."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(config.to_json()).encode() + b"\n")
    proc.stdin.flush()
    # A child that never speaks is killed, which ends the readline below.
    watchdog = threading.Timer(START_TIMEOUT, proc.kill)
    watchdog.start()
    try:
        line = proc.stdout.readline().decode("utf-8", "replace").strip()
    finally:
        watchdog.cancel()
        watchdog.join()
    if not line.startswith(BANNER):
        raise RuntimeError(
            f"the simulated provider process did not start (exit code {proc.poll()}, "
            f"first line {line!r})"
        )
    url = line[len(BANNER) :].rstrip("/")
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])
