"""Where ``embedsdk embed`` writes its vectors: ``.npy``, Parquet or JSON Lines, to a file or to
standard output.

Every writer takes the blocks of rows that ``embed_stream`` yields, in order, and keeps none of
them: memory stays bounded however many texts there are. A file is written as
``OUTPUT.partial`` and renamed onto ``OUTPUT`` only when every row is in, so a failed or
interrupted run leaves no truncated output (and an older ``OUTPUT`` untouched). On standard
output, or a device or named pipe (``/dev/null``: never replaced by a rename), ``.npy`` and
Parquet are spooled to an unnamed temporary file and copied out at the end (an ``.npy`` header
needs the row count; a half Parquet file is unreadable); JSON Lines streams, one complete line
per row.

Parquet and JSON Lines rows are ``id`` (the line number, or the ``--id-field`` value), ``text``
(with ``--keep-text``) and ``embedding`` (float32, a fixed-size list of D values in Parquet).
pyarrow is imported only when Parquet is asked for.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, Union

import numpy as np
import numpy.lib.format as npy_format
import numpy.typing as npt

from .._exceptions import EmbedSDKError
from ._npy import NpyWriter, OutputFileError

if sys.platform == "win32":  # pragma: no cover - Windows
    import msvcrt
else:
    import fcntl

OUTPUT_FORMATS = ("npy", "parquet", "jsonl")
STDOUT = "-"
_SUFFIXES = {
    ".npy": "npy",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
#: Vector bytes gathered into one Parquet row group (blocks are often smaller). The writer
#: holds about three times this much: the blocks, their concatenation, the encoded pages.
ROW_GROUP_BYTES = 8 << 20
PARQUET_HINT = 'pip install "embedsdk[parquet]"'

Meta = Sequence[tuple[Union[int, str], str]]  # (id, text) of each row of a block


class OutputUsageError(EmbedSDKError):
    """The output named on the command line cannot be used as asked (a usage error)."""


class OutputBusyError(OutputFileError):
    """Another run is writing the same output (it holds ``OUTPUT.lock``).

    A failure of this run, not of the command (exit 1, not 2): the same command succeeds once
    the other run ends."""


# -- which format, and may it be written -----------------------------------------------------


def output_format(path: str, fmt: str | None) -> str:
    """``fmt`` if given, else from the suffix of ``path``: ``.npy`` (or none), ``.parquet``
    / ``.pq``, ``.jsonl`` / ``.ndjson``. Any other suffix is refused rather than guessed."""
    if path == STDOUT:
        return fmt or "npy"
    suffix = os.path.splitext(path)[1].lower()
    implied = _SUFFIXES.get(suffix, "npy" if not suffix else None)
    if fmt is not None:
        if suffix in _SUFFIXES and implied != fmt:
            raise OutputUsageError(f"{path} is named as {implied}, but --format says {fmt}")
        return fmt
    if implied is None:
        raise OutputUsageError(
            f"cannot tell the output format from the name {path}: end it in .npy, .parquet "
            "or .jsonl, or pass --format"
        )
    return implied


def check_output(path: str, fmt: str, inputs: Sequence[str], force: bool) -> None:
    """Refuse, before anything is sent, an output that would destroy data.

    Never one of ``inputs`` (nor may ``OUTPUT.partial`` or ``.lock`` be one), even with
    ``force``; never a
    terminal; never an existing file that is not this command's output (:func:`not_ours`)
    unless ``force``. An output of this command is replaced: re-running it is how a failed
    run resumes, and must stay cheap.
    """
    if not path:
        raise OutputUsageError("-o needs a file name (or - for standard output)")
    if path == STDOUT:
        if sys.stdout is None or sys.stdout.isatty():
            raise OutputUsageError(
                "refusing to write binary vectors to a terminal: redirect standard output "
                "(-o - > FILE, or a pipe) or name the output file"
            )
        return
    if os.path.isdir(path):
        raise OutputFileError(f"cannot write {path}: it is a directory")
    if _is_stream(path) and _is_terminal(path):
        raise OutputUsageError(f"refusing to write binary vectors to the terminal {path}")
    for candidate in (path, path + ".partial", path + LOCK_SUFFIX):
        for source in inputs:
            if _same_file(candidate, source):
                raise OutputUsageError(
                    f"refusing to write over the input {source}: choose another -o"
                )
    why = None if force or not os.path.isfile(path) else not_ours(path, fmt)
    if why is not None:
        raise OutputUsageError(
            f"{path} exists and is not an output of embedsdk embed ({why}): choose another -o, "
            "or pass --force to replace it"
        )


def _is_stream(path: str) -> bool:
    """Whether ``path`` exists and is not a regular file: a device (``/dev/null``), a named
    pipe or a socket. Such an output is written to as it is, never replaced by a rename."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _is_terminal(path: str) -> bool:
    """Whether the character device ``path`` is a terminal. (A named pipe is never opened
    here: opening and closing it would end its reader's input.)"""
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return False
        flags = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)  # not on Windows
        fd = os.open(path, os.O_WRONLY | flags)
    except OSError:
        return False  # opening it for real will say why
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing: not the same existing file
        return False


