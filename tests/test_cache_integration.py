"""The disk cache seen through the clients: every entry point, keys, resuming, failing soft.

Requests are counted server-side by the simulated provider (or by a :class:`MockTransport`
handler where a failure must come at an exact request). Every "second run" uses a new client,
so what it finds can only come from the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _read_only import read_only

import embedsdk
from embedsdk import (
    AsyncEmbedder,
    Embedder,
    EmbedSDKError,
    InternalServerError,
    MockTransport,
    Request,
    Response,
)
from embedsdk.cache import DBNAME
from embedsdk.testing import SimulatedProvider, expected_matrix

MODEL = "BAAI/bge-m3"
DIM = 64


WINDOW = 50  # of the streams below: each window is looked up (and de-duplicated) on its own


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} {i}: 缓存 cache ✓" for i in range(n)]


def lookups(texts: list[str], entry: str) -> int:
    """Cache lookups a call makes: one per distinct text (per window, for a stream)."""
    window = WINDOW if "stream" in entry else len(texts)
    return sum(len(set(texts[i : i + window])) for i in range(0, len(texts), window))


# -- one function per entry point: embed texts with a fresh client, return (vectors, stats) --


async def _async_embedder(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
    async with AsyncEmbedder(**options) as emb:
        return await emb.embed(texts, max_concurrent=3), emb.stats


async def _async_stream(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
    async with AsyncEmbedder(**options) as emb:
        blocks = [b async for _, b in emb.embed_stream(iter(texts), window=WINDOW)]
        return np.concatenate(blocks), emb.stats


def via_async_embedder(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
    return asyncio.run(_async_embedder(texts, **options))


def via_async_stream(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
    return asyncio.run(_async_stream(texts, **options))


def via_embedder(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
    with Embedder(**options) as emb:
        return emb.embed(texts), emb.stats


def via_sync_stream(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
    with Embedder(**options) as emb:
        blocks = [b for _, b in emb.embed_stream(iter(texts), window=WINDOW)]
        return np.concatenate(blocks), emb.stats


def _module(function: Callable[..., Any]) -> Callable[..., tuple[np.ndarray, Any]]:
    def call(texts: list[str], **options: Any) -> tuple[np.ndarray, Any]:
        vectors = function(texts, **options)
        embedsdk.close_default_clients()  # the next call gets a new client
        return vectors, None

    return call


def _get_async(texts: list[str], **options: Any) -> np.ndarray:
    result: np.ndarray = asyncio.run(embedsdk.get_batch_embeddings_async(texts, 3, **options))
    return result


ENTRY_POINTS = {
    "AsyncEmbedder.embed": via_async_embedder,
    "AsyncEmbedder.embed_stream": via_async_stream,
    "Embedder.embed": via_embedder,
    "Embedder.embed_stream": via_sync_stream,
    "get_batch_embeddings": _module(embedsdk.get_batch_embeddings),
    "get_batch_embeddings_concurrent": _module(
        lambda texts, **o: embedsdk.get_batch_embeddings_concurrent(texts, 3, **o)
    ),
    "get_batch_embeddings_async": _module(_get_async),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_hits_and_misses_through_every_entry_point(
    entry: str, simulated_provider: SimulatedProvider
) -> None:
    sim = simulated_provider
    call = ENTRY_POINTS[entry]
    options = {"base_url": sim.base_url, "dimensions": DIM, "batch_size": 8}
    texts = texts_for(120)

    # cold, for half the texts
    vectors, stats = call(texts[:60], **options)
    np.testing.assert_array_equal(vectors, expected_matrix(texts[:60], MODEL, DIM))
    assert sim.stats()["inputs"] == 60
    if stats is not None:
        assert (stats.cache_hits, stats.cache_misses) == (0, 60)

    # all of them, shuffled and with duplicates: only the 60 new texts are sent, and hits and
    # fetched rows are merged back in input order
    mixed = [texts[i] for i in np.random.default_rng(0).permutation(120)] + texts[:5] + texts[-5:]
    sim.reset_stats()
    vectors, stats = call(mixed, **options)
    np.testing.assert_array_equal(vectors, expected_matrix(mixed, MODEL, DIM))
    assert set(sim.stats()["texts"]) == set(texts[60:])
    assert sim.stats()["inputs"] == 60
    if stats is not None:
        assert stats.inputs_sent == 60
        assert stats.cache_hits + stats.cache_misses == lookups(mixed, entry)
        if "stream" not in entry:  # (a stream's windows each count their own lookups)
            assert (stats.cache_hits, stats.cache_misses) == (60, 60)

    # warm: not one request
    sim.reset_stats()
    vectors, stats = call(mixed, **options)
    np.testing.assert_array_equal(vectors, expected_matrix(mixed, MODEL, DIM))
    assert sim.stats()["requests"] == 0
    if stats is not None:
        assert (stats.cache_misses, stats.requests) == (0, 0)
        assert stats.cache_hits == lookups(mixed, entry)


# -- what the key depends on ---------------------------------------------------------------


def test_key_changes_with_model_dimensions_and_endpoint(simulated_provider_factory: Any) -> None:
    sim, other = simulated_provider_factory(), simulated_provider_factory()
    texts = texts_for(20)

    def requests_for(server: SimulatedProvider, **options: Any) -> int:
        server.reset_stats()
        vectors, _ = via_embedder(texts, base_url=server.base_url, **options)
        model = options.get("model", MODEL)
        np.testing.assert_array_equal(
            vectors, expected_matrix(texts, model, options.get("dimensions") or 1024)
        )
        return int(server.stats()["requests"])

    assert requests_for(sim, dimensions=32) > 0
    assert requests_for(sim, dimensions=32) == 0  # same everything: cached
    assert requests_for(sim, dimensions=48) > 0  # other dimensions
    assert requests_for(sim) > 0  # no dimensions at all
    assert requests_for(sim, model="Qwen/Qwen3-Embedding-8B", dimensions=32) > 0  # other model
    assert requests_for(other, dimensions=32) > 0  # other endpoint (another port)
    for options in ({"dimensions": 32}, {"dimensions": 48}, {}):
        assert requests_for(sim, **options) == 0
    assert requests_for(other, dimensions=32) == 0


def test_key_does_not_change_with_the_api_key(
    simulated_provider: SimulatedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = simulated_provider
    texts = texts_for(30)
    via_embedder(texts, base_url=sim.base_url, api_key="sk-first-key")
    sim.reset_stats()
    monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-second-key")
    vectors, stats = via_embedder(texts, base_url=sim.base_url)
    assert sim.stats()["requests"] == 0 and stats.cache_hits == 30
    np.testing.assert_array_equal(vectors, expected_matrix(texts))


def test_no_api_key_nor_text_in_any_cache_file(
    simulated_provider: SimulatedProvider, tmp_path: Path
) -> None:
    key = "sk-THE-SECRET-KEY-0123456789abcdef"
    secret_text = "a confidential sentence that must not be stored 机密"
    directory = tmp_path / "cache"
    with Embedder(base_url=simulated_provider.base_url, api_key=key, cache=str(directory)) as emb:
        emb.embed([*texts_for(40), secret_text])
        for _, _ in emb.embed_stream(texts_for(30, "s")):
            pass
        files = [p for p in directory.rglob("*") if p.is_file()]
        assert files  # checked while open too: the WAL holds the latest writes
        contents = [p.read_bytes() for p in files]
    contents += [p.read_bytes() for p in directory.rglob("*") if p.is_file()]
    for needle in (key, key[3:], secret_text):
        for encoding in ("utf-8", "utf-16-le"):
            assert not any(needle.encode(encoding) in blob for blob in contents)


# -- resuming ------------------------------------------------------------------------------


class FailsAfter:
    """A server that answers ``ok`` requests, then fails every request with a 500."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.requests = 0
        self.inputs: list[str] = []

    def __call__(self, request: Request) -> Response:
        self.requests += 1
        inputs = request.json()["input"]
        if self.requests > self.ok:
            return Response(500, {}, b'{"code": 50505, "message": "overloaded", "data": null}')
        self.inputs += inputs
        data = [
            {"index": i, "embedding": expected_matrix([t], MODEL, 8)[0].tolist()}
            for i, t in enumerate(inputs)
        ]
        return Response(200, {}, json.dumps({"data": data}).encode())


