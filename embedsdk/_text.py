"""Small helpers for the words of messages: plurals, excerpts (pure functions), and a note
added to an exception's message."""

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


def append_note(exc: BaseException, note: str) -> None:
    """Add ``; note`` to the message of ``exc``."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}; {note}",)
