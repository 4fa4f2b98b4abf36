"""``python -m embedsdk.testing``: run the simulated provider until SIGINT or SIGTERM.

Every :class:`SimConfig` field is a flag (``--max-batch 32``, ``--rpm 600``, ``--faults
500,reset``, ``--retry-after``; ``none`` for "no limit"). The first stdout line is
``embedsdk simulated provider on http://HOST:PORT/v1`` (flushed), so a parent process can
read the port it got with ``--port 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import Any, Callable

from ._config import BASE64_MODES, DIMENSIONS_MODES, ERROR_STYLES, SimConfig
from ._provider import BANNER
from ._server import SimServer


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


# Field -> (argument type, help). Booleans get --flag / --no-flag.
_FIELDS: dict[str, tuple[Any, str]] = {
    "dim": (int, "vector length when a request has no `dimensions` (1024)"),
    "latency": (float, "seconds per request (0)"),
    "jitter": (float, "extra uniform [0, JITTER] seconds per request (0)"),
    "per_input": (float, "extra seconds per input (0)"),
    "max_batch": (_optional(int), "inputs per request above which it answers 413 (64)"),
    "max_input_tokens": (_optional(int), "tokens per input above which it answers 500"),
    "rpm": (_optional(float), "requests per sliding minute above which it answers 429"),
    "tpm": (_optional(float), "tokens per sliding minute above which it answers 429"),
    "retry_after": (bool, "send Retry-After / retry-after-ms with a 429"),
    "ratelimit_headers": (bool, "send x-ratelimit-* headers"),
    "gateway_429": (bool, "answer 429s as nginx's limit pages do: HTML naming no limit"),
    "fault_rate": (float, "probability that a request gets a fault (0)"),
    "faults": (_names, "comma-separated fault kinds to draw from"),
    "hang": (float, "seconds a 'hang' fault waits (30)"),
    "seed": (int, "seed of the fault and jitter generator (0)"),
    "api_key": (_optional(str), "answer 401 unless 'Authorization: Bearer API_KEY'"),
    "error_style": (str, "error bodies: " + " | ".join(ERROR_STYLES)),
    "base64": (str, "base64 answers: " + " | ".join(BASE64_MODES)),
    "dimensions": (str, "`dimensions` parameter: " + " | ".join(DIMENSIONS_MODES)),
    "insufficient_quota": (bool, "answer every request with a 429 insufficient_quota"),
    "models": (_optional(_names), "comma-separated models served (others: 404)"),
    "refuse_inputs": (
        _names,
        "comma-separated markers: a request holding a text that contains one is refused with a 400",
    ),
    "trace_ids": (bool, "send x-siliconcloud-trace-id (on)"),
    "track_texts": (bool, "count each text served in /stats?texts=1 (on)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embedsdk.testing",
        description="Run embedsdk's simulated OpenAI-compatible embeddings provider.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free one; 8000)")
    parser.add_argument("--config-json", help="a JSON object of SimConfig fields")
    parser.add_argument(
        "--config-stdin",
        action="store_true",
        help="read a JSON config line from stdin, and stop when stdin closes",
    )
    for name, (kind, help_text) in _FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                help=help_text,
            )  # fmt: skip
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)
    return parser


def config_from_args(args: argparse.Namespace, stdin_line: str | None = None) -> SimConfig:
    """Defaults, then ``--config-json`` / the stdin line, then the individual flags."""
    fields: dict[str, Any] = {}
    for source in (args.config_json, stdin_line):
        if source:
            fields.update(json.loads(source))
    fields.update({name: getattr(args, name) for name in _FIELDS if hasattr(args, name)})
    return SimConfig.from_mapping(fields)


class CannotListen(Exception):
    """The server could not listen on the address asked for (a busy port, a bad host)."""


async def serve(config: SimConfig, host: str, port: int, watch_stdin: bool = False) -> None:
    """Serve until SIGINT/SIGTERM (or stdin's end with ``watch_stdin``)."""
    server = SimServer(config)
    try:
        port = await server.start(host, port)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {_reason(exc)}") from None
    print(f"{BANNER}http://{host}:{port}/v1", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    if watch_stdin:
        threading.Thread(target=_wait_for_eof, args=(loop, stop), daemon=True).start()
    try:
        await stop.wait()
    finally:
        await server.stop()


def _reason(exc: OSError) -> str:
    """Why binding failed, once: asyncio's message repeats the address before the reason."""
    if isinstance(exc, socket.gaierror) or not exc.errno:  # a host name that does not resolve
        return str(exc.strerror or exc)
    if exc.errno == errno.EADDRINUSE:
        return f"{os.strerror(exc.errno)} (choose another --port, or --port 0 for any free one)"
    return os.strerror(exc.errno)


def _wait_for_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block until stdin ends (the parent closed it or died), then stop the server.

    Reads the file descriptor, not ``sys.stdin``: a daemon thread blocked inside the
    buffered reader holds its lock, and the interpreter aborts when it cannot take that lock
    at exit.
    """
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    # RuntimeError: the loop already closed, a signal stopped it first.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(stop.set)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdin_line = sys.stdin.readline() if args.config_stdin else None
    try:
        config = config_from_args(args, stdin_line)
    except (TypeError, ValueError) as exc:
        print(f"python -m embedsdk.testing: error: {exc}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C during shutdown
            asyncio.run(serve(config, args.host, args.port, watch_stdin=args.config_stdin))
    except CannotListen as exc:
        print(f"python -m embedsdk.testing: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