def not_ours(path: str, fmt: str) -> str | None:
    """Why the existing file ``path`` is not an output of ``embedsdk embed`` in ``fmt``, or
    ``None`` if it is one (or is empty: nothing to lose).

    Recognised by the shape of what this command writes, never by the name: a little-endian
    float32 ``(N, D)`` array in C order (``.npy`` version 1.0); Parquet with an ``embedding``
    column of float32 lists; JSON Lines whose first row is an object with an ``embedding``.
    Anything else, an ``np.save`` of other data or a table of sales, is someone's data.
    """
    try:
        with open(path, "rb") as f:
            if not f.read(1):
                return None
            f.seek(0)
            if fmt == "npy":
                return _not_our_npy(f)
            if fmt == "jsonl":
                record = json.loads(f.readline(1 << 24))
                ok = isinstance(record, dict) and "embedding" in record
                return None if ok else "its first line holds no embedding"
    except (OSError, ValueError) as exc:
        return _unreadable(fmt, exc)
    return _not_our_parquet(path)


def _unreadable(fmt: str, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"it cannot be read: {exc.strerror or exc}"
    return {"npy": "not an .npy file", "jsonl": "its first line is not JSON"}.get(fmt, str(exc))


def _not_our_npy(f: IO[bytes]) -> str | None:
    """See :func:`not_ours`; raises ``ValueError`` for a file that is no ``.npy``."""
    version = npy_format.read_magic(f)
    if version != (1, 0):  # NpyWriter writes 1.0; 2.0 and 3.0 hold what it never writes
        return f"an .npy of format version {version[0]}.{version[1]}"
    shape, fortran_order, dtype = npy_format.read_array_header_1_0(f)
    if dtype == np.dtype("<f4") and len(shape) == 2 and not fortran_order:
        return None
    order = "a Fortran-ordered " if fortran_order else "an " if dtype.name[0] in "aeio" else "a "
    return f"{order}{dtype.name} array of shape {shape}"


def _not_our_parquet(path: str) -> str | None:
    """See :func:`not_ours`. Reads the footer's schema only (pyarrow, as the writer needs)."""
    pa, pq = import_pyarrow()
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        return f"not a Parquet file: {exc}"
    if "embedding" in schema.names:
        kind = schema.field("embedding").type
        lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
        if any(is_list(kind) for is_list in lists) and pa.types.is_float32(kind.value_type):
            return None
    columns = ", ".join(schema.names[:8]) + (", ..." if len(schema.names) > 8 else "")
    return f"no embedding column of float32 vectors; its columns: {columns}"


# -- one run per output ----------------------------------------------------------------------

LOCK_SUFFIX = ".lock"
_NO_LOCKS = {
    getattr(errno, name) for name in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP") if hasattr(errno, name)
}
_log = logging.getLogger("embedsdk")
_LOCK_TEXT = "embedsdk embed, process {pid}\n"


@contextlib.contextmanager
def lock_output(
    path: str, remedy: str = "or choose another -o", holder: str = "embedsdk embed"
) -> Iterator[None]:
    """Hold ``path.lock`` while the output is written, or raise :class:`OutputBusyError`.

    Two runs into one output would write the same ``OUTPUT.partial`` and publish a mix of
    both. The lock is the operating system's (``flock`` on POSIX, ``msvcrt.locking`` on
    Windows): it ends with the process, however it ends, so a run killed with SIGKILL blocks
    no later one. The file holds the holder's process id, for the message, and is removed on
    release. Standard output and devices take none: nothing is renamed onto them.
    ``holder`` and ``remedy``: who the busy error says holds it, and what it suggests
    besides waiting.

    Not the ``filelock`` package: a dependency for forty lines, and it neither tells who
    holds the lock nor removes the file safely on POSIX.
    """
    if path == STDOUT or _is_stream(path):
        yield
        return
    lock = path + LOCK_SUFFIX
    fd = _take_lock(path, lock, (holder, remedy))
    try:
        yield
    finally:
        _drop_lock(fd, lock)


#: Who a busy output's error names as holding it, and what it suggests besides waiting.
_OUTPUT_BUSY = ("embedsdk embed", "or choose another -o")


def _take_lock(path: str, lock: str, busy: tuple[str, str] = _OUTPUT_BUSY) -> int:
    """The descriptor of ``lock``, locked and holding our process id."""
    for _ in range(100):  # each retry means another run released it meanwhile
        fd = _open_lock(path, lock)
        try:
            if not _try_lock(fd, lock):
                raise _busy(path, lock, fd, *busy)
            if _still_there(fd, lock):
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, _LOCK_TEXT.format(pid=os.getpid()).encode())
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed by its holder after we opened it: a fresh one is needed
    raise OutputBusyError(f"cannot lock {lock}: other runs keep taking it")


