"""The disk cache on its own: keys, float32 storage, failing soft, threads and processes.

No test here reads a clock: waiting is checked with a fake clock, events and call counts.

Private access: the cache's SQLite table, its connection pool and its timing constants
(``cache._sqlite``, ``cache._store``) are the unit under test; ``VectorCache`` shows only hits
and misses, and the failures are made at those seams.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _read_only import read_only

from embedsdk.cache import DBNAME, VectorCache, cache_keys, default_cache_dir, open_cache
from embedsdk.cache import _sqlite as db
from embedsdk.cache import _store as _cache
from embedsdk.cache._store import normalise_endpoint

ENDPOINT = "https://api.siliconflow.cn/v1/embeddings"
NS = VectorCache.namespace(ENDPOINT, "BAAI/bge-m3", None)
DB = DBNAME


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} text {i} ✓" for i in range(n)]


@pytest.fixture
def cache(tmp_path: Path):
    with VectorCache(tmp_path / "cache") as c:
        yield c


def db_rows(directory: Path) -> list[tuple]:
    con = sqlite3.connect(directory / DB)
    try:
        return con.execute("SELECT key, value FROM vectors").fetchall()
    finally:
        con.close()


def put_raw(directory: Path, text: str, value: Any) -> None:
    """Store ``value`` for ``text`` behind the cache's back (as a foreign writer might)."""
    con = sqlite3.connect(directory / DB, timeout=10)
    try:
        key = cache_keys(NS, [text])[0]
        con.execute("INSERT OR REPLACE INTO vectors (key, value) VALUES (?, ?)", (key, value))
        con.commit()
    finally:
        con.close()


# -- round trip and misses ------------------------------------------------------------------


def test_round_trip_is_bit_identical(cache: VectorCache) -> None:
    m = vectors(50, 1024)
    m[0, :4] = [0.0, -0.0, np.finfo(np.float32).tiny / 2, np.inf]  # -0.0 and a subnormal too
    texts = texts_for(50)
    cache.set_many(NS, texts, m)
    got, hit = cache.get_many(NS, texts)
    assert hit.all() and hit.dtype == bool
    assert got is not None and got.dtype == np.float32 and got.shape == (50, 1024)
    assert np.array_equal(got.view(np.uint32), m.view(np.uint32))
    got[0, 0] = 1.0  # the caller owns the result: it is writable


def test_misses_mask(cache: VectorCache) -> None:
    m = vectors(10)
    texts = texts_for(10)
    cache.set_many(NS, texts[::2], m[::2])
    got, hit = cache.get_many(NS, texts)
    assert hit.tolist() == [True, False] * 5
    assert got is not None and np.array_equal(got[hit], m[::2])
    assert cache.get_many(NS, ["never stored"])[0] is None
    got, hit = cache.get_many(NS, [])
    assert got is None and hit.shape == (0,)


def test_duplicates_and_overwrite(cache: VectorCache) -> None:
    cache.set_many(NS, ["a", "a", "b"], vectors(3))
    new = vectors(2, seed=1)
    cache.set_many(NS, ["a", "b"], new)  # an update, not a second row
    got, hit = cache.get_many(NS, ["b", "a", "b"])
    assert hit.all() and got is not None
    assert np.array_equal(got, new[[1, 0, 1]])
    assert len(cache) == 2


def test_set_many_rejects_a_matrix_of_the_wrong_shape(cache: VectorCache) -> None:
    with pytest.raises(ValueError, match="one row per text"):
        cache.set_many(NS, ["a", "b"], vectors(3))


def test_texts_may_be_any_sequence(cache: VectorCache) -> None:
    texts = np.array(["a", "b"])
    cache.set_many(NS, texts, vectors(2))
    assert cache.get_many(NS, texts)[1].all()
    assert cache.get_many(NS, ("a",))[1].all()


def test_bad_arguments_raise(tmp_path: Path) -> None:
    for kwargs in ({"size_limit": 0}, {"size_limit": 1.5}, {"timeout": -1}, {"timeout": "1"}):
        with pytest.raises(ValueError):
            VectorCache(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())  # checked before anything touched the disk


def test_rows_of_another_length_are_misses(cache: VectorCache) -> None:
    texts = texts_for(5)
    cache.set_many(NS, texts, vectors(5))
    put_raw(cache.directory, "odd", b"\x00" * 12)  # 3 dimensions among rows of 8
    put_raw(cache.directory, "text", "a TEXT value, not a BLOB")
    got, hit = cache.get_many(NS, [*texts, "odd", "text"])
    assert hit.tolist() == [True] * 5 + [False, False]
    assert got is not None and got.shape == (7, 8)


