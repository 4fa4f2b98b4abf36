"""Figures you can trust (issue 22): the README's figures paragraph quotes bench/results.json,
and that file is not older than the code it measured.

The checks on the committed files come last; before them, the pieces they rest on, each on
made-up input: the quote checker (so that a stale or untraceable figure is seen to fail), the
figures derived from a run's results, and the provenance a run records.

Private access: the bench's figures, provenance and command line (``embedsdk._bench``) are
the units under test; ``embedsdk bench`` would run the timed scenarios they come from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from embedsdk._bench import cli, figures, provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
README = ROOT / "README.md"
#: Where the code the results measure lives: a change there makes them stale.
MEASURED = ("embedsdk/client", "embedsdk/ratecontrol")


def _results(**texts: str) -> dict[str, Any]:
    return {"figures": {k.replace("_", "."): {"value": 0, "text": t} for k, t in texts.items()}}


def _readme(paragraph: str, keys: str) -> str:
    return (
        f"# x\n\n{figures.START} bench/results.json -->\n{paragraph}\n{figures.KEYS}\n{keys}\n-->\n"
    )


# -- the quote checker -----------------------------------------------------------------------


def test_a_paragraph_quoting_the_results_has_no_problems() -> None:
    md = _readme(
        "Warm runs are 17–32× faster, at 74 % of a bare [SELECT](bench/README.md#r2).",
        "cache.speed: 17–32×\nstore.ratio: 74 %",
    )
    assert figures.problems(md, _results(cache_speed="17–32×", store_ratio="74 %")) == []


def test_a_figure_absent_from_the_results_file_fails() -> None:
    md = _readme("Warm runs are 63–70× faster.", "cache.speed: 63–70×")
    found = figures.problems(md, _results(other="1"))
    assert found == ["cache.speed: not in the results file (run the scenario that measures it)"]


def test_a_figure_the_results_file_says_otherwise_fails() -> None:
    md = _readme("Warm runs are 63–70× faster.", "cache.speed: 63–70×")
    (found,) = figures.problems(md, _results(cache_speed="17–32×"))
    assert "README says '63–70×'" in found and "'17–32×'" in found


def test_a_number_no_key_accounts_for_fails() -> None:
    md = _readme("Warm runs are 17–32× faster; 56 MiB for 2,000,000 texts.", "cache.speed: 17–32×")
    (found,) = figures.problems(md, _results(cache_speed="17–32×"))
    assert "no key accounts for" in found and "56" in found and "2,000,000" in found


def test_a_listed_text_must_be_in_the_paragraph_and_not_inside_another_number() -> None:
    md = _readme(
        "Refused: 13 %, of 2,000 on a 2-core machine.", "refused: 3 %\nother: 13 %\ncores: 2"
    )
    found = figures.problems(md, _results(refused="3 %", other="13 %", cores="2"))
    assert found == [
        "refused: '3 %' is listed but not in the paragraph",
        "numbers in the figures paragraph that no key accounts for: ['2,000']",
    ]


def test_missing_markers_or_a_bad_key_line_are_problems() -> None:
    assert "no figures paragraph" in figures.problems("# nothing", {})[0]
    no_keys = f"{figures.START} x -->\ntext 5\n"
    assert "no '<!-- figure keys' comment" in figures.problems(no_keys, {})[0]
    bad = _readme("5", "just a line")
    assert "not 'key: text'" in figures.problems(bad, {})[0]


# -- figures derived from results -----------------------------------------------------------


def _run(client: str, size: int, cpu: float, **more: Any) -> dict[str, Any]:
    return {"client": client, "size": size, "median_cpu_s": cpu, **more}


def test_derived_figures_of_fast_cache_warm_and_memory() -> None:
    results = {
        "quick": True,
        "provenance": {
            "commit": "0123456789abcdef",
            "started": "2026-12-05T20:00:00+00:00",
            "load": {"busy": True},
            "machine": {"cpus": 2},
        },
        "scenarios": {
            "fast": {
                "settings": {"sizes": [2000], "dim": 1024},
                "runs": [
                    _run("async", 2000, 0.5),
                    _run("openai", 2000, 2.6),
                    _run("raw", 2000, 0.44),
                ],
            },
            "cache": {
                "settings": {"texts": 2000, "dim": 1024},
                "rows": [
                    {
                        "variant": "async",
                        "warm_speedup": 32.4,
                        "warm_vectors_per_s": 48091.2,
                        "cache_cost": 0.076,
                    },
                    {
                        "variant": "threads",
                        "warm_speedup": 16.6,
                        "warm_vectors_per_s": 24683.0,
                        "cache_cost": 0.095,
                    },
                ],
                "store": {"ratio": 0.744},
            },
            "warm": {
                "texts": 20000,
                "dim": 1024,
                "ratio": 0.755,
                "warm_per_s": 165353.2,
                "raw_per_s": 216728.0,
            },
            "memory": {
                "settings": {"dim": 64},
                "baseline": {"peak_rss_mib": 51.2},
                "rows": [
                    {"texts": 200000, "format": "npy", "peak_rss_mib": 56.4},
                    {"texts": 2000000, "format": "npy", "peak_rss_mib": 57.3},
                    {"texts": 2000000, "format": "jsonl", "peak_rss_mib": None},
                ],
            },
        },
    }
    texts = {k: f["text"] for k, f in figures.derive(results).items()}
    assert texts == {
        "run.commit": "0123456",
        "run.date": "2026-12-05",
        "run.kind": "quick",
        "run.load": "busy",
        "machine.cores": "2",
        "fast.texts": "2,000",
        "fast.dim": "1024",
        "fast.cpu_ratio.openai": "5.2×",
        "fast.cpu_ratio.raw": "0.9×",
        "fast.raw_cpu_saving": "12 %",
        "cache.texts": "2,000",
        "cache.dim": "1024",
        "cache.warm_speedup": "17–32×",
        "cache.warm_speedup.async": "32×",
        "cache.warm_speedup.threads": "17×",
        "cache.warm_per_s.async": "48,091",
        "cache.warm_per_s.threads": "24,683",
        "cache.cost_max": "9.5 %",
        "cache.store_ratio": "74 %",
        "warm.texts": "20,000",
        "warm.dim": "1024",
        "warm.ratio": "76 %",
        "warm.per_s": "165,353",
        "warm.raw_per_s": "216,728",
        "memory.dim": "64",
        "memory.smallest": "200,000",
        "memory.largest": "2,000,000",
        "memory.peak_mib.npy": "56–57",
        "memory.baseline_mib": "51",
    }


def test_derived_figures_of_throughput_adaptive_and_batch() -> None:
    def tp(client: str, size: int, per_s: float, speedup: float) -> dict[str, Any]:
        return {"client": client, "size": size, "texts_per_s": per_s, "speedup": speedup,
                "ceiling_speedup": 10.0}  # fmt: skip

    def row(share: float, refused: float) -> dict[str, Any]:
        return {"client": "adaptive", "whole": {"of_allowance": share, "refused_share": refused}}

    results = {
        "scenarios": {
            "throughput": {
                "settings": {
                    "sizes": [200, 1000],
                    "concurrency": 10,
                    "batch_size": 20,
                    "latency_s": 0.1,
                },
                "runs": [
                    tp("async", 200, 1780, 9.12),
                    tp("raw", 200, 1826, 9.36),
                    tp("async", 1000, 1841, 9.43),
                    tp("raw", 1000, 1847, 9.46),
                ],
            },
            "adaptive": {
                "simulated": {
                    "rows": [row(0.97, 0.018), row(1.0, 0.031), {"client": "plain", "whole": None}],
                    "verdicts": [{"met": True}, {"met": False}],
                },
                "real_time": {
                    "rows": [row(0.889, 0.043), row(0.995, 0.023)],
                    "verdicts": [{"met": True}, {"met": True}],
                },
            },
            "batch": {
                "verdicts": [
                    {"case": "rpm", "auto_of_best": 1.0, "auto_of_rpm_cap": 0.996},
                    {"case": "none", "auto_of_best": 0.997, "auto_of_rpm_cap": None},
                ],
                "rows": [
                    {"case": "rpm", "batch": 20, "texts_per_s": 665},
                    {"case": "rpm", "batch": "auto", "texts_per_s": 2125},
                ],
            },
        }
    }
    texts = {k: f["text"] for k, f in figures.derive(results).items()}
    assert texts["throughput.size"] == "1,000" and texts["throughput.speedup.async"] == "9.4×"
    assert texts["throughput.ceiling"] == "10×" and texts["throughput.latency_ms"] == "100"
    assert texts["throughput.raw_gap_max"] == "2.6 %"  # 1826 / 1780 at 200 texts
    assert texts["adaptive.share"] == "97–100 %" and texts["adaptive.refused_max"] == "3.1 %"
    assert texts["adaptive.cases"] == "2" and texts["adaptive.targets_met"] == "1 of 2"
    assert texts["adaptive.real.share"] == "89–100 %" and texts["adaptive.real.cases"] == "2"
    assert texts["adaptive.real.refused_max"] == "4.3 %"
    assert texts["adaptive.real.targets_met"] == "every"
    assert texts["batch.auto_gap_max"] == "0.3 %" and texts["batch.rpm_gain_vs_20"] == "3.2×"
    assert texts["batch.auto_of_rpm_cap"] == "99.6 %"


# -- provenance -------------------------------------------------------------------------------


def test_dirty_paths_read_porcelain_lines_whatever_their_first_column() -> None:
    porcelain = " M embedsdk/client/_core.py\nM  README.md\n?? new file.py\nR  a.py -> b.py\n"
    assert provenance.dirty_paths(porcelain) == [
        "embedsdk/client/_core.py",
        "README.md",
        "new file.py",
        "b.py",
    ]


def test_busy_seconds_count_every_state_but_idle_and_iowait() -> None:
    line = "cpu  100 20 30 5000 40 6 4 10 0 0"
    hz = provenance.os.sysconf("SC_CLK_TCK")
    assert provenance.busy_seconds(line) == pytest.approx((100 + 20 + 30 + 6 + 4 + 10) / hz)
    assert provenance.busy_seconds("cpu 1 2") is None


def test_the_load_record_says_busy_above_half_a_core_per_core() -> None:
    quiet = provenance.load_record([0.4, 0.5, 0.6], [1.9, 1.0, 0.7], 0.2, cores=2)
    assert quiet["busy"] is False and quiet["note"].endswith("the machine was quiet")
    assert quiet["after"] == [1.9, 1.0, 0.7]  # the bench's own work: no verdict from it
    busy = provenance.load_record([0.4, 0.5, 0.6], None, 1.5, cores=2)  # others: 0.75 a core
    assert busy["busy"] is True and "other processes used 1.50 cores" in busy["note"]
    assert "times are slower" in busy["note"]
    unknown = provenance.load_record(None, None, None, cores=2)
    assert unknown["busy"] is None and unknown["note"] == "the load is unknown on this system"


def test_git_state_outside_a_checkout_names_no_commit(tmp_path: Path) -> None:
    state = provenance.git_state(tmp_path)
    assert state["commit"] is None and state["dirty"] is None and "no git" in state["reason"]


# -- the run that writes the results file -------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_bench_arguments(parser)
    return cli.resolve_args(parser.parse_args(list(argv)))


def test_all_runs_every_scenario() -> None:
    assert _args("--all").scenario == list(cli.SCENARIOS)
    assert _args("--all", "--scenario", "fast").scenario == list(cli.SCENARIOS)
    assert "warm" in cli.SCENARIOS and "batch" in cli.SCENARIOS and "adaptive" in cli.SCENARIOS


def test_integrations_are_skipped_when_no_framework_is_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli._run_scenario("integrations", _args("--scenario", "integrations")) is None
    assert "neither LangChain nor LlamaIndex is installed" in capsys.readouterr().err


def test_json_writes_the_results_with_their_provenance_and_figures(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    argv = ["--scenario", "warm", "--warm-texts", "60", "--warm-pairs", "1", "--dim", "8"]
    argv += ["--quick", "--json", str(path), "--out", str(tmp_path / "out"), "--no-chart", "-q"]
    assert cli.main(argv) == 0
    results = json.loads(path.read_text("utf-8"))
    prov = results["provenance"]
    assert prov["machine"]["cpus"] and prov["machine"]["python"]
    assert prov["started"] <= prov["finished"] and prov["load"]["cores"] >= 1
    assert "note" in prov["load"] and "busy" in prov["load"]
    state = provenance.git_state()
    assert prov["commit"] == state["commit"]  # None outside a checkout
    assert results["quick"] is True and results["figures"]["run.kind"]["text"] == "quick"
    assert results["figures"]["warm.texts"]["text"] == "60"
    assert results["figures"] == figures.derive(results)
    assert list(tmp_path.glob("out/bench-*.json"))  # the dated copy too


# -- the committed figures --------------------------------------------------------------------


def _committed() -> dict[str, Any]:
    if not RESULTS.is_file() or not README.is_file():
        pytest.skip("bench/results.json or README.md is not here (an installed package)")
    found: dict[str, Any] = json.loads(RESULTS.read_text("utf-8"))
    return found


def test_the_readme_quotes_only_figures_of_the_committed_results() -> None:
    results = _committed()
    assert figures.problems(README.read_text("utf-8"), results) == []


def test_the_committed_figures_are_those_of_its_scenarios() -> None:
    """Derived again from the scenarios' own numbers: no figure was edited by hand."""
    results = _committed()
    assert results["figures"] == figures.derive(results)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _checkout() -> None:
    """Skip unless ROOT is a git checkout's root, with its history."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the results' commit cannot be checked")
    top = _git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip(f"{ROOT} is not a git checkout (an sdist?): the commit cannot be checked")
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone: the history the check needs is not here")


def test_the_committed_results_are_not_older_than_the_code_they_measure() -> None:
    results = _committed()
    _checkout()
    prov = results["provenance"]
    commit = prov.get("commit")
    assert commit, "bench/results.json names no commit: it was not made in a git checkout"
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, (
        f"bench/results.json was measured at {commit}, which is not in this repository's "
        "history: run `embedsdk bench --all --json bench/results.json` and commit the file"
    )
    assert _git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, (
        f"bench/results.json was measured at {commit}, which is not an ancestor of HEAD"
    )
    last = _git("log", "-1", "--format=%H %s", "--", *MEASURED).stdout.strip()
    if last:
        changed, subject = last.split(" ", 1)
        assert _git("merge-base", "--is-ancestor", changed, commit).returncode == 0, (
            f"bench/results.json was measured at {commit[:10]}, before the last change to "
            f"{' or '.join(MEASURED)} ({changed[:10]} {subject!r}): its figures may be stale; "
            "run `embedsdk bench --all --json bench/results.json` and commit the file"
        )
    touched = [p for p in prov.get("dirty_paths") or [] if p.startswith("embedsdk/")]
    assert not touched, (
        f"bench/results.json was measured with uncommitted changes to {touched}: the commit it "
        "names is not the code it measured; commit them and run it again"
    )
