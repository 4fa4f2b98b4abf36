"""The rate-control section of docs/architecture.md, written from the code's own words.

The design (the controller's docstring: its states, what moves the pace) and the tunables
(``Tuning.table()``) are copied between markers in the page; ``python -m embedsdk.ratecontrol
docs/architecture.md`` rewrites them, and a test fails when the page and the code disagree.
"""

from __future__ import annotations

import re

from . import _controller
from ._tuning import Tuning


def blocks() -> dict[str, str]:
    """Each marked block's text, by name."""
    doc = _controller.__doc__ or ""
    design = doc.split("\n\n", 1)[1].split(">>>", 1)[0].strip()
    return {"design": design, "tuning": Tuning.table()}


def update(page: str) -> str:
    """``page`` with every ``<!-- ratecontrol:NAME -->`` block rewritten from the code."""
    for name, text in blocks().items():
        pattern = re.compile(
            rf"(<!-- ratecontrol:{name} -->\n)(?:.*?\n)?(<!-- /ratecontrol:{name} -->)", re.S
        )
        if not pattern.search(page):
            raise ValueError(f"no <!-- ratecontrol:{name} --> block in the page")
        match = pattern.search(page)
        assert match is not None
        page = (
            page[: match.start()]
            + f"{match.group(1)}{text}\n{match.group(2)}"
            + page[match.end() :]
        )
    return page
