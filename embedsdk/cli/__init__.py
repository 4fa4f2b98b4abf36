"""The ``embedsdk`` command (also ``python -m embedsdk``).

Subcommands:
  embed   embed a file of texts (lines, JSONL, CSV or stdin) into .npy, Parquet or JSON Lines
  cache   show where the vector cache is and how big (``info``), or empty it (``clear``)
  batch   show, cancel or list the Batch API jobs of ``embed --via batch``
  bench   measure throughput and CPU against the peers, the cache, memory, rate limits, batch
          sizes, the adapters and Ray, on the simulated provider or a real endpoint

Exit status: 0 done, 1 failed (one line on stderr, no traceback), 2 bad usage or
configuration, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._exceptions import APIError, EmbedSDKError
from ..cache import DBNAME, VectorCache, cache_disabled_by_env, default_cache_dir, file_in_the_way
from ..client import REWRITE_MARK
from ._batch import add_batch_parser
from ._embed import add_embed_parser, in_flags, is_usage_error, plural

EPILOG = """\
examples:
  embedsdk embed corpus.txt -o vectors.npy                 one text a line
  embedsdk embed data.jsonl --field body -o vectors.npy    JSON Lines
  embedsdk embed data.csv --column body -o vectors.npy     CSV
  cat corpus.txt | embedsdk embed - -o vectors.npy         standard input
  embedsdk embed data.jsonl --id-field id -o v.parquet     Parquet rows of id, embedding
  embedsdk embed corpus.txt --keep-text -o - --format jsonl | head
  embedsdk embed corpus.jsonl -o v.parquet --via batch     Batch API: half price, <= 24 h
  embedsdk batch status v.parquet.batch                    its batches, requests done
  embedsdk cache info                                      where the cache is, how big
  embedsdk <command> --help                                options of one command
"""


# -- cache -----------------------------------------------------------------------------------


def _human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _cache_directory(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir).expanduser()
    try:
        return default_cache_dir()
    except (RuntimeError, KeyError):  # no home directory (some containers), as open_cache
        raise EmbedSDKError(
            "no home directory to find the cache in: set EMBEDSDK_CACHE_DIR or pass --dir"
        ) from None


def cache_info(directory: Path) -> dict[str, Any]:
    """``directory``, ``size_bytes``, ``vectors``, ``enabled`` (what the library would do with
    ``cache=True`` here), without creating anything that is not there yet."""
    return _inspect(directory)[0]


def _inspect(directory: Path) -> tuple[dict[str, Any], str]:
    """:func:`cache_info`'s dict, and a note: why the cache is off, or that it is read-only
    ("" when neither)."""
    info: dict[str, Any] = {
        "directory": str(directory),
        "size_bytes": 0,
        "vectors": 0,
        "enabled": True,
    }
    note = ""
    in_the_way = file_in_the_way(directory)
    if in_the_way is not None:  # the library could not make the directory
        info["enabled"], note = False, f"{in_the_way} is a file, not a directory"
    elif VectorCache.exists(directory):
        with VectorCache._quiet(directory) as cache:
            info, note = cache.info(), cache.problem or ""
    if cache_disabled_by_env():
        info["enabled"], note = False, "EMBEDSDK_CACHE turns it off"
    return info, note


def _run_cache_info(args: argparse.Namespace) -> int:
    info, note = _inspect(_cache_directory(args))
    if args.json:
        print(json.dumps(info))
        return 0
    enabled = "yes" if info["enabled"] else "no"
    if note:
        enabled += f" ({note})"
    print(f"directory  {info['directory']}")
    print(f"enabled    {enabled}")
    print(f"vectors    {info['vectors']:,}")
    print(f"size       {_human_bytes(info['size_bytes'])}")
    return 0


def _run_cache_clear(args: argparse.Namespace) -> int:
    directory = _cache_directory(args)
    in_the_way = file_in_the_way(directory)
    if in_the_way is not None:
        raise EmbedSDKError(f"{in_the_way} is a file, not a directory: there is no cache to clear")
    if not VectorCache.exists(directory):
        print(f"removed 0 vectors from {directory}")
        return 0
    with VectorCache._quiet(directory) as cache:
        if cache.read_only:
            raise EmbedSDKError(f"the cache at {directory} cannot be cleared: {cache.problem}")
        unusable = not cache.enabled
        removed = cache.clear()  # an unreadable file: deleted, and an empty one made
        if not cache.enabled:
            raise EmbedSDKError(f"the cache at {directory} cannot be cleared: {cache.problem}")
    if unusable:
        database = directory / DBNAME
        print(f"deleted {database}, which could not be read: the cache at {directory} is empty")
    else:
        print(f"removed {plural(removed, 'vector')} from {directory}")
    return 0


def add_cache_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "cache",
        help="show or clear the vector cache",
        description="The vector cache holds every vector fetched, keyed by endpoint, model, "
        "dimensions and text (never the API key), so that no text is paid for twice. It lives "
        "in $EMBEDSDK_CACHE_DIR, else $XDG_CACHE_HOME/embedsdk, else ~/.cache/embedsdk.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    info = actions.add_parser(
        "info",
        help="where the cache is, whether it is on, how many vectors, how big",
        description="Show the cache directory, whether the library uses it, how many vectors "
        "it holds and its size on disk.",
    )
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_run_cache_info)
    clear = actions.add_parser(
        "clear",
        help="remove every vector from the cache",
        description="Remove every vector from the cache and give the disk space back; prints "
        "how many were removed.",
    )
    clear.set_defaults(run=_run_cache_clear)
    for action in (info, clear):
        action.add_argument(
            "--dir",
            metavar="DIR",
            help="the cache directory (default: $EMBEDSDK_CACHE_DIR, else ~/.cache/embedsdk)",
        )


# -- bench (its own module, loaded defensively) ----------------------------------------------


def add_bench_parser(sub: Any) -> None:
    """The bench's subcommand; if its module cannot load, a stub that says why.

    The bench has heavier, optional dependencies: whatever goes wrong importing it must never
    break ``embed`` or ``cache``.
    """
    try:
        bench = importlib.import_module("embedsdk._bench.cli")
        bench.add_bench_parser(sub)
    except Exception as exc:  # any failure: the rest of the command line still works
        reason = f"{type(exc).__name__}: {exc}"
        parser = sub.add_parser(
            "bench", help="measure the clients (unavailable here)", description=reason
        )
        parser.set_defaults(run=lambda args: _bench_unavailable(reason))


def _bench_unavailable(reason: str) -> int:
    raise EmbedSDKError(f"the bench cannot run here ({reason}); try pip install 'embedsdk[bench]'")


# -- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="embedsdk",
        description="Fast, cached batch embeddings from OpenAI-compatible /embeddings APIs "
        "(SiliconFlow first).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"embedsdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_embed_parser(sub)
    add_cache_parser(sub)
    add_batch_parser(sub)
    add_bench_parser(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a provider's message may hold newlines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return _one_line(exc)


class _InFlags(logging.Formatter):
    """A library record in the command line's words (``--batch-size``, not ``batch_size``)."""

    def format(self, record: logging.LogRecord) -> str:
        return in_flags(super().format(record))


