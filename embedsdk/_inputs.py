"""Reading texts lazily from files for the command line: lines, JSONL and CSV."""

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


class InputFileError(EmbedSDKError):
    """The input file is missing, empty or has a bad line (named by its number)."""


def detect_format(path: str, fmt: str | None) -> str:
    """``fmt`` if given, else from the file name: ``.jsonl``/``.ndjson``, ``.csv``, else lines."""
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


def _open(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="strict")
    if not os.path.exists(path):
        raise InputFileError(f"input file not found: {path}")
    if os.path.isdir(path):
        raise InputFileError(f"input is a directory, not a file: {path}")
    return open(path, encoding="utf-8", newline="")


def count_rows(path: str, fmt: str) -> int | None:
    """How many texts a file holds (a fast pass for the progress bar); ``None`` for stdin."""
    if path == "-":
        return None
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"
    return max(lines - 1, 0) if fmt == "csv" else lines


def _check(text: object, where: str, skip_empty: bool) -> str | None:
    if not isinstance(text, str):
        raise InputFileError(f"{where}: expected a string, got {type(text).__name__}")
    if not text.strip():
        if skip_empty:
            return None
        raise InputFileError(f"{where} is empty (use --skip-empty to leave such lines out)")
    return text


def read_texts(
    path: str,
    fmt: str | None = None,
    *,
    field: str = "text",
    column: str | None = None,
    skip_empty: bool = False,
) -> Iterator[str]:
    """Yield the texts of ``path`` (``-`` for stdin) one at a time, naming bad lines."""
    fmt = detect_format(path, fmt)
    stream = _open(path)
    seen = 0
    try:
        for number, text in _rows(stream, fmt, field, column):
            checked = _check(text, f"line {number}", skip_empty)
            if checked is not None:
                seen += 1
                yield checked
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8 text: {exc}") from None
    finally:
        if path != "-":
            stream.close()
    if seen == 0:
        raise InputFileError(f"no texts in {path if path != '-' else 'standard input'}")


def _rows(
    stream: IO[str], fmt: str, field: str, column: str | None
) -> Iterator[tuple[int, object]]:
    if fmt == "lines":
        for number, line in enumerate(stream, 1):
            yield number, line.rstrip("\r\n")
    elif fmt == "jsonl":
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputFileError(f"line {number}: not valid JSON ({exc})") from None
            if not isinstance(record, dict) or field not in record:
                raise InputFileError(f"line {number}: no field {field!r} (choose with --field)")
            yield number, record[field]
    else:
        reader = csv.DictReader(stream)
        name = column or (reader.fieldnames[0] if reader.fieldnames else None)
        if name is None or name not in (reader.fieldnames or []):
            raise InputFileError(
                f"CSV column {name!r} not found; columns are {reader.fieldnames} (--column)"
            )
        for row in reader:
            yield reader.line_num, row[name]
