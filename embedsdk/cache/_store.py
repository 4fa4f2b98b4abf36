"""The disk cache: vectors found by a hash of what made them, stored as float32 bytes.

>>> cache = open_cache(True)  # doctest: +SKIP
>>> ns = VectorCache.namespace("https://api.siliconflow.cn/v1/embeddings", "BAAI/bge-m3", None)
>>> cache.set_many(ns, ["hello"], vectors)  # doctest: +SKIP
>>> matrix, hit = cache.get_many(ns, ["hello", "new"])  # doctest: +SKIP
>>> hit  # doctest: +SKIP
array([ True, False])

A key is ``blake2b(namespace + text)``, the namespace a digest of everything that changes the
vector: a format version, the endpoint (without query or credentials), the model and the
dimensions. Neither the text nor any credential is stored. A value is the vector as
little-endian float32 bytes in a BLOB: nothing is ever pickled, nor unpickled.

The store is one SQLite table of our own, ``vectors(key, value)`` in ``vectors.sqlite3`` (see
:mod:`embedsdk.cache._sqlite`): a lookup reads 500 keys a statement, all in one read
transaction, a write one ``executemany`` in one write transaction, which also evicts the
oldest rows past the size limit. The cache used to be a diskcache ``Cache``; diskcache is no
longer used, nor a dependency. Its public API reads one key per transaction (a warm read of
20,000 vectors several times slower than ``SELECT ... IN``), so the fast path had to run SQL
against diskcache's private table and replace its connection handling: a table of our own is
less code than that, and owes nothing to another library's internals. The old layout's
``cache.db`` is never read (those vectors are fetched again when needed); :meth:`clear`
deletes it.

The cache fails soft: a cache that cannot be opened, a locked, full or corrupt database turn
into misses and skipped writes, with one ``RuntimeWarning`` per cache (and a log record on the
``embedsdk`` logger, when a handler takes it), which names the remedy when there is one. A
read-only directory or database file is read, and no write is tried (it says so once). Its
methods block on disk I/O: call them from worker threads, not from the event loop. Several
threads and processes may share one directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt

from . import _sqlite as db

__all__ = ["VectorCache", "cache_disabled_by_env", "default_cache_dir", "open_cache"]

logger = logging.getLogger("embedsdk")

Vectors = npt.NDArray[np.float32]

#: Bump when the key or the value layout changes: old entries then simply stop matching.
FORMAT_VERSION = "v1"
DEFAULT_SIZE_LIMIT = 2**34  # bytes (16 GiB); past it the oldest vectors are evicted
_OFF = frozenset({"0", "false", "no", "off"})
# Seconds a write waits for another writer before it is skipped, and opening waits for
# another process making the file.
_WRITE_PATIENCE = 5.0
_WRITE_COOLDOWN = 30.0  # seconds writes are skipped after one failed, so none waits again
_ERRORS = (sqlite3.Error, OSError)

#: The clock of the write cooldown (seconds); tests replace it.
_clock = time.monotonic


def default_cache_dir() -> Path:
    """``$EMBEDSDK_CACHE_DIR``, else ``$XDG_CACHE_HOME/embedsdk``, else ``~/.cache/embedsdk``."""
    explicit = os.environ.get("EMBEDSDK_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec says to ignore a relative path
        return Path(xdg) / "embedsdk"
    return Path.home() / ".cache" / "embedsdk"


def cache_disabled_by_env() -> bool:
    """Whether ``EMBEDSDK_CACHE`` turns the default cache off (0, false, no or off)."""
    return os.environ.get("EMBEDSDK_CACHE", "").strip().lower() in _OFF


def open_cache(spec: bool | str | os.PathLike[str] | VectorCache | None) -> VectorCache | None:
    """Turn the ``cache=`` option into a cache, or ``None`` for no cache.

    ``False``/``None``: no cache. ``True``: the :func:`default_cache_dir`, unless the
    environment says ``EMBEDSDK_CACHE=0`` (or false/no/off). A ``str`` or path: that directory.
    A :class:`VectorCache`: itself. A directory that cannot be used gives a disabled cache (it
    warns once and always misses), never an exception.
    """
    if spec is None or spec is False:
        return None
    if isinstance(spec, VectorCache):
        return spec
    if spec is True:
        if cache_disabled_by_env():
            return None
        try:
            directory = default_cache_dir()
        except (RuntimeError, KeyError) as exc:  # no home directory (some containers)
            return VectorCache._disabled(Path("~/.cache/embedsdk"), exc)
        return VectorCache(directory)
    if isinstance(spec, (str, os.PathLike)):
        return VectorCache(spec)
    raise TypeError(
        "cache must be True, False, None, a directory (str or os.PathLike) or a VectorCache,"
        f" not {type(spec).__name__}"
    )


# -- keys --------------------------------------------------------------------------------------


def normalise_endpoint(endpoint: str) -> str:
    """``scheme://host[:port]/path``: lower-case, no credentials, query, fragment or end slash."""
    parts = urlsplit(endpoint.strip())
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2].lower()  # drops "user:password@"
    default_port = {"https": ":443", "http": ":80"}.get(scheme)
    if default_port and host.endswith(default_port):
        host = host[: -len(default_port)]
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def _canonical(endpoint: str, model: str, dimensions: int | None) -> str:
    """The text the namespace digests; JSON so that no two inputs give the same text."""
    dims = "" if dimensions is None else str(dimensions)
    return json.dumps([FORMAT_VERSION, normalise_endpoint(endpoint), model, dims])