def _open_lock(path: str, lock: str) -> int:
    """Open (or create) ``lock``; refuse a file of that name that is not a lock of ours."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    held, ours = _read_lock(fd), _LOCK_TEXT.split("{", 1)[0]
    if not (held.startswith(ours) or ours.startswith(held)):  # a holder may be mid-write
        os.close(fd)
        raise OutputUsageError(
            f"{lock} exists and is not embedsdk's lock: move it away, or choose another -o"
        )
    return fd


def _read_lock(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode("utf-8", "replace")
    except OSError:  # Windows: the holder's locked bytes cannot be read
        return ""


def _busy(path: str, lock: str, fd: int, holder: str, remedy: str) -> OutputBusyError:
    held = _read_lock(fd).strip()
    pid = held.rsplit(" ", 1)[-1] if held.rsplit(" ", 1)[-1].isdigit() else None
    who = f"process {pid}, which holds {lock}" if pid else f"it holds {lock}"
    return OutputBusyError(
        f"{path} is being written by another {holder} ({who}): wait for it to end, {remedy}"
    )


if sys.platform == "win32":  # pragma: no cover - Windows

    def _try_lock(fd: int, lock: str) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # the first byte
        except OSError:
            return False
        return True

    def _still_there(fd: int, lock: str) -> bool:
        return True  # Windows removes no open file: the one we hold is the one named

    def _drop_lock(fd: int, lock: str) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)
        with contextlib.suppress(OSError):  # another run opened it meanwhile: it stays
            os.unlink(lock)

else:

    def _try_lock(fd: int, lock: str) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:  # a file system without locks (some network and FUSE ones)
            if exc.errno not in _NO_LOCKS:
                raise
            # Refusing to write there would break every run for want of guarding a rare one.
            _log.warning("cannot lock %s (%s): a second run into it would not be refused",
                         lock, exc.strerror)  # fmt: skip
        return True

    def _still_there(fd: int, lock: str) -> bool:
        """Whether ``lock`` still names the file ``fd`` locked: its holder removes it before
        letting go, so a run that opened it just before got a lock on a deleted file."""
        try:
            named = os.stat(lock)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def _drop_lock(fd: int, lock: str) -> None:
        """Remove the file while still holding it (see :func:`_still_there`), then let go."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)  # closing the last descriptor releases the lock


# -- where the bytes go ----------------------------------------------------------------------


