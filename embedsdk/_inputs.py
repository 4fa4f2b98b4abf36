"""Reading texts lazily from files for the command line: lines, JSONL and CSV.

Errors are :class:`InputFileError` with a message that names the file and the line, so the
command line can print it as it is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from typing import IO

from ._exceptions import EmbedSDKError

FORMATS = ("lines", "jsonl", "csv")
STDIN = "-"


class InputFileError(EmbedSDKError):
    """The input file is missing, empty or has a bad line (named by its number)."""


def detect_format(path: str, fmt: str | None) -> str:
    """``fmt`` if given, else from the file name: ``.jsonl``/``.ndjson``, ``.csv``/``.tsv``,
    else lines."""
    if fmt:
        if fmt not in FORMATS:
            raise InputFileError(f"unknown input format {fmt!r}; choose one of {FORMATS}")
        return fmt
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith((".csv", ".tsv")):
        return "csv"
    return "lines"


def _name(path: str) -> str:
    return "standard input" if path == STDIN else path


def check_input(path: str) -> None:
    """Fail early, with a clear message, on a missing, unreadable or empty input file."""
    if path == STDIN:
        if sys.stdin is None or sys.stdin.isatty():
            # Typing texts by hand is never meant; waiting for them would look like a hang.
            raise InputFileError(
                "standard input is a terminal: pipe the texts in (cat FILE | embedsdk embed - "
                "...) or name the input file"
            )
        return
    if not os.path.exists(path):
        raise InputFileError(f"input file not found: {path}")
    if os.path.isdir(path):
        raise InputFileError(f"input is a directory, not a file: {path}")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"input file is not readable: {path}")
    if os.path.getsize(path) == 0:
        raise InputFileError(f"input file is empty: {path}")


def _open(path: str) -> IO[str]:
    # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first text.
    if path == STDIN:
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", errors="strict")
    check_input(path)
    return open(path, encoding="utf-8-sig", newline="")


def count_rows(path: str, fmt: str) -> int | None:
    """How many texts a file holds at most (one fast pass, for the progress bar's total).

    ``None`` for standard input or a file that cannot be read (reading it fails later, with a
    better message).
    """
    if path == STDIN:
        return None
    lines, last = 0, b"\n"
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    lines += last != b"\n"
    return max(lines - 1, 0) if fmt == "csv" else lines


def _check(text: object, where: str, skip_empty: bool) -> str | None:
    if not isinstance(text, str):
        raise InputFileError(f"{where}: expected a string, got {type(text).__name__}")
    if not text.strip():
        if skip_empty:
            return None
        raise InputFileError(f"{where} is empty (use --skip-empty to leave such texts out)")
    return text


def read_texts(
    path: str,
    fmt: str | None = None,
    *,
    field: str = "text",
    column: str | None = None,
    skip_empty: bool = False,
) -> Iterator[str]:
    """Yield the texts of ``path`` (``-`` for stdin) one at a time, naming bad lines.

    Lazy: nothing is opened before the first ``next()``, and only one line is held at a time.
    """
    fmt = detect_format(path, fmt)
    stream = _open(path)
    seen = 0
    try:
        for number, text in _rows(stream, fmt, field, column, path):
            checked = _check(text, f"{_name(path)}, line {number}", skip_empty)
            if checked is not None:
                seen += 1
                yield checked
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{_name(path)} is not UTF-8 text: {exc}") from None
    finally:
        if isinstance(stream, io.TextIOWrapper) and path == STDIN:
            stream.detach()  # closing the wrapper would close sys.stdin's buffer too
        else:
            stream.close()
    if seen == 0:
        raise InputFileError(f"no texts in {_name(path)}")


def _rows(
    stream: IO[str], fmt: str, field: str, column: str | None, path: str
) -> Iterator[tuple[int, object]]:
    """``(line number, text)`` pairs; the text may still be of the wrong type or empty."""
    if fmt == "lines":
        for number, line in enumerate(stream, 1):
            yield number, line.rstrip("\r\n")
    elif fmt == "jsonl":
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, _json_field(line, field, f"{_name(path)}, line {number}")
    else:
        yield from _csv_rows(stream, column, path)


def _json_field(line: str, field: str, where: str) -> object:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InputFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if field not in record:
        fields = ", ".join(map(repr, list(record)[:10]))
        raise InputFileError(f"{where}: no field {field!r} (it has {fields}; choose with --field)")
    return record[field]


def _csv_rows(stream: IO[str], column: str | None, path: str) -> Iterator[tuple[int, object]]:
    reader = csv.DictReader(stream, delimiter="\t" if path.lower().endswith(".tsv") else ",")
    try:
        names = reader.fieldnames or []
        name = column or (names[0] if names else None)
        if name is None or name not in names:
            raise InputFileError(
                f"{_name(path)}: CSV column {name!r} not found; the columns are "
                f"{', '.join(map(repr, names))} (choose with --column)"
            )
        for row in reader:
            value = row[name]
            if value is None:  # a short row
                raise InputFileError(
                    f"{_name(path)}, line {reader.line_num}: no value in column {name!r}"
                )
            yield reader.line_num, value
    except csv.Error as exc:
        raise InputFileError(f"{_name(path)}, line {reader.line_num}: bad CSV ({exc})") from None
