"""The bench figures of the guides and the Ray pages are those of bench/results.json.

bench/render_docs.py renders every ``<!-- BENCH:name -->`` block of docs/guide.en.md,
docs/guide.zh.md, docs/ray.en.md and docs/ray.zh.md from a results file: the sentence saying
which run it is, the tables, and the sentences read from them. Checked here:

- the committed pages are what the committed results file renders, so that neither drifts
  from the other (after a bench run: ``python bench/render_docs.py``), and ``--check`` exits 1
  with a diff when a page is not, changing nothing, while a run without it rewrites the page;
- on made-up results, a block follows its numbers: change one and the page changes with it,
  in English and in Chinese, the text outside the block untouched; a sentence that judges the
  numbers ("neither ahead throughout") changes its words when the numbers change;
- a page without a block's markers, or results without a scenario a block needs, fail with a
  message naming the page and the block.

The script is loaded from its file: it is a tool of the checkout, not part of the package.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "render_docs.py"
RESULTS = ROOT / "bench" / "results.json"


def _load() -> ModuleType:
    if not SCRIPT.is_file():
        pytest.skip(f"{SCRIPT} is not here (not a checkout?)")
    spec = importlib.util.spec_from_file_location("render_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rd = _load()


def _committed() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(RESULTS.read_text("utf-8"))
    return found


# -- the committed pages and results -----------------------------------------------------------


def test_the_pages_are_what_the_results_file_renders() -> None:
    for page, (old, new) in rd.render_docs(_committed(), ROOT).items():
        if old != new:
            diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True)))
            pytest.fail(
                f"{page} is not what bench/results.json renders: run python bench/render_docs.py"
                f"\n{diff[:3000]}"
            )


def test_every_page_holds_its_blocks() -> None:
    for page, names in rd.PAGES.items():
        text = (ROOT / page).read_text("utf-8")
        assert [name for name, _, _ in rd.blocks_in(text, page)] == list(names), page


def _copy(tmp_path: Path) -> Path:
    for page in rd.PAGES:
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / page, tmp_path / page)
    (tmp_path / "bench").mkdir()
    shutil.copy(RESULTS, tmp_path / "bench" / "results.json")
    return tmp_path


def test_check_shows_a_stale_page_changing_nothing_and_a_run_rewrites_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(tmp_path)
    page = root / "docs" / "ray.en.md"
    fresh = page.read_text("utf-8")
    (row,) = [
        line for line in fresh.splitlines() if line.startswith("| embedsdk.ray (one leader) | 4 |")
    ]
    stale = row.replace("| 4 |", "| 4 | 123.4 % |", 1)  # a cell the results never give
    page.write_text(fresh.replace(row, stale), "utf-8")

    assert rd.main(["--check", "--root", str(root)]) == 1
    out, err = capsys.readouterr()
    assert "--- a/docs/ray.en.md" in out and "+++ b/docs/ray.en.md" in out
    assert f"-{stale}" in out and f"+{row}" in out
    assert "docs/guide.en.md" not in out  # the other pages are as the results give them
    assert "docs/ray.en.md" in err
    assert "123.4 %" in page.read_text("utf-8")  # --check changes nothing

    assert rd.main(["--root", str(root)]) == 0
    assert page.read_text("utf-8") == fresh
    assert rd.main(["--check", "--root", str(root)]) == 0


# -- made-up results ---------------------------------------------------------------------------


def _provenance(**changes: Any) -> dict[str, Any]:
    prov = {
        "commit": "abcdef1234567890",
        "started": "2027-03-03T09:00:00+00:00",
        "dirty": False,
        "load": {"busy": True},
        "machine": {"cpus": 2},
    }
    return {**prov, **changes}


def _ray_results(share: float = 0.97) -> dict[str, Any]:
    def row(client: str, workers: int, share: float, refused: float) -> dict[str, Any]:
        return {
            "client": client,
            "workers": workers,
            "share": share,
            "refused": refused,
            "share_after_10s": share + 0.01,
            "refused_after_10s": refused / 5,
            "requests": 600,
            "error": "",
        }

    rows = []
    for workers in (4, 16):
        rows.append(row("embedsdk.ray (one leader)", workers, share, 0.05))
        rows.append(row("independent clients", workers, 0.8, 0.1))
        rows.append(row("Ray HttpRequestProcessor", workers, 0.2, 0.0))
    return {
        "quick": True,
        "provenance": _provenance(),
        "scenarios": {"ray": {"rpm": 300, "batch": 4, "rows": rows}},
    }


PAGE = "# Ray\n\nBefore.\n\n<!-- BENCH:ray -->\nwhatever was here\n<!-- /BENCH:ray -->\n\nAfter.\n"


def test_a_block_follows_its_results() -> None:
    page = rd.render_page(PAGE, "docs/x.en.md", _ray_results(share=0.97))
    assert page.startswith("# Ray\n\nBefore.\n\n<!-- BENCH:ray -->\n")
    assert page.endswith("\n<!-- /BENCH:ray -->\n\nAfter.\n")
    assert "whatever was here" not in page
    flat = " ".join(page.split())
    assert (
        "Measured by `embedsdk bench --scenario ray`, a quick run, on 3 March 2027 at commit "
        "abcdef1, on a 2-core machine that was busy." in flat
    )
    assert "with a 300 requests/min limit" in flat and "4 texts a request" in flat
    assert "| embedsdk.ray (one leader) | 4 | 97 % | 5.0 % | 98 % | 1.0 % |" in page
    assert "one leader got 97 % of the limit with 4 and 16 workers" in flat
    assert "2 cores place 8 of the 16 workers asked for" in flat

    changed = rd.render_page(PAGE, "docs/x.en.md", _ray_results(share=0.62))
    assert "| embedsdk.ray (one leader) | 4 | 62 % | 5.0 % | 63 % | 1.0 % |" in changed
    assert "one leader got 62 % of the limit" in " ".join(changed.split())
    assert "97 %" not in changed


def test_a_block_follows_its_results_in_chinese() -> None:
    page = rd.render_page(PAGE, "docs/x.zh.md", _ray_results(share=0.62))
    flat = "".join(page.split())
    assert (
        "数据来自2027年3月3日（提交abcdef1）的`embedsdkbench--scenarioray`（快速运行），2核机器"
        in flat
    )
    assert "当时机器繁忙" in flat
    assert "| embedsdk.ray（一个 leader） | 4 | 62 % | 5.0 % | 63 % | 1.0 % |" in page
    assert "一个leader拿到限额的62%，" in flat


def test_the_machine_and_the_run_come_from_the_provenance() -> None:
    results = _ray_results()
    results.update(quick=False, provenance=_provenance(load={"busy": False}, machine={"cpus": 8}))
    flat = " ".join(rd.render_page(PAGE, "docs/x.en.md", results).split())
    assert "a full run, on 3 March 2027" in flat
    assert "on an 8-core machine that was quiet" in flat
    assert "cores place" not in flat  # 8 cores hold 16 workers of 0.25 CPU: nobody waits


def _throughput(rates: dict[int, dict[str, float]]) -> dict[str, Any]:
    """A throughput scenario with every client at ``rates[size][client]`` texts/s (serial and
    langchain-openai at 1 in flight, the others at 10; batches of 20, 100 ms)."""
    runs = []
    for size, by in rates.items():
        ceiling = min(10, -(-size // 20))
        for client, rate in by.items():
            alone = client in ("serial", "langchain")
            top = 1 if alone else ceiling
            speedup = rate / by["serial"]
            runs.append(
                {
                    "size": size,
                    "client": client,
                    "concurrency": 1 if alone else 10,
                    "texts_per_s": rate,
                    "speedup": speedup,
                    "ceiling_speedup": float(top),
                    "speedup_efficiency": speedup / top,
                    "ceiling_texts_per_s": 200.0 * top,
                    "efficiency": rate / (200.0 * top),
                }
            )
    settings = {"latency_s": 0.1, "batch_size": 20, "concurrency": 10, "repeat": 3}
    return {"settings": {**settings, "sizes": list(rates)}, "runs": runs}


def _speedup(threads: tuple[float, float]) -> str:
    rates = {
        size: {"serial": 190.0, "threads": t, "async": 1800.0, "raw": 1850.0}
        | {"openai": 1500.0, "langchain": 185.0}
        for size, t in zip((200, 1000), threads)
    }
    results = {"provenance": _provenance(), "scenarios": {"throughput": _throughput(rates)}}
    page = "<!-- BENCH:speedup -->\n<!-- /BENCH:speedup -->\n"
    return " ".join(rd.render_page(page, "docs/x.en.md", results).split())


def test_a_judgement_follows_the_numbers() -> None:
    assert "The two are within 5.9 % of each other at every size, async ahead throughout" in (
        _speedup(threads=(1700.0, 1750.0))
    )
    assert "neither ahead throughout" in _speedup(threads=(1900.0, 1750.0))
    assert "the thread pool ahead throughout" in _speedup(threads=(1900.0, 1850.0))
    assert "| 1,000 | 10× | 9.74× (97 %) | 9.47× (95 %) |" in _speedup(threads=(1900.0, 1850.0))


# -- what is missing ---------------------------------------------------------------------------


def test_a_missing_marker_names_the_page_and_the_block() -> None:
    page = "docs/guide.en.md"
    text = (ROOT / page).read_text("utf-8")
    with pytest.raises(
        rd.RenderError, match=r"docs/guide\.en\.md: block 'fast': no <!-- /BENCH:fast"
    ):
        rd.render_page(text.replace("<!-- /BENCH:fast -->\n", ""), page, _committed())
    gone = text.replace("<!-- BENCH:cache -->\n", "").replace("<!-- /BENCH:cache -->\n", "")
    with pytest.raises(
        rd.RenderError, match=r"docs/guide\.en\.md: block 'cache': <!-- BENCH:cache --> not found"
    ):
        rd.render_page(gone, page, _committed())


def test_a_scenario_absent_from_the_results_names_the_page_and_the_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _committed()
    del results["scenarios"]["warm"]
    page = "docs/guide.zh.md"
    with pytest.raises(rd.RenderError) as caught:
        rd.render_page((ROOT / page).read_text("utf-8"), page, results)
    assert str(caught.value) == (
        "docs/guide.zh.md: block 'cache': the results have no 'warm' scenario "
        "(run `embedsdk bench --scenario warm`)"
    )

    root = _copy(tmp_path)
    (root / "bench" / "results.json").write_text(json.dumps(results), "utf-8")
    before = (root / page).read_text("utf-8")
    assert rd.main(["--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "render_docs: error: docs/guide.en.md: block 'cache'" in err
    assert (root / page).read_text("utf-8") == before
