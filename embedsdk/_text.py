"""Small helpers for the words of messages: plurals and excerpts. Pure functions."""

from __future__ import annotations

import re

#: Characters of a server's body quoted in a message or a log line, at most.
EXCERPT = 200

_BLANKS = re.compile(r"\s+")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 input"``, ``"2 inputs"``; ``nouns`` for an irregular plural."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``text`` on one line (blanks collapsed), cut to about ``limit`` characters."""
    flat = _BLANKS.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + "…"
