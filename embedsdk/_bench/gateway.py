"""``--scenario nginx``: the client behind a real gateway's limits, not told them.

nginx (Debian's ``nginx-light``: ``apt-get install nginx-light``) runs as a reverse proxy in
front of the simulated provider (no limits of its own), with one of:

- ``limit_req`` 10 requests a second with a burst of 10 (``nodelay``): a token bucket;
- ``limit_req`` 10 requests a second, no burst: a bucket holding a single request, which
  refuses two that come closer than 100 ms;
- ``limit_conn`` 4: a cap on requests in flight.

Refusals are answered 429. nginx writes every request to its access log (the time, to the
millisecond, and the status); the figures are read off it, from the client's first request:
the share of what the limit allowed that was delivered and the share of requests refused,
over the whole run and after its first 10 s. The contenders run one after another, each
alone. Skipped, with a line saying so, when nginx is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import report, runner
from .adaptive import BATCH, DIM, JITTER, WARM_UP, contender, texts_for, until

SECONDS = 60.0
QUICK_SECONDS = 20.0
CONTENDERS = ("adaptive", "plain")


@dataclasses.dataclass(frozen=True)
class Gate:
    """One nginx limit: ``directive`` goes in the proxied location; ``per_second`` requests
    a second plus ``burst`` at once (``limit_req``), or ``in_flight`` (``limit_conn``)."""

    key: str
    name: str
    directive: str
    per_second: float = 0.0
    burst: float = 0.0
    in_flight: int = 0
    latency: float = 0.05

    def allowed(self, start: float, end: float) -> float:
        """Requests the limit lets through in ``[start, end)`` seconds from the first."""
        if self.in_flight:
            return self.in_flight * (end - start) / (self.latency + JITTER / 2)
        return self.per_second * (end - start) + (self.burst if start == 0 else 0.0)


GATES = (
    Gate("req", "limit_req 10 r/s, burst 10", "limit_req zone=req burst=10 nodelay;", 10, 10),
    Gate("req0", "limit_req 10 r/s, no burst", "limit_req zone=req;", 10, 1),
    Gate("conn", "limit_conn 4", "limit_conn conn 4;", in_flight=4, latency=0.2),
)

_CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format timed '$msec $status';
    access_log {dir}/access.log timed;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    limit_req_zone $binary_remote_addr zone=req:1m rate=10r/s;
    limit_conn_zone $binary_remote_addr zone=conn:1m;
    limit_req_status 429;
    limit_conn_status 429;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        location / {{
            {directive}
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def installed() -> str | None:
    """The nginx binary, or ``None``."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def nginx(binary: str, gate: Gate, backend: int) -> Iterator[tuple[str, Path]]:
    """nginx in front of ``backend`` with ``gate``'s limit: its base URL and access log."""
    with tempfile.TemporaryDirectory(prefix="embedsdk-nginx-") as tmp:
        port = _free_port()
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            _CONFIG.format(dir=tmp, backend=backend, port=port, directive=gate.directive)
        )
        proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(port, proc, conf)
            yield f"http://127.0.0.1:{port}/v1", Path(tmp) / "access.log"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for(port: int, proc: subprocess.Popen[bytes], conf: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"nginx did not start with {conf}: {error.strip()[:300]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("nginx did not listen within 15 s")


def read_log(path: Path) -> list[tuple[float, int]]:
    """(seconds, status) of every request nginx answered."""
    found = []
    for line in path.read_text().splitlines():
        stamp, _, status = line.partition(" ")
        with contextlib.suppress(ValueError):
            found.append((float(stamp), int(status)))
    return found


def figures(log: list[tuple[float, int]], gate: Gate, seconds: float) -> dict[str, Any]:
    """From the first request: the share of what the limit allowed that was delivered, and
    of requests refused, over the whole run and after :data:`WARM_UP` seconds."""
    if not log:
        return {"whole": None, "after": None}
    first = min(t for t, _ in log)

    def span(start: float, end: float) -> dict[str, Any]:
        inside = [s for t, s in log if start <= t - first < end]
        refused = sum(1 for s in inside if s in (429, 503))
        return {
            "of_allowance": inside.count(200) / gate.allowed(start, end),
            "refused_share": refused / len(inside) if inside else None,
            "refused": refused,
            "requests": len(inside),
        }

    return {"whole": span(0.0, seconds), "after": span(WARM_UP, seconds)}


def run(args: argparse.Namespace) -> dict[str, Any] | None:
    """Every gate, every contender, alone, in real time; ``None`` without nginx."""
    from .adaptive import Case

    quiet = bool(getattr(args, "quiet", False))
    binary = installed()
    if binary is None:
        runner.log("nginx: not installed (apt-get install nginx-light), skipped", quiet)
        return None
    seconds = QUICK_SECONDS if getattr(args, "quick", False) else SECONDS
    texts = texts_for(int(20 * BATCH * seconds * 3))
    rows = []
    for gate in GATES:
        case = Case(gate.key, gate.name, {}, gate.latency)
        for name in CONTENDERS:
            runner.log(f"nginx: {gate.name}, {name}, {seconds:.0f} s", quiet)
            with runner.simulated_server(latency=gate.latency, jitter=JITTER, dim=DIM) as sim:
                backend = int(sim.base_url.split(":")[2].split("/")[0])
                with nginx(binary, gate, backend) as (url, log):
                    call = contender(name)(url, texts, case, name)
                    ended = asyncio.run(until(call, seconds))
                    time.sleep(0.2)  # nginx writes its log as each answer goes out
                    found = figures(read_log(log), gate, seconds)
            rows.append({"gate": gate.key, "client": name, **found, "ended_s": ended})
    version = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
    return {"nginx": version, "seconds": seconds, "rows": rows}


def format_table(result: dict[str, Any] | None) -> str:
    if result is None:
        return "nginx: not installed (apt-get install nginx-light), skipped"
    names = {g.key: g.name for g in GATES}
    headers = ["nginx limit (not told)", "client", "whole run", "after 10 s", "targets"]
    rows = []
    for row in result["rows"]:
        whole, after = row["whole"], row["after"]
        met = "-"
        if row["client"] == "adaptive" and whole is not None:
            good = whole["of_allowance"] >= 0.9 and (whole["refused_share"] or 0) <= 0.05
            met = "yes" if good else "NO"
        rows.append(
            [names[row["gate"]], _options_name(row["client"]), _cell(whole), _cell(after), met]
        )
    title = (
        f"Behind a real gateway ({result['nginx']}), real time, whole runs of "
        f"{result['seconds']:.0f} s; 16 in flight, batch {BATCH}"
    )
    note = (
        "Each cell: requests accepted, as a share of what nginx's limit allows / share of\n"
        "  requests refused (429), from nginx's access log, from the client's first request.\n"
        "  targets: adaptive >= 90 % with <= 5 % refused over the whole run."
    )
    return f"{title}\n{report.table(headers, rows)}\n{note}"


def _options_name(client: str) -> str:
    return {"adaptive": "embedsdk adaptive", "plain": "embedsdk adaptive=False"}[client]


def _cell(found: dict[str, Any] | None) -> str:
    if found is None:
        return "-"
    refused = found["refused_share"]
    shown = "-" if refused is None else f"{refused * 100:.1f}%"
    return f"{report.pct(found['of_allowance'])} / {shown}"
