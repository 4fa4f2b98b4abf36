"""Two ``embedsdk embed`` runs into the same OUTPUT: the second is refused while the first
holds ``OUTPUT.lock``, and a run killed with SIGKILL leaves no lock behind it.

The first run is a real process whose INPUT is a named pipe: it takes the lock before it
opens its input, so once the test's ``open()`` of the pipe for writing returns, the first run
holds the lock, and it keeps holding it until the test has written the texts. No waiting on
the clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from embedsdk import cli
from embedsdk.files import OutputFileError, OutputUsageError, lock_output
from embedsdk.testing import SimulatedProvider, expected_matrix

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")

DIM = 16


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, simulated_provider: Any) -> Path:
    monkeypatch.setenv("EMBEDSDK_BASE_URL", simulated_provider.base_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file() or p.is_fifo())


class FirstRun:
    """``embedsdk embed pipe -o OUTPUT`` in a child process, stopped at its input."""

    def __init__(self, directory: Path, output: str) -> None:
        os.mkfifo(directory / "pipe")
        argv = [sys.executable, "-m", "embedsdk", "embed", "pipe", "-o", output, "-q"]
        self.child = subprocess.Popen(
            [*argv, "--dimensions", str(DIM)],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._pipe: list[IO[bytes]] = []
        opener = threading.Thread(target=self._open, args=(directory / "pipe",), daemon=True)
        opener.start()
        while opener.is_alive():  # until the child opens its input (or dies before)
            opener.join(0.05)
            if self.child.poll() is not None and opener.is_alive():
                self._unblock(directory / "pipe")
        assert self._pipe and self.child.poll() is None, self.finish()

    def _open(self, path: Path) -> None:
        self._pipe.append(open(path, "wb"))  # noqa: SIM115 (closed in write_and_finish)

    @staticmethod
    def _unblock(path: Path) -> None:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))

    def write_and_finish(self, texts: list[str]) -> tuple[int, str]:
        self._pipe[0].write(("\n".join(texts) + "\n").encode())
        self._pipe[0].close()
        return self.finish()

    def finish(self) -> tuple[int, str]:
        for pipe in self._pipe:
            pipe.close()
        _, err = self.child.communicate(timeout=60)
        return self.child.returncode, err.decode()


@pytest.fixture
def first_run(env: Path) -> Iterator[list[FirstRun]]:
    runs: list[FirstRun] = []
    yield runs
    for run in runs:
        if run.child.poll() is None:
            run.child.kill()
        run.finish()


def embed(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = cli.main(["embed", *argv, "--dimensions", str(DIM)])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("output", ["x.jsonl", "x.npy", "x.parquet"])
def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(
    env: Path,
    first_run: list[FirstRun],
    capsys: pytest.CaptureFixture[str],
    simulated_provider: SimulatedProvider,
    output: str,
) -> None:
    if output.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    a_texts = [f"a {i}" for i in range(300)]
    (env / "b.txt").write_text("b 1\nb 2\n")
    first_run.append(FirstRun(env, output))
    a = first_run[0]

    status, err = embed(capsys, "b.txt", "-o", output)
    assert status == 1, err
    assert err == (
        f"embedsdk: error: {output} is being written by another embedsdk embed (process "
        f"{a.child.pid}, which holds {output}.lock): wait for it to end, or choose another -o\n"
    )
    assert simulated_provider.stats()["requests"] == 0  # refused before anything is sent
    status, err = embed(capsys, "b.txt", "-o", output, "--force")  # --force does not break it
    assert status == 1 and "being written by another" in err

    status, err = a.write_and_finish(a_texts)
    assert status == 0, err
    assert files(env) == sorted(["b.txt", "pipe", output])  # no .lock, no .partial
    status, err = embed(capsys, "b.txt", "-o", output)  # free again: B replaces A's output
    assert status == 0, err
    if output.endswith(".npy"):
        np.testing.assert_array_equal(
            np.load(env / output), expected_matrix(["b 1", "b 2"], dim=DIM)
        )
    assert files(env) == sorted(["b.txt", "pipe", output])


def test_a_run_killed_with_sigkill_leaves_the_output_free(
    env: Path, first_run: list[FirstRun], capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "b.txt").write_text("b 1\nb 2\n")
    first_run.append(FirstRun(env, "x.npy"))
    assert embed(capsys, "b.txt", "-o", "x.npy")[0] == 1
    first_run[0].child.send_signal(signal.SIGKILL)
    assert first_run[0].finish()[0] == -signal.SIGKILL
    assert "x.npy.lock" in files(env)  # left behind, but nobody holds it any more

    status, err = embed(capsys, "b.txt", "-o", "x.npy")
    assert status == 0, err
    np.testing.assert_array_equal(np.load(env / "x.npy"), expected_matrix(["b 1", "b 2"], dim=DIM))
    assert files(env) == ["b.txt", "pipe", "x.npy"]


def test_the_lock_in_one_process(tmp_path: Path) -> None:
    """flock locks belong to an open file: a second one in the same process is refused too."""
    out = str(tmp_path / "v.npy")
    busy = pytest.raises(OutputFileError, match=r"v\.npy is being written by")
    with lock_output(out):
        held = (tmp_path / "v.npy.lock").read_text()
        assert held == f"embedsdk embed, process {os.getpid()}\n"
        with busy as refused, lock_output(out):
            pass  # pragma: no cover
    assert not isinstance(refused.value, OutputUsageError)  # a failure of the run: exit 1
    assert not (tmp_path / "v.npy.lock").exists()
    with lock_output(out):  # taken again once released
        pass
    for unlocked in ("-", os.devnull):  # standard output and devices take no lock
        with lock_output(unlocked):
            pass


def test_a_lock_file_that_is_not_ours_is_left_alone(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    (env / "in.txt").write_text("one\n")
    (env / "v.npy.lock").write_text("my notes\n")
    status, err = embed(capsys, "in.txt", "-o", "v.npy")
    assert status == 2 and "v.npy.lock exists and is not embedsdk's lock" in err, err
    assert (env / "v.npy.lock").read_text() == "my notes\n"
    status, err = embed(capsys, "v.npy.lock", "-o", "v.npy", "--force")
    assert status == 2 and "refusing to write over the input v.npy.lock" in err, err
    assert (env / "v.npy.lock").read_text() == "my notes\n"
    assert simulated_provider.stats()["requests"] == 0


def test_a_file_system_without_locks_warns_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)  # the lock's own module's, too
    with lock_output(str(tmp_path / "v.npy")):
        pass
    assert "cannot lock" in caplog.text and "v.npy.lock" in caplog.text
    assert list(tmp_path.iterdir()) == []