def test_many_chunks_with_gaps_keep_their_order(cache: VectorCache) -> None:
    """Over several SELECT chunks: whole chunks, chunks with misses, and an empty first one."""
    n = 3 * db.CHUNK + 7
    texts = texts_for(n)
    m = vectors(n, 16)
    stored = np.ones(n, dtype=bool)
    stored[: db.CHUNK] = False  # nothing in the first chunk
    stored[db.CHUNK + 3 :: 97] = False  # gaps in the others
    cache.set_many(NS, [t for t, s in zip(texts, stored) if s], m[stored])
    got, hit = cache.get_many(NS, texts)
    assert np.array_equal(hit, stored)
    assert got is not None and np.array_equal(got[hit], m[stored])


# -- keys -----------------------------------------------------------------------------------


def test_namespace_depends_on_what_changes_the_vector() -> None:
    ns = VectorCache.namespace
    base = ns(ENDPOINT, "BAAI/bge-m3", None)
    assert isinstance(base, bytes) and len(base) == 16
    assert ns("https://api.openai.com/v1/embeddings", "BAAI/bge-m3", None) != base
    assert ns("https://api.siliconflow.cn:8443/v1/embeddings", "BAAI/bge-m3", None) != base
    assert ns(ENDPOINT, "Pro/BAAI/bge-m3", None) != base
    assert ns(ENDPOINT, "BAAI/bge-m3", 1024) != base
    assert ns(ENDPOINT, "BAAI/bge-m3", 512) != ns(ENDPOINT, "BAAI/bge-m3", 1024)
    # ... and not on spelling, credentials or query strings
    for same in [
        "HTTPS://API.SiliconFlow.cn/v1/embeddings/",
        "https://api.siliconflow.cn:443/v1/embeddings",
        "https://api.siliconflow.cn/v1/embeddings?api_key=sk-secret#frag",
        "https://user:sk-secret@api.siliconflow.cn/v1/embeddings",
    ]:
        assert ns(same, "BAAI/bge-m3", None) == base, same


def test_normalise_endpoint() -> None:
    assert normalise_endpoint(" HTTP://u:p@Host:80/V1/?k=sk-1 ") == "http://host/V1"
    assert normalise_endpoint("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    canonical = _cache._canonical("https://u:sk-secret@h/v1?api_key=sk-secret", "m", 3)
    assert "sk-secret" not in canonical and "v1" in canonical


def test_keys_separate_texts_and_namespaces() -> None:
    other = VectorCache.namespace(ENDPOINT, "other", None)
    keys = cache_keys(NS, ["a", "b", "a"]) + cache_keys(other, ["a"])
    assert keys[0] == keys[2] and len(set(keys)) == 3 and all(len(k) == 20 for k in keys)
    assert cache_keys(NS, ["\ud800"])  # a lone surrogate does not crash


def test_neither_api_key_nor_text_reaches_the_disk(tmp_path: Path) -> None:
    secret = "sk-THIS-IS-SECRET"
    endpoint = f"https://user:{secret}@api.example.com/v1/embeddings?api_key={secret}"
    with VectorCache(tmp_path) as c:
        c.set_many(VectorCache.namespace(endpoint, "m", None), ["private words"], vectors(1))
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert secret.encode() not in blob
    assert b"private words" not in blob and "private words".encode("utf-16-le") not in blob


# -- storage: our own table, raw float32, never pickle ----------------------------------------


def test_values_are_raw_float32_bytes_not_pickles(tmp_path: Path) -> None:
    m = vectors(20, 1024)
    with VectorCache(tmp_path) as c:
        c.set_many(NS, texts_for(20), m)
    rows = db_rows(tmp_path)
    assert len(rows) == 20
    by_value = {bytes(r.tobytes()) for r in m}
    for key, value in rows:
        assert type(key) is bytes and len(key) == 20
        assert type(value) is bytes and len(value) == 4 * 1024
        assert value[:1] != b"\x80"  # the opcode every pickle of protocol >= 2 starts with
        assert value in by_value
    assert {p.name for p in tmp_path.iterdir()} <= {DB, f"{DB}-wal", f"{DB}-shm"}


def test_the_file_is_marked_as_ours_with_big_pages(tmp_path: Path) -> None:
    with VectorCache(tmp_path):
        pass
    con = sqlite3.connect(tmp_path / DB)
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == db.APPLICATION_ID
        assert con.execute("PRAGMA user_version").fetchone()[0] == db.SCHEMA_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA page_size").fetchone()[0] == db.PAGE_SIZE
    finally:
        con.close()


def test_a_pickled_value_is_never_loaded(tmp_path: Path) -> None:
    loaded = []

    class Boom:
        def __reduce__(self):
            return (loaded.append, ("unpickled!",))

    with VectorCache(tmp_path) as c:
        c.set_many(NS, ["y"], vectors(1))
        put_raw(tmp_path, "x", pickle.dumps(Boom()))  # a pickle where a vector should be
        got, hit = c.get_many(NS, ["x"])
        assert got is None and not hit.any() and loaded == []
        got, hit = c.get_many(NS, ["x", "y"])
        assert hit.tolist() == [False, True] and loaded == []


def test_eviction_keeps_the_size_limit_and_drops_the_oldest(tmp_path: Path) -> None:
    limit = 4 * 2**20  # room for about two batches below
    with VectorCache(tmp_path, size_limit=limit) as c:
        for i in range(8):  # 8 x 250 vectors of 4 KiB: 8 MiB in all
            c.set_many(NS, texts_for(250, tag=str(i)), vectors(250, 1024, seed=i))
            if i == 6:  # stored again: now among the newest
                c.set_many(NS, texts_for(250, tag="0"), vectors(250, 1024, seed=0))
            assert c.info()["size_bytes"] <= limit  # after every write, not just eventually
        assert 0 < len(c) < 2000
        assert c.get_many(NS, texts_for(250, tag="7"))[1].all()  # the newest stayed
        assert not c.get_many(NS, texts_for(250, tag="1"))[1].any()  # the oldest went
        got, hit = c.get_many(NS, texts_for(250, tag="0"))
        assert hit.all() and np.array_equal(got, vectors(250, 1024, seed=0))


def test_a_limit_below_one_row_keeps_nothing_and_does_not_loop(tmp_path: Path) -> None:
    with VectorCache(tmp_path, size_limit=1) as c:
        c.set_many(NS, texts_for(3), vectors(3, 1024))
        assert len(c) == 0 and c.get_many(NS, texts_for(3))[0] is None


# -- the old layout and foreign files -------------------------------------------------------


def make_legacy(directory: Path) -> None:
    """What the diskcache-based cache of earlier versions left: cache.db, diskcache's tables."""
    directory.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(directory / "cache.db")
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)")
    con.execute(
        "CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER,"
        " store_time REAL, expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0,"
        " tag BLOB, size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)"
    )
    key = cache_keys(NS, ["old"])[0]
    con.execute(
        "INSERT INTO Cache (key, raw, store_time, mode, value) VALUES (?, 1, 0, 1, ?)",
        (key, vectors(1).tobytes()),
    )
    con.commit()
    con.close()


