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
little-endian float32 bytes, kept inline in diskcache's SQLite table as a raw BLOB: nothing is
ever pickled, nor unpickled.

The cache fails soft: a cache that cannot be opened, a locked, full, corrupt or read-only
database turn into misses and skipped writes, with one ``RuntimeWarning`` per cache (and a log
record on the ``embedsdk`` logger). Its methods block on disk I/O: call them from worker
threads, not from the event loop. Several threads and processes may share one directory.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import diskcache
import diskcache.core
import numpy as np
import numpy.typing as npt

__all__ = ["VectorCache", "cache_disabled_by_env", "default_cache_dir", "open_cache"]

logger = logging.getLogger("embedsdk")

Vectors = npt.NDArray[np.float32]

#: Bump when the key or the value layout changes: old entries then simply stop matching.
FORMAT_VERSION = "v1"
DEFAULT_SIZE_LIMIT = 2**34  # bytes (16 GiB); past it the oldest vectors are evicted
_OFF = frozenset({"0", "false", "no", "off"})
_MODE_RAW: int = getattr(diskcache.core, "MODE_RAW", 1)
_DBNAME: str = getattr(diskcache.core, "DBNAME", "cache.db")
# Values below this many bytes stay inline in SQLite; 1 MiB keeps vectors up to 262,144
# dimensions out of diskcache's side files, so a lookup is one indexed SELECT.
_MIN_FILE_SIZE = 2**20
_CHUNK = 500  # keys per SELECT ... IN (...): under SQLite's old 999-parameter limit
# Per SQLite connection, and there is one per thread that touches the cache. diskcache's
# defaults (32 MiB page cache, 64 MiB mmap) cost ~300 MB RSS reading 200,000 vectors from 6
# executor threads and bought nothing: batches stream through once and the OS page cache
# keeps the file. 2 MiB and no mmap read as fast (measured) within a bounded footprint.
_SQLITE_CACHE_PAGES = 512
_SQLITE_MMAP_BYTES = 0
_WRITE_PATIENCE = 5.0  # seconds a write waits for another writer before it is skipped
_WRITE_COOLDOWN = 30.0  # seconds writes are skipped after one failed, so none waits again
_ERRORS = (sqlite3.Error, OSError, diskcache.Timeout)
_COLUMNS = frozenset(
    {"rowid", "key", "raw", "store_time", "expire_time", "access_time", "access_count"}
    | {"tag", "size", "mode", "filename", "value"}
)

_SELECT = (
    "SELECT key, value FROM Cache WHERE key IN ({marks}) AND raw = 1"
    f" AND mode = {_MODE_RAW} AND typeof(value) = 'blob'"
    " AND (expire_time IS NULL OR expire_time > ?)"
)
_SELECT_EXISTING = "SELECT key, rowid, filename FROM Cache WHERE key IN ({marks}) AND raw = 1"
# The same columns diskcache.Cache.set writes; its triggers keep count and size up to date.
_INSERT = (
    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count,"
    " tag, size, mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, NULL, ?)"
)
_UPDATE = (
    "UPDATE Cache SET store_time = ?, expire_time = NULL, access_time = ?, access_count = 0,"
    " tag = NULL, size = 0, mode = ?, filename = NULL, value = ? WHERE rowid = ?"
)


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


def _keys(namespace: bytes, texts: Iterable[str]) -> list[bytes]:
    # surrogatepass: same bytes as plain UTF-8 for every valid text, and no crash on the rest
    return [
        hashlib.blake2b(namespace + text.encode("utf-8", "surrogatepass"), digest_size=20).digest()
        for text in texts
    ]


def _row_width(values: Iterable[bytes]) -> int:
    """The byte length most rows share; rows of another length are corrupt or foreign."""
    counts = collections.Counter(len(v) for v in values)
    for width, _ in counts.most_common():
        if width and width % 4 == 0:
            return width
    return 0