class _Target:
    """A binary file that becomes the output only on :meth:`commit`."""

    file: IO[bytes]

    def commit(self, header: bytes = b"") -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _FileTarget(_Target):
    """``PATH.partial``, renamed onto ``PATH`` on commit and deleted on abort."""

    def __init__(self, path: str) -> None:
        self.path, self._tmp = path, path + ".partial"
        try:
            self.file = open(self._tmp, "wb")  # noqa: SIM115 (closed in commit/abort)
        except OSError as exc:
            raise _cannot_write(path, exc) from None

    def commit(self, header: bytes = b"") -> None:
        assert not header, "a file target takes no header"
        try:
            self.file.close()  # flushes: a full disk shows up here
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise _cannot_write(self.path, exc) from None

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class _StreamTarget(_Target):
    """Standard output, or a device or pipe named by ``path``: written to as rows come
    (``spool=False``), or at the end from an unnamed temporary file that the system deletes
    whatever happens (``spool=True``)."""

    def __init__(self, spool: bool, path: str = STDOUT) -> None:
        if path == STDOUT:
            self._out: IO[bytes] = sys.stdout.buffer
        else:
            try:
                self._out = open(path, "wb")  # noqa: SIM115 (closed in commit/abort)
            except OSError as exc:
                raise _cannot_write(path, exc) from None
        self._path, self._spool = path, spool
        self.file = tempfile.TemporaryFile() if spool else self._out  # noqa: SIM115

    def commit(self, header: bytes = b"") -> None:
        try:
            self._out.write(header)
            if self._spool:
                self.file.seek(0)
                shutil.copyfileobj(self.file, self._out, 1 << 20)
            self._out.flush()
        except OSError as exc:  # a full disk or device (/dev/full): say which output
            raise _cannot_write(self._path, exc) from None
        finally:
            self._release()

    def abort(self) -> None:
        if not self._spool:
            with contextlib.suppress(OSError, ValueError):
                self._out.flush()  # the complete lines written so far
        self._release()

    def _release(self) -> None:
        if self._spool:
            self.file.close()
        if self._path != STDOUT:
            with contextlib.suppress(OSError):
                self._out.close()


def _cannot_write(path: str, exc: OSError) -> OutputFileError:
    name = "standard output" if path == STDOUT else path
    return OutputFileError(f"cannot write {name}: {exc.strerror or exc}")


# -- the writers -----------------------------------------------------------------------------


class Writer:
    """Append blocks of rows (``(n, D)`` float32 with the ``(id, text)`` of each row); the
    output appears on a clean :meth:`close`, and nothing does on ``close(commit=False)``."""

    rows: int = 0
    dim: int | None = None

    def write(self, block: npt.NDArray[np.float32], meta: Meta | None) -> None:
        raise NotImplementedError

    def close(self, commit: bool = True) -> None:
        raise NotImplementedError

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: Any, *exc_info: object) -> None:
        self.close(commit=exc_type is None)

    def _count(self, block: npt.NDArray[np.float32]) -> None:
        if self.dim is None:
            self.dim = block.shape[1]
        elif block.shape[1] != self.dim:
            raise ValueError(f"block has {block.shape[1]} columns, the output has {self.dim}")
        self.rows += block.shape[0]


class _NpyFile(Writer):
    """An ``.npy`` file, through :class:`embedsdk.NpyWriter`."""

    def __init__(self, path: str) -> None:
        try:
            self._out = NpyWriter(path)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        self._path = path

    def write(self, block: npt.NDArray[np.float32], meta: Meta | None) -> None:
        self._count(block)
        try:
            self._out.write(block)
        except OSError as exc:
            raise _cannot_write(self._path, exc) from None

    def close(self, commit: bool = True) -> None:
        try:
            self._out.close(commit)
        except OSError as exc:
            raise _cannot_write(self._path, exc) from None


class _NpyStream(Writer):
    """An ``.npy`` on standard output: rows spooled, the header (with the count) first."""

    def __init__(self, target: _Target) -> None:
        self._target = target

    def write(self, block: npt.NDArray[np.float32], meta: Meta | None) -> None:
        self._count(block)
        self._target.file.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

    def close(self, commit: bool = True) -> None:
        if not commit:
            self._target.abort()
            return
        header = io.BytesIO()
        shape = (self.rows, self.dim or 0)
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        self._target.commit(header.getvalue())