@pytest.mark.parametrize("stream", [False, True], ids=["embed", "embed_stream"])
def test_rerun_after_an_interrupted_run_requests_only_the_missing_texts(
    stream: bool, tmp_path: Path
) -> None:
    texts = texts_for(100)
    options = {
        "base_url": "http://127.0.0.1:9/v1",
        "batch_size": 10,
        "max_concurrent": 1,
        "max_retries": 0,
        "dimensions": 8,
    }

    async def run(server: FailsAfter) -> np.ndarray:
        async with AsyncEmbedder(transport=MockTransport(server), **options) as emb:
            if not stream:
                return await emb.embed(texts)
            blocks = [b async for _, b in emb.embed_stream(texts, window=100)]
            return np.concatenate(blocks)

    first = FailsAfter(ok=3)
    with pytest.raises(InternalServerError) as info:
        asyncio.run(run(first))
    assert first.inputs == texts[:30]
    assert info.value.failed_indices == list(range(30, 100))

    second = FailsAfter(ok=10**6)
    vectors = asyncio.run(run(second))
    assert second.inputs == texts[30:]  # exactly the missing texts, in order
    np.testing.assert_array_equal(vectors, expected_matrix(texts, MODEL, 8))


# -- stats ---------------------------------------------------------------------------------


def test_stats_count_requests_retries_tokens_hits_and_misses(
    simulated_provider: SimulatedProvider,
) -> None:
    sim = simulated_provider
    texts = texts_for(50) + texts_for(10)  # 10 duplicates: counted once
    with Embedder(base_url=sim.base_url, batch_size=10, dimensions=DIM) as emb:
        emb.embed(texts)
        s = emb.stats
        assert (s.requests, s.retries, s.inputs_sent) == (5, 0, 50)
        assert (s.cache_hits, s.cache_misses) == (0, 50)
        assert s.tokens == sim.stats()["tokens"] > 0  # the server's own count
        emb.embed(texts)
        assert (s.requests, s.inputs_sent, s.cache_hits, s.cache_misses) == (5, 50, 50, 50)

    answers = iter([503, 200])

    def flaky(request: Request) -> Response:
        inputs = request.json()["input"]
        if next(answers) == 503:
            return Response(503, {}, b'{"code": 50505, "message": "busy"}')
        data = [{"index": i, "embedding": [1.0, 2.0]} for i in range(len(inputs))]
        return Response(200, {}, json.dumps({"data": data, "usage": {"prompt_tokens": 7}}).encode())

    with Embedder(base_url="http://127.0.0.1:9/v1", transport=MockTransport(flaky)) as emb:
        emb.embed(["a", "b"])
        assert (emb.stats.requests, emb.stats.retries, emb.stats.tokens) == (2, 1, 7)

    with Embedder(base_url=sim.base_url, cache=False) as emb:
        emb.embed(["x"])
        assert (emb.stats.cache_hits, emb.stats.cache_misses) == (0, 0)