def test_the_old_layout_is_ignored_then_cleared(tmp_path: Path) -> None:
    make_legacy(tmp_path)
    assert VectorCache.exists(tmp_path)  # so that `embedsdk cache clear` finds it
    with VectorCache(tmp_path) as c:  # no warning (filterwarnings=error)
        assert c.enabled and len(c) == 0
        assert c.get_many(NS, ["old"])[0] is None  # its vectors are not read
        c.set_many(NS, ["new"], vectors(1))
        assert (tmp_path / "cache.db").exists()  # left alone until cleared
        assert c.clear() == 1
        assert c.enabled and c.get_many(NS, ["new"])[0] is None
    assert not any(p.name.startswith("cache.db") for p in tmp_path.iterdir())


def test_clear_leaves_someone_elses_cache_db_alone(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "cache.db")
    con.execute("CREATE TABLE mine (x)")
    con.commit()
    con.close()
    with VectorCache(tmp_path) as c:
        c.clear()
    assert (tmp_path / "cache.db").exists()


@pytest.mark.parametrize("marks", [(0, 0), (0, 1), (db.APPLICATION_ID, 99)])
def test_a_database_of_another_layout_disables_the_cache_untouched(
    tmp_path: Path, marks: tuple[int, int]
) -> None:
    """Another program's SQLite file, or a newer embedsdk's: never written to."""
    con = sqlite3.connect(tmp_path / DB)
    con.execute("CREATE TABLE vectors (key BLOB PRIMARY KEY, value BLOB, extra)")
    con.execute(f"PRAGMA application_id = {marks[0]}")
    con.execute(f"PRAGMA user_version = {marks[1]}")
    con.commit()
    con.close()
    before = (tmp_path / DB).read_bytes()
    with pytest.warns(RuntimeWarning, match="not a vector cache"):
        c = open_cache(tmp_path)
    assert_disabled(c)
    assert (tmp_path / DB).read_bytes() == before


# -- failing soft ---------------------------------------------------------------------------


def assert_disabled(c: VectorCache | None) -> None:
    assert isinstance(c, VectorCache) and not c.enabled
    assert "disabled" in repr(c)
    got, hit = c.get_many(NS, ["a", "b"])  # no second warning: filterwarnings=error
    assert got is None and hit.tolist() == [False, False]
    c.set_many(NS, ["a"], vectors(1))
    assert len(c) == 0 and c.clear() == 0
    c.close()


def test_corrupt_database_file_disables_the_cache(tmp_path: Path) -> None:
    (tmp_path / DB).write_bytes(b"this is not an sqlite file" * 1000)
    with pytest.warns(RuntimeWarning, match="opening it failed"):
        c = open_cache(tmp_path)
    assert_disabled(c)


