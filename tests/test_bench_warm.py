"""The warm scenario (embedsdk/_bench/warm.py): its arithmetic, and that its raw read is a read
of the cache's own rows. No speed is asserted: the machine is shared.

Private access: the bench (``embedsdk._bench``) is the unit under test; its public faces,
``embedsdk bench`` and bench/run.py, only run whole scenarios.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk import VectorCache
from embedsdk._bench import cli, report, warm
from embedsdk.cache import DBNAME, cache_keys


def test_pair_ratio_is_the_median_of_raw_over_warm_pair_by_pair() -> None:
    # ratios 0.5, 1.0, 0.25: the median pair, not median(raw) / median(warm) (2 / 2 = 1.0)
    assert warm.pair_ratio([1.0, 2.0, 4.0], [0.5, 2.0, 1.0]) == pytest.approx(0.5)
    # even count: the mean of the middle two (0.5 and 1.0)
    assert warm.pair_ratio([1.0, 1.0, 1.0, 1.0], [0.25, 0.5, 1.0, 2.0]) == pytest.approx(0.75)


def test_pair_ratio_needs_pairs() -> None:
    with pytest.raises(ValueError, match="pairs needed"):
        warm.pair_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="pairs needed"):
        warm.pair_ratio([], [])


def test_per_second_is_the_count_over_the_median_time() -> None:
    assert warm.per_second(20_000, [0.1, 0.4, 0.2]) == pytest.approx(100_000.0)
    assert warm.per_second(10, []) == 0.0
    assert warm.per_second(10, [0.0]) == float("inf")


def test_summarize_fills_both_rates_and_the_ratio() -> None:
    result = warm.WarmResult(1000, 8, warm_s=[0.02, 0.01, 0.04], raw_s=[0.01, 0.008, 0.01])
    result.summarize()
    assert result.warm_per_s == pytest.approx(1000 / 0.02)
    assert result.raw_per_s == pytest.approx(1000 / 0.01)
    assert result.ratio == pytest.approx(0.5)  # pairs: 0.5, 0.8, 0.25


def test_the_table_reports_both_rates_the_ratio_and_the_target() -> None:
    result = warm.WarmResult(1000, 8, warm_s=[0.02], raw_s=[0.016], exact=True, warm_requests=0)
    result.settings = {"pairs": 1, "raw_chunk": 500, "target": 0.7}
    result.summarize()
    text = report.warm_table(result)
    assert "50,000" in text and "62,500" in text
    assert "80% of the raw SELECT's speed" in text and "target 70%: yes" in text
    assert "requests sent by the warm calls: 0" in text


def test_the_raw_read_finds_every_row_the_cache_stored(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(1203)]  # three statements of up to 500 keys
    namespace = VectorCache.namespace("http://127.0.0.1:1/v1/embeddings", "m", None)
    with VectorCache(tmp_path) as cache:
        cache.set_many(namespace, texts, np.ones((len(texts), 4), dtype=np.float32))
    con = sqlite3.connect(tmp_path / DBNAME, isolation_level=None)
    try:
        assert warm.raw_read(con, cache_keys(namespace, texts)) == len(texts)
        other = VectorCache.namespace("http://127.0.0.1:1/v1/embeddings", "other", None)
        assert warm.raw_read(con, cache_keys(other, texts[:10])) == 0
    finally:
        con.close()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_bench_arguments(parser)
    return cli.resolve_args(parser.parse_args(list(argv)))


def test_warm_settings_presets_and_checks() -> None:
    assert _args().warm_pairs == 15 and _args("--quick").warm_pairs == 7
    assert _args("--quick").warm_texts == 20_000  # the size, --quick too
    with pytest.raises(SystemExit):
        _args("--warm-pairs", "0")


def test_warm_scenario_end_to_end(tmp_path: Path, capsys: Any) -> None:
    argv = ["--scenario", "warm", "--warm-texts", "120", "--warm-pairs", "3", "--dim", "8"]
    assert cli.main([*argv, "--out", str(tmp_path), "--no-chart", "-q"]) == 0
    assert "Warm path: 120 texts, 8 dims" in capsys.readouterr().out
    (path,) = tmp_path.glob("bench-*.json")
    found = json.loads(path.read_text("utf-8"))["scenarios"]["warm"]
    assert found["exact"] is True  # the simulator's vectors, bit for bit, from the cache
    assert found["warm_requests"] == 0  # every warm call served from the cache
    assert len(found["warm_s"]) == len(found["raw_s"]) == 3
    assert found["ratio"] == pytest.approx(warm.pair_ratio(found["warm_s"], found["raw_s"]))
    assert found["warm_per_s"] == pytest.approx(120 / sorted(found["warm_s"])[1])
