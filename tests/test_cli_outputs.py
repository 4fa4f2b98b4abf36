"""``embedsdk embed``'s outputs: Parquet and JSON Lines (read back and compared with the
simulator's exact vectors), standard output, and the files it refuses to write over.

Private access: the Parquet writer's row-group size (``files._writers.ROW_GROUP_BYTES``, 8 MiB)
is lowered so that a small run shows its blocks written as they came.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk import cli
from embedsdk.files import _writers, check_output
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 16
MODEL = "BAAI/bge-m3"


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f'{tag} {i}: 你好, "quoted" \\ back ✓' for i in range(n)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, simulated_provider: Any) -> Path:
    """The current folder is the test's; the simulated provider is the default base URL."""
    monkeypatch.setenv("EMBEDSDK_BASE_URL", simulated_provider.base_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def embed(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``embedsdk embed ARGV --dimensions 16``; returns ``(status, stderr)``."""
    status = cli.main(["embed", *argv, "--dimensions", str(DIM)])
    return status, capsys.readouterr().err


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def read_jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def vectors_of(records: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["embedding"] for r in records], dtype=np.float32)


def parquet_vectors(path: Path) -> np.ndarray:
    """The ``embedding`` column of a Parquet file as an (N, D) float32 array."""
    import pyarrow.parquet as pq

    column = pq.read_table(path).column("embedding").combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy().reshape(-1, dim)


# -- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_rows_of_line_number_and_exact_vectors(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = texts_for(1500)  # more than one block of embed_stream
    (env / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    status, err = embed(capsys, "in.txt", "-o", "out.jsonl")
    assert status == 0, err
    records = read_jsonl((env / "out.jsonl").read_bytes())
    assert [r["id"] for r in records] == list(range(1, 1501))
    assert all(set(r) == {"id", "embedding"} for r in records)  # no text unless asked
    np.testing.assert_array_equal(vectors_of(records), expected_matrix(texts, MODEL, DIM))
    assert files(env) == ["in.txt", "out.jsonl"]


def test_jsonl_with_ids_from_a_field_and_the_texts(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = texts_for(30)
    lines = [json.dumps({"doc": f"d-{i}", "text": t}) for i, t in enumerate(texts)]
    (env / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, err = embed(capsys, "in.jsonl", "-o", "out.ndjson", "--id-field", "doc", "--keep-text")
    assert status == 0, err
    records = read_jsonl((env / "out.ndjson").read_bytes())
    assert [r["id"] for r in records] == [f"d-{i}" for i in range(30)]
    assert [r["text"] for r in records] == texts
    np.testing.assert_array_equal(vectors_of(records), expected_matrix(texts, MODEL, DIM))


def test_format_flag_and_suffixes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "in.txt").write_text("one\ntwo\n")
    status, err = embed(capsys, "in.txt", "-o", "vectors.out", "--format", "jsonl")
    assert status == 0, err
    assert [r["id"] for r in read_jsonl((env / "vectors.out").read_bytes())] == [1, 2]
    status, err = embed(capsys, "in.txt", "-o", "plain")  # no suffix: .npy, as always
    assert status == 0 and np.load(env / "plain").shape == (2, DIM)
    for argv, fragments in (
        (["-o", "notes.txt"], ("cannot tell the output format", "--format")),
        (["-o", "x.npy", "--format", "jsonl"], ("x.npy is named as npy", "--format says jsonl")),
        (["-o", "x.npy", "--keep-text"], ("--keep-text needs Parquet or JSON Lines",)),
        (["-o", "x.jsonl", "--id-field", "id"], ("--id-field needs JSONL or CSV input",)),
    ):
        status, err = embed(capsys, "in.txt", *argv)
        assert status == 2, (argv, err)
        assert err.startswith("embedsdk: error: ") and all(f in err for f in fragments), err
    with pytest.raises(SystemExit) as info:  # the input formats moved to --input-format
        cli.main(["embed", "in.txt", "-o", "x.npy", "--format", "csv"])
    assert info.value.code == 2
    assert "use --input-format csv" in capsys.readouterr().err
    assert files(env) == ["in.txt", "plain", "vectors.out"]


# -- Parquet ---------------------------------------------------------------------------------


def test_parquet_rows_and_types(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    monkeypatch.setattr(_writers, "ROW_GROUP_BYTES", 1)  # a row group per block
    texts = texts_for(2100)
    texts_with_blanks = [*texts[:5], "", *texts[5:]]  # line 6 is empty
    (env / "in.txt").write_text("\n".join(texts_with_blanks) + "\n", encoding="utf-8")
    status, err = embed(capsys, "in.txt", "-o", "out.parquet", "--skip-empty", "--keep-text")
    assert status == 0, err
    assert "1 empty line skipped" in err
    table = pq.read_table(env / "out.parquet")
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("text").type == pa.string()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert table.column("id").to_pylist() == [*range(1, 6), *range(7, 2102)]  # kept lines
    assert table.column("text").to_pylist() == texts
    vectors = parquet_vectors(env / "out.parquet")
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, expected_matrix(texts, MODEL, DIM))
    assert pq.ParquetFile(env / "out.parquet").num_row_groups > 1  # written as blocks came


def test_parquet_ids_from_a_csv_column(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    texts = texts_for(12)
    with (env / "in.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "text"])
        writer.writerows([f"k{i}", t] for i, t in enumerate(texts))
    status, err = embed(capsys, "in.csv", "-o", "out.pq", "--id-field", "key")
    assert status == 0, err
    table = pq.read_table(env / "out.pq")
    assert table.column_names == ["id", "embedding"]
    assert table.column("id").to_pylist() == [f"k{i}" for i in range(12)]
    np.testing.assert_array_equal(
        parquet_vectors(env / "out.pq"), expected_matrix(texts, MODEL, DIM)
    )


def test_ids_of_mixed_types_are_refused_before_they_are_sent(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    lines = [json.dumps({"id": 1, "text": "a"}), json.dumps({"id": "two", "text": "b"})]
    (env / "in.jsonl").write_text("\n".join(lines) + "\n")
    status, err = embed(capsys, "in.jsonl", "-o", "out.jsonl", "--id-field", "id")
    assert status == 1
    assert "in.jsonl, line 2: the id 'id' is str 'two', but the ids before it are int" in err
    (env / "in.jsonl").write_text(json.dumps({"text": "a"}) + "\n")
    status, err = embed(capsys, "in.jsonl", "-o", "out.jsonl", "--id-field", "id")
    assert status == 1 and "line 1: no field 'id'" in err and "--id-field" in err
    (env / "in.jsonl").write_text('{"text": "a", "id": "x\\ud800"}\n')
    status, err = embed(capsys, "in.jsonl", "-o", "out.jsonl", "--id-field", "id")
    assert status == 1 and "line 1: the id 'id' is not valid Unicode" in err
    assert simulated_provider.stats()["requests"] == 0
    assert files(env) == ["in.jsonl"]


def test_parquet_without_pyarrow_says_what_to_install(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    simulated_provider: SimulatedProvider,
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (env / "in.txt").write_text("one\n")
    status, err = embed(capsys, "in.txt", "-o", "out.parquet")
    assert status == 1
    assert 'pip install "embedsdk[parquet]"' in err and len(err.splitlines()) == 1
    assert simulated_provider.stats()["requests"] == 0
    assert files(env) == ["in.txt"]


def test_neither_import_nor_npy_output_loads_pyarrow(
    simulated_provider: SimulatedProvider, tmp_path: Path
) -> None:
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    code = (
        "import sys, embedsdk\n"
        "from embedsdk import cli\n"
        "assert 'pyarrow' not in sys.modules\n"
        f"assert cli.main(['embed', 'in.txt', '-o', 'o.npy', '-q', '--base-url', "
        f"{simulated_provider.base_url!r}]) == 0\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "o.npy").shape == (2, 1024)


# -- a failed run leaves no output and resumes -----------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_a_failed_run_leaves_nothing_and_resumes_from_the_cache(
    simulated_provider_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    suffix: str,
) -> None:
    """The server stops answering in the middle (it takes 66 requests an hour; no retries,
    no adaptive pacing): no output (an older one untouched) and no .partial; the re-run
    re-streams, paying only for what was not cached."""
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    # 66 batches of 32 (2,112 texts: past the first two blocks, some are written before it
    # fails), then 429s.
    sim = simulated_provider_factory(rpm=1.1, limiter="fixed", window=3600.0)
    monkeypatch.chdir(tmp_path)
    texts = texts_for(2500)
    Path("in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = Path("out" + suffix)
    args = ["in.txt", "-o", str(out), "--base-url", sim.base_url, "--max-retries", "0"]
    args += ["--batch-size", "32", "--max-concurrent", "1", "--no-adaptive"]
    status, err = embed(capsys, *args)
    assert status == 1 and "run the same command again to resume" in err
    assert files(tmp_path) == ["in.txt"]
    assert cli.main(["cache", "info", "--json"]) == 0
    cached = json.loads(capsys.readouterr().out)["vectors"]
    assert cached >= 2048  # the blocks before the refused text

    sim.configure(rpm=None)
    sim.reset_stats()
    status, err = embed(capsys, *args)
    assert status == 0, err
    assert sim.stats()["inputs"] == len(texts) - cached  # only what the first run missed
    if suffix == ".npy":
        got = np.load(out)
    elif suffix == ".jsonl":
        got = vectors_of(read_jsonl(out.read_bytes()))
    else:
        got = parquet_vectors(out)
    np.testing.assert_array_equal(got, expected_matrix(texts, MODEL, DIM))


# -- standard output -------------------------------------------------------------------------


class _Stdout(io.TextIOWrapper):
    def __init__(self, terminal: bool) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")
        self._terminal = terminal

    def isatty(self) -> bool:
        return self._terminal

    def data(self) -> bytes:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue()


@pytest.mark.parametrize("fmt", ["npy", "jsonl", "parquet"])
def test_dash_writes_to_standard_output(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    texts = texts_for(40)
    (env / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    stdout = _Stdout(terminal=False)
    monkeypatch.setattr(sys, "stdout", stdout)
    flags = [] if fmt == "npy" else ["--format", fmt]  # npy is the default for -
    status, err = embed(capsys, "in.txt", "-o", "-", *flags)
    assert status == 0, err
    assert err.rstrip().endswith("-> standard output")
    data = stdout.data()
    if fmt == "npy":
        got = np.load(io.BytesIO(data))
    elif fmt == "jsonl":
        got = vectors_of(read_jsonl(data))
    else:
        # Read from a path: pyarrow reading a Python file object can abort or hang at exit
        # (apache/arrow#34314, #50482).
        (env / "back.parquet").write_bytes(data)
        got = parquet_vectors(env / "back.parquet")
        (env / "back.parquet").unlink()
    np.testing.assert_array_equal(got, expected_matrix(texts, MODEL, DIM))
    assert files(env) == ["in.txt"]  # no file named "-"


def test_dash_is_refused_on_a_terminal_and_a_failure_writes_nothing(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    simulated_provider: SimulatedProvider,
) -> None:
    (env / "in.txt").write_text("one\ntwo\n")
    terminal = _Stdout(terminal=True)
    monkeypatch.setattr(sys, "stdout", terminal)
    status, err = embed(capsys, "in.txt", "-o", "-")
    assert status == 2 and "refusing to write binary vectors to a terminal" in err
    assert terminal.data() == b"" and simulated_provider.stats()["requests"] == 0

    pipe = _Stdout(terminal=False)
    monkeypatch.setattr(sys, "stdout", pipe)
    simulated_provider.configure(fault_rate=1.0, faults=("500",))
    status, err = embed(capsys, "in.txt", "-o", "-", "--max-retries", "0")
    assert status == 1 and "HTTP 500" in err
    assert pipe.data() == b""  # the spooled .npy was never copied out
    assert files(env) == ["in.txt"]


# -- never over an input, never over another format without --force ---------------------------


def test_never_writes_over_an_input_even_with_force(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    (env / "corpus.npy").write_text("one\ntwo\n")  # a text file, whatever its name
    (env / "link.npy").symlink_to(env / "corpus.npy")
    (env / "x.npy.partial").write_text("three\n")
    (env / "key.npy").write_text("sk-local\n")
    for argv in (
        ["corpus.npy", "-o", "corpus.npy"],
        ["corpus.npy", "-o", "link.npy", "--force"],
        ["corpus.npy", "-o", "./corpus.npy", "--force"],
        ["x.npy.partial", "-o", "x.npy", "--force"],  # the .partial file is the input
        ["corpus.npy", "-o", "key.npy", "--api-key-file", "key.npy", "--force"],
    ):
        status, err = embed(capsys, *argv)
        assert status == 2, (argv, err)
        assert "refusing to write over the input" in err and len(err.splitlines()) == 1
    assert (env / "corpus.npy").read_text() == "one\ntwo\n"
    assert (env / "x.npy.partial").read_text() == "three\n"
    assert (env / "key.npy").read_text() == "sk-local\n"
    assert simulated_provider.stats()["requests"] == 0


def test_another_format_is_replaced_only_with_force(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "in.txt").write_text("one\ntwo\n")
    (env / "notes.npy").write_text("my notes\n")
    (env / "data.jsonl").write_text('{"text": "my data"}\n')
    (env / "table.parquet").write_text("a,b\n")
    for name in ("notes.npy", "data.jsonl", "table.parquet"):
        status, err = embed(capsys, "in.txt", "-o", name)
        assert status == 2, err
        assert f"{name} exists and is not" in err and "--force" in err
    assert (env / "notes.npy").read_text() == "my notes\n"
    assert (env / "data.jsonl").read_text() == '{"text": "my data"}\n'

    status, err = embed(capsys, "in.txt", "-o", "notes.npy", "--force")
    assert status == 0, err
    np.testing.assert_array_equal(
        np.load(env / "notes.npy"), expected_matrix(["one", "two"], MODEL, DIM)
    )


def _someone_elses_files(directory: Path) -> dict[str, str]:
    """Files of the output's format that no ``embedsdk embed`` wrote: name -> what is said."""
    np.save(directory / "important.npy", np.arange(10))
    np.save(directory / "doubles.npy", np.zeros((3, 4)))  # float64
    np.save(directory / "row.npy", np.zeros(4, dtype=np.float32))  # 1-d
    np.save(directory / "columns.npy", np.asfortranarray(np.zeros((3, 4), dtype=np.float32)))
    np.savez(directory / "archive.npy", a=np.zeros(2))  # a zip, whatever its name
    found = {
        "important.npy": "(an int64 array of shape (10,))",
        "doubles.npy": "(a float64 array of shape (3, 4))",
        "row.npy": "(a float32 array of shape (4,))",
        "columns.npy": "(a Fortran-ordered float32 array of shape (3, 4))",
        "archive.npy": "(not an .npy file)",
    }
    (directory / "archive.npy.npz").rename(directory / "archive.npy")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return found
    sales = pa.table({"region": ["north", "south"], "amount": [120.5, 99.0]})
    pq.write_table(sales, directory / "sales.parquet")
    found["sales.parquet"] = "(no embedding column of float32 vectors; its columns: region, amount)"
    doubles = pa.table({"id": [1], "embedding": pa.array([[0.5, 1.5]], pa.list_(pa.float64()))})
    pq.write_table(doubles, directory / "doubles.parquet")
    found["doubles.parquet"] = "no embedding column of float32 vectors"
    return found


def test_a_file_of_the_same_format_that_is_not_ours_is_kept_without_force(
    env: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    """An .npy or Parquet file is replaced only if it is of the shape embedsdk writes, as a
    JSON Lines file is only if its rows hold an ``embedding``: else --force is needed."""
    (env / "in.txt").write_text("one\ntwo\n")
    found = _someone_elses_files(env)
    before = {name: (env / name).read_bytes() for name in found}
    for name, why in found.items():
        status, err = embed(capsys, "in.txt", "-o", name)
        assert status == 2, (name, err)
        assert err.startswith(f"embedsdk: error: {name} exists and is not an output of embedsdk")
        assert why in err, err
        assert "pass --force to replace it" in err and len(err.splitlines()) == 1
        assert (env / name).read_bytes() == before[name]
    assert simulated_provider.stats()["requests"] == 0
    assert files(env) == sorted(["in.txt", *found])

    for name in found:
        status, err = embed(capsys, "in.txt", "-o", name, "--force")
        assert status == 0, err
    np.testing.assert_array_equal(
        np.load(env / "important.npy"), expected_matrix(["one", "two"], MODEL, DIM)
    )


def test_ray_refuses_a_parquet_that_is_not_ours_before_starting_ray(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow")
    monkeypatch.setitem(sys.modules, "ray", None)  # importing Ray would fail: it is not reached
    (env / "in.txt").write_text("one\ntwo\n")
    found = _someone_elses_files(env)
    before = (env / "sales.parquet").read_bytes()
    status, err = embed(capsys, "in.txt", "-o", "sales.parquet", "--ray")
    assert status == 2 and found["sales.parquet"] in err and "--force" in err, err
    (env / "x.parquet").symlink_to(env / "in.txt")
    status, err = embed(capsys, "in.txt", "-o", "x.parquet", "--ray", "--force")
    assert status == 2 and "refusing to write over the input in.txt" in err, err
    assert (env / "sales.parquet").read_bytes() == before


def test_a_parquet_of_vectors_with_more_columns_is_ours(tmp_path: Path) -> None:
    """``embed --ray`` keeps the input's other columns beside ``embedding``: its output is
    replaced by a re-run, as a fixed-size or a plain list of float32 is."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    vectors = pa.array([[0.5, 1.5]], pa.list_(pa.float32()))
    pq.write_table(pa.table({"doc": ["a"], "embedding": vectors}), tmp_path / "ray.parquet")
    check_output(str(tmp_path / "ray.parquet"), "parquet", [], force=False)


@pytest.mark.parametrize("suffix", [".npy", ".jsonl", ".parquet"])
def test_rerunning_into_its_own_output_and_into_an_empty_file(
    env: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    (env / "in.txt").write_text("one\ntwo\n")
    out = "out" + suffix
    (env / out).write_bytes(b"")  # an empty file holds nothing to lose
    for _ in range(2):  # the second run replaces the first one's output
        status, err = embed(capsys, "in.txt", "-o", out)
        assert status == 0, err
    assert files(env) == ["in.txt", out]


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
@pytest.mark.parametrize("suffix", ["", ".jsonl"])
def test_a_device_is_written_to_never_replaced(
    env: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """``-o /dev/null`` (a dry run) writes into the device: no ``/dev/null.partial``, and no
    rename that would put a regular file in its place (as root, it could)."""
    (env / "in.txt").write_text("one\ntwo\n")
    flags = ["--format", suffix[1:]] if suffix else []
    status, err = embed(capsys, "in.txt", "-o", "/dev/null", *flags)
    assert status == 0, err
    assert err.rstrip().endswith("-> /dev/null")
    assert Path("/dev/null").is_char_device() and not Path("/dev/null.partial").exists()


def test_a_named_pipe_as_output_is_streamed_into(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = ["one", "two", "three"]
    (env / "in.txt").write_text("\n".join(texts) + "\n")
    os.mkfifo(env / "pipe")
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((env / "pipe").read_bytes()))
    reader.start()
    try:
        status, err = embed(capsys, "in.txt", "-o", "pipe", "--format", "jsonl")
    finally:
        if reader.is_alive():  # unblock the reader if the command never opened the pipe
            with open(env / "pipe", "wb"):
                pass
        reader.join()
    assert status == 0, err
    np.testing.assert_array_equal(
        vectors_of(read_jsonl(got[0])), expected_matrix(texts, MODEL, DIM)
    )
    assert files(env) == ["in.txt"]


def test_empty_names_are_usage_errors(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "in.csv").write_text("id,text\n1,hello\n")
    status, err = embed(capsys, "in.csv", "-o", "")
    assert status == 2 and "-o needs a file name" in err
    for flag in ("--column", "--field", "--id-field"):
        with pytest.raises(SystemExit) as info:
            cli.main(["embed", "in.csv", "-o", "x.jsonl", flag, ""])
        assert info.value.code == 2
        assert f"argument {flag}: must not be empty" in capsys.readouterr().err