def test_a_corrupt_file_is_named_with_its_remedy_and_clear_starts_afresh(tmp_path: Path) -> None:
    """Its first 100 bytes overwritten, the file stays unreadable: every run would pay for
    everything again. The warning says which file and what to do; clear() does it."""
    with VectorCache(tmp_path) as c:
        c.set_many(NS, texts_for(50), vectors(50))
    with open(tmp_path / DB, "r+b") as f:
        f.write(b"\xff" * 100)
    with pytest.warns(RuntimeWarning) as record:
        c = VectorCache(tmp_path)
    message = str(record[0].message)
    remedy = f"run `embedsdk cache clear --dir {tmp_path}` or delete {tmp_path / DB}"
    assert remedy in message and "file is not a database" in message, message
    assert not c.enabled and c.problem is not None and remedy in c.problem
    with c:
        assert c.clear() == 0  # no warning: filterwarnings=error
        assert c.enabled and c.problem is None
        c.set_many(NS, ["a"], vectors(1))
        assert c.get_many(NS, ["a"])[1].all()
    with VectorCache(tmp_path) as again:  # a new file, readable again
        assert len(again) == 1


def test_clear_leaves_a_file_of_another_program_alone(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / DB)
    con.execute("CREATE TABLE theirs (x)")
    con.commit()
    con.close()
    before = (tmp_path / DB).read_bytes()
    with pytest.warns(RuntimeWarning, match=f"delete {re.escape(str(tmp_path / DB))} if nothing"):
        c = VectorCache(tmp_path)
    with c:
        assert c.clear() == 0 and not c.enabled
    assert (tmp_path / DB).read_bytes() == before


def test_a_file_in_the_way_disables_the_cache(tmp_path: Path) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    for spec in (in_the_way, in_the_way / "cache"):
        with pytest.warns(RuntimeWarning) as record:
            c = open_cache(str(spec))
        message = str(record[0].message)  # the path and the trouble, not "FileExistsError"
        assert f"({in_the_way} is a file, not a directory)" in message, message
        assert_disabled(c)


def test_a_failure_is_printed_once_when_logging_is_not_set_up(tmp_path: Path) -> None:
    """Python prints the warning, and logging's last resort printed the log record too."""
    (tmp_path / DB).write_bytes(b"this is not an sqlite file" * 1000)
    code = "import sys, embedsdk; embedsdk.VectorCache(sys.argv[1]).close()"
    child = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert child.stderr.count("embedsdk cache at") == 1, child.stderr


def test_an_empty_read_only_directory_disables_the_cache(tmp_path: Path) -> None:
    with read_only(tmp_path):
        with pytest.warns(RuntimeWarning, match=r"\(the directory is read-only, and holds no"):
            c = open_cache(tmp_path)
        assert_disabled(c)
    assert not any(tmp_path.iterdir())


def test_a_read_only_cache_is_read_and_says_once_that_it_stores_nothing(tmp_path: Path) -> None:
    """A cache filled, then made read-only (a read-only file system, another user's cache).
    SQLite cannot make the WAL's ``-shm`` file there, so the cache used to fail to open
    ("unable to open database file"): every lookup missed and every text was paid again."""
    texts, m = texts_for(20), vectors(20)
    with VectorCache(tmp_path) as c:
        c.set_many(NS, texts, m)
    with read_only(tmp_path, *tmp_path.iterdir()):
        c = VectorCache(tmp_path)  # no warning to open it: filterwarnings=error
        with c:
            assert c.enabled and c.read_only and "(read-only)" in repr(c)
            got, hit = c.get_many(NS, texts)
            assert hit.all() and got is not None and np.array_equal(got, m)
            assert len(c) == 20
            said = "the directory is read-only: the vectors in it are used, new ones are not stored"
            with pytest.warns(RuntimeWarning, match=said):
                c.set_many(NS, ["new"], vectors(1))
            c.set_many(NS, ["newer"], vectors(1))  # skipped too, and not said again
            assert c.clear() == 0
            assert c.get_many(NS, ["new", texts[0]])[1].tolist() == [False, True]
    assert [p.name for p in tmp_path.iterdir()] == [DB]
    with VectorCache(tmp_path) as c:  # writable again: nothing was lost
        assert len(c) == 20 and not c.read_only


def test_a_read_only_directory_is_read_with_locks_while_its_owner_writes(tmp_path: Path) -> None:
    """The owner has the cache open (its ``-shm`` file exists), so SQLite reads it read-only
    with its locks: what the owner stores meanwhile is seen at once."""
    with VectorCache(tmp_path) as owner:
        owner.set_many(NS, ["a"], vectors(1))
        with read_only(tmp_path), VectorCache(tmp_path) as reader:
            assert reader.read_only and reader._pool is not None
            assert reader._pool.mode == "ro"
            owner.set_many(NS, ["b"], vectors(1, seed=1))
            got, hit = reader.get_many(NS, ["a", "b"])
            assert hit.all() and got is not None
            assert np.array_equal(got[1], vectors(1, seed=1)[0])


