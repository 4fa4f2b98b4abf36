"""Pure decisions about inputs: validation, de-duplication, token estimates, batches."""

from __future__ import annotations

import re
from collections.abc import Iterable, KeysView, Mapping, Sequence, Set
from typing import Any

import numpy as np

from .._exceptions import InvalidInputError


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


def check_texts(texts: object) -> None:
    """Raise ``TypeError`` for a ``texts`` whose order is not the caller's: row i of the
    answer is ``texts[i]``, so a set (its order is arbitrary) or a dict (iterating it gives
    its keys) would come back in an order nobody chose (``d.keys()`` and ``d.values()`` are
    taken: they keep the dict's order). One ``str`` is refused too: it would
    be embedded character by character; and a DataFrame, whose iteration gives its column
    names (``df[["text"]]`` would be embedded as the one text "text")."""
    if isinstance(texts, str):
        raise TypeError(
            "texts must be a list (or another ordered iterable) of str, not one str; "
            "wrap it in a list"
        )
    if _is_data_frame(texts):
        raise TypeError(
            f"texts must be a list (or another ordered iterable) of str, not a "
            f"{type(texts).__name__}: iterating it gives its column names; pass one column, "
            f"e.g. {_column_hint(texts)}"
        )
    if isinstance(texts, Mapping):
        raise TypeError(
            f"texts must be a list (or another ordered iterable) of str, not a "
            f"{type(texts).__name__}: "
            "iterating it gives its keys; pass list(d.values()) or list(d)"
        )
    if isinstance(texts, Set) and not isinstance(texts, KeysView):  # dict keys keep its order
        raise TypeError(
            f"texts must be a list (or another ordered iterable) of str, not a "
            f"{type(texts).__name__}: its "
            "order is arbitrary, so row i would match no text you chose; pass sorted(texts) "
            "or a list"
        )


def _is_data_frame(texts: object) -> bool:
    """A table whose iteration gives its column names: pandas' DataFrame, and polars', dask's,
    modin's and cuDF's, which have the same ``columns`` and ``shape``. By duck typing: pandas
    is not a dependency, and importing it would cost every user a second. (A Series has no
    ``columns``: it iterates over its values and is taken.)"""
    return hasattr(texts, "columns") and hasattr(texts, "shape") and not isinstance(texts, Sequence)


def _column_hint(frame: Any) -> str:
    """``df['text']``: the frame's column named text, else its first."""
    try:
        columns = list(frame.columns)
    except Exception:  # an odd table: the usual name will do
        columns = []
    name = "text" if "text" in columns or not columns else columns[0]
    return f"df[{name!r}]"


def validate_texts(texts: Sequence[Any], start: int = 0) -> None:
    """Raise :class:`InvalidInputError` for the first item that cannot be embedded.

    ``start`` is added to the index in the message (for streams read in windows).
    """
    for i, text in enumerate(texts):
        if type(text) is not str and not isinstance(text, str):  # exact check first: fast
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
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a bad decode
                raise InvalidInputError(
                    f"texts[{start + i}] is not valid Unicode (character {exc.start} is a lone "
                    f"surrogate {text[exc.start]!r}): it cannot be sent as UTF-8",
                    index=start + i,
                ) from None


#: Han characters: BERT WordPiece vocabularies (bge-large-zh) give each one a token of its own.
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def min_tokens(text: str, han_per_token: int = 2) -> int:
    """A lower bound of a text's tokens, to refuse only texts that are surely too long.

    :func:`estimate_tokens` over-estimates on purpose (safe for batches and rate limits), so
    refusing by it would refuse texts the server takes. Here Han characters count one per
    ``han_per_token`` (1 for BERT WordPiece models such as bge-large-zh, which split every Han
    character alone; 2 for SentencePiece / BPE vocabularies such as bge-m3, bce, Qwen3 and
    OpenAI's, which merge common two-character words but rarely more on average), other
    characters one per eight (English runs about four per token; long words and symbols
    compress more) and blanks nothing (tokenizers fold runs of blanks away).
    """
    han = len(text) - len(_HAN.sub("", text))
    others = len("".join(text.split())) - han
    return han // han_per_token + others // 8


