"""``embedsdk cache info|clear`` when the cache cannot be used: one clear line naming the path.

(The usual info and clear are in ``test_cli.py``.) The command runs in-process.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _read_only import read_only

from embedsdk import VectorCache, cli
from embedsdk.cache import DBNAME

NS = VectorCache.namespace("http://127.0.0.1:9/v1/embeddings", "BAAI/bge-m3", None)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; returns ``(status, stdout, stderr)``."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedsdk: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


# -- a file where the directory should be ------------------------------------------------------


@pytest.mark.parametrize("below", [False, True], ids=["the-file", "below-the-file"])
def test_cache_info_on_a_file_says_so(
    below: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    directory = in_the_way / "cache" if below else in_the_way
    status, out, err = run(capsys, "cache", "info", "--dir", str(directory))
    assert status == 0 and err == ""
    assert f"enabled    no ({in_the_way} is a file, not a directory)\n" in out, out


def test_cache_clear_on_a_file_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    for directory in (in_the_way, in_the_way / "cache"):
        status, out, err = run(capsys, "cache", "clear", "--dir", str(directory))
        assert (status, out) == (1, "")
        assert_one_error_line(err, f"{in_the_way} is a file, not a directory")
    assert in_the_way.read_text() == "not a directory"


# -- an unreadable database file ---------------------------------------------------------------


def corrupt_cache(directory: Path) -> Path:
    """A cache of 20 vectors whose first 100 bytes were then overwritten."""
    with VectorCache(directory) as cache:
        cache.set_many(NS, [f"t{i}" for i in range(20)], np.ones((20, 8), dtype=np.float32))
    with open(directory / DBNAME, "r+b") as f:
        f.write(b"\xff" * 100)
    return directory / DBNAME


def test_cache_info_on_a_corrupt_file_names_the_remedy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt_cache(tmp_path)
    status, out, err = run(capsys, "cache", "info", "--dir", str(tmp_path))
    assert status == 0 and err == ""  # the reason is in the output: no warning
    assert "enabled    no (DatabaseError: file is not a database; to start an empty one, run" in out
    assert f"`embedsdk cache clear --dir {tmp_path}` or delete {tmp_path / DBNAME})\n" in out


def test_cache_clear_replaces_a_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = corrupt_cache(tmp_path)
    status, out, err = run(capsys, "cache", "clear", "--dir", str(tmp_path))
    assert (status, err) == (0, "")
    assert out == f"deleted {database}, which could not be read: the cache at {tmp_path} is empty\n"
    with VectorCache(tmp_path) as cache:  # no warning: filterwarnings=error
        assert cache.enabled and len(cache) == 0
    assert "enabled    yes\n" in run(capsys, "cache", "info", "--dir", str(tmp_path))[1]


def test_cache_clear_leaves_another_programs_file_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    con = sqlite3.connect(tmp_path / DBNAME)
    con.execute("CREATE TABLE theirs (x)")
    con.commit()
    con.close()
    before = (tmp_path / DBNAME).read_bytes()
    status, out, err = run(capsys, "cache", "clear", "--dir", str(tmp_path))
    assert (status, out) == (1, "")
    assert_one_error_line(err, "is not a vector cache", f"delete {tmp_path / DBNAME} if nothing")
    assert (tmp_path / DBNAME).read_bytes() == before


# -- a read-only cache ----------------------------------------------------------------------------


def test_cache_info_and_clear_on_a_read_only_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with VectorCache(tmp_path) as cache:
        cache.set_many(NS, [f"t{i}" for i in range(20)], np.ones((20, 8), dtype=np.float32))
    with read_only(tmp_path, *tmp_path.iterdir()):
        status, out, err = run(capsys, "cache", "info", "--dir", str(tmp_path))
        assert (status, err) == (0, "")
        assert "enabled    yes (the directory is read-only: the vectors in it are used" in out
        assert "vectors    20\n" in out  # it used to say 0, and 0 B
        status, out, err = run(capsys, "cache", "clear", "--dir", str(tmp_path))
        assert (status, out) == (1, "")
        assert_one_error_line(err, f"the cache at {tmp_path} cannot be cleared", "read-only")
    with VectorCache(tmp_path) as cache:
        assert len(cache) == 20


# -- a model that changed its width under the same name ------------------------------------------


def test_embed_with_a_cache_of_another_width_is_one_error_line(
    simulated_provider_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A first window served whole by the cache (8 wide), the next one by a server that now
    answers 4 wide: a traceback from the .npy writer ("block has 4 columns"), now one line."""
    sim = simulated_provider_factory(dim=8)
    cache = tmp_path / "cache"
    texts = [f"text {i}" for i in range(1100)]
    args = ["--base-url", sim.base_url, "--cache-dir", str(cache), "--batch-size", "10", "-q"]
    window = 1024  # the stream's window for these flags
    (tmp_path / "old.txt").write_text("\n".join(texts[:window]) + "\n", encoding="utf-8")
    (tmp_path / "all.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert (
        run(capsys, "embed", str(tmp_path / "old.txt"), "-o", str(tmp_path / "a.npy"), *args)[0]
        == 0
    )
    sim.configure(dim=4)
    status, _, err = run(
        capsys,
        "embed",
        str(tmp_path / "all.txt"),
        "-o",
        str(tmp_path / "b.npy"),
        *args,
        "--max-concurrent",
        "1",
    )
    assert status == 1
    assert_one_error_line(
        err,
        f"the cache at {cache} had given this client vectors of 8",
        f"embedsdk cache clear --dir {cache}",
    )
    assert not (tmp_path / "b.npy").exists()
