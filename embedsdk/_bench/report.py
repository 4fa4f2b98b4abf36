"""Printable tables and the JSON file (pure formatting, except :func:`write_json`)."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from .cache import CacheResult
from .ceiling import median
from .memory import MemoryResult
from .scenarios import ThroughputResult, cpu_per_100k
from .warm import WarmResult

CEILING_NOTE = (
    "ceiling texts/s: a zero-overhead client, n / (waves x latency), which is\n"
    "  min(in flight x batch / latency, RPM x batch / 60) when the batches fill whole waves;\n"
    "ceiling speed-up: batches / waves; eff. = measured / ceiling; "
    "peak in flight: the server's count"
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the rest right."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value * 100:.0f}%"


def times(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def rate(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.0f}"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _latency_words(settings: dict[str, Any]) -> str:
    latency = settings.get("latency_s")
    if latency is None:
        return "latency estimated from the serial run"
    return f"latency {latency * 1000:g} ms"


def throughput_table(result: ThroughputResult) -> str:
    """The main table: texts/s, speed-up over serial, and both against their ceilings."""
    s = result.settings
    title = (
        f"Throughput: {s['endpoint']}, {s['model']}, {_latency_words(s)}, batch "
        f"{s['batch_size']}, {s['concurrency']} in flight, median of {s['repeat']}"
    )
    headers = [
        "texts / client", "in flight", "median s", "texts/s", "ceiling texts/s", "eff.",
        "speed-up", "ceiling speed-up", "eff.", "exact", "peak in flight",
    ]  # fmt: skip
    rows: list[list[str]] = []
    for size in s["sizes"]:
        rows.append([f"{size:,} texts"] + [""] * (len(headers) - 1))
        for r in (r for r in result.runs if r.size == size):
            rows.append(
                [
                    f"  {r.label}",
                    str(r.concurrency),
                    f"{r.median_s:.3f}",
                    rate(r.texts_per_s),
                    rate(r.ceiling_texts_per_s),
                    pct(r.efficiency),
                    times(r.speedup),
                    times(r.ceiling_speedup),
                    pct(r.speedup_efficiency),
                    yes_no(r.exact),
                    "-" if r.peak_in_flight is None else str(r.peak_in_flight),
                ]
            )
    return "\n".join([title, CEILING_NOTE, "", table(headers, rows)])


def fast_table(result: ThroughputResult) -> str:
    """CPU seconds per 100,000 vectors for each client, as a ratio to ours (async)."""
    s = result.settings
    ours = result.run("async")
    base = cpu_per_100k(ours) if ours is not None else None
    title = (
        f"Fast server: {s['endpoint']}, {_latency_words(s)}, {s['dim'] or '?'} dims, "
        f"{s['sizes'][0]:,} texts, batch {s['batch_size']}, {s['concurrency']} in flight, "
        f"median of {s['repeat']}; CPU of the client process only (the server's, in its own "
        "process, for comparison)"
    )
    headers = [
        "client", "in flight", "wall s", "vectors/s", "CPU s / 100k vectors", "x ours",
        "server CPU s / 100k",
    ]  # fmt: skip
    rows = [
        [
            r.label,
            str(r.concurrency),
            f"{r.median_s:.2f}",
            rate(r.texts_per_s),
            f"{cpu_per_100k(r):.2f}",
            times(cpu_per_100k(r) / base) if base else "-",
            "-" if r.server_cpu_s is None else f"{r.server_cpu_s / r.size * 100_000:.2f}",
        ]
        for r in result.runs
    ]
    return "\n".join([title, "", table(headers, rows)])


def cache_table(result: CacheResult) -> str:
    s = result.settings
    title = (
        f"Cache: {s['texts']:,} texts, {s['dim']} dims, latency {s['latency_s'] * 1000:g} ms, "
        f"batch {s['batch_size']}, {s['concurrency']} in flight, median of {s['repeat']} cold "
        f"and {s['repeat'] * s['warm_runs']} warm runs "
        f"(zero-overhead cold run: {s['ceiling_cold_s']:.2f} s)"
    )
    headers = [
        "variant", "cold, no cache s", "cold, cache s", "cache cost", "warm s",
        "warm vectors/s", "warm speed-up", "exact",
    ]  # fmt: skip
    rows = [
        [
            r.label,
            f"{median(r.cold_nocache_s):.2f}",
            f"{median(r.cold_s):.2f}",
            f"{r.cache_cost * 100:+.1f}%",
            f"{median(r.warm_s):.3f}",
            rate(r.warm_vectors_per_s),
            f"{r.warm_speedup:,.0f}x",
            yes_no(r.warm_exact),
        ]
        for r in result.rows
    ]
    return "\n".join([title, "", table(headers, rows), *_store_lines(result)])


def _store_lines(result: CacheResult) -> list[str]:
    st = result.store
    if st is None:
        return []
    return [
        "",
        f"Store alone, {st.vectors:,} vectors of {st.dim} dims: warm get_many "
        f"{median(st.cache_s) * 1000:.0f} ms, raw SELECT ... IN over the same blobs "
        f"{median(st.raw_s) * 1000:.0f} ms (plain table, SQLite's defaults);",
        f"  the cache reads at {pct(st.ratio)} of the raw SELECT's speed (median of "
        f"{len(st.cache_s)} alternating pairs), exact: {yes_no(st.exact)}; one set_many of "
        f"them all: {st.write_s:.2f} s",
    ]


def warm_table(result: WarmResult) -> str:
    """The warm call against the raw ``SELECT`` of the same rows: both rates, the ratio."""
    s = result.settings
    title = (
        f"Warm path: {result.texts:,} texts, {result.dim} dims, every one a cache hit; "
        f"median of {s['pairs']} alternating pairs (fill: one cold run, {result.fill_s:.2f} s)"
    )
    headers = ["read", "median ms", "vectors/s"]
    rows = [
        [
            "warm get_batch_embeddings_async",
            f"{median(result.warm_s) * 1000:.1f}",
            rate(result.warm_per_s),
        ],
        [
            f"raw SELECT ... IN ({s['raw_chunk']} keys), same file",
            f"{median(result.raw_s) * 1000:.1f}",
            rate(result.raw_per_s),
        ],
    ]
    met = yes_no(result.ratio >= s["target"])
    requests = "-" if result.warm_requests is None else str(result.warm_requests)
    notes = [
        f"the warm call reads at {pct(result.ratio)} of the raw SELECT's speed (median of the "
        f"pairs' raw / warm; target {pct(s['target'])}: {met}); exact: "
        f"{yes_no(result.exact)}; requests sent by the warm calls: {requests}",
    ]
    return "\n".join([title, "", table(headers, rows), "", *notes])


def memory_table(result: MemoryResult) -> str:
    s = result.settings
    title = (
        f"Memory: `embedsdk embed` from a file to {', '.join(s.get('formats', ['npy']))}, "
        f"{s['dim']} dims, batch "
        f"{s['batch_size']}, {s['concurrency']} in flight, cache {s['cache']} "
        f"({s['cache_switch']}); peak RSS of the embed process"
    )
    headers = ["texts", "format", "peak RSS MiB", "seconds", "texts/s", "output", "exit"]
    rows: list[list[str]] = []
    if result.baseline is not None:
        b = result.baseline
        rss = "-" if b.peak_rss_mib is None else f"{b.peak_rss_mib:.0f}"
        rows.append(
            ["baseline (embed --help)", "-", rss, f"{b.seconds:.2f}", "-", "-", str(b.exit_code)]
        )
    for r in result.rows:
        rows.append(
            [
                f"{r.texts:,}",
                r.format,
                "-" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}",
                f"{r.seconds:.1f}",
                rate(r.texts_per_s),
                "exact" if r.output_ok else yes_no(r.output_ok),
                str(r.exit_code),
            ]
        )
    return "\n".join([title, "", table(headers, rows)])


def machine() -> dict[str, Any]:
    """Where the numbers come from (versions of every client measured)."""
    info: dict[str, Any] = {
        "embedsdk": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    # Versions from the installed metadata: importing openai and langchain costs a second.
    for name in ("aiohttp", "numpy", "openai", "langchain-openai", "httpx", "matplotlib"):
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    return info


def _clean(value: Any) -> Any:
    """JSON has no inf/nan: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def cleaned(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` as its JSON file will read: inf and nan as ``None``, tuples as lists."""
    found: dict[str, Any] = json.loads(json.dumps(_clean(payload)))
    return found


def write_json(payload: dict[str, Any], path: Path) -> Path:
    """Write the run's results as JSON (UTF-8, indented) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(payload), indent=2, ensure_ascii=False) + "\n", "utf-8")
    return path