def cache_keys(namespace: bytes, texts: Iterable[str]) -> list[bytes]:
    """The 20-byte key of each text: ``blake2b(namespace + UTF-8 of the text)``.

    The namespace is hashed once and that state copied for each text: the same digests as
    hashing the concatenation, without building it or parsing ``digest_size`` per text (a
    fifth less time on a warm read of 20,000 texts, where the keys are an eighth of it).
    """
    seeded = hashlib.blake2b(namespace, digest_size=20)
    keys: list[bytes] = []
    for text in texts:
        state = seeded.copy()
        # surrogatepass: same bytes as plain UTF-8 for every valid text, and no crash on the rest
        state.update(text.encode("utf-8", "surrogatepass"))
        keys.append(state.digest())
    return keys


class FileInTheWay(NotADirectoryError):
    """A file stands where the cache directory, or one of its parents, should be."""


def file_in_the_way(path: Path) -> Path | None:
    """The file at ``path`` or at the nearest of its parents that exists, if that is no
    directory (the cache cannot be made there); checked without creating anything."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


class ReadOnly(PermissionError):
    """The cache directory, or its database file, cannot be written."""


def _writable(directory: Path, database: Path) -> bool:
    """Whether the cache may write its directory and database file. The kernel answers (a
    read-only mount or an immutable file says no even to root); SQLite would not say so,
    but "unable to open database file" as it fails to make the WAL's ``-shm`` file."""
    if not os.access(directory, os.W_OK):
        return False
    return not database.exists() or os.access(database, os.W_OK)


