"""The disk cache on its own: keys, float32 storage, failing soft, threads and processes."""

from __future__ import annotations

import gc
import multiprocessing
import os
import sqlite3
import stat
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import diskcache
import numpy as np
import pytest

from embedsdk import _cache
from embedsdk._cache import VectorCache, default_cache_dir, normalise_endpoint, open_cache

ENDPOINT = "https://api.siliconflow.cn/v1/embeddings"
NS = VectorCache.namespace(ENDPOINT, "BAAI/bge-m3", None)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} text {i} ✓" for i in range(n)]


@pytest.fixture
def cache(tmp_path: Path):
    with VectorCache(tmp_path / "cache") as c:
        yield c


def db_rows(directory: Path) -> list[tuple]:
    con = sqlite3.connect(directory / "cache.db")
    try:
        return con.execute("SELECT key, raw, mode, filename, value FROM Cache").fetchall()
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
    odd = _cache._keys(NS, ["odd"])[0]
    cache._cache.set(odd, b"\x00" * 12)  # 3 dimensions among rows of 8
    got, hit = cache.get_many(NS, [*texts, "odd"])
    assert hit.tolist() == [True] * 5 + [False]
    assert got is not None and got.shape == (6, 8)


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
    keys = _cache._keys(NS, ["a", "b", "a"]) + _cache._keys(other, ["a"])
    assert keys[0] == keys[2] and len(set(keys)) == 3 and all(len(k) == 20 for k in keys)
    assert _cache._keys(NS, ["\ud800"])  # a lone surrogate does not crash


def test_neither_api_key_nor_text_reaches_the_disk(tmp_path: Path) -> None:
    secret = "sk-THIS-IS-SECRET"
    endpoint = f"https://user:{secret}@api.example.com/v1/embeddings?api_key={secret}"
    with VectorCache(tmp_path) as c:
        c.set_many(VectorCache.namespace(endpoint, "m", None), ["private words"], vectors(1))
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert secret.encode() not in blob
    assert b"private words" not in blob and "private words".encode("utf-16-le") not in blob


# -- storage: raw float32, never pickle -------------------------------------------------------


def test_values_are_raw_float32_bytes_not_pickles(tmp_path: Path) -> None:
    m = vectors(20, 1024)
    with VectorCache(tmp_path) as c:
        c.set_many(NS, texts_for(20), m)
    rows = db_rows(tmp_path)
    assert len(rows) == 20
    by_value = {bytes(r.tobytes()) for r in m}
    for key, raw, mode, filename, value in rows:
        assert type(key) is bytes and len(key) == 20 and raw == 1
        assert mode == diskcache.core.MODE_RAW and filename is None
        assert type(value) is bytes and len(value) == 4 * 1024
        assert value[:1] != b"\x80"  # the opcode every pickle of protocol >= 2 starts with
        assert value in by_value
    assert {p.name for p in tmp_path.iterdir()} <= {"cache.db", "cache.db-wal", "cache.db-shm"}


@pytest.mark.parametrize("raw_sql", [True, False])
def test_a_pickled_value_is_never_loaded(tmp_path: Path, raw_sql: bool) -> None:
    loaded = []

    class Boom:
        def __reduce__(self):
            return (loaded.append, ("unpickled!",))

    key = _cache._keys(NS, ["x"])[0]
    with diskcache.Cache(tmp_path) as plain:
        plain.set(key, Boom())  # a pickle where a vector should be
    with VectorCache(tmp_path) as c:
        c._raw = raw_sql
        got, hit = c.get_many(NS, ["x"])
    assert got is None and not hit.any() and loaded == []


def test_fallback_path_round_trip(cache: VectorCache) -> None:
    """The public-API path, used when diskcache's table is not the one we know."""
    assert cache._raw
    cache._raw = False
    m = vectors(30)
    cache.set_many(NS, texts_for(30), m)
    cache._raw = True  # written one way, read the other
    got, hit = cache.get_many(NS, texts_for(30))
    assert hit.all() and np.array_equal(got, m)
    cache._raw = False
    got, hit = cache.get_many(NS, [*texts_for(30), "missing"])
    assert hit[:30].all() and not hit[30] and np.array_equal(got[:30], m)


def test_unknown_schema_selects_the_fallback(tmp_path: Path) -> None:
    with VectorCache(tmp_path) as c:
        assert c._raw
    con = sqlite3.connect(tmp_path / "cache.db")
    con.execute("ALTER TABLE Cache RENAME COLUMN expire_time TO expires")
    con.commit()
    con.close()
    with VectorCache(tmp_path) as c:
        assert not c._raw


