"""The ``embedsdk`` command: embed (every input format), cache info/clear, errors, Ctrl-C.

The command runs in-process through :func:`embedsdk.cli.main` against the simulated provider,
whose vectors are known (:func:`expected_matrix`); one test runs ``python -m embedsdk`` in a
child process to interrupt it with SIGINT.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedsdk import NpyWriter, cli, write_npy
from embedsdk.client import CLIENT_OPTIONS, OPTION_TABLE
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 32  # small vectors keep the tests fast; the simulated provider honours `dimensions`
MODEL = "BAAI/bge-m3"


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} {i}: 今天天气很好, the weather is nice ✓" for i in range(n)]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command in-process; returns ``(status, stdout, stderr)``."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def embed_args(sim: SimulatedProvider, *extra: str) -> list[str]:
    return ["--base-url", sim.base_url, "--dimensions", str(DIM), *extra]


def load(path: Path) -> np.ndarray:
    array = np.load(path)
    assert array.dtype == np.float32 and array.flags.c_contiguous
    return array


def assert_embeds(
    capsys: pytest.CaptureFixture[str],
    source: str | Path,
    texts: list[str],
    *flags: str,
    dim: int = DIM,
) -> str:
    """Run ``embed SOURCE -o out.npy FLAGS`` next to SOURCE (stdin: in the current folder),
    check it succeeded and wrote exactly the simulator's vectors of ``texts``, in order;
    return what it printed on stderr."""
    out = (Path(source).parent if source != "-" else Path.cwd()) / "out.npy"
    status, _, err = run(capsys, "embed", str(source), "-o", str(out), *flags)
    assert status == 0, err
    np.testing.assert_array_equal(load(out), expected_matrix(texts, MODEL, dim))
    return err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("embedsdk: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".npy", ".partial")))


# -- help ----------------------------------------------------------------------------------


def test_help_of_the_command_and_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    top = capsys.readouterr().out
    for word in ("embed", "cache", "bench", "examples:", "embedsdk embed corpus.txt"):
        assert word in top
    with pytest.raises(SystemExit):
        cli.main(["embed", "--help"])
    embed = capsys.readouterr().out
    # every library client option is a flag (--name, or --no-name for one on by default),
    # except the key (environment only), the cache (--no-cache / --cache-dir) and objects
    # (declared without a flag, and why)
    objects = {name for name, spec in OPTION_TABLE.items() if spec.no_flag}
    for option in sorted(CLIENT_OPTIONS - {"api_key", "cache"} - objects):
        flag = option.replace("_", "-")
        assert re.search(rf"--(no-)?{flag}\b", embed), option
    for flag in ("--no-cache", "--cache-dir", "--field", "--column", "--quiet", "SILICONFLOW"):
        assert flag in embed
    for flag in ("--format", "--input-format", "--keep-text", "--id-field", "--force"):
        assert flag in embed
    # the key from a file or the environment, never as a flag's value (the process list)
    assert "--api-key-file FILE" in embed and "--no-api-key" in embed
    assert not re.search(r"--api-key[ =]", embed)
    for argv in (["cache", "--help"], ["cache", "info", "--help"], ["cache", "clear", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
        assert "usage: embedsdk cache" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["embed", "in.txt"], ["embed", "in.txt", "-o", "x", "--batch-size", "two"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_broken_bench_module_does_not_break_the_rest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = cli.importlib.import_module

    def broken(name: str, *args: Any) -> Any:
        if name == "embedsdk._bench.cli":
            raise ImportError("No module named 'matplotlib'")
        return real(name, *args)

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    status, out, err = run(capsys, "bench")
    assert status == 1
    assert_one_error_line(err, "bench", "matplotlib")
    status, out, _ = run(capsys, "cache", "info", "--dir", str(tmp_path / "c"))
    assert status == 0 and "vectors" in out


# -- input formats, output shape and order -------------------------------------------------


def test_lines_in_order_with_answers_out_of_order(
    simulated_provider_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = simulated_provider_factory(jitter=0.004, faults=("shuffle",), fault_rate=0.3)
    texts = texts_for(600)
    texts[7] = "emoji 🙂 and a tab\there"
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    flags = embed_args(sim, "--batch-size", "7", "--max-concurrent", "6", "-q")
    assert assert_embeds(capsys, tmp_path / "in.txt", texts, *flags) == ""
    assert leftovers(tmp_path) == ["out.npy"]
    assert sim.stats()["peak_in_flight"] > 1


def test_full_size_vectors_and_crlf_lines(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = texts_for(30)
    (tmp_path / "in.txt").write_bytes(("\r\n".join(texts)).encode("utf-8"))  # no final newline
    flags = ("--base-url", simulated_provider.base_url)
    assert_embeds(capsys, tmp_path / "in.txt", texts, *flags, dim=1024)  # the default size


def test_jsonl_with_field(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = texts_for(120, "j")
    lines = [json.dumps({"id": i, "body": t, "text": "not this"}) for i, t in enumerate(texts)]
    lines.insert(50, "")  # blank lines in JSONL are skipped
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = ("--field", "body", *embed_args(simulated_provider))
    assert_embeds(capsys, tmp_path / "data.jsonl", texts, *flags)


def test_csv_with_column(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = texts_for(80, "c")
    texts[3] = 'a "quoted", comma-separated\nmulti-line text'
    with (tmp_path / "data.csv").open("w", encoding="utf-8", newline="") as f:
        import csv

        writer = csv.writer(f)
        writer.writerow(["id", "body"])
        writer.writerows([i, t] for i, t in enumerate(texts))
    flags = ("--column", "body", *embed_args(simulated_provider))
    assert_embeds(capsys, tmp_path / "data.csv", texts, *flags)


def test_tsv_with_a_byte_order_mark(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = texts_for(20, "tsv")
    body = "text\tid\n" + "".join(f"{t}\t{i}\n" for i, t in enumerate(texts))
    (tmp_path / "data.tsv").write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    # The first column is "text", not "\ufefftext".
    assert_embeds(capsys, tmp_path / "data.tsv", texts, *embed_args(simulated_provider))


def test_stdin(
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = texts_for(90, "s")
    data = ("\n".join(texts) + "\n").encode("utf-8")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    assert_embeds(capsys, "-", texts, *embed_args(simulated_provider))
    assert not sys.stdin.buffer.closed  # the reader let go of stdin without closing it


def test_skip_empty(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_text("one\n\n   \ntwo\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(out), *embed_args(simulated_provider)]
    status, _, err = run(capsys, *args)
    assert status == 1
    assert_one_error_line(err, "line 2 is empty", "--skip-empty")
    status, _, err = run(capsys, *args, "--skip-empty")
    assert status == 0, err
    assert err.startswith("embedded 2 texts") and ", 2 empty lines skipped, " in err
    np.testing.assert_array_equal(load(out), expected_matrix(["one", "two"], MODEL, DIM))


def test_counts_in_the_singular(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_text("one\n\n")
    out = tmp_path / "out.npy"
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(out), *embed_args(simulated_provider)]
    status, _, err = run(capsys, *args, "--skip-empty")
    assert status == 0, err
    assert err.startswith("embedded 1 text (32 dims) in ")
    assert ": 1 request, 0 cache hits, 0 retries, " in err
    assert ", 1 empty line skipped, " in err
    status, _, err = run(capsys, *args, "--skip-empty")
    assert ": 0 requests, 1 cache hit, 0 retries, " in err
    assert run(capsys, "cache", "clear")[1].startswith("removed 1 vector from ")


# -- bad input, bad output, failing server ---------------------------------------------------


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], tuple[str, ...]]]:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    (tmp_path / "nofield.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    (tmp_path / "notstr.jsonl").write_text('{"text": "a"}\n{"text": 42}\n')
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "data.csv").write_text("id,body\n1,hello\n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "adir").mkdir()
    return {
        "missing": (["missing.txt"], ("input file not found", "missing.txt")),
        "empty": (["empty.txt"], ("input file is empty",)),
        "directory": (["adir"], ("is a directory",)),
        "bad jsonl line": (["bad.jsonl"], ("bad.jsonl, line 3: not valid JSON",)),
        "missing field": (["nofield.jsonl"], ("line 2: no field 'text'", "--field")),
        "not a string": (["notstr.jsonl"], ("line 2: expected a string, got int",)),
        "no texts": (["blank.jsonl"], ("no texts in",)),
        "missing column": (["data.csv", "--column", "text"], ("column 'text' not found", "'body'")),
        "not utf-8": (["latin1.txt"], ("not UTF-8",)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "directory",
        "bad jsonl line",
        "missing field",
        "not a string",
        "no texts",
        "missing column",
        "not utf-8",
    ],
)
def test_bad_input_is_one_line_and_no_file(
    case: str,
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv, fragments = _bad_inputs(tmp_path)[case]
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, "embed", *argv, "-o", "out.npy", *embed_args(simulated_provider))
    assert status == 1
    assert_one_error_line(err, *fragments)
    assert leftovers(tmp_path) == []
    assert simulated_provider.stats()["requests"] == 0


def test_stdin_from_a_terminal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"")))
    status, _, err = run(capsys, "embed", "-", "-o", str(tmp_path / "o.npy"))
    assert status == 1
    assert_one_error_line(err, "standard input is a terminal")


def test_output_that_cannot_be_written(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    for output, fragment in (
        (tmp_path / "no" / "such" / "dir.npy", "No such file"),
        (tmp_path, "directory"),
    ):
        status, _, err = run(
            capsys,
            "embed",
            str(tmp_path / "in.txt"),
            "-o",
            str(output),
            *embed_args(simulated_provider),
        )
        assert status == 1
        assert_one_error_line(err, "cannot write", fragment)


def test_server_error_is_one_line_without_the_key(
    simulated_provider_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = simulated_provider_factory(api_key="the-right-key")
    monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-wrong-SECRET-123")
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    status, _, err = run(
        capsys, "embed", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.npy"), *embed_args(sim)
    )
    assert status == 1
    assert_one_error_line(err, "HTTP 401", "EMBEDSDK_API_KEY")
    assert "SECRET" not in err
    assert leftovers(tmp_path) == []


def test_no_api_key_names_the_variables_and_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_text("one\n")
    # no key in the environment and a non-local base URL: refused before any request
    status, _, err = run(
        capsys,
        "embed",
        str(tmp_path / "in.txt"),
        "-o",
        str(tmp_path / "o.npy"),
        "--base-url",
        "https://api.siliconflow.cn/v1",
    )
    assert status == 2
    assert_one_error_line(err, "no API key", "EMBEDSDK_API_KEY", "SILICONFLOW_API_KEY")
    assert_one_error_line(err, "--api-key-file FILE", "--no-api-key")
    assert "api_key=" not in err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("form", [("--api-key", "sk-SECRET-123"), ("--api-key=sk-SECRET-123",)])
def test_a_key_given_as_a_flag_is_refused_without_repeating_it(
    form: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not taken for an abbreviation of --api-key-file (whose error named the key as a file
    it could not read): refused as usage, pointing at the variables and the file flag."""
    (tmp_path / "in.txt").write_text("one\n")
    with pytest.raises(SystemExit) as info:
        cli.main(["embed", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.npy"), *form])
    out, err = capsys.readouterr()
    assert info.value.code == 2
    assert "--api-key is not taken" in err and "SILICONFLOW_API_KEY" in err
    assert "--api-key-file" in err
    assert "SECRET" not in err + out
    assert leftovers(tmp_path) == []


CONFIGURATION_ERRORS = {
    "batch size": (
        ["--batch-size", "0"],
        ['--batch-size must be a positive integer or "auto", got 0'],
    ),
    "concurrency": (["--max-concurrent", "0"], ["--max-concurrent must be a positive integer"]),
    "rpm": (["--rpm", "0"], ["--rpm must be a positive number, got 0"]),
    "timeout": (["--timeout", "0"], ["--timeout must be a positive number"]),
    "retries": (["--max-retries", "-1"], ["--max-retries must be an integer >= 0"]),
    "max wait": (["--max-wait", "-1"], ["--max-wait must be a number of seconds >= 0, got"]),
    "tokens": (["--max-batch-tokens", "0"], ["--max-batch-tokens must be a positive integer"]),
    "dimensions": (
        ["--provider", "siliconflow", "--dimensions", "64"],
        ["does not accept --dimensions for model", "--provider generic"],
    ),
    "url": (["--base-url", "ftp://example.com/v1"], ["--base-url must be an http(s) URL"]),
    "plain http": (
        ["--base-url", "http://example.com/v1", "--api-key-file", "key.txt"],
        ["refusing to send the API key in clear text", "--allow-insecure"],
    ),
    "missing key file": (["--api-key-file", "nope.txt"], ["cannot read --api-key-file nope.txt"]),
    "empty key file": (["--api-key-file", "empty.txt"], ["is empty", "--no-api-key"]),
    "blank in key": (["--api-key-file", "blank.txt"], ["from the --api-key-file contains blanks"]),
}


@pytest.mark.parametrize("case", sorted(CONFIGURATION_ERRORS))
def test_configuration_errors_exit_2_and_speak_in_flags(
    case: str,
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMBEDSDK_BASE_URL", simulated_provider.base_url)
    Path("in.txt").write_text("one\n")
    Path("key.txt").write_text("sk-in-a-file\n")
    Path("empty.txt").write_text(" \n")
    Path("blank.txt").write_text("sk-SECRET part\n")
    flags, fragments = CONFIGURATION_ERRORS[case]
    status, _, err = run(capsys, "embed", "in.txt", "-o", "o.npy", *flags)
    assert status == 2, err
    assert_one_error_line(err, *fragments)
    for python_name in ("batch_size", "base_url", "api_key", "=True", "or None", "SECRET"):
        assert python_name not in err
    assert simulated_provider.stats()["requests"] == 0
    assert leftovers(tmp_path) == []


def test_no_api_key_sends_none_and_api_key_file_sends_its_key(
    simulated_provider_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that wants "sk-file": the environment's key is refused, the file's works, and
    --no-api-key sends nothing, whatever the environment holds."""
    sim = simulated_provider_factory(api_key="sk-file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-env-SECRET")
    Path("in.txt").write_text("one\n")
    Path("key").write_text("  sk-file\n")  # blanks around it are a copy-paste's
    args = ["embed", "in.txt", "-o", "o.npy", "--no-cache", *embed_args(sim)]
    status, _, err = run(capsys, *args)
    assert status == 1 and "the API key came from the environment variable" in err
    status, _, err = run(capsys, *args, "--api-key-file", "key")
    assert status == 0, err
    status, _, err = run(capsys, *args, "--no-api-key")
    assert status == 1
    assert_one_error_line(err, "HTTP 401", "no API key was sent", "--api-key-file")
    assert "SECRET" not in err and "api_key" not in err

    keyless = simulated_provider_factory()  # a self-hosted server that wants no key
    status, _, err = run(capsys, *args[:4], *embed_args(keyless), "--no-api-key")
    assert status == 0, err
    with pytest.raises(SystemExit) as info:
        cli.main([*args, "--no-api-key", "--api-key-file", "key"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


# -- resuming --------------------------------------------------------------------------------


def test_a_failed_run_resumes_from_the_cache(
    simulated_provider_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The server takes 15 requests an hour (no retries, no adaptive pacing): the run fails
    after 15 batches of 10, and a re-run pays only for the 150 texts it did not get."""
    sim = simulated_provider_factory(rpm=0.25, limiter="fixed", window=3600.0)  # 15 an hour
    texts = texts_for(300)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.npy"), "--no-adaptive"]
    args += embed_args(sim, "--batch-size", "10", "--max-concurrent", "1", "--max-retries", "0")
    status, _, err = run(capsys, *args)
    assert status == 1
    assert_one_error_line(err, "HTTP 429", "run the same command again to resume")
    assert leftovers(tmp_path) == []
    first = sim.stats()["texts"]
    assert set(first) == set(texts[:150])

    sim.configure(rpm=None)
    sim.reset_stats()
    status, _, err = run(capsys, *args)
    assert status == 0, err
    second = sim.stats()["texts"]
    assert set(second) == set(texts[150:])  # only what was missing
    assert "150 cache hits" in err
    np.testing.assert_array_equal(load(tmp_path / "out.npy"), expected_matrix(texts, MODEL, DIM))


@pytest.mark.parametrize("fmt", ["npy", "jsonl"])
def test_a_refused_text_is_named_by_its_line_and_the_rest_is_written(
    simulated_provider_factory: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """The server refuses the texts of lines 138 and 251 (a 400 about their content): every
    other text is written, the two lines are named with the server's words, the run exits
    1; once they are fixed, a re-run pays only for them (the rest is cached)."""
    sim = simulated_provider_factory(refuse_inputs=("<bad>",))
    texts = texts_for(300)
    texts[137] = texts[250] = "this one is <bad>"
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / f"out.{fmt}"
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(out), *embed_args(sim)]
    status, _, err = run(capsys, *args)
    assert status == 1
    summary, report = err.strip().splitlines()
    assert summary.startswith("embedded 298 texts") and "2 texts refused by the server" in summary
    assert report.startswith("embedsdk: error: the server refused 2 texts of ")
    assert "line 138: HTTP 400: input contains content that cannot be processed" in report
    assert "line 251: HTTP 400" in report
    expected = expected_matrix(texts, MODEL, DIM)
    good = [i for i in range(300) if i not in (137, 250)]
    if fmt == "npy":
        vectors = load(out)
        assert vectors.shape == (300, DIM) and np.isnan(vectors[[137, 250]]).all()
        np.testing.assert_array_equal(vectors[good], expected[good])
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [row["id"] for row in rows] == [i + 1 for i in good]  # ids are line numbers
        got = np.array([row["embedding"] for row in rows], dtype=np.float32)
        np.testing.assert_array_equal(got, expected[good])

    texts[137] = texts[250] = "this one is fixed"
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    sim.reset_stats()
    status, _, err = run(capsys, *args)
    assert status == 0, err
    assert set(sim.stats()["texts"]) == {"this one is fixed"}


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_signal_stops_cleanly_removes_the_partial_file_and_resumes(
    simulated_provider_factory: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    status: int,
    said: str,
) -> None:
    """``python -m embedsdk embed`` in a child process, stopped by SIGINT (Ctrl-C) or SIGTERM
    mid-run: both unwind the same way."""
    sim = simulated_provider_factory(latency=0.1)
    texts = texts_for(2_000)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out.npy")]
    args += embed_args(sim, "--batch-size", "10", "--max-concurrent", "2")
    child = subprocess.Popen(
        [sys.executable, "-m", "embedsdk", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # EMBEDSDK_CACHE_DIR: this test's
        # Ctrl-C reaches a program in a terminal's foreground: SIGINT as by default, even
        # when the test runner was started in the background (where SIGINT is ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while sim.stats()["requests"] < 6 and child.poll() is None:
            assert time.monotonic() < deadline, "the child never got going"
            time.sleep(0.01)
        child.send_signal(signum)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == status, err
    assert err.strip().splitlines() == [f"embedsdk: {said}"]
    assert leftovers(tmp_path) == []  # the .partial file is gone, and no out.npy

    _, out, _ = run(capsys, "cache", "info", "--json")
    cached = json.loads(out)["vectors"]
    assert 0 < cached < len(texts)
    sim.configure(latency=0.0)
    sim.reset_stats()
    rerun, _, err = run(capsys, *args)
    assert rerun == 0, err
    assert sim.stats()["inputs"] == len(texts) - cached  # only the missing texts were sent
    np.testing.assert_array_equal(load(tmp_path / "out.npy"), expected_matrix(texts, MODEL, DIM))


# -- progress and summary ------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_off_when_stderr_is_not_a_terminal(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_text("\n".join(texts_for(300)) + "\n", encoding="utf-8")
    status, _, err = run(
        capsys,
        "embed",
        str(tmp_path / "in.txt"),
        "-o",
        str(tmp_path / "o.npy"),
        *embed_args(simulated_provider),
    )
    assert status == 0
    lines = err.splitlines()
    assert len(lines) == 1 and "\r" not in err  # the summary, and no bar
    assert lines[0].startswith("embedded 300 texts (32 dims) in ")
    assert "0 cache hits, 0 retries" in lines[0] and lines[0].endswith("o.npy")


def test_progress_bar_on_a_terminal_and_quiet(
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "in.txt").write_text("\n".join(texts_for(300)) + "\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.npy")]
    args += embed_args(simulated_provider)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(args) == 0
    shown = terminal.getvalue()
    assert "300/300" in shown  # a total from the file, hence an ETA
    assert "text/s" in shown and "tokens=" in shown and "cached=0" in shown
    assert "retries=0" in shown and "embedded 300 texts" in shown

    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert cli.main([*args, "--quiet"]) == 0
    assert quiet.getvalue() == ""


# -- cache options and the cache command -----------------------------------------------------


def test_cache_info_and_clear(
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = Path(os.environ["EMBEDSDK_CACHE_DIR"])
    status, out, _ = run(capsys, "cache", "info", "--json")
    assert json.loads(out) == {
        "directory": str(default),
        "size_bytes": 0,
        "vectors": 0,
        "enabled": True,
    }
    assert not default.exists()  # looking did not create it

    (tmp_path / "in.txt").write_text("\n".join(texts_for(50)) + "\n", encoding="utf-8")
    run(
        capsys,
        "embed",
        str(tmp_path / "in.txt"),
        "-o",
        str(tmp_path / "o.npy"),
        *embed_args(simulated_provider),
    )
    status, out, _ = run(capsys, "cache", "info")
    assert status == 0
    assert f"directory  {default}\n" in out and "vectors    50\n" in out
    assert "enabled    yes\n" in out
    info = json.loads(run(capsys, "cache", "info", "--json")[1])
    assert info["vectors"] == 50 and info["size_bytes"] > 50 * DIM * 4

    monkeypatch.setenv("EMBEDSDK_CACHE", "0")
    assert "enabled    no (EMBEDSDK_CACHE" in run(capsys, "cache", "info")[1]
    monkeypatch.delenv("EMBEDSDK_CACHE")

    status, out, _ = run(capsys, "cache", "clear")
    assert status == 0 and out == f"removed 50 vectors from {default}\n"
    assert json.loads(run(capsys, "cache", "info", "--json")[1])["vectors"] == 0
    other = tmp_path / "other"
    assert (
        run(capsys, "cache", "clear", "--dir", str(other))[1] == f"removed 0 vectors from {other}\n"
    )
    assert not other.exists()


def test_no_cache_and_cache_dir(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = Path(os.environ["EMBEDSDK_CACHE_DIR"])
    (tmp_path / "in.txt").write_text("\n".join(texts_for(40)) + "\n", encoding="utf-8")
    args = ["embed", str(tmp_path / "in.txt"), "-o", str(tmp_path / "o.npy")]
    args += embed_args(simulated_provider)
    for _ in range(2):
        assert run(capsys, *args, "--no-cache")[0] == 0
    assert simulated_provider.stats()["inputs"] == 80  # paid twice: no cache
    assert not default.exists()

    mine = tmp_path / "mine"
    for _ in range(2):
        assert run(capsys, *args, "--cache-dir", str(mine))[0] == 0
    assert simulated_provider.stats()["inputs"] == 120  # the second run was served from "mine"
    assert (
        json.loads(run(capsys, "cache", "info", "--json", "--dir", str(mine))[1])["vectors"] == 40
    )
    assert not default.exists()

    with pytest.raises(SystemExit):
        cli.main([*args, "--no-cache", "--cache-dir", str(mine)])
    assert "not allowed with" in capsys.readouterr().err


def test_an_unusable_cache_is_one_warning_line(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    status, _, err = run(
        capsys,
        "embed",
        str(tmp_path / "in.txt"),
        "-o",
        str(tmp_path / "o.npy"),
        "--cache-dir",
        str(blocker),
        *embed_args(simulated_provider),
    )
    assert status == 0
    lines = err.splitlines()
    assert lines[0].startswith("embedsdk: warning: embedsdk cache at ")
    assert len(lines) == 2 and lines[1].startswith("embedded 2 texts")
    np.testing.assert_array_equal(
        load(tmp_path / "o.npy"), expected_matrix(["one", "two"], MODEL, DIM)
    )


# -- the .npy writer -------------------------------------------------------------------------


def test_npy_writer_appends_blocks_and_fixes_the_row_count_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, 5)).astype(np.float32) for n in (3, 0, 7, 1)]
    path = tmp_path / "v.npy"
    with NpyWriter(path) as out:
        for block in blocks:
            out.write(block)
        assert not path.exists() and (tmp_path / "v.npy.partial").exists()
    assert (out.rows, out.dim) == (11, 5)
    np.testing.assert_array_equal(np.load(path), np.concatenate(blocks))
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), np.concatenate(blocks))
    assert leftovers(tmp_path) == ["v.npy"]
    # write_npy takes embed_stream's (start, block) pairs too
    assert write_npy(path, [(0, blocks[0]), (3, blocks[2])]) == (10, 5)
    assert np.load(path).shape == (10, 5)
    assert write_npy(path, []) == (0, 0)
    assert np.load(path).shape == (0, 0)


def test_npy_writer_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "v.npy"
    path.write_bytes(b"an older file")
    with pytest.raises(ValueError, match="columns"), NpyWriter(path) as out:
        out.write(np.zeros((2, 4), np.float32))
        out.write(np.zeros((2, 3), np.float32))
    assert path.read_bytes() == b"an older file"  # untouched: the new one never replaced it
    assert leftovers(tmp_path) == ["v.npy"]
    with pytest.raises(KeyboardInterrupt), NpyWriter(path) as out:
        out.write(np.zeros((2, 4), np.float32))
        raise KeyboardInterrupt
    assert leftovers(tmp_path) == ["v.npy"]


# -- small usage and message fixes -----------------------------------------------------------


def test_workers_without_ray_is_a_usage_error(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--workers`` sets Ray's workers: without ``--ray`` it would be silently ignored."""
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    out = tmp_path / "out.npy"
    argv = ["embed", str(tmp_path / "in.txt"), "-o", str(out), *embed_args(simulated_provider)]
    status, _, err = run(capsys, *argv, "--workers", "3")
    assert status == 2
    assert_one_error_line(err, "--workers needs --ray", "--max-concurrent")
    assert simulated_provider.stats()["requests"] == 0 and not out.exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("fmt", ["npy", "jsonl"])
def test_a_full_device_is_named_in_the_error(
    simulated_provider: SimulatedProvider,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    argv = ["embed", str(tmp_path / "in.txt"), *embed_args(simulated_provider), "--format", fmt]
    status, _, err = run(capsys, *argv, "-o", "/dev/full")
    assert status == 1
    assert_one_error_line(err, "cannot write /dev/full: No space left on device")

    with open("/dev/full", "w") as full, monkeypatch.context() as patch:  # -o - > /dev/full
        patch.setattr(sys, "stdout", full)
        status, _, err = run(capsys, *argv, "-o", "-")
    assert status == 1
    assert_one_error_line(err, "cannot write standard output: No space left on device")


def test_the_simulated_provider_on_a_busy_port_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from embedsdk.testing.__main__ import main as serve_main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"python -m embedsdk.testing: error: cannot listen on 127.0.0.1:{port}: Address "
        "already in use (choose another --port, or --port 0 for any free one)"
    ]


def test_an_option_used_otherwise_than_given_is_said_once_in_flags(
    simulated_provider: SimulatedProvider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client says its rewrites at INFO; the command line shows those (and no other
    INFO) as one note each, in its own words, and nothing with --quiet."""
    texts = texts_for(200)
    source, out = tmp_path / "in.txt", tmp_path / "out.npy"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    flags = ("--base-url", simulated_provider.base_url, "--provider", "siliconflow")
    argv = ("embed", str(source), "-o", str(out), *flags, "--batch-size", "100", "--no-cache")
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    assert load(out).shape == (200, 1024)
    notes = [line for line in err.splitlines() if line.startswith("embedsdk: note:")]
    assert len(notes) == 1, err
    assert "--batch-size" in notes[0] and "64 is used" in notes[0], notes
    assert "batch_size" not in notes[0]
    status, _, err = run(capsys, *argv, "-q")
    assert status == 0 and "note" not in err, err
    assert logging.getLogger("embedsdk").level == logging.NOTSET  # left as it was