class _JsonLines(Writer):
    """One JSON object a row: ``{"id": ..., "text": ..., "embedding": [...]}``.

    Each value is written with 9 significant digits, which give back the exact float32.
    """

    def __init__(self, target: _Target, keep_text: bool) -> None:
        self._target, self._keep_text = target, keep_text
        self._format = ""

    def write(self, block: npt.NDArray[np.float32], meta: Meta | None) -> None:
        assert meta is not None and len(meta) == len(block), "one (id, text) a row"
        self._count(block)
        if not self._format:
            self._format = ",".join(["%.9g"] * block.shape[1])
        lines = []
        for (ident, text), row in zip(meta, block.tolist()):
            head = '{"id":' + json.dumps(ident, ensure_ascii=False)
            if self._keep_text:
                head += ',"text":' + json.dumps(text, ensure_ascii=False)
            lines.append(f'{head},"embedding":[{self._format % tuple(row)}]}}\n')
        self._target.file.write("".join(lines).encode("utf-8"))

    def close(self, commit: bool = True) -> None:
        if commit:
            self._target.commit()
        else:
            self._target.abort()


def import_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or an error that says how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise OutputFileError(
            f"writing Parquet needs pyarrow ({exc}): {PARQUET_HINT}, or write .npy or .jsonl"
        ) from None
    return pa, pq


class _Parquet(Writer):
    """A Parquet file: ``id`` (int64 or string), ``text`` (string, with ``keep_text``) and
    ``embedding`` (``fixed_size_list<float32>[D]``), a row group per ~8 MiB of vectors."""

    def __init__(self, target: _Target, keep_text: bool) -> None:
        self._pa, self._pq = import_pyarrow()
        self._target, self._keep_text = target, keep_text
        self._writer: Any = None
        self._pending: list[Any] = []
        self._pending_bytes = 0

    def write(self, block: npt.NDArray[np.float32], meta: Meta | None) -> None:
        assert meta is not None and len(meta) == len(block), "one (id, text) a row"
        self._count(block)
        table = self._table(np.ascontiguousarray(block, dtype=np.float32), meta)
        if self._writer is None:
            self._writer = self._open(table.schema)
        self._pending.append(table)
        self._pending_bytes += block.nbytes
        if self._pending_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _open(self, schema: Any) -> Any:
        # No dictionary encoding: embeddings and ids never repeat, and trying costs memory.
        return self._pq.ParquetWriter(self._target.file, schema, use_dictionary=False)

    def _table(self, block: npt.NDArray[np.float32], meta: Meta) -> Any:
        pa = self._pa
        ids = [ident for ident, _ in meta]
        columns = {"id": pa.array(ids, pa.int64() if isinstance(ids[0], int) else pa.string())}
        if self._keep_text:
            columns["text"] = pa.array([text for _, text in meta], pa.string())
        values = pa.array(block.reshape(-1), pa.float32())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(values, block.shape[1])
        return pa.table(columns)

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(self._pa.concat_tables(self._pending))
            self._pending, self._pending_bytes = [], 0

    def close(self, commit: bool = True) -> None:
        if not commit:
            self._pending = []
            if self._writer is not None:
                with contextlib.suppress(Exception):
                    self._writer.close()
            self._target.abort()
            return
        try:
            self._flush()
            if self._writer is None:  # no rows at all: still a valid, empty file
                self._writer = self._open(self._empty_schema())
            self._writer.close()
        except BaseException:
            self._target.abort()
            raise
        self._target.commit()

    def _empty_schema(self) -> Any:
        pa = self._pa
        fields = [("id", pa.int64())] + ([("text", pa.string())] if self._keep_text else [])
        return pa.schema([*fields, ("embedding", pa.list_(pa.float32(), self.dim or 0))])


def open_writer(path: str, fmt: str, *, keep_text: bool = False) -> Writer:
    """The writer of ``fmt`` for ``path`` (``-``: standard output). Opening it creates
    ``path.partial`` (or nothing, for standard output); pyarrow is checked first."""
    if fmt == "parquet":
        import_pyarrow()  # before any file is made
    if fmt == "npy" and path != STDOUT and not _is_stream(path):
        return _NpyFile(path)
    stream = path == STDOUT or _is_stream(path)
    target = _StreamTarget(fmt != "jsonl", path) if stream else _FileTarget(path)
    if fmt == "npy":
        return _NpyStream(target)
    if fmt == "jsonl":
        return _JsonLines(target, keep_text)
    return _Parquet(target, keep_text)