def test_an_unlocked_read_counts_only_if_the_file_stayed_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a read-only directory with no ``-shm`` the cache reads the file as immutable, with
    no lock: a change by whoever may still write it must not reach a result. Simulated at
    the seams, so that it runs anywhere (as root too): the directory is said not writable,
    and SQLite's locked read-only open fails as it does there."""
    with VectorCache(tmp_path) as c:
        c.set_many(NS, ["a"], vectors(1))
    os.utime(tmp_path / DB, (1e9, 1e9))  # a change now moves the mtime, however coarse
    monkeypatch.setattr(_cache, "_writable", lambda *paths: False)
    connect = db.connect

    def without_shm(path: str, timeout: float, patience: float = 0.0, mode: str = "rw") -> Any:
        if mode == "ro":
            raise sqlite3.OperationalError("unable to open database file")
        return connect(path, timeout, patience, mode)

    monkeypatch.setattr(db, "connect", without_shm)
    with VectorCache(tmp_path) as reader:
        assert reader._pool is not None and reader._pool.mode == "immutable"
        assert reader.get_many(NS, ["a"])[1].all()
        owner = sqlite3.connect(tmp_path / DB, isolation_level=None)  # the owner writes
        key = cache_keys(NS, ["b"])[0]
        owner.execute("INSERT INTO vectors VALUES (?, ?)", (key, vectors(1).tobytes()))
        assert not reader.get_many(NS, ["a", "b"])[1].any()  # its WAL is there: all misses
        owner.close()  # checkpointed into the file, the WAL gone
        assert reader.get_many(NS, ["a", "b"])[1].all()  # a new connection sees both

        read = db.read

        def changed_meanwhile(*args: Any) -> Any:
            found = read(*args)
            put_raw(tmp_path, "c", vectors(1).tobytes())
            return found

        monkeypatch.setattr(db, "read", changed_meanwhile)
        got, hit = reader.get_many(NS, ["a", "b"])
        assert got is None and not hit.any()
        assert reader.contains_many(NS, ["a", "b", "z"]).tolist() == [True, True, False]
        held = db.held

        def changed_while_counted(*args: Any) -> Any:
            held(*args)
            put_raw(tmp_path, "d", vectors(1).tobytes())

        monkeypatch.setattr(db, "held", changed_while_counted)
        assert not reader.contains_many(NS, ["a", "b"]).any()


def test_contains_many_finds_what_get_many_finds_without_reading_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"t{i}" for i in range(2_500)]  # more than one chunk of keys
    with VectorCache(tmp_path) as c:
        c.set_many(NS, texts[::3], vectors(len(texts[::3])))
        _, hit = c.get_many(NS, texts)

        def no_value_read(*args: Any) -> Any:
            raise AssertionError("contains_many read the vectors")

        monkeypatch.setattr(db, "read", no_value_read)
        assert c.contains_many(NS, texts).tolist() == hit.tolist()
        assert c.contains_many(NS, []).size == 0