def test_eviction_keeps_the_size_limit(tmp_path: Path) -> None:
    limit = 2 * 2**20
    with VectorCache(tmp_path, size_limit=limit) as c:
        for i in range(8):  # 8 x 250 vectors of 4 KiB: 8 MiB in all
            c.set_many(NS, texts_for(250, tag=str(i)), vectors(250, 1024, seed=i))
        assert c.info()["size_bytes"] <= limit * 1.2
        assert 0 < len(c) < 2000
        assert c.get_many(NS, texts_for(250, tag="7"))[1].all()  # the newest stayed
        assert not c.get_many(NS, texts_for(250, tag="0"))[1].any()  # the oldest went


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
    (tmp_path / "cache.db").write_bytes(b"this is not an sqlite file" * 1000)
    with pytest.warns(RuntimeWarning, match="opening it failed"):
        c = open_cache(tmp_path)
    assert_disabled(c)


def test_a_file_in_the_way_disables_the_cache(tmp_path: Path) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    for spec in (in_the_way, in_the_way / "cache"):
        with pytest.warns(RuntimeWarning, match="cache"):
            c = open_cache(str(spec))
        assert_disabled(c)


def test_read_only_directory_disables_the_cache(tmp_path: Path) -> None:
    if IS_ROOT:  # root ignores permissions: a regular file at the path fails the same way
        target = tmp_path / "ro"
        target.write_bytes(b"")
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    try:
        with pytest.warns(RuntimeWarning, match="opening it failed"):
            c = open_cache(target)
        assert_disabled(c)
    finally:
        if target.is_dir():
            target.chmod(0o700)


def test_failure_while_open_warns_once_and_misses(cache: VectorCache, caplog) -> None:
    cache.set_many(NS, ["a"], vectors(1))
    con = sqlite3.connect(cache.directory / "cache.db")
    con.execute("DROP TABLE Cache")  # what a foreign tool or a broken disk might do
    con.commit()
    con.close()
    with pytest.warns(RuntimeWarning, match="reading failed") as record:
        got, hit = cache.get_many(NS, ["a"])
        assert got is None and not hit.any()
        cache.set_many(NS, ["b"], vectors(1))  # fails too, but the warning was given
        cache.get_many(NS, ["a"])
    assert len(record) == 1
    assert any("reading failed" in r.getMessage() for r in caplog.records)


def test_a_stuck_writer_skips_writes_without_blocking_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cache, "_WRITE_PATIENCE", 0.2)
    with VectorCache(tmp_path, timeout=0.05) as c:
        c.set_many(NS, ["a"], vectors(1))
        other = sqlite3.connect(tmp_path / "cache.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        try:
            assert c.get_many(NS, ["a"])[1].all()  # WAL: readers are not blocked
            with pytest.warns(RuntimeWarning, match="writing failed"):
                c.set_many(NS, ["b"], vectors(1))
            start = time.monotonic()
            c.set_many(NS, ["c"], vectors(1))  # cooling down: skipped at once
            assert time.monotonic() - start < 0.1
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert c.get_many(NS, ["a", "b", "c"])[1].tolist() == [True, False, False]


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
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: c.get_many(NS, [str(i)]), range(16)))
    inner = c._cache
    connections = list(inner._all)
    assert len(connections) >= 2
    c.close()
    for con in connections:  # closed, so no "unclosed database" ResourceWarning on 3.13
        with pytest.raises(sqlite3.ProgrammingError):
            con.execute("SELECT 1")
    gc.collect()


def _write_in_a_process(directory: str, tag: str, seed: int) -> None:
    warnings.simplefilter("error")  # a soft failure would exit non-zero
    with VectorCache(directory) as c:
        m = vectors(2000, 256, seed=seed)
        texts = texts_for(2000, tag)
        for start in range(0, 2000, 100):
            c.set_many(NS, texts[start : start + 100], m[start : start + 100])


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


# -- speed (printed, not asserted) ------------------------------------------------------------


@pytest.mark.slow
def test_throughput(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n, dim = 20_000, 1024
    m = vectors(n, dim)
    texts = texts_for(n)
    with VectorCache(tmp_path) as c:
        start = time.perf_counter()
        c.set_many(NS, texts, m)
        write = time.perf_counter() - start
        reads = []
        for _ in range(3):
            start = time.perf_counter()
            got, hit = c.get_many(NS, texts)
            reads.append(time.perf_counter() - start)
        assert hit.all() and np.array_equal(got, m)
    with capsys.disabled():
        print(
            f"\nVectorCache {n}x{dim}: write {n / write:,.0f} vectors/s,"
            f" read {n / min(reads):,.0f} vectors/s"
        )
