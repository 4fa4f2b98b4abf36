"""Write an ``.npy`` file of float32 rows block by block, so no more than one block is in RAM."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np
import numpy.lib.format as npy_format
import numpy.typing as npt

from .._exceptions import EmbedSDKError

_DESCR = npy_format.dtype_to_descr(np.dtype("<f4"))


class OutputFileError(EmbedSDKError):
    """The output file cannot be written (missing directory, no permission, disk full)."""


def _header(rows: int, dim: int) -> bytes:
    """The version 1.0 header of a ``(rows, dim)`` little-endian float32 array.

    numpy pads it with spaces to a multiple of 64 bytes (128 here for any shape up to 10**20
    rows), so the header written first with ``(0, 0)`` is rewritten in place with the real
    count at the end.
    """
    out = io.BytesIO()
    header = {"descr": _DESCR, "fortran_order": False, "shape": (rows, dim)}
    npy_format.write_array_header_1_0(out, header)
    return out.getvalue()


class NpyWriter:
    """Append ``(n, D)`` float32 blocks to an ``.npy`` file; the row count is written on close.

    >>> with NpyWriter("vectors.npy") as out:            # doctest: +SKIP
    ...     for start, block in embedder.embed_stream(lines):
    ...         out.write(block)

    The file is written to ``path + ".partial"`` and renamed on a clean close, so a crashed run
    never leaves a truncated file under the final name.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._tmp = self.path + ".partial"
        self._file: BinaryIO | None = open(self._tmp, "wb")  # noqa: SIM115 (closed in close())
        self.rows = 0
        self.dim: int | None = None
        self._header_len = self._file.write(_header(0, 0))

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, exc_type: Any, *exc_info: object) -> None:
        self.close(commit=exc_type is None)

    def write(self, block: npt.ArrayLike) -> None:
        """Append rows; every block must have the same number of columns."""
        array = np.ascontiguousarray(block, dtype="<f4")
        if array.ndim != 2:
            raise ValueError(f"blocks must be 2-d (rows, dim), got shape {array.shape}")
        if self.dim is None:
            self.dim = array.shape[1]
        elif array.shape[1] != self.dim:
            raise ValueError(f"block has {array.shape[1]} columns, the file has {self.dim}")
        assert self._file is not None, "writer is closed"
        self._file.write(array.tobytes())
        self.rows += array.shape[0]

    def close(self, commit: bool = True) -> None:
        """Fix the header up and move the file into place (or delete it when not ``commit``)."""
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            try:
                if commit:
                    header = _header(self.rows, self.dim or 0)
                    if len(header) != self._header_len:  # never for fewer than 10**20 rows
                        raise OutputFileError(f"{self.rows} rows do not fit the .npy header")
                    file.seek(0)
                    file.write(header)
            finally:
                file.close()  # flushes: a full disk shows up here
            if commit:
                os.replace(self._tmp, self.path)
                return
        except BaseException:
            self._discard()
            raise
        self._discard()

    def _discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def write_npy(path: str | os.PathLike[str], blocks: Iterable[Any]) -> tuple[int, int]:
    """Write ``blocks`` (arrays, or ``(start, array)`` pairs from ``embed_stream``) to ``path``.

    Returns the ``(rows, dim)`` written.
    """
    with NpyWriter(path) as out:
        for block in blocks:
            out.write(block[1] if isinstance(block, tuple) else block)
    return out.rows, out.dim or 0
