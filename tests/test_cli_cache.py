"""``embedsdk cache info|clear`` when the cache cannot be used: one clear line naming the path.

(The usual info and clear are in ``test_cli.py``.) The command runs in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from embedsdk import cli


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
