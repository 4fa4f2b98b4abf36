"""The cache's warm read path (issue 22): the keys it hashes, and how the rows it reads are put
in place.

Private access: the read's internals in ``cache._sqlite`` (the order it relies on, and its
fallbacks when that order or a new enough SQLite is missing) are the point, which the public
``get_many`` would only show as "still right".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk import VectorCache
from embedsdk.cache import _sqlite as db
from embedsdk.cache import cache_keys

ENDPOINT = "https://api.siliconflow.cn/v1/embeddings"
NS = VectorCache.namespace(ENDPOINT, "BAAI/bge-m3", None)


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_keys_are_the_blake2b_digests_every_cache_on_disk_was_written_with() -> None:
    """A changed key would turn every user's cache into misses (paid for again): the digests
    of the layout, pinned (computed before the hashing was reworked)."""
    assert NS.hex() == "3af8b5e9503f3973de5100e0d24f0f70"
    keys = cache_keys(NS, ["hello", "你好", "\ud800"])
    assert [k.hex() for k in keys] == [
        "069eedc24d9d3ac4604bacbe9ad33a94f180c83d",
        "f1e034a72e20e3060b5eee27bcee0c8788a8c9b7",
        "cd3436f9679a2746f7b8eee4b57d8e187bce16f9",  # a lone surrogate, passed through
    ]
    assert cache_keys(NS, []) == []
    assert cache_keys(NS, iter(["hello"])) == keys[:1]  # any iterable


@pytest.fixture
def cache(tmp_path: Path) -> Any:
    with VectorCache(tmp_path / "cache") as c:
        yield c


def _stored(cache: VectorCache, n: int, gaps: slice) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``n`` texts over several chunks, those at ``gaps`` not stored."""
    texts = [f"text {i}" for i in range(n)]
    m = vectors(n, 16)
    stored = np.ones(n, dtype=bool)
    stored[gaps] = False
    cache.set_many(NS, [t for t, s in zip(texts, stored) if s], m[stored])
    return texts, m, stored


def test_rows_in_another_order_than_the_keys_still_land_in_their_rows(
    cache: VectorCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read relies on rows coming back in the keys' order, which SQL does not promise: a
    SQLite that returned them otherwise gets the slow path, not rows in the wrong place."""
    select = db._select

    @functools.lru_cache(maxsize=8)
    def backwards(count: int) -> str:
        return select(count) + " ORDER BY k.column1 DESC"

    monkeypatch.setattr(db, "_select", backwards)
    texts, m, stored = _stored(cache, 2 * db.CHUNK + 9, slice(db.CHUNK + 5, None, 50))
    got, hit = cache.get_many(NS, texts)
    assert np.array_equal(hit, stored)
    assert got is not None and np.array_equal(got[hit], m[stored])
    full = np.ones(len(texts), dtype=bool)
    cache.set_many(NS, texts, m)  # every chunk whole, every one backwards
    got, hit = cache.get_many(NS, texts)
    assert np.array_equal(hit, full) and got is not None and np.array_equal(got, m)


def test_a_text_twice_in_one_chunk_gets_its_row_twice(cache: VectorCache) -> None:
    m = vectors(2)
    cache.set_many(NS, ["a", "b"], m)
    got, hit = cache.get_many(NS, ["a", "b", "a", "new", "a"])
    assert hit.tolist() == [True, True, True, False, True]
    assert got is not None and np.array_equal(got[[0, 1, 2, 4]], m[[0, 1, 0, 0]])


def test_an_old_sqlite_reads_with_in_and_gets_the_same_rows(
    cache: VectorCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite before 3.8.8 limits a VALUES list to 500 terms: the read uses ``IN`` there."""
    texts, m, stored = _stored(cache, 2 * db.CHUNK + 9, slice(3, None, 41))
    monkeypatch.setattr(db, "VALUES_JOIN", False)
    seen: list[str] = []
    select_in = db._select_in
    monkeypatch.setattr(db, "_select_in", lambda n: seen.append("in") or select_in(n))
    got, hit = cache.get_many(NS, [*texts, texts[7]])
    assert seen and np.array_equal(hit[:-1], stored) and hit[-1] == stored[7]
    assert got is not None and np.array_equal(got[:-1][stored], m[stored])


def test_a_chunk_with_no_row_found_leaves_its_rows_as_misses(cache: VectorCache) -> None:
    texts, m, _ = _stored(cache, 2 * db.CHUNK + 1, slice(0, db.CHUNK))
    got, hit = cache.get_many(NS, texts)
    assert not hit[: db.CHUNK].any() and hit[db.CHUNK :].all()
    assert got is not None and np.array_equal(got[db.CHUNK :], m[db.CHUNK :])


def test_vectors_ending_in_zeros_come_back_whole(cache: VectorCache) -> None:
    """Rows are copied as fixed-width byte strings, a kind numpy pads with NUL bytes: a row
    whose last floats are 0.0 (or all of them) must keep them, in whole chunks and in part."""
    m = vectors(db.CHUNK + 3, 4)
    m[0, 2:] = 0.0
    m[1] = 0.0
    m[-1, 1:] = 0.0
    texts = [f"z {i}" for i in range(len(m))]
    cache.set_many(NS, texts, m)
    got, hit = cache.get_many(NS, texts)
    assert hit.all() and got is not None and np.array_equal(got, m)
    got, hit = cache.get_many(NS, [texts[1], "missing", texts[-1]])  # the row-by-row path
    assert hit.tolist() == [True, False, True]
    assert got is not None and np.array_equal(got[[0, 2]], m[[1, -1]])
    assert np.signbit(got[[0, 2]]).sum() == np.signbit(m[[1, -1]]).sum()
