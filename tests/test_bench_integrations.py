"""``embedsdk bench --scenario integrations``, end to end at the smallest size (no timing is
asserted). Needs LangChain and LlamaIndex; the stock OpenAI classes join when installed.

Private access: the bench (``embedsdk._bench``) is the unit under test; its public faces,
``embedsdk bench`` and bench/run.py, only run whole scenarios.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from embedsdk._bench import cli, integrations


def test_integrations_scenario_end_to_end(tmp_path: Path) -> None:
    argv = ["--scenario", "integrations", "--integration-texts", "60", "--repeat", "1"]
    argv += ["--latency", "0.005", "--workers", "3", "--batch-size", "5", "-q"]
    assert cli.main([*argv, "--out", str(tmp_path), "--no-chart"]) == 0
    (path,) = tmp_path.glob("bench-*.json")
    result = json.loads(path.read_text("utf-8"))["scenarios"]["integrations"]
    runs = {r["id"]: r for r in result["runs"]}
    assert set(runs) == {i for i in integrations.CONTENDERS if integrations.available(i)}
    for ours in integrations.OURS:
        assert runs[ours]["exact"] is True
        assert runs[ours]["requests"] == 12  # 60 texts in batches of 5
        assert runs[ours]["peak_in_flight"] == 3
        assert 0 < runs[ours]["median_embed_s"] <= runs[ours]["median_s"]
    for stock in ("lc-openai", "li-openai"):
        if stock in runs:
            assert runs[stock]["exact"] is True
            assert runs[stock]["peak_in_flight"] == 1  # one request at a time
    assert result["left_out"] == [i for i in integrations.CONTENDERS if i not in runs]
