"""The SQLite table under :class:`~embedsdk.VectorCache`: schema, reads, writes, eviction.

One table of our own, ``vectors(key BLOB PRIMARY KEY, value BLOB)`` in ``vectors.sqlite3``,
in WAL mode: readers never wait for a writer, and several processes may share the file. The
file is marked as ours (``application_id``) with its layout version (``user_version``); a file
with other marks is never written to.

- A read looks up 500 keys at a time (a ``VALUES`` list of them joined with the table), in
  one read transaction, the rows copied straight into the result matrix.
- A write is one ``INSERT OR REPLACE ... executemany`` in one write transaction
  (``BEGIN IMMEDIATE``, waiting a few seconds for another writer). Past the size limit, the
  same transaction deletes the oldest rows: the lowest rowids, as ``INSERT OR REPLACE`` always
  gives a row a new, higher one.
- Connections come from a :class:`Pool`, one per thread using the file at the same moment.

Every function here raises ``sqlite3.Error`` (or ``OSError``) as it comes; turning errors into
misses is the caller's business.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import backoff
import numpy as np
import numpy.typing as npt

DBNAME = "vectors.sqlite3"
#: What embedsdk's diskcache-based cache left in the directory: never read, removed by clear().
LEGACY_FILES = ("cache.db", "cache.db-wal", "cache.db-shm")
APPLICATION_ID = 0x656D6264  # "embd" in the file header: this file is ours
SCHEMA_VERSION = 1  # PRAGMA user_version of the layout below
# SQLite's usual 4 KiB pages. Bigger ones read faster but write much more: every batch
# stored touches as many random pages of the key index as it has vectors, and WAL writes
# whole pages (measured with 100,000 vectors stored: 4.5x the bytes of the vectors written
# with 4 KiB pages, 8.4x with 16 KiB, 20x with 64 KiB; more as the cache grows). They also
# waste room when a page holds few rows. Only a new file takes it.
PAGE_SIZE = 4096
_SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (key BLOB NOT NULL PRIMARY KEY, value BLOB NOT NULL)"
CHUNK = 500  # keys per SELECT: under SQLite's old 999-parameter limit
# Per connection (one per thread using the cache at the same moment). Batches stream through
# once and the OS keeps the file's pages: a bigger page cache reads no faster (measured).
_SQLITE_CACHE_KIB = 2048
# A read maps the file (SQLite clamps this to its maximum, 2 GiB on most builds) for as long
# as its transaction lasts, so that rows are copied straight from the OS's pages instead of
# read() page by page into SQLite's page cache: about a fifth less CPU for a warm read of
# 20,000 vectors (measured). The map is dropped after each read: one kept open saves a little
# more, but every page it touched would stay in the process's RSS (a stream of warm lookups
# over a 400 MB cache grew it by 400 MB; dropped, it stays flat).
_READ_MMAP_BYTES = 2**40
_EVICT_TO = 0.9  # past the size limit, the oldest rows go until this fraction of it is left
_ROW_OVERHEAD = 64  # bytes a row costs beyond its vector (key, index entry, headers): a guess
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB (named in sqlite3 from 3.11 only)


# -- opening ---------------------------------------------------------------------------------------


class NotOurs(sqlite3.DatabaseError):
    """The database file is not a vector cache this version can use."""


#: How :func:`connect` opens the file. ``ro``: read-only, with SQLite's locks, which needs the
#: ``-shm`` file of WAL mode to exist or to be creatable. ``immutable``: read-only without
#: locks, for a read-only directory with no ``-shm`` in it, where SQLite cannot open a WAL
#: database otherwise; :func:`file_state` tells whether the file changed under a read.
MODES = ("rw", "ro", "immutable")
_URI_QUERY = {"ro": "?mode=ro", "immutable": "?mode=ro&immutable=1"}


def connect(
    path: str, timeout: float, patience: float = 0.0, mode: str = "rw"
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), ``timeout`` seconds of
    patience for locks, opened as ``mode`` says (one of :data:`MODES`). Its first statements
    read the schema, so they wait up to ``patience`` seconds instead, for a process that holds
    a new file while making it (see :func:`prepare`). ``check_same_thread=False``: the pool
    lends it to one thread at a time and :meth:`Pool.close` may close it from another."""
    target, uri = path, False
    if mode != "rw":  # a URI, so that no character of the path is taken for a parameter
        target, uri = Path(path).absolute().as_uri() + _URI_QUERY[mode], True
    con = sqlite3.connect(
        target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri
    )
    try:
        with _patience(con, max(timeout, patience)):
            con.execute(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
            if mode == "rw":  # WAL: a power cut may lose the last writes
                con.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        con.close()
        raise
    return con


def prepare(con: sqlite3.Connection, patience: float, writable: bool = True) -> None:
    """Make a new file a vector cache (WAL, the table, our marks), or check an existing one.

    A file of another layout (another program's, or a newer embedsdk's) is left untouched; a
    read-only connection (``writable=False``) only checks. Two processes may do this at once:
    every step waits up to ``patience`` seconds for locks, the first look at the file too (the
    other process may hold it exclusively while it turns a new file into WAL, fsyncs included:
    on a loaded machine longer than a statement's usual timeout), and the table is made inside
    the write lock, by whichever comes first.
    """
    with _patience(con, patience):
        layout, tables = _snapshot(con)
        if layout == (APPLICATION_ID, SCHEMA_VERSION):
            return  # the common case: no write lock taken
        if layout != (0, 0) or tables:
            raise _not_ours(layout)
        if not writable:
            raise sqlite3.OperationalError(f"{DBNAME} is empty, and read-only")
        _make(con, patience)


def _is_locked(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _to_wal(con: sqlite3.Connection, patience: float) -> None:
    """Switch a new file to WAL. The switch needs the file alone, and SQLite refuses it at
    once (no busy wait) while another process reads it, as one making the same new cache
    does: tried again every few milliseconds for up to ``patience`` seconds (backoff)."""

    @backoff.on_exception(
        backoff.constant,
        sqlite3.OperationalError,
        interval=0.01,
        jitter=None,
        max_time=patience,
        giveup=lambda exc: not _is_locked(exc),
        logger=None,
    )
    def switch() -> None:
        con.execute("PRAGMA journal_mode = WAL")

    switch()


def _make(con: sqlite3.Connection, patience: float) -> None:
    """Turn an empty file into a vector cache, unless another process just did."""
    if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        con.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # before the file's first page
        _to_wal(con, patience)
    con.execute("BEGIN IMMEDIATE")
    layout = _layout(con)  # again, now that no one else can be making it
    if layout == (0, 0) and not _tables(con):
        con.execute(_SCHEMA)
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    elif layout != (APPLICATION_ID, SCHEMA_VERSION):
        raise _not_ours(layout)
    con.execute("COMMIT")


def is_corrupt(exc: BaseException) -> bool:
    """Whether ``exc`` says the file is no SQLite database, or a damaged one: it stays so."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in _CORRUPT_CODES
    # Before 3.11: those two, and only those in practice, raise DatabaseError itself
    return type(exc) is sqlite3.DatabaseError


def file_state(path: str) -> tuple[int, int, int] | None:
    """``(inode, size, mtime in ns)`` of the database file at ``path``; ``None`` while a WAL
    file is beside it (someone has it open to write)."""
    if os.path.exists(f"{path}-wal"):
        return None
    found = os.stat(path)
    return found.st_ino, found.st_size, found.st_mtime_ns


def remove(path: str) -> None:
    """Delete the database file at ``path`` with its WAL and shared-memory files."""
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def _not_ours(layout: tuple[int, int]) -> NotOurs:
    return NotOurs(
        f"{DBNAME} is not a vector cache of this version of embedsdk"
        f" (application_id {layout[0]:#x}, user_version {layout[1]})"
    )


def _layout(con: sqlite3.Connection) -> tuple[int, int]:
    app = con.execute("PRAGMA application_id").fetchone()[0]
    version = con.execute("PRAGMA user_version").fetchone()[0]
    return int(app), int(version)


def _snapshot(con: sqlite3.Connection) -> tuple[tuple[int, int], list[str]]:
    """The layout and the tables, read in one transaction: read apart, another process's
    commit of a new cache could fall between them (no layout yet, then its table), and the
    cache it just made would look like another program's file."""
    con.execute("BEGIN")
    try:
        return _layout(con), _tables(con)
    finally:
        con.execute("COMMIT")


def _tables(con: sqlite3.Connection) -> list[str]:
    return [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def is_legacy(path: str) -> bool:
    """Whether ``path`` is the SQLite file of diskcache (``Cache`` and ``Settings`` tables)."""
    try:  # read-only, and as a URI so that no character of the path is taken for a parameter
        con = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        return {"Cache", "Settings"} <= set(_tables(con))
    except sqlite3.Error:
        return False
    finally:
        con.close()


# -- transactions ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _patience(con: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Let the statements inside wait up to ``seconds`` for another connection's lock."""
    usual = con.execute("PRAGMA busy_timeout").fetchone()[0]
    con.execute(f"PRAGMA busy_timeout = {math.ceil(seconds * 1000)}")
    try:
        yield
    finally:
        con.execute(f"PRAGMA busy_timeout = {usual}")


@contextlib.contextmanager
def write_transaction(con: sqlite3.Connection, patience: float) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (the write lock, waiting up to ``patience`` seconds for other
    writers) ... ``COMMIT``. On an error the caller closes the connection, which rolls back."""
    with _patience(con, patience):
        con.execute("BEGIN IMMEDIATE")
    yield
    con.execute("COMMIT")


# -- reading ---------------------------------------------------------------------------------------


#: A multi-row ``VALUES`` joined with the table (:func:`_select`) needs SQLite 3.8.8 or newer,
#: which lifted the 500-term limit of compound SELECTs from ``VALUES``. Older ones (Python 3.9
#: may be built against them) read with ``WHERE key IN (...)`` (:func:`_select_in`).
VALUES_JOIN = sqlite3.sqlite_version_info >= (3, 8, 8)


@functools.lru_cache(maxsize=8)
def _select(count: int) -> str:
    """Rows ``(position in the chunk, value)`` of the keys found, read in the chunk's order.

    The chunk's keys come as the rows of a ``VALUES`` list, which SQLite scans in order,
    looking each one up in the key index: the rows come back in the order of the keys, so a
    warm chunk goes into the matrix in one step, and no temporary index of the keys is built
    (as ``key IN (...)`` does). The order is not promised by SQL: :func:`read` checks it.
    """
    keys = ",".join(f"({i},?)" for i in range(count))
    # typeof: a TEXT value (only a foreign writer could put one there) would not be bytes
    return (
        f"SELECT k.column1, v.value FROM (VALUES {keys}) AS k"
        " JOIN vectors AS v ON v.key = k.column2 WHERE typeof(v.value) = 'blob'"
    )


@functools.lru_cache(maxsize=8)
def _select_in(count: int) -> str:
    marks = ",".join("?" * count)
    return f"SELECT key, value FROM vectors WHERE key IN ({marks}) AND typeof(value) = 'blob'"


def _found(con: sqlite3.Connection, chunk: list[bytes]) -> list[tuple[int, bytes]]:
    """``(position in chunk, value)`` of the keys of ``chunk`` found, in the chunk's order."""
    if VALUES_JOIN:
        return con.execute(_select(len(chunk)), chunk).fetchall()
    found = dict(con.execute(_select_in(len(chunk)), chunk).fetchall())
    return [(i, v) for i, v in enumerate(map(found.get, chunk)) if v is not None]


def row_width(values: Iterable[bytes]) -> int:
    """The byte length most rows share; rows of another length are corrupt or foreign."""
    counts = collections.Counter(len(v) for v in values)
    for width, _ in counts.most_common():
        if width and width % 4 == 0:
            return width
    return 0


def read(
    con: sqlite3.Connection, keys: list[bytes], hit: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32] | None:
    """The ``(len(keys), D)`` matrix of the rows found (``hit`` marks them), or ``None``.

    Rows go straight into the matrix, chunk by chunk: holding every row's bytes at once would
    double the memory and (measured) slow a 20,000-row read.
    """
    matrix: npt.NDArray[np.float32] | None = None
    rows: Any = None  # the matrix seen as one bytes string per row
    width = 0
    con.execute(f"PRAGMA mmap_size = {_READ_MMAP_BYTES}")
    con.execute("BEGIN")  # one snapshot for every chunk
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        found = _found(con, chunk)
        if not found:
            continue
        positions, values = zip(*found)
        if matrix is None:
            width = row_width(values)
            if not width:
                continue
            matrix = np.empty((len(keys), width // 4), dtype="<f4")
            rows = matrix.view(np.dtype((np.bytes_, width)))[:, 0]
        if positions == _ORDER[: len(chunk)] and {*map(len, values)} == {width}:
            # The usual warm chunk: every key found, in order, every row whole. numpy copies
            # each value into its row: one copy, no Python work per row (joining the values
            # first, then copying the joined bytes, measured a fifth slower on the whole read).
            rows[start : start + len(chunk)] = values
            hit[start : start + len(chunk)] = True
        else:
            _place(rows, width, start, found, hit)
    con.execute("COMMIT")
    con.execute("PRAGMA mmap_size = 0")  # unmaps the file (a failed read closes con instead)
    return matrix


def held(con: sqlite3.Connection, keys: list[bytes], hit: npt.NDArray[np.bool_]) -> None:
    """Mark in ``hit`` the keys the table holds, reading no value (a plan that sends
    nothing need not read gigabytes of vectors to count them)."""
    con.execute("BEGIN")
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        marks = ",".join(f"({i},?)" for i in range(len(chunk)))
        found = con.execute(
            f"SELECT k.column1 FROM (VALUES {marks}) AS k JOIN vectors AS v ON v.key = k.column2",
            chunk,
        ).fetchall()
        for (i,) in found:
            hit[start + i] = True
    con.execute("COMMIT")


#: Positions 0, 1, ... of a chunk in order, to compare with those a chunk's rows came with.
_ORDER = tuple(range(CHUNK))


def _place(
    rows: Any,
    width: int,
    start: int,
    found: Iterable[tuple[int, bytes]],
    hit: npt.NDArray[np.bool_],
) -> None:
    """Copy each value found (of the right length) to its row, ``start`` + its position."""
    for position, value in found:
        if len(value) == width:
            rows[start + position] = value
            hit[start + position] = True


# -- writing ---------------------------------------------------------------------------------------


def write(
    con: sqlite3.Connection, rows: list[tuple[bytes, bytes]], limit: int, patience: float
) -> None:
    """Insert or replace ``rows`` (key, value) and evict past ``limit`` bytes, in one write
    transaction that waits up to ``patience`` seconds for the write lock."""
    with write_transaction(con, patience):
        con.executemany("INSERT OR REPLACE INTO vectors (key, value) VALUES (?, ?)", rows)
        per_row = len(rows[0][1]) + _ROW_OVERHEAD
        _evict(con, limit, per_row)


def used_bytes(con: sqlite3.Connection) -> int:
    """Bytes of the database in use (its pages less the free ones), from the file header."""
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _evict(con: sqlite3.Connection, limit: int, per_row: int) -> None:
    """Past ``limit`` bytes, delete the oldest rows until ``_EVICT_TO`` of it is left.

    Each round deletes as many rows as ``per_row`` (an estimate) says should free the excess,
    then measures again, as an estimate too low (pages shared with rows that stay) only
    leaves some of it.
    """
    used = used_bytes(con)
    if used <= limit:
        return
    target = int(limit * _EVICT_TO)
    while used > target:
        count = math.ceil((used - target) / per_row)
        deleted = con.execute(
            "DELETE FROM vectors WHERE rowid IN (SELECT rowid FROM vectors ORDER BY rowid LIMIT ?)",
            (count,),
        ).rowcount
        if deleted < count:  # the table is empty: nothing more to free
            return
        used = used_bytes(con)


# -- connections -----------------------------------------------------------------------------------


class Pool:
    """Connections to one database file, each lent to one thread at a time.

    A connection comes back to the pool only after a clean use: one whose statement failed may
    hold a transaction open (a stale snapshot, or the write lock), so it is closed instead.
    :meth:`close` closes the idle connections at once and each one in use as its thread gives
    it back, so that none is left to the garbage collector (Python 3.13 warns, gh-105539) and
    none is closed under a running statement. A forked child closes its parent's. An
    ``immutable`` connection (``mode``, see :data:`MODES`) serves one use only: its page cache
    would keep pages of a file that changed since, unseen.
    """

    __slots__ = (
        "_closed",
        "_idle",
        "_in_use",
        "_lock",
        "_path",
        "_patience",
        "_pid",
        "_timeout",
        "mode",
    )

    def __init__(self, path: str, timeout: float, patience: float = 0.0, mode: str = "rw") -> None:
        self._path = path
        self._timeout = timeout  # seconds a statement waits for a lock
        self._patience = patience  # seconds a new connection waits to read the schema
        self.mode = mode
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._in_use: set[sqlite3.Connection] = set()
        self._pid = os.getpid()
        self._closed = False

    @contextlib.contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        con = self._take()
        try:
            yield con
        except BaseException:
            self._give_back(con, reuse=False)
            raise
        self._give_back(con, reuse=True)

    def _take(self) -> sqlite3.Connection:
        with self._lock:
            self._check_open()
            if self._idle:
                con = self._idle.pop()
                self._in_use.add(con)
                return con
        # Outside the lock: a new connection may wait for another process's lock, and the
        # other threads keep the idle connections meanwhile.
        con = connect(self._path, self._timeout, self._patience, self.mode)
        with self._lock:
            if self._closed:
                _close(con)
                self._check_open()
            self._in_use.add(con)
        return con

    def _check_open(self) -> None:
        self._after_fork()
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    def _give_back(self, con: sqlite3.Connection, reuse: bool) -> None:
        with self._lock:
            if con in self._in_use:
                self._in_use.discard(con)
                if reuse and not self._closed and self.mode != "immutable":
                    self._idle.append(con)
                    return
        _close(con)

    def _after_fork(self) -> None:
        if self._pid != os.getpid():  # the parent's connections are not ours to use
            self._pid = os.getpid()
            cons, self._idle, self._in_use = [*self._idle, *self._in_use], [], set()
            for con in cons:
                _close(con)

    def close(self) -> None:
        """Close every connection (those in use when given back); later uses raise
        ``sqlite3.ProgrammingError``."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for con in idle:
            _close(con)


def _close(con: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        con.close()  # rolls back an open transaction
