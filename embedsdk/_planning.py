"""Pure decisions about inputs: validation, de-duplication, token estimates, batches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._exceptions import InvalidInputError


def estimate_tokens(text: str) -> int:
    """A safe over-estimate of a text's tokens, without a tokenizer.

    CJK characters count one each, other characters one per three, plus two for the special
    tokens (see provider-facts: bge-zh counts a token per CJK character, English runs about
    3-4 characters per token). CJK characters are three bytes in UTF-8 and ASCII one, so the
    byte length tells how many there are without a Python-level loop over characters.
    """
    n = len(text)
    wide = (len(text.encode("utf-8", "surrogatepass")) - n) // 2
    return wide + (n - wide + 2) // 3 + 2


def validate_texts(texts: Sequence[Any], start: int = 0) -> None:
    """Raise :class:`InvalidInputError` for the first item that cannot be embedded.

    ``start`` is added to the index in the message (for streams read in windows).
    """
    for i, text in enumerate(texts):
        if type(text) is not str:
            if isinstance(text, str):
                continue
            raise InvalidInputError(
                f"texts[{start + i}] is {type(text).__name__}, not str: {text!r:.80}",
                index=start + i,
            )
        if not text or text.isspace():
            raise InvalidInputError(
                f"texts[{start + i}] is empty or only whitespace ({text!r:.40}); "
                "providers reject empty inputs",
                index=start + i,
            )


def deduplicate(texts: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
    """Unique texts in first-seen order, and for each input the row of its unique text.

    The second value is ``None`` when there are no duplicates (the common case), so callers
    can skip the gather.
    """
    rows: dict[str, int] = {}
    inverse = [rows.setdefault(t, len(rows)) for t in texts]
    if len(rows) == len(texts):
        return list(texts), None
    return list(rows), np.asarray(inverse, dtype=np.intp)


def plan_batches(
    token_counts: Sequence[int], batch_size: int, max_batch_tokens: int
) -> list[tuple[int, int]]:
    """Cut consecutive inputs into ``(start, stop)`` batches.

    Each batch has at most ``batch_size`` inputs and at most ``max_batch_tokens`` estimated
    tokens, except that a single input larger than the budget goes alone.
    """
    batches: list[tuple[int, int]] = []
    start, tokens = 0, 0
    for i, count in enumerate(token_counts):
        if i > start and (i - start >= batch_size or tokens + count > max_batch_tokens):
            batches.append((start, i))
            start, tokens = i, 0
        tokens += count
    if start < len(token_counts):
        batches.append((start, len(token_counts)))
    return batches


def iter_windows(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    """Lists of up to ``size`` consecutive items from any iterable."""
    window: list[Any] = []
    for item in items:
        window.append(item)
        if len(window) >= size:
            yield window
            window = []
    if window:
        yield window