def _reason(exc: BaseException) -> str:
    """What went wrong, on one line: our own messages as they are, others with their type."""
    if isinstance(exc, (FileInTheWay, ReadOnly, db.NotOurs)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _make_private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only; leave an existing directory as it is."""
    if path.is_dir():
        return
    in_the_way = file_in_the_way(path)
    if in_the_way is not None:  # mkdir would say "File exists", naming neither path nor cure
        raise FileInTheWay(f"{in_the_way} is a file, not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return  # another process made it first
    os.chmod(path, 0o700)  # mkdir's mode passes through the umask


# -- the cache ---------------------------------------------------------------------------------


class VectorCache:
    """Vectors on disk, keyed by endpoint, model, dimensions and text; safe to share.

    ``directory`` is created owner-only (mode 0o700). ``size_limit`` is in bytes of database
    (the oldest vectors go first past it); ``timeout`` is how long, in seconds, one SQLite
    statement waits for a lock. Usable as a context manager; after :meth:`close` every lookup
    misses.
    """

    __slots__ = (
        "_closed",
        "_directory",
        "_lock",
        "_pool",
        "_problem",
        "_read_only",
        "_size_limit",
        "_timeout",
        "_unreadable",
        "_warned",
        "_write_pause",
    )
    _closed: bool
    _directory: Path
    _lock: threading.Lock
    _pool: db.Pool | None
    _problem: str | None  # why it could not be opened, or is read-only, with the remedy
    _read_only: bool  # the directory or the database file cannot be written
    _timeout: float
    _unreadable: bool  # the database file is corrupt: clear() makes a new one
    _size_limit: int
    _warned: bool
    _write_pause: float  # _clock() until which writes are skipped

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        timeout: float = 0.5,
    ) -> None:
        path = os.fsdecode(os.fspath(directory))
        if not path:
            raise ValueError("the cache directory must not be empty")
        if isinstance(size_limit, bool) or not isinstance(size_limit, int) or size_limit < 1:
            raise ValueError(f"size_limit must be a positive number of bytes, got {size_limit!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        self._reset_state(Path(os.path.expanduser(path)))
        self._size_limit = size_limit
        self._timeout = float(timeout)
        self._open()

    def _open(self) -> None:
        """Open the database (making it if need be), or disable the cache saying why."""
        try:
            _make_private_dir(self._directory)
            if _writable(self._directory, self._database):
                self._pool = self._pool_for("rw")
            else:
                self._pool = self._open_read_only()
        except Exception as exc:  # whatever stops the cache from opening only disables it
            self._close_quietly()
            self._problem = f"{_reason(exc)}{self._remedy(exc)}"
            self._fail("opening it", exc)

    def _open_read_only(self) -> db.Pool:
        """Read what the database holds; store nothing (:meth:`set_many` says so once).

        SQLite opens a WAL database read-only (``mode=ro``) only where its ``-shm`` file
        exists or can be made: in a read-only directory after every writer closed, it cannot
        ("unable to open database file"). Then only as immutable, without locks, each read
        checked against a change of the file (:meth:`_read_unlocked`).
        """
        where = "the directory" if not os.access(self._directory, os.W_OK) else db.DBNAME
        if not self._database.is_file():
            raise ReadOnly(f"{where} is read-only, and holds no cache yet")
        self._read_only = True
        self._problem = f"{where} is read-only: the vectors in it are used, new ones are not stored"
        try:
            return self._pool_for("ro")
        except sqlite3.OperationalError as exc:
            logger.debug("%s read-only with locks: %s; as immutable", self._database, exc)
        return self._pool_for("immutable")

    def _pool_for(self, mode: str) -> db.Pool:
        """Connections of ``mode`` (see :data:`db.MODES`) to a database checked to be ours."""
        pool = db.Pool(str(self._database), self._timeout, _WRITE_PATIENCE, mode)
        try:
            with pool.use() as con:
                db.prepare(con, _WRITE_PATIENCE, writable=mode == "rw")
        except BaseException:
            pool.close()
            raise
        return pool

    @classmethod
    def _quiet(cls, directory: Path) -> VectorCache:
        """Opened without a warning if it cannot be: for ``embedsdk cache``, which shows
        :attr:`problem` itself. (Failures after the opening warn as usual.)"""
        self = cls.__new__(cls)
        self._reset_state(directory)
        self._warned = True
        self._open()
        self._warned = self._pool is None
        return self

    @classmethod
    def _disabled(cls, directory: Path, exc: BaseException) -> VectorCache:
        """A cache that always misses, for when not even its directory can be named."""
        self = cls.__new__(cls)
        self._reset_state(directory)
        self._problem = _reason(exc)
        self._fail("opening it", exc)
        return self

    def _reset_state(self, directory: Path) -> None:
        self._directory = directory
        self._pool = None
        self._closed = False
        self._lock = threading.Lock()
        self._size_limit = DEFAULT_SIZE_LIMIT
        self._timeout = 0.5
        self._problem = None
        self._read_only = False
        self._unreadable = False
        self._warned = False
        self._write_pause = -math.inf

    @property
    def _database(self) -> Path:
        return self._directory / db.DBNAME

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        """Whether ``directory`` holds a cache database, of this layout or of the old one
        (which :meth:`clear` deletes); checked without creating anything."""
        folder = os.path.expanduser(os.fspath(directory))
        return any(os.path.isfile(os.path.join(folder, n)) for n in (db.DBNAME, db.LEGACY_FILES[0]))

    # -- keys ------------------------------------------------------------------------------

    @staticmethod
    def namespace(endpoint: str, model: str, dimensions: int | None) -> bytes:
        """16 bytes naming one kind of vector: format version, endpoint, model, dimensions.

        The endpoint loses its query, credentials and trailing slash, so an API key passed in
        a URL never reaches the key. Pass it to :meth:`get_many` and :meth:`set_many`.
        """
        return hashlib.blake2b(
            _canonical(endpoint, model, dimensions).encode(), digest_size=16
        ).digest()

    # -- reading and writing ---------------------------------------------------------------

    def get_many(
        self, namespace: bytes, texts: Sequence[str]
    ) -> tuple[Vectors | None, npt.NDArray[np.bool_]]:
        """Look ``texts`` up in one read transaction.

        Returns ``(matrix, hit)``: ``hit`` is a boolean array, one per text; ``matrix`` is a
        ``(len(texts), D)`` float32 array whose rows are the vectors where ``hit`` is true and
        garbage elsewhere, or ``None`` when nothing was found. Errors count as misses.
        """
        hit = np.zeros(len(texts), dtype=bool)
        pool = self._pool
        if pool is None or len(texts) == 0:
            return None, hit
        keys = cache_keys(namespace, texts)
        try:
            if pool.mode == "immutable":
                matrix: Vectors | None = self._read_unlocked(pool, keys, hit)
            else:
                with pool.use() as con:
                    matrix = db.read(con, keys, hit)
        except _ERRORS as exc:
            self._fail("reading", exc)
            return None, np.zeros(len(texts), dtype=bool)
        if matrix is not None and sys.byteorder != "little":
            matrix = matrix.astype(np.float32)
        return matrix, hit

    def contains_many(self, namespace: bytes, texts: Sequence[str]) -> npt.NDArray[np.bool_]:
        """Which of ``texts`` the cache holds, one bool each, without reading their vectors
        (for a plan: ``embedsdk embed --dry-run``). Errors count as misses."""
        hit = np.zeros(len(texts), dtype=bool)
        pool = self._pool
        if pool is None or len(texts) == 0:
            return hit
        keys = cache_keys(namespace, texts)
        try:
            if pool.mode == "immutable":
                self._read_unlocked(pool, keys, hit, db.held)
            else:
                with pool.use() as con:
                    db.held(con, keys, hit)
        except _ERRORS as exc:
            self._fail("reading", exc)
            hit[:] = False
        return hit

    def _read_unlocked(
        self,
        pool: db.Pool,
        keys: list[bytes],
        hit: npt.NDArray[np.bool_],
        reader: Callable[..., Vectors | None] | None = None,
    ) -> Vectors | None:
        """:func:`db.read` on an immutable connection, which takes no lock: whoever may still
        write the file (its owner, root) could change it under the read. So the read counts
        only if the file is the same before and after it (from the new connection's first
        look at it: none keeps pages of an older file), with no WAL beside it (someone is
        writing); else every text misses, an error too."""
        path = str(self._database)
        before = db.file_state(path)
        matrix = None
        try:
            if before is not None:
                with pool.use() as con:
                    matrix = (reader or db.read)(con, keys, hit)
        except sqlite3.DatabaseError:
            if db.file_state(path) == before:
                raise  # the file did not change: it is what it is
        if before is None or db.file_state(path) != before:
            logger.debug("%s changed while read without locks: misses", path)
            hit[:] = False
            return None
        return matrix

    def set_many(self, namespace: bytes, texts: Sequence[str], matrix: Any) -> None:
        """Store row ``i`` of ``matrix`` (shape ``(len(texts), D)``) for ``texts[i]``.

        All rows go in one transaction. An error skips the write, and the writes of the next
        30 seconds too, so that no call waits on a stuck lock again.
        """
        rows = np.ascontiguousarray(matrix, dtype="<f4")
        if rows.ndim != 2 or rows.shape[0] != len(texts):
            raise ValueError(
                f"set_many needs one row per text: {len(texts)} texts, matrix {rows.shape}"
            )
        pool = self._pool
        if pool is None or len(texts) == 0 or _clock() < self._write_pause:
            return
        if self._read_only:
            self._warn(f"{self._problem} (make it writable to store them)")
            return
        items = list(zip(cache_keys(namespace, texts), (row.tobytes() for row in rows)))
        try:
            with pool.use() as con:
                db.write(con, items, self._size_limit, _WRITE_PATIENCE)
        except _ERRORS as exc:
            self._write_pause = _clock() + _WRITE_COOLDOWN
            self._fail("writing", exc)

    # -- failing soft ----------------------------------------------------------------------

    def _fail(self, action: str, exc: BaseException) -> None:
        """Say that ``action`` failed and the cache is skipped (see :meth:`_warn`), and how
        to mend it when we know how."""
        if self._closed:
            return
        self._unreadable = self._unreadable or db.is_corrupt(exc)
        remedy = self._remedy(exc)
        self._warn(f"{action} failed ({_reason(exc)}); going on without the cache{remedy}")

    def _remedy(self, exc: BaseException) -> str:
        """What the user can do about ``exc`` (starting with "; "), or "" when it is no
        fault of the file (a lock, a full disk: it passes)."""
        database = self._database
        if db.is_corrupt(exc):  # it stays so: every run would pay for everything again
            command = f"embedsdk cache clear --dir {shlex.quote(str(self._directory))}"
            return f"; to start an empty one, run `{command}` or delete {database}"
        if isinstance(exc, db.NotOurs):
            return f"; use another directory, or delete {database} if nothing needs it"
        return ""

    def _warn(self, what: str) -> None:
        """Warn once per cache, then only log at DEBUG.

        The warning is a ``RuntimeWarning``, and a WARNING record on the ``embedsdk`` logger
        when a handler takes it (the CLI's, or one the application set up). With no handler
        anywhere, logging's last resort would print the record too, next to the warning: the
        same line twice.
        """
        with self._lock:
            first, self._warned = not self._warned, True
        message = f"embedsdk cache at {self._directory}: {what}"
        if not first:
            logger.debug("%s", message)
            return
        if logger.hasHandlers():
            logger.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)  # in embedsdk: the CLI drops it

    # -- housekeeping ----------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def enabled(self) -> bool:
        """False when the cache could not be opened, or is closed: then every lookup misses."""
        return self._pool is not None

    @property
    def problem(self) -> str | None:
        """Why the cache could not be opened, or is read-only, and the remedy when there is
        one; else None."""
        return self._problem

    @property
    def read_only(self) -> bool:
        """True when its directory or database file cannot be written: the vectors in it are
        served, new ones are not stored."""
        return self._read_only

    def info(self) -> dict[str, Any]:
        """``directory``, ``size_bytes`` (of the database in use), ``vectors`` and ``enabled``."""
        size = count = 0
        if self._pool is not None:
            try:
                with self._pool.use() as con:
                    size = db.used_bytes(con)
                    count = con.execute("SELECT count(*) FROM vectors").fetchone()[0]
            except _ERRORS as exc:
                self._fail("reading its size", exc)
        return {
            "directory": str(self._directory),
            "size_bytes": size,
            "vectors": count,
            "enabled": self._pool is not None,
        }

    def __len__(self) -> int:
        return int(self.info()["vectors"])

    def checkpoint(self) -> bool:
        """Make every vector written so far survive a power loss: the write-ahead log is
        copied into the database file, which is synced (writes are otherwise synced at each
        checkpoint only, which a cache can afford and a batch job's store cannot). Whether
        it succeeded."""
        if self._pool is None or self._read_only:
            return False
        try:
            with self._pool.use() as con:
                busy, _, _ = con.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        except _ERRORS as exc:
            self._fail("writing to disk", exc)
            return False
        return not busy

    def clear(self) -> int:
        """Remove every vector and give the disk space back; returns how many were removed.

        A database file that cannot be read (corrupt) is deleted, and an empty one made. The
        files of the old diskcache-based layout (``cache.db``) go too.
        """
        removed = 0
        if self._read_only:
            self._fail("clearing it", ReadOnly(self._problem or "read-only"))
            return 0
        if self._pool is not None:
            try:
                removed = self._delete_rows(self._pool)
            except _ERRORS as exc:
                self._fail("clearing it", exc)
                if not self._unreadable:
                    return 0
        if self._unreadable and not self._closed:
            self._start_afresh()
        self._remove_legacy()
        return removed

    def _delete_rows(self, pool: db.Pool) -> int:
        with pool.use() as con:
            with db.write_transaction(con, _WRITE_PATIENCE):
                removed = con.execute("DELETE FROM vectors").rowcount
            self._vacuum(con)
        return int(removed)

    def _start_afresh(self) -> None:
        """Delete the unreadable database file, then open (so make) a new one."""
        self._close_quietly()
        try:
            db.remove(str(self._database))
        except OSError as exc:
            self._problem = f"{_reason(exc)}{self._remedy(exc)}"
            self._fail("deleting its unreadable file", exc)
            return
        self._unreadable, self._problem = False, None
        logger.info("deleted %s, which could not be read; the cache is empty now", self._database)
        self._open()

    def _vacuum(self, con: sqlite3.Connection) -> None:
        # SQLite keeps freed pages for reuse: without VACUUM the file would not shrink.
        # Another process using the cache makes it fail ("locked"); the pages then wait.
        try:
            con.execute("VACUUM")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            logger.debug("VACUUM after clearing %s skipped: %s", self._directory, exc)

    def _remove_legacy(self) -> None:
        old = self._directory / db.LEGACY_FILES[0]
        if not old.is_file() or not db.is_legacy(str(old)):
            return
        for name in db.LEGACY_FILES:
            try:
                (self._directory / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.debug("could not remove %s: %s", self._directory / name, exc)

    def close(self) -> None:
        """Close the database connections of every thread. Later lookups miss."""
        self._closed = True
        self._close_quietly()

    def _close_quietly(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._pool is not None else " (disabled)"
        state = " (read-only)" if self._read_only and self._pool is not None else state
        return f"<VectorCache directory={str(self._directory)!r}{state}>"
