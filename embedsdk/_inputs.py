"""Reading texts lazily from files for the command line: lines, JSONL and CSV.

Errors are :class:`InputFileError` with a message that names the file and the line, so the
command line can print it as it is.
"""

from __future__ import annotations

import array
import bisect
import codecs
import csv
import json
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO

from ._exceptions import EmbedSDKError

FORMATS = ("lines", "jsonl", "csv")
STDIN = "-"
# csv's default limit is 131,072 characters per field; lines and JSONL take any length (and
# --truncate cuts what is too long), so CSV should too.
_CSV_FIELD_LIMIT = 2**31 - 1


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
    # Only a regular file has a size: a named pipe (<(cmd), mkfifo) reports 0 yet has texts.
    if _is_regular(path) and os.path.getsize(path) == 0:
        raise InputFileError(f"input file is empty: {path}")


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _open(path: str) -> IO[bytes]:
    if path == STDIN:
        return sys.stdin.buffer
    check_input(path)
    return open(path, "rb")


def _lines(stream: IO[bytes], path: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)``, split on ``\\n`` only and decoded one line at a time.

    Splitting the bytes (not text mode, which also splits on a lone ``\\r``) keeps the count
    equal to ``wc -l`` and to :func:`count_rows`; decoding per line lets bad UTF-8 name its line.
    """
    for number, raw in enumerate(stream, 1):
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]  # a byte-order mark is not part of the first text
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFileError(
                f"{_name(path)}, line {number} is not UTF-8 text (byte {exc.start + 1} of the line)"
            ) from None


def count_rows(path: str, fmt: str) -> int | None:
    """How many texts a file holds at most (one fast pass, for the progress bar's total).

    ``None`` for standard input or a file that cannot be read (reading it fails later, with a
    better message).
    """
    if path == STDIN or not _is_regular(path):
        return None  # a pipe can be read once only: by read_texts
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
    numbers: LineNumbers | None = None,
) -> Iterator[str]:
    """Yield the texts of ``path`` (``-`` for stdin) one at a time, naming bad lines.

    Lazy: nothing is opened before the first ``next()``, and only one line is held at a time.
    ``numbers``, when given, records the line of every text yielded (for later errors).
    """
    fmt = detect_format(path, fmt)
    stream = _open(path)
    seen = 0
    try:
        for number, text in _rows(_lines(stream, path), fmt, field, column, path):
            checked = _check(text, f"{_name(path)}, line {number}", skip_empty)
            if checked is not None:
                if numbers is not None:
                    numbers.add(seen, number)
                seen += 1
                yield checked
    finally:
        if path != STDIN:  # sys.stdin's buffer is not ours to close
            stream.close()
    if seen == 0:
        raise InputFileError(f"no texts in {_name(path)}")


def _rows(
    lines: Iterator[tuple[int, str]], fmt: str, field: str, column: str | None, path: str
) -> Iterator[tuple[int, object]]:
    """``(line number, text)`` pairs; the text may still be of the wrong type or empty."""
    if fmt == "lines":
        for number, line in lines:
            yield number, line.rstrip("\r\n")
    elif fmt == "jsonl":
        for number, line in lines:
            if line.strip():
                yield number, _json_field(line, field, f"{_name(path)}, line {number}")
    else:
        yield from _csv_rows((line for _, line in lines), column, path)


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


def _csv_rows(lines: Iterator[str], column: str | None, path: str) -> Iterator[tuple[int, object]]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.DictReader(lines, delimiter="\t" if path.lower().endswith(".tsv") else ",")
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


class LineNumbers:
    """The line each text of :func:`read_texts` came from, to name it in a later error.

    Only the places where ``line - index`` changes are kept (skipped lines, blank JSONL lines,
    the CSV header, multi-line CSV records), as 8-byte integers: nothing for a plain file.
    """

    def __init__(self) -> None:
        self._starts = array.array("q")  # text index where an offset begins
        self._offsets = array.array("q")  # line number minus text index from there on

    def add(self, index: int, line: int) -> None:
        offset = line - index
        if not self._offsets or self._offsets[-1] != offset:
            self._starts.append(index)
            self._offsets.append(offset)

    def line(self, index: int) -> int | None:
        """The line of text ``index``, or ``None`` if no such text was read."""
        i = bisect.bisect_right(self._starts, index) - 1
        return None if i < 0 else index + self._offsets[i]