def _is_rewrite(record: logging.LogRecord) -> bool:
    return bool(getattr(record, REWRITE_MARK, False))


@contextlib.contextmanager
def _library_warnings_as_lines(quiet: bool = False) -> Iterator[None]:
    """Print the library's warnings (a cache that cannot be used, ...) as one line each, and
    (unless ``quiet``) the options it uses otherwise than given (``--batch-size 100`` on a
    provider that takes 64), as notes; no other INFO.

    The cache both logs and warns: the log record is shown, and the ``RuntimeWarning``, which
    Python would print again with a source line, is dropped.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("embedsdk: warning: %(message)s"))
    notes = logging.StreamHandler(sys.stderr)
    notes.addFilter(_is_rewrite)
    notes.setFormatter(_InFlags("embedsdk: note: %(message)s"))
    logger = logging.getLogger("embedsdk")
    level = logger.level
    logger.addHandler(handler)
    if not quiet:
        logger.addHandler(notes)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)  # the notes' records reach the handlers
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"embedsdk(\.|$)")
            yield
    finally:
        logger.removeHandler(handler)
        logger.removeHandler(notes)
        logger.setLevel(level)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C does."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM stops it as Ctrl-C does: requests in flight cancelled,
    the partial ``.npy`` removed, what arrived kept in the cache."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    with _library_warnings_as_lines(quiet), _sigterm_unwinds():
        status = _run(args)
    failed = _quiet_if_stdout_is_gone()
    if failed is not None and status == 0:  # what was printed is lost: not a success
        print(f"embedsdk: error: cannot write standard output: {failed}", file=sys.stderr)
        return 1
    return status


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; its errors as one line on stderr."""
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        print("embedsdk: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("embedsdk: terminated", file=sys.stderr)
        return 143
    except EmbedSDKError as exc:
        message = in_flags(_one_line(exc), server_words=isinstance(exc, APIError))
        print(f"embedsdk: error: {message}", file=sys.stderr)
        return 2 if is_usage_error(exc) else 1
    except OSError as exc:
        print(f"embedsdk: error: {_os_error(exc)}", file=sys.stderr)
        return 1
    return status


def _quiet_if_stdout_is_gone() -> str | None:
    """When standard output cannot take what is left in its buffer (its reader went away, as
    with ``| head``; a full disk or ``/dev/full``), point it at /dev/null, so that Python's
    own flush at exit does not print a second error (as the Python docs advise).

    Returns why it failed, except for a reader that went away (that one is no error: ``head``
    read what it wanted).
    """
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            return exc.strerror or str(exc)
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