def test_read_only_database_still_reads_and_skips_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What SQLite says on a read-only file system, reproduced even for root."""
    with VectorCache(tmp_path) as c:
        c.set_many(NS, ["a"], vectors(1))
    connect = db.connect

    def read_only(path: str, *args: Any) -> sqlite3.Connection:
        con = connect(path, *args)
        con.execute("PRAGMA query_only = 1")
        return con

    monkeypatch.setattr(db, "connect", read_only)
    with VectorCache(tmp_path) as c:
        assert c.enabled and c.get_many(NS, ["a"])[1].all()
        with pytest.warns(RuntimeWarning, match="writing failed"):
            c.set_many(NS, ["b"], vectors(1))
        assert c.get_many(NS, ["a", "b"])[1].tolist() == [True, False]


def test_failure_while_open_warns_once_and_misses(cache: VectorCache, caplog) -> None:
    cache.set_many(NS, ["a"], vectors(1))
    con = sqlite3.connect(cache.directory / DB)
    con.execute("DROP TABLE vectors")  # what a foreign tool or a broken disk might do
    con.commit()
    con.close()
    with pytest.warns(RuntimeWarning, match="reading failed") as record:
        got, hit = cache.get_many(NS, ["a"])
        assert got is None and not hit.any()
        cache.set_many(NS, ["b"], vectors(1))  # fails too, but the warning was given
        cache.get_many(NS, ["a"])
    assert len(record) == 1
    assert any("reading failed" in r.getMessage() for r in caplog.records)


def test_a_file_corrupted_while_open_gives_misses(cache: VectorCache) -> None:
    cache.set_many(NS, texts_for(200), vectors(200, 1024))
    cache.close()
    path = cache.directory / DB
    data = bytearray(path.read_bytes())
    data[100 : len(data) : 997] = b"\xff" * len(data[100 : len(data) : 997])  # scribble
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with VectorCache(cache.directory) as again:
            got, hit = again.get_many(NS, texts_for(200))
            again.set_many(NS, ["x"], vectors(1, 1024))
            assert again.clear() == 0  # the damaged file is replaced by an empty one
            again.set_many(NS, ["x"], vectors(1, 1024))
            assert again.get_many(NS, ["x"])[1].all()
    assert len(caught) == 1 and "failed" in str(caught[0].message)
    assert "embedsdk cache clear --dir" in str(caught[0].message)
    assert got is None and not hit.any()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stuck_writer_skips_writes_for_a_while_without_blocking_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(_cache, "_clock", clock)
    monkeypatch.setattr(_cache, "_WRITE_PATIENCE", 0)  # give up on the first "locked"
    writes = []
    write = db.write
    monkeypatch.setattr(db, "write", lambda *a: (writes.append(1), write(*a)))
    with VectorCache(tmp_path, timeout=0) as c:
        c.set_many(NS, ["a"], vectors(1))
        other = sqlite3.connect(tmp_path / DB, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        try:
            assert c.get_many(NS, ["a"])[1].all()  # WAL: readers are not blocked
            with pytest.warns(RuntimeWarning, match="writing failed.*locked"):
                c.set_many(NS, ["b"], vectors(1))
            assert len(writes) == 2
            clock.now += _cache._WRITE_COOLDOWN - 1
            c.set_many(NS, ["c"], vectors(1))  # cooling down: skipped, no lock tried
            assert len(writes) == 2
        finally:
            other.execute("ROLLBACK")
            other.close()
        clock.now += 1  # the cooldown is over, and the lock is free
        c.set_many(NS, ["d"], vectors(1))
        assert len(writes) == 3
        assert c.get_many(NS, ["a", "b", "c", "d"])[1].tolist() == [True, False, False, True]


def test_a_write_waits_for_another_writer_within_its_patience(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other writer lets go as soon as ours asks for the lock; ours then gets it."""
    with VectorCache(tmp_path) as c:
        c.set_many(NS, ["a"], vectors(1))
    asked = threading.Event()
    connect = db.connect

    def traced(path: str, *args: Any) -> sqlite3.Connection:
        con = connect(path, *args)
        con.set_trace_callback(lambda sql: asked.set() if sql == "BEGIN IMMEDIATE" else None)
        return con

    monkeypatch.setattr(db, "connect", traced)
    other = sqlite3.connect(tmp_path / DB, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    def let_go() -> None:
        assert asked.wait(60)
        other.execute("COMMIT")

    releaser = threading.Thread(target=let_go)
    releaser.start()
    try:
        with VectorCache(tmp_path, timeout=0) as c:  # patience, not timeout, is what waits
            c.set_many(NS, ["b"], vectors(1))  # no warning: filterwarnings=error
            assert c.get_many(NS, ["a", "b"])[1].all()
    finally:
        releaser.join()
        other.close()


def test_opening_waits_for_another_process_making_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes opening one new directory at once: one turns the new file into WAL while
    holding it exclusively, and the other's very first look at the file waits for it within
    its patience. It used to wait only the statement timeout (0.5 s), which a loaded machine
    can exceed; that process then ran without its cache (``test_two_processes_...``)."""
    other = sqlite3.connect(tmp_path / DB, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")  # as while the other process makes the file
    asked = threading.Event()
    real_connect = sqlite3.connect
    patient = f"PRAGMA busy_timeout = {int(_cache._WRITE_PATIENCE * 1000)}"

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        con = real_connect(*args, **kwargs)
        # Ours is about to wait, with patience, for the lock. (The statement that finds the file
        # locked is not traced: reading the schema fails before it runs.)
        con.set_trace_callback(lambda sql: asked.set() if sql == patient else None)
        return con

    monkeypatch.setattr(sqlite3, "connect", traced)

    def let_go() -> None:
        assert asked.wait(60)
        other.execute("COMMIT")

    releaser = threading.Thread(target=let_go)
    releaser.start()
    try:
        with VectorCache(tmp_path, timeout=0) as c:  # no warning: filterwarnings=error
            assert c.enabled
            c.set_many(NS, ["a"], vectors(1))
            assert c.get_many(NS, ["a"])[1].all()
    finally:
        asked.set()  # (when it failed without asking)
        releaser.join()
        other.close()


def test_closed_cache_misses_quietly(tmp_path: Path) -> None:
    c = VectorCache(tmp_path)
    c.set_many(NS, ["a"], vectors(1))
    c.close()
    c.close()
    assert not c.enabled
    assert c.get_many(NS, ["a"])[0] is None
    c.set_many(NS, ["a"], vectors(1))
    with VectorCache(tmp_path) as again:
        assert again.get_many(NS, ["a"])[1].all()


# -- opening ---------------------------------------------------------------------------------


def test_open_cache_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDSDK_CACHE", raising=False)
    monkeypatch.setenv("EMBEDSDK_CACHE_DIR", str(tmp_path / "env"))
    assert open_cache(False) is None and open_cache(None) is None
    with open_cache(True) as c:
        assert c.directory == tmp_path / "env" and c.enabled
    for off in ("0", "false", "No", " off "):
        monkeypatch.setenv("EMBEDSDK_CACHE", off)
        assert open_cache(True) is None
    with open_cache(str(tmp_path / "s")) as c1, open_cache(tmp_path / "p") as c2:
        assert c1.directory == tmp_path / "s" and c2.directory == tmp_path / "p"
        assert open_cache(c1) is c1
    for bad in (1, b"/tmp/x", 2.0, ["dir"]):
        with pytest.raises(TypeError, match="VectorCache"):
            open_cache(bad)
    with pytest.raises(ValueError, match="empty"):
        open_cache("")


def test_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("EMBEDSDK_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "embedsdk"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "embedsdk"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "embedsdk"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_new_directory_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with VectorCache(tmp_path / "a" / "b" / "cache"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "b" / "cache").stat().st_mode) == 0o700
    existing = tmp_path / "mine"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    with VectorCache(existing):
        pass
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755  # the user's choice is kept


def test_info_len_clear_repr(cache: VectorCache) -> None:
    cache.set_many(NS, texts_for(10), vectors(10, 256))
    info = cache.info()
    assert info["directory"] == str(cache.directory) and info["enabled"] is True
    assert info["vectors"] == 10 == len(cache) and info["size_bytes"] > 10 * 1024
    assert str(cache.directory) in repr(cache) and "disabled" not in repr(cache)
    assert cache.clear() == 10
    assert len(cache) == 0 and cache.get_many(NS, texts_for(10))[0] is None


# -- threads and processes -------------------------------------------------------------------


def test_threads_share_one_cache(cache: VectorCache) -> None:
    def work(worker: int) -> None:
        for round_ in range(5):
            tag = f"{worker}-{round_}"
            m = vectors(100, 64, seed=worker * 10 + round_)
            cache.set_many(NS, texts_for(100, tag), m)
            got, hit = cache.get_many(NS, texts_for(100, tag))
            assert hit.all() and np.array_equal(got, m)
            cache.get_many(NS, texts_for(100, f"{(worker + 1) % 8}-{round_}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert len(cache) == 8 * 5 * 100


def test_close_closes_the_connections_of_every_thread(tmp_path: Path) -> None:
    c = VectorCache(tmp_path)
    pool = c._pool
    assert pool is not None
    inside, leave = threading.Barrier(4), threading.Event()

    def read(i: int) -> None:
        with pool.use():
            inside.wait(60)  # four connections in use at once
            assert leave.wait(60)
        c.get_many(NS, [str(i)])

    with ThreadPoolExecutor(4) as workers:
        futures = [workers.submit(read, i) for i in range(4)]
        leave.set()
        for f in futures:
            f.result()
    connections = list(pool._idle)
    assert len(connections) == 4
    c.close()
    for con in connections:  # closed, so no "unclosed database" ResourceWarning on 3.13
        with pytest.raises(sqlite3.ProgrammingError):
            con.execute("SELECT 1")


def test_a_connection_in_use_at_close_is_closed_when_given_back(tmp_path: Path) -> None:
    with VectorCache(tmp_path):
        pass
    pool = db.Pool(str(tmp_path / DB), 0.5)
    with pool.use() as con:
        pool.close()
        assert con.execute("SELECT count(*) FROM vectors").fetchone() == (0,)  # not yanked
    with pytest.raises(sqlite3.ProgrammingError):
        con.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError), pool.use():
        pass


def test_a_failed_statement_does_not_return_its_connection(tmp_path: Path) -> None:
    """It may hold a transaction open: the next use gets a new connection."""
    with VectorCache(tmp_path):
        pass
    pool = db.Pool(str(tmp_path / DB), 0.5)
    with pytest.raises(sqlite3.OperationalError), pool.use() as broken:
        broken.execute("BEGIN")
        broken.execute("SELECT * FROM no_such_table")
    with pool.use() as con:
        assert con is not broken and not con.in_transaction
    with pytest.raises(sqlite3.ProgrammingError):
        broken.execute("SELECT 1")
    pool.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_uses_its_own_connections(tmp_path: Path) -> None:
    with VectorCache(tmp_path) as c:
        c.set_many(NS, ["parent"], vectors(1))
        inherited = list(c._pool._idle)
        assert inherited
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork()"
            pid = os.fork()
        if pid == 0:  # the child: any failure is a non-zero exit
            code = 1
            try:
                warnings.simplefilter("error")
                c.set_many(NS, ["child"], vectors(1, seed=1))
                ok = c.get_many(NS, ["parent", "child"])[1].all()
                code = 0 if ok and not set(c._pool._idle) & set(inherited) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert c.get_many(NS, ["parent", "child"])[1].all()  # the parent's still work


def _write_in_a_process(directory: str, tag: str, seed: int) -> None:
    warnings.simplefilter("error")  # a soft failure would exit non-zero
    with VectorCache(directory) as c:
        m = vectors(2000, 256, seed=seed)
        texts = texts_for(2000, tag)
        for start in range(0, 2000, 100):
            c.set_many(NS, texts[start : start + 100], m[start : start + 100])


def test_a_cache_made_by_another_process_meanwhile_is_taken_for_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening reads the file's marks and its tables; when another process's commit of a new
    cache falls between the two reads, the file must not look like another program's."""
    path = str(tmp_path / DBNAME)
    mine, other = db.connect(path, 5.0), db.connect(path, 5.0)
    other.execute("PRAGMA journal_mode = WAL")  # an empty file, already in WAL
    real_layout = db._layout
    made = []

    def layout_then_other_commits(con: sqlite3.Connection) -> tuple[int, int]:
        found = real_layout(con)
        if con is mine and not made:
            made.append(True)
            db.prepare(other, 5.0)  # the other process makes the cache now
        return found

    monkeypatch.setattr(db, "_layout", layout_then_other_commits)
    try:
        db.prepare(mine, 5.0)  # no NotOurs
        assert made and real_layout(mine) == (db.APPLICATION_ID, db.SCHEMA_VERSION)
    finally:
        mine.close()
        other.close()


class _Locked:
    """A connection whose WAL switch is refused as locked ``times`` times (``message``)."""

    def __init__(self, times: int, message: str = "database is locked") -> None:
        self.tries, self.times, self.message = 0, times, message

    def execute(self, sql: str) -> _Locked:
        self.tries += 1
        if self.tries <= self.times:
            raise sqlite3.OperationalError(self.message)
        return self

    def fetchone(self) -> tuple[str]:
        return ("wal",)


def test_the_switch_to_wal_is_tried_again_while_another_process_holds_the_file() -> None:
    locked = _Locked(3)
    db._to_wal(locked, 5.0)  # type: ignore[arg-type]
    assert locked.tries == 4
    other = _Locked(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="I/O"):
        db._to_wal(other, 5.0)  # type: ignore[arg-type]
    assert other.tries == 1  # not a lock: not tried again
    stuck = _Locked(10**6)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db._to_wal(stuck, 0.05)  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_processes_write_one_directory(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_write_in_a_process, args=(str(tmp_path), tag, seed))
        for tag, seed in (("p1", 1), ("p2", 2))
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with VectorCache(tmp_path) as c:
        assert len(c) == 4000
        for tag, seed in (("p1", 1), ("p2", 2)):
            got, hit = c.get_many(NS, texts_for(2000, tag))
            assert hit.all() and np.array_equal(got, vectors(2000, 256, seed=seed))


# -- the bench's comparison with a raw SELECT -------------------------------------------------


def test_the_store_bench_reads_the_same_blobs_both_ways(tmp_path: Path) -> None:
    from embedsdk._bench import cache as bench
    from embedsdk._bench.report import cache_table

    row = bench.measure_store(40, 8, tmp_path)
    assert row.exact is True and row.write_s > 0
    assert len(row.cache_s) == len(row.raw_s) == bench.STORE_READS
    ratios = sorted(r / c for r, c in zip(row.raw_s, row.cache_s))
    assert row.ratio == ratios[len(ratios) // 2] > 0
    raw = sqlite3.connect(tmp_path / "raw.sqlite3")
    try:  # the raw table holds the very keys and bytes the cache holds
        assert sorted(raw.execute("SELECT key, value FROM t")) == sorted(
            db_rows(tmp_path / "store")
        )
    finally:
        raw.close()
    text = cache_table(bench.CacheResult(_bench_settings(), [], row))
    assert f"reads at {row.ratio * 100:.0f}% of the raw SELECT's speed" in text


def _bench_settings() -> dict[str, Any]:
    return {
        "texts": 40,
        "dim": 8,
        "latency_s": 0.0,
        "batch_size": 8,
        "concurrency": 2,
        "repeat": 1,
        "warm_runs": 3,
        "ceiling_cold_s": 0.0,
    }
