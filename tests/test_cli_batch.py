"""``embedsdk embed --via batch`` and ``embedsdk batch status|cancel|list`` (issue 23).

The command runs in-process through :func:`embedsdk.cli.main` against the simulated provider
on a thread of its own, with batches that take a fraction of a second (the library's own
tests, tests/test_batchapi.py, run the same code in simulated time). Nothing here asserts a
duration: each step waits for the job's state, not for a clock.

Private access: the first poll wait (``_job.POLL_FIRST``, 2 s for a real provider) is made
short, so that a batch of a fraction of a second is seen done at once; it has no option.
"""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from embedsdk import cli
from embedsdk.batchapi import _job
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 16
MODEL = "BAAI/bge-m3"
FAST = {"batch_validation": 0.01, "batch_per_request": 0.002, "batch_finalizing": 0.01}


@pytest.fixture(autouse=True)
def _short_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_job, "POLL_FIRST", 0.01)


@pytest.fixture
def sim() -> SimulatedProvider:
    with SimulatedProvider(dim=DIM, **FAST) as provider:
        yield provider


def texts_for(n: int) -> list[str]:
    return [f"t {i}: 今天天气很好, the weather is nice" for i in range(n)]


def corpus(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def embed(sim: SimulatedProvider, source: Path, output: Path, *extra: str) -> list[str]:
    return ["embed", str(source), "-o", str(output), "--via", "batch",
            "--base-url", sim.base_url, "--model", MODEL, *extra]  # fmt: skip


def test_via_batch_writes_the_same_output_and_removes_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    texts = texts_for(300) + texts_for(20)  # 20 repeated
    out = tmp_path / "v.npy"
    status, _, err = run(capsys, *embed(sim, corpus(tmp_path, texts), out))
    assert status == 0, err
    assert np.array_equal(np.load(out), expected_matrix(texts, MODEL, DIM))
    assert "Batch API: 300 texts in 1 batch" in err
    assert "20 duplicates not sent" in err
    assert not (tmp_path / "v.npy.batch").exists()  # removed once the output is written
    stats = sim.stats()
    assert stats["requests"] == 0
    assert Counter(stats["batch"]["texts"]) == Counter(texts_for(300))


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_via_batch_into_parquet_and_jsonl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider, suffix: str
) -> None:
    pytest.importorskip("pyarrow") if suffix == ".parquet" else None
    texts = texts_for(50)
    out = tmp_path / f"v{suffix}"
    status, _, err = run(capsys, *embed(sim, corpus(tmp_path, texts), out, "--keep-text"))
    assert status == 0, err
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert [r["text"] for r in rows] == texts
        got = np.array([r["embedding"] for r in rows], dtype=np.float32)
        assert np.array_equal(got, expected_matrix(texts, MODEL, DIM))
    assert sim.stats()["requests"] == 0


def test_keep_job_then_status_and_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    out = tmp_path / "v.npy"
    job = tmp_path / "job"
    argv = embed(sim, corpus(tmp_path, texts_for(80)), out, "--job-dir", str(job), "--keep-job")
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    status, text, _ = run(capsys, "batch", "status", str(job))
    assert status == 0
    assert "completed" in text and "(80 texts)" in text
    status, text, _ = run(capsys, "batch", "status", str(job), "--json")
    assert json.loads(text)["parts"][0]["status"] == "completed"
    status, text, _ = run(capsys, "batch", "list", "--base-url", sim.base_url)
    assert status == 0 and "completed" in text and "part 1" in text
    # a second run costs nothing: every text is cached
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    assert sim.stats()["batch"]["uploads"] == 1


def test_a_job_left_running_is_cancelled_and_the_next_run_finishes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = texts_for(640)
    out, job = tmp_path / "v.npy", tmp_path / "job"

    class Killed(BaseException):
        pass

    real = _job.BatchJob._poll

    async def dies_once_submitted(self: _job.BatchJob, parts: list[dict]) -> None:  # type: ignore[type-arg]
        raise Killed

    with SimulatedProvider(dim=DIM, **{**FAST, "batch_per_request": 1000.0}) as slow:
        argv = embed(
            slow, corpus(tmp_path, texts), out, "--job-dir", str(job), "--batch-size", "16"
        )
        monkeypatch.setattr(_job.BatchJob, "_poll", dies_once_submitted)
        with pytest.raises(Killed):
            cli.main(argv)
        monkeypatch.setattr(_job.BatchJob, "_poll", real)
        capsys.readouterr()
        status, text, _ = run(capsys, "batch", "cancel", str(job))
        assert status == 0 and "asked to cancel 1 batch" in text
        slow.configure(batch_per_request=0.002)
        status, _, err = run(capsys, *argv)
        assert status == 0, err
        assert np.array_equal(np.load(out), expected_matrix(texts, MODEL, DIM))
        assert slow.stats()["batch"]["cancelled"] == 1
        assert Counter(slow.stats()["batch"]["texts"]) == Counter(texts)


def test_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    source = corpus(tmp_path, texts_for(3))
    status, _, err = run(
        capsys, "embed", str(source), "-o", "-", "--format", "jsonl", "--via", "batch",
        "--base-url", sim.base_url,
    )  # fmt: skip
    assert status == 2 and "needs --job-dir" in err
    status, _, err = run(capsys, "batch", "status", str(tmp_path / "nowhere"))
    assert status == 2 and "holds no batch job" in err
    assert sim.stats()["batch"]["uploads"] == 0


