"""The memory scenario (issue 5): peak RSS of ``embedsdk embed`` on 200,000 and 2,000,000 texts.

Each size is written to a temporary file (short unique texts, one a line) and embedded into a
temporary ``.npy`` (and ``.jsonl``, and ``.parquet`` when pyarrow is installed) by
``python -m embedsdk embed`` in a child process against the simulated provider (in another
child process). The figure is the embed process's own peak resident set size (``VmHWM``,
polled from /proc while it runs). A few rows of the output are checked against the
simulator's exact vectors.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import embedsdk

from . import runner
from .clients import Target
from .scenarios import target_for
from .texts import read_line, write_short_texts


@dataclasses.dataclass
class MemoryRow:
    """One ``embedsdk embed`` run: peak RSS in MiB, wall seconds, and whether it was right."""

    texts: int
    peak_rss_mib: float | None
    seconds: float
    exit_code: int
    output_ok: bool | None = None
    format: str = "npy"

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass
class MemoryResult:
    settings: dict[str, Any]
    baseline: MemoryRow | None  # `embedsdk embed --help`: the interpreter and imports
    rows: list[MemoryRow]

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "baseline": dataclasses.asdict(self.baseline) if self.baseline else None,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }


def _child_env(cache_dir: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(embedsdk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env["EMBEDSDK_API_KEY"] = "sk-bench"  # the simulator needs none; never send a real one
    if cache_dir is None:
        env["EMBEDSDK_CACHE"] = "0"
    else:
        env["EMBEDSDK_CACHE_DIR"] = str(cache_dir)
    return env


def vm_hwm_mib(pid: int) -> float | None:
    """The peak RSS so far of process ``pid`` (``VmHWM`` in /proc), in MiB; None if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_child(
    cmd: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL
) -> tuple[int, float | None, float, str]:
    """Run ``cmd``; returns (exit code, its peak RSS in MiB or None, seconds, stderr tail).

    The peak is the child's ``VmHWM``, polled every 20 ms until it exits (it only grows, so
    the last reading is the peak unless a spike came in the last 20 ms). Not ``ru_maxrss``:
    Linux carries the parent's peak into the child across fork and exec, so every child of
    a 200 MB bench would report at least 200 MB. Where there is no /proc (macOS, Windows)
    the peak is not measured (None).
    """
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=err)
        peak: float | None = None
        while proc.poll() is None:
            now = vm_hwm_mib(proc.pid)
            if now is not None:
                peak = max(peak or 0.0, now)
            time.sleep(0.02)
        seconds = time.perf_counter() - t0
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    return proc.returncode, peak, seconds, tail


def _baseline() -> tuple[MemoryRow, bool]:
    """``embedsdk embed --help`` (the interpreter and imports alone), and whether the embed
    command has ``--no-cache`` (else the child gets ``EMBEDSDK_CACHE=0`` only)."""
    with tempfile.TemporaryFile() as out:
        cmd = [sys.executable, "-m", "embedsdk", "embed", "--help"]
        code, rss, seconds, _ = run_child(cmd, _child_env(None), stdout=out)
        out.seek(0)
        has_flag = b"--no-cache" in out.read()
    return MemoryRow(0, rss, seconds, code), has_flag


#: Output formats of the scenario, by suffix.
FORMATS = {"npy": ".npy", "jsonl": ".jsonl", "parquet": ".parquet"}


def formats_available(wanted: list[str]) -> list[str]:
    """``wanted`` without Parquet when pyarrow is not installed."""
    has_pyarrow = importlib.util.find_spec("pyarrow") is not None
    return [f for f in wanted if f != "parquet" or has_pyarrow]


def _read_rows(path: Path, fmt: str, rows: list[int]) -> tuple[int, int, dict[int, np.ndarray]]:
    """``(row count, dim, {row: vector})`` of an output file, reading it without loading it."""
    if fmt == "npy":
        out = np.load(path, mmap_mode="r")
        return out.shape[0], out.shape[1], {i: np.asarray(out[i]) for i in rows if i < len(out)}
    if fmt == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        column = pq.read_table(path, columns=["embedding"]).column("embedding")
        found = {i: np.asarray(column[i].values, dtype=np.float32) for i in rows}
        return meta.num_rows, column.type.list_size, found
    found, count, dim = {}, 0, 0
    with open(path, encoding="utf-8") as f:
        for count, line in enumerate(f, 1):
            if count - 1 in rows:
                found[count - 1] = np.array(json.loads(line)["embedding"], dtype=np.float32)
                dim = len(found[count - 1])
    return count, dim, found