# -- failing soft --------------------------------------------------------------------------


def _unusable(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    if kind == "read-only database":
        # What SQLite says on a read-only file system, reproduced even for root: every new
        # connection refuses writes (the cache is SQLite's, through the sqlite3 module).
        via_embedder(
            texts_for(5),
            base_url="http://127.0.0.1:9/v1",
            cache=str(directory),
            transport=MockTransport(FailsAfter(10)),
            dimensions=8,
        )
        connect = sqlite3.connect

        def read_only(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            con = connect(*args, **kwargs)
            con.execute("PRAGMA query_only = 1")
            return con

        monkeypatch.setattr(sqlite3, "connect", read_only)
    if kind == "corrupt":
        directory.mkdir()
        (directory / DBNAME).write_bytes(b"this is not an SQLite database " * 200)
    elif kind == "a file in the way":
        directory.write_text("not a directory")
    return directory


@pytest.mark.parametrize("kind", ["corrupt", "read-only database", "a file in the way"])
def test_unusable_cache_warns_and_results_stay_correct(
    kind: str,
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = _unusable(kind, tmp_path, monkeypatch)
    texts = texts_for(40)
    try:
        for entry in ("AsyncEmbedder.embed", "Embedder.embed_stream", "get_batch_embeddings"):
            simulated_provider.reset_stats()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                vectors, _ = ENTRY_POINTS[entry](
                    texts, base_url=simulated_provider.base_url, cache=str(directory)
                )
            np.testing.assert_array_equal(vectors, expected_matrix(texts))
            assert simulated_provider.stats()["inputs"] == 40  # nothing cached: all fetched
            messages = [str(w.message) for w in caught]
            assert len(messages) == 1, messages  # one warning per client, not per batch
            assert caught[0].category is RuntimeWarning
            assert "embedsdk cache at" in messages[0] and "going on without" in messages[0]
    finally:
        if directory.is_dir():
            for path in [directory, *directory.iterdir()]:
                path.chmod(0o700)


def test_a_read_only_cache_serves_its_vectors(
    simulated_provider: SimulatedProvider, tmp_path: Path
) -> None:
    """Filled, then made read-only (``read_only`` says how, for root too): its vectors are
    served, only the new texts are sent, and one warning says that they are not stored."""
    sim, directory = simulated_provider, tmp_path / "cache"
    old, new = texts_for(40), texts_for(10, "new")
    via_embedder(old, base_url=sim.base_url, cache=str(directory))
    sim.reset_stats()
    with read_only(directory, *directory.iterdir()):
        for entry in ("Embedder.embed", "AsyncEmbedder.embed_stream"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                vectors, _ = ENTRY_POINTS[entry](old + new, base_url=sim.base_url, cache=directory)
            np.testing.assert_array_equal(vectors, expected_matrix(old + new))
            messages = [str(w.message) for w in caught]
            assert len(messages) == 1, messages
            assert "the directory is read-only: the vectors in it are used" in messages[0]
    assert sim.stats()["inputs"] == 2 * len(new)  # the new texts, each run: none was stored


def test_a_directory_of_the_old_layout_just_works(
    simulated_provider: SimulatedProvider, tmp_path: Path
) -> None:
    """A cache written by the diskcache-based versions: ignored (its vectors are fetched
    again), no warning, and cleared by `embedsdk cache clear`."""
    directory = tmp_path / "cache"
    directory.mkdir()
    con = sqlite3.connect(directory / "cache.db")
    con.execute("CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)")
    con.execute("CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER)")
    con.commit()
    con.close()
    texts = texts_for(30)
    for requests in (True, False):
        simulated_provider.reset_stats()
        vectors, _ = via_embedder(texts, base_url=simulated_provider.base_url, cache=directory)
        np.testing.assert_array_equal(vectors, expected_matrix(texts))
        assert (simulated_provider.stats()["requests"] > 0) is requests
    assert subprocess.run(
        [sys.executable, "-m", "embedsdk", "cache", "clear", "--dir", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.startswith("removed 30 vectors")
    assert sorted(p.name for p in directory.iterdir() if p.name.startswith("cache.db")) == []


# -- a model that changed its width under the same name --------------------------------------


def test_a_cache_of_another_width_than_the_answers_fails_at_once_naming_it(
    simulated_provider_factory: Any, tmp_path: Path
) -> None:
    """The vectors the cache gave fix the width of the result (of a stream's blocks too):
    answers of another width are no passing fault, and the cache is to blame. A stream used
    to hand out blocks of both widths, and a call blamed "the model or the cache"."""
    sim = simulated_provider_factory(dim=8)
    directory = tmp_path / "cache"
    old, new = texts_for(WINDOW), texts_for(WINDOW, "new")
    via_embedder(old, base_url=sim.base_url, cache=directory)
    sim.configure(dim=4)  # the same model, under the same name, now 4 wide
    options = {"base_url": sim.base_url, "cache": directory, "max_concurrent": 1}
    # a stream whose first window is all hits, the next all misses; a call with both
    for entry, texts in (
        ("Embedder.embed_stream", old + new),
        ("Embedder.embed", old[:10] + new[:10]),
    ):
        sim.reset_stats()
        with pytest.raises(EmbedSDKError) as info:
            ENTRY_POINTS[entry](texts, batch_size=10, **options)
        message = str(info.value)
        assert f"the cache at {directory} had given this client vectors of 8" in message
        assert f"run `embedsdk cache clear --dir {directory}`" in message
        assert sim.stats()["requests"] == 1  # not retried


def test_cached_vectors_of_another_width_than_the_answers_are_fetched_again(
    simulated_provider_factory: Any, tmp_path: Path
) -> None:
    """A client whose answers are 4 wide does not serve cached vectors 8 wide: they are
    fetched again, and replaced in the cache."""
    sim = simulated_provider_factory(dim=8)
    directory = tmp_path / "cache"
    old = texts_for(20)
    via_embedder(old, base_url=sim.base_url, cache=directory)
    sim.configure(dim=4)
    with Embedder(base_url=sim.base_url, cache=directory) as emb:
        emb.embed(texts_for(5, "first"))  # answers of 4: the width of this client
        sim.reset_stats()
        vectors = emb.embed(old)
    np.testing.assert_array_equal(vectors, expected_matrix(old, MODEL, 4))
    assert sim.stats()["inputs"] == 20
    sim.reset_stats()
    vectors, _ = via_embedder(old, base_url=sim.base_url, cache=directory)
    np.testing.assert_array_equal(vectors, expected_matrix(old, MODEL, 4))
    assert sim.stats()["requests"] == 0


# -- several processes -----------------------------------------------------------------------


def test_two_processes_embedding_into_one_cache_at_once(
    simulated_provider_factory: Any, tmp_path: Path
) -> None:
    """Two ``embedsdk embed`` processes with overlapping inputs write one cache directory at
    the same time; both succeed, and afterwards everything is a hit."""
    sim = simulated_provider_factory(latency=0.002)
    texts = texts_for(1_500)
    inputs = {"a": texts[:1_000], "b": texts[500:]}
    for name, chunk in inputs.items():
        (tmp_path / f"{name}.txt").write_text("\n".join(chunk) + "\n", encoding="utf-8")
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "embedsdk",
                "embed",
                str(tmp_path / f"{name}.txt"),
                "-o",
                str(tmp_path / f"{name}.npy"),
                "--base-url",
                sim.base_url,
                "--dimensions",
                str(DIM),
                "--batch-size",
                "10",
                "-q",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in inputs
    ]
    errors = [child.communicate(timeout=120)[1] for child in children]
    assert [child.returncode for child in children] == [0, 0], errors
    assert errors == ["", ""]  # no warning: neither process gave up on the cache
    for name, chunk in inputs.items():
        got = np.load(tmp_path / f"{name}.npy")
        np.testing.assert_array_equal(got, expected_matrix(chunk, MODEL, DIM))
    sim.reset_stats()
    vectors, stats = via_embedder(texts, base_url=sim.base_url, dimensions=DIM)
    assert sim.stats()["requests"] == 0 and stats.cache_hits == 1_500
    np.testing.assert_array_equal(vectors, expected_matrix(texts, MODEL, DIM))
