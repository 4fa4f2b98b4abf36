"""``embedsdk bench --scenario batch-api`` (issue 23): the same corpus through /embeddings
under told limits and through the Batch API, on a small corpus.

Private access: the scenario's corpus size (``batchapi.TEXTS``) is made small; the bench's
modules are the unit under test and have no public seam.
"""

from __future__ import annotations

import argparse

import pytest

from embedsdk._bench import batchapi, cli


def test_the_scenario_compares_the_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchapi, "TEXTS", (300, 300))
    result = batchapi.run(argparse.Namespace(quick=True, quiet=True, real_time=False))
    assert result["identical"] is True  # the same vectors, bit for bit
    embeddings, batch = result["embeddings"], result["batch"]
    assert batch["embeddings_requests"] == 0
    assert batch["uploads"] == 1 and batch["batches"] == 1
    assert batch["tokens"] == result["tokens"] > 0
    assert batch["cost_usd"] == pytest.approx(embeddings["cost_usd"] * 0.5)
    assert embeddings["refused"] == 0  # the limits were told
    table = batchapi.format_table(result)
    assert "same vectors: yes" in table and "Batch API" in table


def test_the_scenario_is_listed() -> None:
    assert "batch-api" in cli.SCENARIOS
