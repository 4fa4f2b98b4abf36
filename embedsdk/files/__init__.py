"""Files of texts and of vectors: the command line's input readers (``_inputs``: text,
JSON Lines, CSV, one row at a time), its output writers (``_writers``: ``.npy``, Parquet, JSON
Lines, written as blocks arrive, published by a rename, one run per output), and
``NpyWriter`` / ``write_npy`` (``_npy``: an ``.npy`` written block by block; public).

Exports the names below. Imports only ``embedsdk._exceptions`` of embedsdk (and numpy,
pyarrow when asked for).
"""

from __future__ import annotations

from ._inputs import (
    FORMATS,
    STDIN,
    InputFileError,
    LineNumbers,
    Row,
    check_input,
    count_rows,
    detect_format,
    read_rows,
)
from ._npy import (
    NpyWriter,
    OutputFileError,
    write_npy,
)
from ._writers import (
    OUTPUT_FORMATS,
    STDOUT,
    OutputUsageError,
    Writer,
    check_output,
    import_pyarrow,
    lock_output,
    open_writer,
    output_format,
)

__all__ = [
    "FORMATS",
    "OUTPUT_FORMATS",
    "STDIN",
    "STDOUT",
    "InputFileError",
    "LineNumbers",
    "NpyWriter",
    "OutputFileError",
    "OutputUsageError",
    "Row",
    "Writer",
    "check_input",
    "check_output",
    "count_rows",
    "detect_format",
    "import_pyarrow",
    "lock_output",
    "open_writer",
    "output_format",
    "read_rows",
    "write_npy",
]