def fit_to_tokens(text: str, limit: int) -> str:
    """``text`` without leading blanks, cut to the longest prefix whose
    :func:`estimate_tokens` is at most ``limit``: the server surely takes it.

    The estimate grows with the prefix (never shrinks), so a binary search finds the cut.
    """
    text = text.lstrip()
    if estimate_tokens(text) <= limit:
        return text
    fits, too_long = 0, len(text)  # estimate(text[:fits]) <= limit < estimate(text[:too_long])
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if estimate_tokens(text[:middle]) <= limit:
            fits = middle
        else:
            too_long = middle
    return text[:fits]


def apply_input_limit(
    texts: list[str],
    limit: int,
    *,
    truncate: bool,
    model: str,
    han_per_token: int = 2,
    start: int = 0,
) -> tuple[list[str], int]:
    """``texts`` made fit for a model taking ``limit`` tokens per input; how many were cut.

    Without ``truncate``: raise :class:`InvalidInputError` for the first text whose
    :func:`min_tokens` is above ``limit`` (surely too long); texts between the lower bound and
    the over-estimate are sent and the server judges them. With ``truncate``: cut every text
    whose :func:`estimate_tokens` is above ``limit``, so that no cut text can be refused (the
    price: a text near the limit may lose a little more than it had to). ``start`` is added
    to the index in the message.
    """
    # estimate_tokens(t) < 2 * len(t) + 3 and min_tokens(t) <= len(t): one C-level pass over
    # the lengths finds the few texts worth a closer look.
    lengths = np.fromiter(map(len, texts), dtype=np.intp, count=len(texts))
    shortest = limit if not truncate else (limit - 3) // 2
    candidates = np.flatnonzero(lengths > shortest).tolist()
    if not truncate:
        for i in candidates:
            lower = min_tokens(texts[i], han_per_token)
            if lower > limit:
                raise InvalidInputError(
                    f"texts[{start + i}] is too long for {model}, which takes {limit} tokens "
                    f"per input: it has {lengths[i]} characters, at least {lower} tokens; "
                    "shorten it, or pass truncate=True to the client to cut such texts",
                    index=start + i,
                )
        return texts, 0
    cut = [i for i in candidates if estimate_tokens(texts[i]) > limit]
    if not cut:
        return texts, 0
    texts = list(texts)
    for i in cut:
        texts[i] = fit_to_tokens(texts[i], limit)
    return texts, len(cut)


def too_long_note(model: str, limit: int | None, truncate: bool) -> str:
    """What an error adds when the server refused an input as too long: what ``truncate``
    did or could not do, and what is left to the user.

    ``limit`` is the tokens per input that embedsdk knows for ``model`` (``None``: unknown,
    so nothing was cut); the server's own limit may be lower (a self-hosted server started
    with a shorter maximum).
    """
    refused = "; a text there is longer than the server takes"
    if limit is None and truncate:
        return (
            f"{refused}, and truncate=True could not cut it: the input limit of {model} is "
            "unknown to embedsdk, so it cuts nothing; shorten such texts before the call"
        )
    if limit is None:
        return f"{refused}: shorten it"
    if truncate:
        return (
            f"{refused}: truncate=True cut texts to {limit} tokens ({model}'s limit as embedsdk "
            "knows it), but this server takes fewer; shorten such texts before the call"
        )
    return f"{refused} ({model} takes {limit} tokens per input): shorten it, or pass truncate=True"


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
    """Cut consecutive inputs into ``(start, stop)`` batches, each as long as
    :func:`batch_end` allows: at most ``batch_size`` inputs and ``max_batch_tokens``
    estimated tokens, except that a single input larger than the budget goes alone.
    (``batch_size="auto"`` cuts by the same rule, one batch at a time, as workers take them.)
    """
    batches: list[tuple[int, int]] = []
    start = 0
    while start < len(token_counts):
        stop = batch_end(token_counts, start, batch_size, max_batch_tokens)
        batches.append((start, stop))
        start = stop
    return batches


def batch_end(token_counts: Sequence[int], start: int, size: int, max_tokens: int) -> int:
    """Where the batch that begins at ``start`` ends: at most ``size`` inputs and
    ``max_tokens`` estimated tokens, at least one input."""
    end = min(len(token_counts), start + max(1, size))
    stop, total = start, 0
    while stop < end:
        total += token_counts[stop]
        if stop > start and total > max_tokens:
            break
        stop += 1
    return stop


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
