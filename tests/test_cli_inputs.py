"""The embed command's input edge cases: line endings, line numbers in errors, pipes, huge
CSV fields, bad UTF-8, and clean one-line errors for bad URLs and a missing home directory."""

from __future__ import annotations

import json
import os
import pathlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk import cli
from embedsdk.testing import expected_matrix


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, simulated_provider: Any) -> Path:
    monkeypatch.setenv("EMBEDSDK_BASE_URL", simulated_provider.base_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_lone_carriage_return_does_not_split_a_line(env: Path) -> None:
    (env / "in.txt").write_bytes(b"alpha\rbeta\ngamma\n")  # two lines, as wc -l says
    assert cli.main(["embed", "in.txt", "-o", "out.npy", "-q"]) == 0
    np.testing.assert_array_equal(
        np.load(env / "out.npy"), expected_matrix(["alpha\rbeta", "gamma"])
    )


def test_line_numbers_count_newlines_only(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "in.txt").write_bytes(b"one\rtwo\n\nthree\n")  # the empty text is on line 2
    assert cli.main(["embed", "in.txt", "-o", "out.npy", "-q"]) == 1
    assert "line 2 is empty" in capsys.readouterr().err


def test_a_too_long_text_is_named_by_its_line(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "in.jsonl").write_text(
        json.dumps({"text": "a"}) + "\n\n\n" + json.dumps({"text": "x" * 100_000}) + "\n"
    )
    assert cli.main(["embed", "in.jsonl", "-o", "out.npy", "-q"]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl, line 4" in err, err  # not the stream index texts[1]
    assert "--truncate" in err and "truncate=True" not in err


def test_a_named_pipe_is_read(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = env / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("a\nb\n"))
    writer.start()
    try:
        status = cli.main(["embed", str(fifo), "-o", "out.npy", "-q"])
        err = capsys.readouterr().err
    finally:
        if writer.is_alive():  # unblock the writer if the command never opened the pipe
            with open(fifo) as f:
                f.read()
        writer.join()
    assert status == 0, err
    np.testing.assert_array_equal(np.load(env / "out.npy"), expected_matrix(["a", "b"]))


def test_csv_fields_longer_than_the_csv_default_limit(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "in.csv").write_text("text\nshort\n" + "y" * 200_000 + "\n")
    status = cli.main(["embed", "in.csv", "--truncate", "-o", "out.npy", "-q"])
    assert status == 0, capsys.readouterr().err
    assert np.load(env / "out.npy").shape[0] == 2


def test_bad_utf8_names_its_line(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(20000))
    (env / "in.txt").write_bytes(lines + b"bad \xff\n")
    assert cli.main(["embed", "in.txt", "-o", "out.npy", "-q"]) == 1
    assert "line 20001 is not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["user:pw@", "?x=1", "#frag"])
def test_a_base_url_with_credentials_query_or_fragment_is_refused(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: Any, suffix: str
) -> None:
    (env / "in.txt").write_text("a\n")
    base = simulated_provider.base_url
    url = base.replace("http://", "http://user:pw@") if "@" in suffix else base + suffix
    status = cli.main(["embed", "in.txt", "-o", "out.npy", "-q", "--base-url", url])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("embedsdk: error: base_url must not contain"), err
    assert "pw" not in err  # the URL, which may hold a secret, is not echoed
    assert simulated_provider.stats()["requests"] == 0


def test_cache_info_without_a_home_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EMBEDSDK_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home(cls: Any) -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(pathlib.Path, "home", classmethod(no_home))
    assert cli.main(["cache", "info"]) == 1
    assert "EMBEDSDK_CACHE_DIR" in capsys.readouterr().err


def test_bench_refuses_a_negative_latency(tmp_path: Path) -> None:
    args = ["bench", "--scenario", "throughput", "--sizes", "10", "--repeat", "1"]
    with pytest.raises(SystemExit, match="latency"):
        cli.main([*args, "--latency", "-1", "--no-chart", "--out", str(tmp_path), "-q"])
