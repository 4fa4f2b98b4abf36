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
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .._exceptions import EmbedSDKError

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


def _open(path: str) -> Iterator[bytes]:
    """The lines of ``path`` as bytes, each with its ``\\n``; closed when exhausted or closed."""
    if path == STDIN:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # replaced by an object without one
            return (line for line in sys.stdin.buffer)  # closing this keeps stdin open
        return _fd_lines(fd)
    check_input(path)
    return _file_lines(path)


def _file_lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from f


def _fd_lines(fd: int) -> Iterator[bytes]:
    """The lines of a file descriptor (standard input), read with ``os.read``.

    Not ``sys.stdin.buffer``: the texts are read on a daemon thread, and a thread blocked in a
    buffered reader holds that reader's lock. If Ctrl-C ends the program meanwhile, the
    interpreter's shutdown cannot take the lock and aborts ("Fatal Python error:
    _enter_buffered_busy", exit 134). ``os.read`` holds no lock while it waits. The descriptor
    is not ours to close.
    """
    parts: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                parts.append(chunk[start:])
                break
            parts.append(chunk[start : end + 1])
            yield b"".join(parts)
            parts = []
            start = end + 1
    tail = b"".join(parts)
    if tail:
        yield tail


def _lines(stream: Iterable[bytes], path: str) -> Iterator[tuple[int, str]]:
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
        return None  # a pipe can be read once only: by read_rows
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


class Row(NamedTuple):
    """One text of an input file, with where it came from."""

    #: The line of the file (for a CSV record over several lines, its last line, as in errors).
    line: int
    text: str
    #: The value of ``id_field`` (a ``str`` or an ``int``), else the line number.
    id: str | int


def read_rows(
    path: str,
    fmt: str | None = None,
    *,
    field: str = "text",
    column: str | None = None,
    id_field: str | None = None,
    skip_empty: bool = False,
    numbers: LineNumbers | None = None,
) -> Iterator[Row]:
    """Yield the texts of ``path`` (``-`` for stdin) one :class:`Row` at a time, naming bad lines.

    Lazy: nothing is opened before the first ``next()``, and only one line is held at a time.
    ``numbers``, when given, records the line of every text yielded (for later errors) and
    counts the empty texts left out. ``id_field`` (JSONL or CSV) names the field or column
    whose value becomes each row's ``id``; every value must be a string or every one an
    integer.
    """
    fmt = detect_format(path, fmt)
    if id_field is not None and fmt == "lines":
        raise InputFileError("an id field needs JSONL or CSV input, not one text a line")
    stream = _open(path)
    ids = _IdCheck(id_field)
    seen = 0
    try:
        for number, text, ident in _rows(_lines(stream, path), fmt, field, column, id_field, path):
            where = f"{_name(path)}, line {number}" if id_field is not None else ""
            if isinstance(text, str) and text.strip():  # the usual case: no message to build
                checked: str | None = text
            else:
                checked = _check(text, f"{_name(path)}, line {number}", skip_empty)
            if checked is None:
                if numbers is not None:
                    numbers.skipped += 1
                continue
            if numbers is not None:
                numbers.add(seen, number)
            seen += 1
            yield Row(number, checked, number if id_field is None else ids.check(ident, where))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    if seen == 0:
        raise InputFileError(f"no texts in {_name(path)}")


