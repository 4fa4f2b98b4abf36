"""Files made read-only for this process, root included: for the tests of a read-only cache."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """``paths`` (a directory and the files in it) cannot be written while inside.

    Root writes through permission bits, and the suite runs as root on some machines (as in
    containers): there the immutable attribute (``chattr +i``), which the kernel enforces for
    root too, stands for a read-only file system or another user's directory. (A read-only
    bind mount would do as well, but needs privileges a test does not have.) Otherwise the
    permission bits. Skips the test where neither holds: tmpfs has no immutable attribute,
    and a container may lack CAP_LINUX_IMMUTABLE.
    """
    names = [str(p) for p in paths]
    if IS_ROOT:
        if shutil.which("chattr") is None:
            pytest.skip("chattr is needed to make a file read-only for root")
        done = subprocess.run(["chattr", "+i", *names], capture_output=True, text=True)
        undo = ["chattr", "-i", *names]
    else:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o500 if p.is_dir() else 0o400)
    try:
        if IS_ROOT and done.returncode != 0:
            pytest.skip(f"chattr +i failed: {done.stderr.strip()}")
        if any(os.access(p, os.W_OK) for p in paths):
            pytest.skip("the files could not be made read-only here")
        yield
    finally:
        if IS_ROOT:
            subprocess.run(undo, capture_output=True, check=False)
        else:
            for p, mode in modes.items():
                p.chmod(mode)
