"""docs/architecture.md describes rate control in the code's own words: its design (the
controller's docstring) and every tunable (``Tuning.table()``), so the two cannot drift.

Private access: the page's rewriter (``ratecontrol._docs``) is the unit under test; its
public face, ``python -m embedsdk.ratecontrol PAGE``, rewrites files in place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from embedsdk import Tuning
from embedsdk.ratecontrol import _docs

PAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def test_the_architecture_page_carries_the_controllers_design_and_tunables() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert _docs.update(page) == page, (
        "docs/architecture.md disagrees with the code: run "
        "`python -m embedsdk.ratecontrol docs/architecture.md`"
    )


def test_every_tunable_is_in_the_table_with_its_default_and_what_it_trades_off() -> None:
    table = Tuning.table()
    for field in dataclasses.fields(Tuning):
        row = next(line for line in table.splitlines() if line.startswith(f"| `{field.name}` "))
        assert f"`{field.default!r}`" in row and len(field.metadata["doc"]) > 10


def test_a_changed_docstring_is_caught_and_rewritten() -> None:
    page = "x\n<!-- ratecontrol:design -->\nold words\n<!-- /ratecontrol:design -->\n"
    page += "<!-- ratecontrol:tuning -->\n<!-- /ratecontrol:tuning -->\n"
    new = _docs.update(page)
    assert "old words" not in new and _docs.blocks()["design"] in new
    assert _docs.update(new) == new
    with pytest.raises(ValueError, match="ratecontrol:design"):
        _docs.update("no blocks here")


def test_a_mechanism_can_be_turned_off_and_a_knob_without_one_cannot() -> None:
    assert Tuning().off("beyond").beyond == 0.0
    assert Tuning().off("window_periods").window_periods == ()
    with pytest.raises(ValueError, match="no value that turns it off"):
        Tuning().off("backoff")
    with pytest.raises(ValueError, match="backoff"):
        Tuning(backoff=1.5)
    with pytest.raises(ValueError, match="regain"):
        Tuning(regain=0.0)