class _IdCheck:
    """Each id is a ``str`` or an ``int`` (a column needs one type), of the first id's type."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.kind: type | None = None

    def check(self, value: object, where: str) -> str | int:
        ok = isinstance(value, str) or (
            isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        )
        if not ok:
            raise InputFileError(
                f"{where}: the id {self.name!r} must be a string or a 64-bit integer, got "
                f"{value!r:.40}"
            )
        assert isinstance(value, (str, int))
        if isinstance(value, str) and not _is_unicode(value):
            raise InputFileError(
                f"{where}: the id {self.name!r} is not valid Unicode (a lone surrogate)"
            )
        if self.kind is None:
            self.kind = type(value)
        elif type(value) is not self.kind:
            raise InputFileError(
                f"{where}: the id {self.name!r} is {type(value).__name__} {value!r:.40}, "
                f"but the ids before it are {self.kind.__name__}"
            )
        return value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a "\\ud800" escape in JSON decodes to a lone surrogate
        return False
    return True


def _rows(
    lines: Iterator[tuple[int, str]],
    fmt: str,
    field: str,
    column: str | None,
    id_field: str | None,
    path: str,
) -> Iterator[tuple[int, object, object]]:
    """``(line number, text, id)``; the text may still be of the wrong type or empty, the id
    is None without ``id_field``."""
    if fmt == "lines":
        for number, line in lines:
            yield number, line.rstrip("\r\n"), None
    elif fmt == "jsonl":
        for number, line in lines:
            if line.strip():
                where = f"{_name(path)}, line {number}"
                record = _json_record(line, where)
                text = _json_field(record, field, where, "--field")
                ident = (
                    None if id_field is None else _json_field(record, id_field, where, "--id-field")
                )
                yield number, text, ident
    else:
        yield from _csv_rows((line for _, line in lines), column, id_field, path)


def _json_record(line: str, where: str) -> dict[str, object]:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InputFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def _json_field(record: dict[str, object], field: str, where: str, flag: str) -> object:
    if field not in record:
        fields = ", ".join(map(repr, list(record)[:10]))
        raise InputFileError(f"{where}: no field {field!r} (it has {fields}; choose with {flag})")
    return record[field]


def _csv_column(names: list[str], column: str | None, flag: str, path: str) -> str:
    """The column ``column`` names, else ``text``; refused, listing the columns, if absent.

    Never the first column by default: in ``id,content`` that is the ids, and embedding them
    would succeed silently.
    """
    name = "text" if column is None else column
    if name not in names:
        found = "no CSV column named 'text'" if column is None else f"CSV column {name!r} not found"
        raise InputFileError(
            f"{_name(path)}: {found}; the columns are {', '.join(map(repr, names))} "
            f"(choose with {flag})"
        )
    return name


class _Ended:
    """The lines of a file, noting when the last one has been taken.

    csv reads a quote still open at the end of the file as a field that runs to the end
    (``strict=True`` would refuse it, but also refuses ``"a"b``, which csv and pandas both
    read as ``ab``). A record that made the reader ask past the last line is such a field:
    every other record ends on a line end, or with the last line itself.
    """

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.ended = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            self.ended = True
            raise


def _quote_left_open(path: str, line: int) -> InputFileError:
    return InputFileError(
        f"{_name(path)}, line {line}: a quote opened here is never closed, so every line after "
        'it would be one text (a CSV field that holds a " is quoted and its quotes doubled: '
        '"say ""hi""")'
    )


def _csv_rows(
    lines: Iterator[str], column: str | None, id_field: str | None, path: str
) -> Iterator[tuple[int, object, object]]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    source = _Ended(lines)
    reader = csv.reader(source, delimiter="\t" if path.lower().endswith(".tsv") else ",")
    try:
        names = next(reader, [])
        if source.ended and names:
            raise _quote_left_open(path, 1)
        name = _csv_column(names, column, "--column", path)
        ident = None if id_field is None else _csv_column(names, id_field, "--id-field", path)
        # As csv.DictReader: a name given twice is the last column of that name.
        at = {field: index for index, field in enumerate(names)}
        while True:
            start = reader.line_num + 1  # the first line of the next record
            row = next(reader, None)
            if row is None:
                return
            if source.ended:
                raise _quote_left_open(path, start)
            if row:  # a blank line is no record
                yield _csv_values(row, at, name, ident, path, reader.line_num)
    except csv.Error as exc:
        raise InputFileError(f"{_name(path)}, line {reader.line_num}: bad CSV ({exc})") from None


def _csv_values(
    row: list[str], at: dict[str, int], name: str, ident: str | None, path: str, line: int
) -> tuple[int, object, object]:
    """``(line, text, id)`` of one record; a record too short to reach either is refused."""
    for column in (name, ident):
        if column is not None and at[column] >= len(row):
            raise InputFileError(f"{_name(path)}, line {line}: no value in column {column!r}")
    return line, row[at[name]], None if ident is None else row[at[ident]]


class LineNumbers:
    """The line each text of :func:`read_rows` came from, to name it in a later error.

    Only the places where ``line - index`` changes are kept (skipped lines, blank JSONL lines,
    the CSV header, multi-line CSV records), as 8-byte integers: nothing for a plain file.
    """

    def __init__(self) -> None:
        #: Empty texts left out (``skip_empty``).
        self.skipped = 0
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