def _check_output(path: Path, fmt: str, texts_file: Path, n: int, target: Target) -> bool:
    from embedsdk.testing import expected_vector

    rows = sorted({0, n // 2, n - 1})
    count, dim, found = _read_rows(path, fmt, rows)
    if (count, dim) != (n, target.dim) or len(found) != len(rows):
        return False
    for i in rows:
        want = expected_vector(read_line(texts_file, i), model=target.model, dim=target.dim or 0)
        if found[i].dtype != np.float32 or not np.array_equal(found[i], want):
            return False
    return True


def _embed_cmd(
    args: argparse.Namespace, src: Path, out: Path, target: Target, no_cache: bool
) -> list[str]:
    cmd = [sys.executable, "-m", "embedsdk", "embed", str(src), "-o", str(out)]
    cmd += ["--base-url", target.base_url, "--model", target.model, "--quiet"]
    cmd += ["--batch-size", str(args.memory_batch), "--max-concurrent", str(args.concurrency)]
    return cmd + (["--no-cache"] if no_cache else [])


def _one_size(
    args: argparse.Namespace, n: int, target: Target, tmp: Path, no_cache_flag: bool
) -> list[MemoryRow]:
    src = tmp / f"texts-{n}.txt"
    write_short_texts(src, n, seed=args.seed)
    rows = [_one_run(args, n, fmt, src, target, tmp, no_cache_flag) for fmt in args.memory_formats]
    src.unlink(missing_ok=True)
    return rows


def _one_run(
    args: argparse.Namespace,
    n: int,
    fmt: str,
    src: Path,
    target: Target,
    tmp: Path,
    no_cache_flag: bool,
) -> MemoryRow:
    out = tmp / f"vectors-{n}{FORMATS[fmt]}"
    cache_dir = tmp / f"cache-{n}-{fmt}" if args.memory_cache else None
    cmd = _embed_cmd(args, src, out, target, no_cache_flag and cache_dir is None)
    code, rss, seconds, tail = run_child(cmd, _child_env(cache_dir))
    row = MemoryRow(n, rss, seconds, code, format=fmt)
    if code != 0:
        runner.log(f"  embed failed on {n:,} texts (exit {code}): {tail.strip()}", args.quiet)
    elif args.verify:
        row.output_ok = _check_output(out, fmt, src, n, target)
    out.unlink(missing_ok=True)  # 2M vectors are big: don't keep two outputs on disk
    runner.log(
        f"  {n:>9,} texts to {fmt:<7}: peak RSS {rss or 0:.0f} MiB, {seconds:.1f} s "
        f"({row.texts_per_s:,.0f} texts/s)",
        args.quiet,
    )
    return row


def run_memory(args: argparse.Namespace) -> MemoryResult:
    """Peak RSS of ``embedsdk embed`` for each of ``args.memory_sizes`` (simulated provider)."""
    args.memory_formats = formats_available(args.memory_formats)
    runner.log(
        f"memory: embedsdk embed on {', '.join(f'{n:,}' for n in args.memory_sizes)} short "
        f"texts to {', '.join(args.memory_formats)}, {args.memory_dim} dims, cache "
        f"{'on' if args.memory_cache else 'off'}",
        args.quiet,
    )
    with (
        target_for(args, 0.0, args.memory_dim, real=False) as (target, _),
        tempfile.TemporaryDirectory(prefix="embedsdk-bench-memory-") as tmp_name,
    ):
        tmp = Path(tmp_name)
        baseline, no_cache_flag = _baseline()
        rows = [
            r for n in args.memory_sizes for r in _one_size(args, n, target, tmp, no_cache_flag)
        ]
    settings = {
        "sizes": args.memory_sizes,
        "formats": args.memory_formats,
        "dim": args.memory_dim,
        "batch_size": args.memory_batch,
        "concurrency": args.concurrency,
        "cache": "on (fresh directory)" if args.memory_cache else "off",
        "cache_switch": "--no-cache" if no_cache_flag else "EMBEDSDK_CACHE=0",
        "latency_s": 0.0,
    }
    return MemoryResult(settings, baseline, rows)
