"""The embed command's input edge cases: line endings, line numbers in errors, pipes (and
Ctrl-C while one is slow), CSV columns, huge CSV fields, bad UTF-8, and clean one-line errors
for bad URLs and a missing home directory."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk import cli
from embedsdk.files import InputFileError, read_rows
from embedsdk.testing import SimulatedProvider, expected_matrix


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
    assert status == 2 and err.startswith("embedsdk: error: --base-url must not contain"), err
    assert "--api-key-file" in err and "api_key" not in err
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


def test_bench_refuses_a_negative_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "--scenario", "throughput", "--sizes", "10", "--repeat", "1"]
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--latency", "-1", "--no-chart", "--out", str(tmp_path), "-q"])
    assert info.value.code == 2  # bad usage, as for every other command
    err = capsys.readouterr().err
    assert err == "embedsdk bench: error: --latency must be seconds >= 0\n"


@pytest.mark.parametrize("argv", [["--scenario", "bogus"], ["--scenario", "fast,bogus"]])
def test_bench_unknown_scenario_is_a_usage_error_listing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", *argv, "--no-chart", "--out", str(tmp_path), "-q"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "embedsdk bench: error: unknown scenario 'bogus'; choose from throughput, fast, "
        "cache, warm, memory, adaptive, nginx, integrations, batch, batch-api, ray, or all\n"
    )
    assert not tmp_path.joinpath("bench").exists() and list(tmp_path.iterdir()) == []


# -- standard input ---------------------------------------------------------------------------


class _Stdin:
    """Standard input as the command finds it: a file descriptor (here, a pipe's)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False


def test_stdin_is_read_from_its_descriptor_in_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines cut across the 64 KiB reads, CRLF, a BOM and a last line without a newline."""
    lines = [f"line {i} " + "x" * (i * 37 % 5000) for i in range(400)]
    data = b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8")  # no final newline
    read, write = os.pipe()
    feeder = threading.Thread(target=lambda: (os.write(write, data), os.close(write)))
    monkeypatch.setattr(sys, "stdin", _Stdin(read))
    feeder.start()
    try:
        rows = list(read_rows("-"))
    finally:
        feeder.join()
        os.close(read)
    assert [row.text for row in rows] == lines
    assert [row.line for row in rows] == list(range(1, 401))


def _unread_bytes(fd: int) -> int:
    import fcntl
    import termios

    size = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, size)
    return int.from_bytes(size, sys.byteorder)


def _reading_stdin(pid: int) -> bool | None:
    """Whether a thread of ``pid`` waits in read(0, ...); None where that cannot be seen."""
    number = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine)
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    if number is None:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/syscall") as f:
                if f.read().split()[:2] == [number, "0x0"]:
                    return True
        except OSError:
            return None
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipes and /proc as on Linux")
def test_ctrl_c_while_stdin_is_a_slow_pipe(
    simulated_provider: SimulatedProvider, tmp_path: Path
) -> None:
    """Ctrl-C while the texts trickle in: exit 130, no partial file, and no "Fatal Python
    error: _enter_buffered_busy" (which a reader blocked in ``sys.stdin.buffer`` causes)."""
    read, write = os.pipe()
    out = tmp_path / "p.npy"
    argv = ["-m", "embedsdk", "embed", "-", "-o", str(out)]
    child = subprocess.Popen(
        [sys.executable, *argv, "--base-url", simulated_provider.base_url],
        stdin=read,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches a program in a terminal's foreground: SIGINT as by default, even
        # when the test runner was started in the background (where SIGINT is ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        os.write(write, b"x1\nx2\nx3\n")  # far fewer than a window: the reader waits for more
        deadline = time.monotonic() + 60
        while _unread_bytes(read) or not (tmp_path / "p.npy.partial").exists():
            assert time.monotonic() < deadline and child.poll() is None, "never started"
            time.sleep(0.01)
        while _reading_stdin(child.pid) is False:  # the reader is back in read(): blocked
            assert time.monotonic() < deadline, "the reader never waited for more"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        os.close(write)
        os.close(read)
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == 130, err
    assert err.strip().splitlines() == ["embedsdk: interrupted"]
    assert os.listdir(tmp_path) == []


# -- CSV columns ------------------------------------------------------------------------------


def test_csv_uses_the_column_named_text(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "in.csv").write_text("id,text,lang\n1,hello,en\n2,world,en\n")
    assert cli.main(["embed", "in.csv", "-o", "out.npy", "-q"]) == 0
    np.testing.assert_array_equal(np.load(env / "out.npy"), expected_matrix(["hello", "world"]))


def test_csv_without_a_text_column_is_refused_listing_the_columns(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    """Not the first column: in ``id,content`` that is the ids."""
    (env / "in.csv").write_text("id,content\n1,hello\n2,world\n")
    assert cli.main(["embed", "in.csv", "-o", "out.npy", "-q"]) == 1
    err = capsys.readouterr().err
    assert "in.csv: no CSV column named 'text'; the columns are 'id', 'content'" in err
    assert "--column" in err
    assert simulated_provider.stats()["requests"] == 0
    assert cli.main(["embed", "in.csv", "-o", "out.npy", "-q", "--column", "content"]) == 0
    np.testing.assert_array_equal(np.load(env / "out.npy"), expected_matrix(["hello", "world"]))


# -- CSV quotes ------------------------------------------------------------------------------


def test_csv_with_a_quote_left_open_is_refused_naming_its_line(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    """A quote still open at the end of the file would swallow every line after it into one
    text (csv's default, unlike pandas' "EOF inside string"): refused, naming where it opened."""
    (env / "b.csv").write_text('id,text\n1,"unterminated\n2,b\n3,c\n4,d\n')
    argv = ["embed", "b.csv", "-o", "b.jsonl", "--keep-text", "--id-field", "id", "-q"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("embedsdk: error: b.csv, line 2: ") and "quote" in err, err
    assert len(err.splitlines()) == 1
    assert simulated_provider.stats()["requests"] == 0
    assert not (env / "b.jsonl").exists()


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ('id,text\n1,a\n2,b\n3,"open\n4,d', 4),  # after good rows, no final newline
        ('id,text\r\n1,"open\r\n2,b\r\n', 2),  # CRLF
        ('"id,text\n1,a\n', 1),  # in the header
        ('id,text\n1,"a ""quoted"" word\nover two lines\n', 2),  # doubled quotes are not ends
    ],
)
def test_csv_quote_open_at_the_end_names_the_line_it_opened_on(
    tmp_path: Path, data: str, line: int
) -> None:
    (tmp_path / "in.csv").write_bytes(data.encode())
    with pytest.raises(InputFileError, match=rf"in\.csv, line {line}: .*quote"):
        list(read_rows(str(tmp_path / "in.csv"), id_field="id"))


def test_csv_quoted_fields_over_several_lines_still_read(tmp_path: Path) -> None:
    data = 'id,text\n1,"two\nlines"\n\n2,"a ""b"""\n3,x"y\n4,"z"w\n5,"last\nrecord"'
    (tmp_path / "in.tsv").write_text(data.replace(",", "\t"))
    (tmp_path / "in.csv").write_text(data)
    for name in ("in.csv", "in.tsv"):
        rows = list(read_rows(str(tmp_path / name), id_field="id"))
        assert [(r.line, r.id, r.text) for r in rows] == [
            (3, "1", "two\nlines"),
            (5, "2", 'a "b"'),
            (6, "3", 'x"y'),
            (7, "4", "zw"),  # as csv (and pandas) read a quote closed early
            (9, "5", "last\nrecord"),
        ]
