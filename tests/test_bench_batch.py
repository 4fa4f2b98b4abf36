"""``embedsdk bench --scenario batch`` (embedsdk/_bench/batch.py): its verdicts and table, and
one short contender run in simulated time. No timing is asserted.

Private access: the bench (``embedsdk._bench``) is the unit under test; its public faces,
``embedsdk bench`` and bench/run.py, only run whole scenarios.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from embedsdk._bench import batch, cli


def rows(case: str, figures: dict[object, float]) -> list[dict[str, object]]:
    return [
        {"case": case, "batch": b, "texts_per_s": v, "median_batch": 64, "refused_share": 0.0}
        for b, v in figures.items()
    ]


RPM_CASE = batch.CASES[0]
NO_LIMIT = batch.CASES[2]


def targets_met(result: dict[str, Any]) -> bool:
    """Whether every target was met: within 5 % of the best fixed batch, and >= 90 % of
    RPM x 64 where requests are limited."""
    return all(
        v["within_5_percent"] and (v["auto_of_rpm_cap"] is None or v["auto_of_rpm_cap"] >= 0.9)
        for v in result["verdicts"]
    )


def test_auto_is_judged_against_the_best_fixed_batch_and_the_rpm_ceiling() -> None:
    assert RPM_CASE.counts_requests and not NO_LIMIT.counts_requests
    found = rows(RPM_CASE.name, {20: 666.0, 32: 1065.0, 64: 2125.0, "auto": 2040.0})
    verdict = batch.judge(RPM_CASE, found)
    assert verdict["best_fixed"] == 64
    assert verdict["auto_of_best"] == pytest.approx(0.96)
    assert verdict["within_5_percent"]
    assert verdict["auto_of_rpm_cap"] == pytest.approx(2040 / (2000 / 60 * 64))
    slow = batch.judge(NO_LIMIT, rows(NO_LIMIT.name, {20: 10.0, 32: 12.0, 64: 11.0, "auto": 11.0}))
    assert slow["best_fixed"] == 32 and not slow["within_5_percent"]
    assert slow["auto_of_rpm_cap"] is None


def test_the_table_shows_every_contender_and_the_verdicts() -> None:
    found = rows(RPM_CASE.name, {20: 666.0, 32: 1065.0, 64: 2125.0, "auto": 2125.0})
    found += rows(NO_LIMIT.name, {20: 1680.0, 32: 2145.0, 64: 2788.0, "auto": 2000.0})
    result = {
        "settings": {
            "latency_s": 0.05,
            "per_input_s": 0.002,
            "jitter_s": 0.01,
            "in_flight": 8,
            "cap": 64,
            "seconds": 60.0,
            "warm_up_s": 10.0,
        },
        "rows": found,
        "verdicts": [batch.judge(RPM_CASE, found[:4]), batch.judge(NO_LIMIT, found[4:])],
    }
    text = batch.format_table(result)
    assert "2,125 (100%)" in text and "666 (31%)" in text
    assert "99.6% yes" in text  # of RPM x 64
    assert "71.7% NO" in text  # auto far behind the best fixed batch in the second case
    assert not targets_met(result)
    result["verdicts"][1]["within_5_percent"] = True
    assert targets_met(result)


def test_one_contender_runs_in_simulated_time() -> None:
    texts = batch.texts_for(int(batch.most_texts_per_s(RPM_CASE) * 14))
    auto = batch.run_one(RPM_CASE, "auto", 14.0, texts)
    assert auto["median_batch"] == 64
    assert auto["texts_per_s"] > 0.9 * 2000 / 60 * 64  # the limit learned, the cap per request
    fixed = batch.run_one(RPM_CASE, 20, 14.0, texts)
    assert fixed["median_batch"] == 20 and fixed["texts_per_s"] < auto["texts_per_s"] / 2


def test_the_scenario_is_registered() -> None:
    assert "batch" in cli.SCENARIOS
    parser = argparse.ArgumentParser()
    cli.add_bench_arguments(parser)
    args = cli.resolve_args(parser.parse_args(["--scenario", "batch", "--quiet"]))
    assert args.scenario == ["batch"]