def _make_private_dir(path: Path) -> None:
    """Create ``path`` readable by its owner only; leave an existing directory as it is."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise
        return  # another process made it first
    os.chmod(path, 0o700)  # mkdir's mode passes through the umask


def _begin_immediate(con: sqlite3.Connection, patience: float) -> None:
    """Take the write lock, waiting up to ``patience`` seconds for other writers."""
    deadline = time.monotonic() + patience
    while True:
        try:
            con.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise


class _RawDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serializer, refusing anything but bytes: no pickle in, no pickle out."""

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not bytes:
            raise TypeError(f"the vector cache stores bytes, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode != _MODE_RAW or type(value) is not bytes:
            raise OSError("not a raw vector")  # Cache.get turns OSError into a miss
        return value


class _Cache(diskcache.Cache):  # type: ignore[misc]
    """A ``diskcache.Cache`` that can close the SQLite connections of all its threads.

    diskcache keeps one connection per thread and ``close()`` closes only the caller's. The
    executor threads that use the cache would leave theirs to the garbage collector, which on
    Python 3.13 warns "unclosed database" (ResourceWarning, gh-105539). These connections are
    made with ``check_same_thread=False`` so that one thread may close them all; each is still
    used by its own thread only.
    """

    def __init__(self, directory: str, **settings: Any) -> None:
        self._pid = os.getpid()
        self._threads = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._shut = False
        try:
            super().__init__(directory, disk=_RawDisk, **settings)
        except BaseException:
            self.shutdown()  # the connections opened so far
            raise

    @property
    def _con(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's connections are not ours
            self._pid = os.getpid()
            self._all_lock = threading.Lock()  # another thread may have held it at the fork
            self.close()
        con: sqlite3.Connection | None = getattr(self._threads, "con", None)
        if con is None:
            con = self._connect()
        return con

    def _connect(self) -> sqlite3.Connection:
        if self._shut:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        path = os.path.join(self.directory, _DBNAME)
        con = sqlite3.connect(
            path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        self._threads.con = con
        with self._all_lock:
            self._all.append(con)
        # As diskcache does: per-connection pragmas (mmap, cache size) come from Settings.
        try:
            settings = con.execute("SELECT key, value FROM Settings").fetchall()
        except sqlite3.OperationalError:
            return con
        for key, value in settings:
            if key.startswith("sqlite_"):
                self.reset(key, value, update=False)
        return con

    def drop_connection(self) -> None:
        """Close this thread's connection, so that the next call starts from a clean one."""
        con = getattr(self._threads, "con", None)
        if con is not None:
            del self._threads.con
            with self._all_lock:
                self._all = [c for c in self._all if c is not con]
            with contextlib.suppress(sqlite3.Error):
                con.close()

    def close(self) -> None:
        with self._all_lock:
            cons, self._all = self._all, []
            self._threads = threading.local()
        for con in cons:
            with contextlib.suppress(sqlite3.Error):
                con.close()

    def shutdown(self) -> None:
        """Close every connection for good: later calls fail (and so miss) instead of reopening."""
        self._shut = True
        self.close()


def _schema_ok(cache: _Cache) -> bool:
    """Whether the Cache table is the one the direct SQL below was written for."""
    columns = {row[1] for row in cache._sql("PRAGMA table_info(Cache)").fetchall()}
    return columns >= _COLUMNS


class VectorCache:
    """Vectors on disk, keyed by endpoint, model, dimensions and text; safe to share.

    ``directory`` is created owner-only (mode 0o700). ``size_limit`` is in bytes (the oldest
    vectors go first past it); ``timeout`` is how long, in seconds, one SQLite statement waits
    for a lock. Usable as a context manager; after :meth:`close` every lookup misses.
    """

    __slots__ = ("_cache", "_closed", "_directory", "_lock", "_raw", "_warned", "_write_pause")
    _cache: _Cache | None
    _closed: bool
    _directory: Path
    _lock: threading.Lock
    _raw: bool  # True once the table is known: then reads and writes use direct SQL
    _warned: bool
    _write_pause: float  # time.monotonic() until which writes are skipped

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
        try:
            _make_private_dir(self._directory)
            self._cache = _Cache(
                str(self._directory),
                timeout=timeout,
                size_limit=size_limit,
                eviction_policy="least-recently-stored",
                disk_min_file_size=_MIN_FILE_SIZE,
                sqlite_cache_size=_SQLITE_CACHE_PAGES,
                sqlite_mmap_size=_SQLITE_MMAP_BYTES,
            )
            self._raw = _schema_ok(self._cache)
        except Exception as exc:  # whatever stops the cache from opening only disables it
            self._close_quietly()
            self._fail("opening it", exc)

    @classmethod
    def _disabled(cls, directory: Path, exc: BaseException) -> VectorCache:
        """A cache that always misses, for when not even its directory can be named."""
        self = cls.__new__(cls)
        self._reset_state(directory)
        self._fail("opening it", exc)
        return self

    def _reset_state(self, directory: Path) -> None:
        self._directory = directory
        self._cache = None
        self._closed = False
        self._lock = threading.Lock()
        self._raw = False
        self._warned = False
        self._write_pause = 0.0

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        """Whether ``directory`` holds a cache database (checked without creating anything)."""
        return os.path.isfile(os.path.join(os.path.expanduser(os.fspath(directory)), _DBNAME))

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
        cache = self._cache
        if cache is None or len(texts) == 0:
            return None, hit
        keys = _keys(namespace, texts)
        matrix: Vectors | None = None
        try:
            chunks = self._fetch(cache, keys) if self._raw else self._fetch_slow(cache, keys)
            for start, found in chunks:
                # Rows go straight into the matrix, chunk by chunk: holding every row's bytes
                # at once would double the memory and (measured) slow a 20,000-row read.
                if matrix is None:
                    width = _row_width(found.values())
                    if not width:
                        continue
                    matrix = np.empty((len(texts), width // 4), dtype="<f4")
                    out = matrix.data.cast("B")  # C-contiguous, so rows follow each other
                for i in range(start, min(start + _CHUNK, len(keys))):
                    value = found.get(keys[i])
                    if value is not None and len(value) == width:
                        out[i * width : (i + 1) * width] = value
                        hit[i] = True
        except _ERRORS as exc:
            self._fail("reading", exc)
            return None, np.zeros(len(texts), dtype=bool)
        if matrix is not None and sys.byteorder != "little":
            matrix = matrix.astype(np.float32)
        return matrix, hit

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
        cache = self._cache
        if cache is None or len(texts) == 0 or time.monotonic() < self._write_pause:
            return
        items = dict(zip(_keys(namespace, texts), (row.tobytes() for row in rows)))
        try:
            if self._raw:
                self._store(cache, items)
            else:
                self._store_slow(cache, items)
        except _ERRORS as exc:
            self._write_pause = time.monotonic() + _WRITE_COOLDOWN
            self._fail("writing", exc)

    def _fetch(self, cache: _Cache, keys: list[bytes]) -> Iterator[tuple[int, dict[bytes, bytes]]]:
        """``(start, {key: value})`` for each chunk of ``keys``: SELECT ... IN (...) inside
        one read transaction (much faster than one transaction per key, which is what
        per-key ``Cache.get`` amounts to)."""
        con = cache._con
        now = time.time()
        try:
            con.execute("BEGIN")
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                sql = _SELECT.format(marks=",".join("?" * len(chunk)))
                yield start, dict(con.execute(sql, (*chunk, now)).fetchall())
            con.execute("COMMIT")
        except BaseException:
            cache.drop_connection()  # never leave a read transaction (a stale snapshot) open
            raise

    def _store(self, cache: _Cache, items: dict[bytes, bytes]) -> None:
        """Insert or update all rows in one write transaction, as ``Cache.set`` would row by
        row, then evict the oldest rows if the cache is past its size limit."""
        con = cache._con
        keys = list(items)
        old_files: list[str] = []
        try:
            _begin_immediate(con, _WRITE_PATIENCE)
            existing: dict[bytes, int] = {}
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                sql = _SELECT_EXISTING.format(marks=",".join("?" * len(chunk)))
                for key, rowid, filename in con.execute(sql, chunk).fetchall():
                    existing[key] = rowid
                    if filename is not None:
                        old_files.append(filename)
            now = time.time()
            con.executemany(
                _INSERT,
                [(k, now, now, _MODE_RAW, v) for k, v in items.items() if k not in existing],
            )
            con.executemany(
                _UPDATE,
                [(now, now, _MODE_RAW, v, existing[k]) for k, v in items.items() if k in existing],
            )
            con.execute("COMMIT")
        except BaseException:
            cache.drop_connection()  # rolls back and releases the write lock
            raise
        for filename in old_files:  # after the commit, as diskcache does
            cache.disk.remove(filename)
        if cache.volume() > cache.size_limit:
            cache.cull()

    @staticmethod
    def _fetch_slow(cache: _Cache, keys: list[bytes]) -> Iterator[tuple[int, dict[bytes, bytes]]]:
        """Per-key ``Cache.get``: only for a diskcache whose table the direct SQL doesn't know."""
        for start in range(0, len(keys), _CHUNK):
            found: dict[bytes, bytes] = {}
            for key in keys[start : start + _CHUNK]:
                value = cache.get(key)
                if type(value) is bytes:
                    found[key] = value
            yield start, found

    @staticmethod
    def _store_slow(cache: _Cache, items: dict[bytes, bytes]) -> None:
        deadline = time.monotonic() + _WRITE_PATIENCE
        while True:
            try:
                with cache.transact():
                    for key, value in items.items():
                        cache.set(key, value)
                return
            except diskcache.Timeout:
                if time.monotonic() >= deadline:
                    raise

    # -- failing soft ----------------------------------------------------------------------

    def _fail(self, action: str, exc: BaseException) -> None:
        """Warn once per cache (RuntimeWarning and the log), then only log at DEBUG."""
        if self._closed:
            return
        with self._lock:
            first, self._warned = not self._warned, True
        message = (
            f"embedsdk cache at {self._directory}: {action} failed"
            f" ({type(exc).__name__}: {exc}); going on without the cache"
        )
        if not first:
            logger.debug("%s", message)
            return
        logger.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    # -- housekeeping ----------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def enabled(self) -> bool:
        """False when the cache could not be opened, or is closed: then every lookup misses."""
        return self._cache is not None

    def info(self) -> dict[str, Any]:
        """``directory``, ``size_bytes`` (on disk, estimated), ``vectors`` and ``enabled``."""
        size = count = 0
        if self._cache is not None:
            try:
                size, count = int(self._cache.volume()), len(self._cache)
            except _ERRORS as exc:
                self._fail("reading its size", exc)
        return {
            "directory": str(self._directory),
            "size_bytes": size,
            "vectors": count,
            "enabled": self._cache is not None,
        }

    def __len__(self) -> int:
        return int(self.info()["vectors"])

    def clear(self) -> int:
        """Remove every vector and give the disk space back; returns how many were removed."""
        if self._cache is None:
            return 0
        try:
            removed = int(self._cache.clear())
        except _ERRORS as exc:
            self._fail("clearing it", exc)
            return 0
        try:
            # SQLite keeps freed pages for reuse: without VACUUM the file would not shrink.
            # Another process using the cache makes it fail ("locked"); the pages then wait.
            self._cache._sql("VACUUM")
        except sqlite3.Error as exc:
            logger.debug("VACUUM after clearing %s skipped: %s", self._directory, exc)
        return removed

    def close(self) -> None:
        """Close the database connections of every thread. Later lookups miss."""
        self._closed = True
        self._close_quietly()

    def _close_quietly(self) -> None:
        cache, self._cache = self._cache, None
        if cache is not None:
            cache.shutdown()

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._cache is not None else " (disabled)"
        return f"<VectorCache directory={str(self._directory)!r}{state}>"