def test_a_bad_line_is_named_before_anything_is_uploaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    texts = texts_for(10)
    source = tmp_path / "c.jsonl"
    lines = [json.dumps({"text": t}) for t in texts]
    lines[6] = json.dumps({"text": "   "})
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, _, err = run(capsys, *embed(sim, source, tmp_path / "v.npy"))
    assert status == 2 or status == 1
    assert "line 7" in err
    assert sim.stats()["batch"]["uploads"] == 0


def test_a_server_without_a_batch_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    sim.configure(batch_api=False)
    status, _, err = run(capsys, *embed(sim, corpus(tmp_path, texts_for(5)), tmp_path / "v.npy"))
    assert status == 1
    assert "has no Batch API" in err and "leave out --via batch" in err
    assert sim.stats()["requests"] == 0


def test_a_refused_text_is_named_by_its_line_and_costs_only_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    sim.configure(refuse_inputs=("<refused>",))
    texts = texts_for(100)
    texts[41] = "t 41 <refused>"
    out = tmp_path / "v.npy"
    status, _, err = run(capsys, *embed(sim, corpus(tmp_path, texts), out))
    assert status == 1
    assert "line 42: HTTP 400" in err
    vectors = np.load(out)
    good = np.arange(100) != 41
    assert np.isnan(vectors[41]).all()
    want = expected_matrix([t for i, t in enumerate(texts) if i != 41], MODEL, DIM)
    assert np.array_equal(vectors[good], want)
    # the others of its request came back through a batch, one input a line
    assert Counter(sim.stats()["batch"]["texts"]) == Counter(t for t in texts if "<" not in t)


def test_via_batch_with_ray_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    argv = embed(sim, corpus(tmp_path, texts_for(3)), tmp_path / "v.npy", "--ray", "auto")
    status, _, err = run(capsys, *argv)
    assert status == 2 and "--via batch and --ray do not go together" in err
    assert sim.stats()["requests"] == 0 and sim.stats()["batch"]["uploads"] == 0


def test_cancel_passes_over_batches_already_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its batch completed, before it collected it: the batch is done at
    the provider, still "submitted" in the job; cancel says so and goes on."""
    out, job = tmp_path / "v.npy", tmp_path / "job"

    class Killed(BaseException):
        pass

    async def killed(self: _job.BatchJob, *args: object) -> None:
        raise Killed

    with SimulatedProvider(dim=DIM, **FAST) as fast:
        argv = embed(fast, corpus(tmp_path, texts_for(50)), out, "--job-dir", str(job))
        with monkeypatch.context() as patch:
            patch.setattr(_job.BatchJob, "_finish", killed)
            with pytest.raises(Killed):
                cli.main(argv)
        capsys.readouterr()
        status, text, err = run(capsys, "batch", "cancel", str(job))
        assert status == 0, err
        assert "completed" in text and "asked to cancel 0 batches" in text
        status, _, err = run(capsys, *argv)  # and the next run collects it
        assert status == 0, err
        assert fast.stats()["batch"]["created"] == 1


def test_a_second_run_of_a_running_job_is_refused_and_names_the_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    from embedsdk.batchapi import job_store
    from embedsdk.client import resolve_options

    out, job = tmp_path / "v.npy", tmp_path / "job"
    argv = embed(sim, corpus(tmp_path, texts_for(5)), out, "--job-dir", str(job))
    with job_store(resolve_options(base_url=sim.base_url), job):  # another run holds it
        status, _, err = run(capsys, *argv)
    assert status == 1
    assert "being written by another embedsdk batch job" in err
    assert "run the same command again to resume" not in err
    assert sim.stats()["batch"]["uploads"] == 0


def test_a_run_refused_for_a_busy_output_leaves_the_other_runs_job_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sim: SimulatedProvider
) -> None:
    from embedsdk.files import lock_output

    out, job = tmp_path / "v.npy", tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"format": 1, "job": "x", "parts": []}))
    argv = embed(sim, corpus(tmp_path, texts_for(5)), out, "--job-dir", str(job))
    with lock_output(str(out)):  # the other run, still planning
        status, _, err = run(capsys, *argv)
    assert status == 1 and "being written by another" in err
    assert (job / "job.json").exists()


def test_standard_input_through_the_batch_api(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sim: SimulatedProvider,
) -> None:
    """A pipe is read twice through a copy in the job directory; messages still name it."""
    texts = texts_for(120)
    texts[77] = "t 77 <refused>"
    sim.configure(refuse_inputs=("<refused>",))
    data = ("\n".join(texts) + "\n").encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    out = tmp_path / "v.npy"
    status, _, err = run(capsys, "embed", "-", "-o", str(out), "--via", "batch",
                         "--base-url", sim.base_url, "--model", MODEL)  # fmt: skip
    assert status == 1  # the refused text, named by its line of standard input
    assert "the server refused 1 text of standard input" in err and "line 78" in err
    good = np.arange(120) != 77
    want = expected_matrix([t for i, t in enumerate(texts) if i != 77], MODEL, DIM)
    assert np.array_equal(np.load(out)[good], want)
    assert sim.stats()["batch"]["uploads"] == 2  # the texts, then the refused request split


def test_parquet_without_pyarrow_is_refused_before_anything_is_paid(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sim: SimulatedProvider,
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # not installed
    argv = embed(sim, corpus(tmp_path, texts_for(5)), tmp_path / "v.parquet")
    status, _, err = run(capsys, *argv)
    assert status == 1 and "writing Parquet needs pyarrow" in err
    assert sim.stats()["batch"]["uploads"] == 0
    assert not (tmp_path / "v.parquet.batch").exists()
