"""The bench (embedsdk/_bench): its pure parts directly, and the smallest run end to end.

No timing is asserted: the machine is shared. The end-to-end runs use the simulated provider
in a child process, a few milliseconds of latency and a handful of texts.

Private access: the bench (``embedsdk._bench``) is the unit under test; its public faces,
``embedsdk bench`` and bench/run.py, only run whole scenarios.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk._bench import ceiling, cli, report, runner
from embedsdk._bench.clients import Target, make_clients
from embedsdk._bench.memory import run_child
from embedsdk._bench.scenarios import ThroughputResult, cpu_per_100k
from embedsdk._bench.texts import mixed_texts, short_text, write_short_texts

# -- the ceiling ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "batch", "workers", "want"),
    [
        (10, 20, 10, 1.0),  # one batch: nothing to overlap
        (50, 20, 10, 3.0),  # 3 batches in one wave: the guide's "2.7x at 90 %"
        (200, 20, 10, 10.0),
        (1000, 20, 10, 10.0),  # 50 batches in 5 waves
        (210, 20, 10, 11 / 2),  # 11 batches need 2 waves
        (4000, 20, 1, 1.0),
    ],
)
def test_ceiling_speedup_is_batches_over_waves(
    n: int, batch: int, workers: int, want: float
) -> None:
    assert ceiling.ceiling_speedup(n, batch, workers) == pytest.approx(want)


def test_steady_ceiling_is_the_lesser_of_latency_and_rpm() -> None:
    assert ceiling.steady_ceiling(10, 20, 0.1) == pytest.approx(2000.0)
    assert ceiling.steady_ceiling(1, 20, 0.1) == pytest.approx(200.0)
    # 600 requests a minute of 20 texts: 200 texts/s, below the 2,000 latency allows
    assert ceiling.steady_ceiling(10, 20, 0.1, rpm=600) == pytest.approx(200.0)
    assert ceiling.steady_ceiling(10, 20, 0.0) == math.inf


def test_run_ceiling_matches_the_steady_one_when_waves_are_full() -> None:
    # 4,000 texts at batch 20 = 200 batches = 20 full waves of 10: 2 s, 2,000 texts/s
    assert ceiling.ceiling_seconds(4000, 20, 10, 0.1) == pytest.approx(2.0)
    assert ceiling.ceiling_rate(4000, 20, 10, 0.1) == pytest.approx(
        ceiling.steady_ceiling(10, 20, 0.1)
    )
    # a partial last wave costs a whole latency: 210 texts = 11 batches = 2 waves
    assert ceiling.ceiling_seconds(210, 20, 10, 0.1) == pytest.approx(0.2)
    # RPM binds: 200 batches at 600/min need 20 s whatever the concurrency
    assert ceiling.ceiling_seconds(4000, 20, 10, 0.1, rpm=600) == pytest.approx(20.0)
    assert ceiling.ceiling_rate(100, 20, 10, 0.0) == math.inf
    assert ceiling.ratio(5.0, math.inf) is None
    assert ceiling.ratio(5.0, 10.0) == 0.5


def _run(size: int, client: str, conc: int, seconds: float) -> runner.Run:
    return runner.Run(size, client, client, conc, seconds=[seconds, seconds * 3, seconds * 0.9])


def test_summarize_uses_medians_and_the_serial_run() -> None:
    runs = [_run(1000, "serial", 1, 5.5), _run(1000, "async", 10, 0.55)]
    runner.summarize(runs, batch_size=20, latency=0.1)
    serial, fast = runs
    assert serial.median_s == pytest.approx(5.5)  # median, not mean: the 3x outlier is ignored
    assert serial.efficiency == pytest.approx(5.0 / 5.5)  # 50 requests x 0.1 s at best
    assert fast.speedup == pytest.approx(10.0)
    assert fast.ceiling_speedup == pytest.approx(10.0)
    assert fast.speedup_efficiency == pytest.approx(1.0)
    assert fast.ceiling_texts_per_s == pytest.approx(2000.0)
    assert fast.efficiency == pytest.approx(1000 / 0.55 / 2000)


def test_summarize_estimates_latency_from_serial_for_a_real_endpoint() -> None:
    runs = [_run(200, "serial", 1, 2.0), _run(200, "async", 10, 0.4)]
    runner.summarize(runs, batch_size=20, latency=None)
    serial, fast = runs
    assert serial.latency_used == pytest.approx(0.2)  # 2 s over 10 requests
    assert serial.efficiency == pytest.approx(1.0)
    assert fast.efficiency == pytest.approx((200 / 0.4) / (200 / 0.2))


def test_summarize_without_latency_or_serial_leaves_the_ceiling_empty() -> None:
    runs = [_run(100, "async", 10, 0.1)]
    runner.summarize(runs, batch_size=20, latency=None)
    assert runs[0].speedup is None and runs[0].efficiency is None


def test_zero_latency_has_no_finite_ceiling() -> None:
    runs = [_run(100, "serial", 1, 0.1)]
    runner.summarize(runs, batch_size=20, latency=0.0)
    assert runs[0].ceiling_texts_per_s is None and runs[0].efficiency is None


# -- inputs -----------------------------------------------------------------------------------


def test_texts_are_deterministic_unique_mixed_and_prefix_stable() -> None:
    texts = mixed_texts(400, seed=3)
    assert texts == mixed_texts(400, seed=3)
    assert texts[:50] == mixed_texts(50, seed=3)
    assert texts != mixed_texts(400, seed=4)
    assert len(set(texts)) == len(texts)
    cjk = [t for t in texts if re.search(r"[\u4e00-\u9fff]", t)]
    latin = [t for t in texts if re.search(r"[A-Za-z]{3}", t)]
    assert 0.3 < len(cjk) / len(texts) < 0.8 and 0.3 < len(latin) / len(texts) < 0.8
    lengths = sorted(len(t) for t in texts)
    assert lengths[0] < 30 and lengths[-1] > 300  # short queries and paragraphs
    assert all(t.strip() and "\n" not in t for t in texts)


def test_short_texts_file_has_one_unique_text_a_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    write_short_texts(path, 25_003, seed=1)  # crosses the 10,000-line write chunks
    lines = path.read_text("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 25_004
    assert len(set(lines[:-1])) == 25_003 and all(lines[:-1])
    import random

    rng = random.Random(1)
    assert lines[:8] == [short_text(rng, i) for i in range(8)]


# -- formatting and arguments -----------------------------------------------------------------


def test_table_aligns_columns() -> None:
    text = report.table(["a", "bb"], [["x", "1"], ["long name", "12345"]])
    lines = text.splitlines()
    assert lines[0] == "a             bb"
    assert lines[2] == "x              1"
    assert lines[3] == "long name  12345"
    assert report.pct(None) == "-" and report.pct(0.934) == "93%"
    assert report.times(math.inf) == "-" and report.times(2.5) == "2.50x"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_peak_rss_is_the_childs_own_not_inherited_from_the_parent() -> None:
    ballast = b"x" * (96 << 20)  # the parent's peak must not show up in the child's
    env = dict(os.environ)
    code, idle, _, _ = run_child([sys.executable, "-c", "import time; time.sleep(0.15)"], env)
    assert code == 0 and idle is not None and idle < 60
    grow = "import time; b = b'x' * (64 << 20); time.sleep(0.15)"
    code, big, _, _ = run_child([sys.executable, "-c", grow], env)
    assert code == 0 and big is not None and 64 < big < 64 + 60
    assert len(ballast) == 96 << 20


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_bench_arguments(parser)
    return cli.resolve_args(parser.parse_args(list(argv)))


def test_presets_scenarios_and_clients() -> None:
    full = _args()
    assert full.sizes == [10, 50, 200, 1000, 4000, 5000]
    assert full.scenario == ["throughput", "fast"]
    assert (full.concurrency, full.batch_size, full.latency) == (10, 20, 0.1)
    quick = _args("--quick")
    assert max(quick.sizes) == 1000 and quick.fast_texts < full.fast_texts
    assert _args("--scenario", "all").scenario == list(cli.SCENARIOS)
    assert _args("--scenario", "memory,main").scenario == ["throughput", "memory"]
    assert _args("--sizes", "5,1_000", "--workers", "4").sizes == [5, 1000]
    no_peers = _args("--no-peers")
    assert "openai" not in no_peers.clients and "langchain" not in no_peers.clients
    assert "raw" in no_peers.clients
    # the speed-ups are over serial, so it runs even when not asked for
    assert _args("--clients", "async").clients == ["serial", "async"]
    assert _args("--clients", "async", "--scenario", "fast").clients == ["async"]
    with pytest.raises(SystemExit):
        _args("--scenario", "nope")
    with pytest.raises(SystemExit):
        _args("--clients", "nope")
    assert _args("--scenario", "adaptive", "--seeds", "8").seeds == 8
    with pytest.raises(SystemExit):
        _args("--scenario", "adaptive", "--seeds", "0")
    with pytest.raises(SystemExit):  # each replaces the adaptive tables: one at a time
        _args("--scenario", "adaptive", "--seeds", "2", "--latencies", "0.5")
    with pytest.raises(SystemExit):  # not the tables --all measures for the docs
        _args("--all", "--seeds", "2")
    with pytest.raises(SystemExit):  # nothing would run them
        _args("--latencies", "0.5")


def test_adaptive_scenario_is_skipped_when_its_module_is_missing(
    capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "embedsdk._bench.adaptive", None)  # import fails
    assert cli._adaptive(_args("--scenario", "adaptive")) is None
    assert "adaptive: not available" in capsys.readouterr().err


def test_adaptive_scenario_calls_the_modules_run_and_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: list[argparse.Namespace] = []
    fake = types.ModuleType("embedsdk._bench.adaptive")
    fake.run = lambda args: seen.append(args) or {"rows": [1, 2]}  # type: ignore[attr-defined]
    fake.format_table = lambda result: f"{len(result['rows'])} rows"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "embedsdk._bench.adaptive", fake)
    args = _args("--scenario", "adaptive")
    assert cli._adaptive(args) == ({"rows": [1, 2]}, "2 rows")
    assert seen == [args]


# -- end to end on the simulated provider ----------------------------------------------------


def test_smallest_bench_prints_the_tables_and_writes_json(tmp_path: Path, capsys: Any) -> None:
    argv = ["--sizes", "10,45", "--repeat", "1", "--latency", "0.005", "--workers", "3"]
    argv += ["--clients", "serial,threads,async,raw", "--fast-texts", "30", "--dim", "16"]
    argv += ["--out", str(tmp_path), "--no-chart", "-q"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Throughput:" in out and "Fast server:" in out
    for label in ("embedsdk serial", "embedsdk threads", "embedsdk async", "raw aiohttp"):
        assert label in out
    (path,) = tmp_path.glob("bench-*.json")
    assert f"JSON: {path}" in out
    data = json.loads(path.read_text("utf-8"))
    runs = data["scenarios"]["throughput"]["runs"]
    assert {(r["size"], r["client"]) for r in runs} == {
        (n, c) for n in (10, 45) for c in ("serial", "threads", "async", "raw")
    }
    for r in runs:
        assert r["exact"] is True  # bit for bit the simulator's vectors
        assert r["requests"] == ceiling.n_batches(r["size"], 20)
        assert r["peak_in_flight"] <= r["concurrency"]
        assert r["ceiling_speedup"] == pytest.approx(
            ceiling.ceiling_speedup(r["size"], 20, r["concurrency"])
        )
        assert r["ceiling_texts_per_s"] == pytest.approx(
            ceiling.ceiling_rate(r["size"], 20, r["concurrency"], 0.005)
        )
    by = {(r["size"], r["client"]): r for r in runs}
    assert by[(45, "serial")]["peak_in_flight"] == 1
    assert by[(45, "async")]["peak_in_flight"] > 1  # 3 batches really overlapped
    assert by[(45, "serial")]["speedup"] == pytest.approx(1.0)
    fast = data["scenarios"]["fast"]
    assert fast["settings"]["latency_s"] == 0.0 and fast["runs"][0]["size"] == 30
    assert all(r["cpu_seconds"][0] > 0 for r in fast["runs"])
    assert data["machine"]["embedsdk"]


def test_a_real_endpoint_without_a_key_stops_before_any_request(capsys: Any) -> None:
    argv = ["--base-url", "https://api.example.invalid/v1", "--sizes", "10", "--no-chart"]
    assert cli.main([*argv, "--scenario", "throughput", "-q"]) == 1
    assert "no API key" in capsys.readouterr().err


def test_a_real_endpoint_gets_its_latency_from_the_serial_run(
    tmp_path: Path, simulated_provider_factory: Any
) -> None:
    sim = simulated_provider_factory(latency=0.003, dim=8)  # stands in for a local server
    argv = ["--base-url", sim.base_url, "--scenario", "throughput", "--sizes", "40"]
    argv += [
        "--repeat",
        "1",
        "--clients",
        "serial,async",
        "--out",
        str(tmp_path),
        "--no-chart",
        "-q",
    ]
    assert cli.main(argv) == 0
    (path,) = tmp_path.glob("bench-*.json")
    result = json.loads(path.read_text("utf-8"))["scenarios"]["throughput"]
    assert (
        result["settings"]["endpoint"] == sim.base_url and result["settings"]["latency_s"] is None
    )
    serial, fast = result["runs"]
    assert serial["exact"] is None  # no exact answer known for a real endpoint
    assert serial["latency_used"] == pytest.approx(serial["median_s"] / 2)  # 2 requests
    assert serial["efficiency"] == pytest.approx(1.0)
    assert fast["ceiling_speedup"] == 2.0
    assert sim.stats()["requests"] >= 2 * 2  # timed runs of both, plus the warm-ups


def test_fast_table_reports_cpu_as_a_ratio_to_ours() -> None:
    runs = [
        runner.Run(1000, "async", "embedsdk async", 10, seconds=[1.0], cpu_seconds=[0.5]),
        runner.Run(1000, "openai", "openai-python", 10, seconds=[2.0], cpu_seconds=[3.0]),
    ]
    runner.summarize(runs, 20, 0.0)
    settings = {"endpoint": "sim", "latency_s": 0.0, "dim": 8, "sizes": [1000]}
    settings.update({"batch_size": 20, "concurrency": 10, "repeat": 1})
    result = ThroughputResult("fast", settings, runs)
    assert cpu_per_100k(runs[1]) == pytest.approx(300.0)
    line = next(x for x in report.fast_table(result).splitlines() if x.startswith("openai"))
    assert "300.00" in line and "6.00x" in line


def test_cache_scenario_cold_then_warm(tmp_path: Path, capsys: Any) -> None:
    argv = ["--scenario", "cache", "--cache-texts", "60", "--cache-latency", "0.002"]
    argv += ["--repeat", "1", "--dim", "8", "--out", str(tmp_path), "--no-chart", "-q"]
    assert cli.main(argv) == 0
    assert "Cache:" in capsys.readouterr().out
    (path,) = tmp_path.glob("bench-*.json")
    rows = json.loads(path.read_text("utf-8"))["scenarios"]["cache"]["rows"]
    assert [r["variant"] for r in rows] == ["async", "threads"]
    for r in rows:
        assert r["warm_exact"] is True
        assert len(r["cold_s"]) == len(r["cold_nocache_s"]) == 1 and len(r["warm_s"]) == 3
        assert r["warm_speedup"] == pytest.approx(r["cold_s"][0] / sorted(r["warm_s"])[1])


@pytest.mark.slow  # importing openai and langchain takes a second or two
def test_peers_give_the_exact_vectors() -> None:
    pytest.importorskip("openai")
    pytest.importorskip("langchain_openai")
    texts = mixed_texts(7, seed=5)

    async def go(target: Target) -> list[np.ndarray]:
        clients = make_clients(["openai", "langchain", "raw"], target, 3, 2)
        out = []
        for client in clients:
            await client.start()
            try:
                out.append(await client.embed(texts))
            finally:
                await client.aclose()
        return out

    with runner.simulated_server(dim=12) as sim:
        target = Target(sim.base_url, "BAAI/bge-m3", None, True, 0.0, 12)
        results = runner.run_async(go(target))
        assert sim.stats()["requests"] == 3 * 3  # 7 texts at batch 3, for each client
    want = runner.expected(texts, target)
    assert len(results) == 3
    for got in results:
        assert got.dtype == np.float32 and np.array_equal(got, want)


@pytest.mark.slow
def test_memory_scenario_runs_embed_in_a_child_and_checks_its_output(
    tmp_path: Path, capsys: Any
) -> None:
    argv = ["--scenario", "memory", "--memory-sizes", "300", "--memory-dim", "8"]
    argv += ["--workers", "2", "--out", str(tmp_path), "--no-chart", "-q"]
    assert cli.main(argv) == 0
    assert "Memory:" in capsys.readouterr().out
    (path,) = tmp_path.glob("bench-*.json")
    memory = json.loads(path.read_text("utf-8"))["scenarios"]["memory"]
    formats = ["npy", "jsonl"] + (["parquet"] if importlib.util.find_spec("pyarrow") else [])
    assert [row["format"] for row in memory["rows"]] == formats
    for row in memory["rows"]:
        assert row["texts"] == 300 and row["exit_code"] == 0
        assert row["output_ok"] is True  # shape, dtype and rows checked against the simulator
        if Path("/proc/self/status").exists():
            assert 0 < row["peak_rss_mib"] < 1000
    assert memory["settings"]["cache"] == "off"
