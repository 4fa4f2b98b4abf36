"""The ``embedsdk`` command (also ``python -m embedsdk``).

Subcommands:
  embed   embed a file of texts (lines, JSONL, CSV or stdin) into an .npy file
  cache   show where the vector cache is and how big (``info``), or empty it (``clear``)
  bench   measure serial, thread-pool and async (and the peers) on the simulated provider or
          a real endpoint

Exit status: 0 done, 1 failed (one line on stderr, no traceback), 2 bad usage, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._cache import VectorCache, cache_disabled_by_env, default_cache_dir
from ._config import (
    API_KEY_VARIABLES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
)
from ._exceptions import APIError, EmbedSDKError, InvalidInputError
from ._inputs import (
    FORMATS,
    STDIN,
    InputFileError,
    LineNumbers,
    check_input,
    count_rows,
    detect_format,
    read_texts,
)
from ._npy import NpyWriter, OutputFileError
from ._providers import PROFILES
from ._sync import Embedder

ENV_HELP = (
    "The API key comes from the environment only (never a flag, which other users could read "
    "in the process list): "
    + ", ".join(API_KEY_VARIABLES)
    + ". EMBEDSDK_BASE_URL and EMBEDSDK_MODEL set the defaults of --base-url and --model; "
    "EMBEDSDK_CACHE_DIR moves the cache and EMBEDSDK_CACHE=0 turns it off."
)

EPILOG = """\
examples:
  embedsdk embed corpus.txt -o vectors.npy                 one text a line
  embedsdk embed data.jsonl --field text -o vectors.npy    JSON Lines
  embedsdk embed data.csv --column body -o vectors.npy     CSV
  cat corpus.txt | embedsdk embed - -o vectors.npy         standard input
  embedsdk cache info                                      where the cache is, how big
  embedsdk <command> --help                                options of one command
"""


# -- client options, shared by embed and bench -----------------------------------------------


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The library's client options as flags (shared by embed and bench)."""
    group = parser.add_argument_group("client options")
    group.add_argument("--model", help="model name (default: $EMBEDSDK_MODEL, else BAAI/bge-m3)")
    group.add_argument(
        "--base-url",
        metavar="URL",
        help="API base URL, up to /v1 (default: $EMBEDSDK_BASE_URL, else SiliconFlow)",
    )
    group.add_argument(
        "--provider",
        choices=sorted(PROFILES),
        help="limits to assume (batch cap, tokens per request); default: from the base URL",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="texts per request, at most the provider's cap (default: %(default)s)",
    )
    group.add_argument(
        "--max-batch-tokens",
        type=int,
        metavar="N",
        help="estimated tokens per request (default: the provider's)",
    )
    group.add_argument(
        "--max-concurrent",
        type=int,
        default=DEFAULT_MAX_CONCURRENT,
        metavar="N",
        help="requests in flight (default: %(default)s)",
    )
    group.add_argument("--rpm", type=float, metavar="N", help="at most N requests per minute")
    group.add_argument("--tpm", type=float, metavar="N", help="at most N tokens per minute")
    group.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="retries per request (default: %(default)s)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="seconds per request (default: %(default)g)",
    )
    group.add_argument(
        "--dimensions", type=int, metavar="N", help="output dimensions (Qwen3-Embedding models)"
    )
    group.add_argument(
        "--encoding-format",
        choices=("base64", "float"),
        default="base64",
        help="wire format of vectors (default: %(default)s)",
    )
    group.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        help="do not learn the provider's rate limit from its 429 answers",
    )
    group.add_argument(
        "--truncate",
        action="store_true",
        help="cut texts longer than the model takes (by default such a text is an error)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow sending the key over plain http to a non-local host",
    )
    cache = group.add_mutually_exclusive_group()
    cache.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="neither read nor write the vector cache",
    )
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="vector cache directory (default: $EMBEDSDK_CACHE_DIR, else ~/.cache/embedsdk)",
    )


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :class:`embedsdk.Embedder` from the parsed client options."""
    cache: bool | str = getattr(args, "cache", True)
    if cache and getattr(args, "cache_dir", None):
        cache = args.cache_dir
    return {
        "model": args.model,
        "base_url": args.base_url,
        "provider": getattr(args, "provider", None),
        "batch_size": args.batch_size,
        "max_batch_tokens": getattr(args, "max_batch_tokens", None),
        "max_concurrent": args.max_concurrent,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_retries": args.max_retries,
        "timeout": args.timeout,
        "dimensions": args.dimensions,
        "encoding_format": args.encoding_format,
        "allow_insecure": args.allow_insecure,
        "truncate": getattr(args, "truncate", False),
        "adaptive": getattr(args, "adaptive", True),
        "cache": cache,
    }


# -- embed -----------------------------------------------------------------------------------


class _Sized:
    """An iterator with a known length, so the progress bar can show an ETA."""

    def __init__(self, items: Iterator[str], total: int) -> None:
        self._items, self._total = items, total

    def __iter__(self) -> Iterator[str]:
        return self._items

    def __len__(self) -> int:
        return self._total


def _run_embed(args: argparse.Namespace) -> int:
    fmt = detect_format(args.input, args.format)
    check_input(args.input)
    if os.path.isdir(args.output):
        raise OutputFileError(f"cannot write {args.output}: it is a directory")
    total = count_rows(args.input, fmt)
    numbers = LineNumbers()
    texts = read_texts(
        args.input,
        fmt,
        field=args.field,
        column=args.column,
        skip_empty=args.skip_empty,
        numbers=numbers,
    )
    show = not args.quiet and sys.stderr.isatty()
    started = time.perf_counter()
    with Embedder(**client_kwargs(args)) as client:
        try:
            rows, dim = _embed_to_file(client, _Sized(texts, total) if total else texts, args, show)
        except InvalidInputError as exc:
            raise _named_by_line(exc, args.input, numbers) from None
        except APIError as exc:
            if client.options.cache is not False and client.stats.requests:
                exc.args = (
                    f"{exc}; the vectors fetched so far are cached: "
                    "run the same command again to resume",
                )
            raise
        stats = client.stats
    if not args.quiet:
        elapsed = time.perf_counter() - started
        print(
            f"embedded {rows:,} texts ({dim} dims) in {elapsed:.1f} s "
            f"({rows / max(elapsed, 1e-9):,.0f} texts/s): {stats.requests:,} requests, "
            f"{stats.cache_hits:,} cache hits, {stats.retries:,} retries, {stats.tokens:,} tokens"
            f"{_truncated(stats)} -> {args.output}",
            file=sys.stderr,
        )
    return 0


def _named_by_line(exc: InvalidInputError, path: str, numbers: LineNumbers) -> InputFileError:
    """The library names a bad text by its index in the stream; the user knows lines."""
    message = str(exc).replace("pass truncate=True to the client", "use --truncate")
    line = numbers.line(exc.index)
    found = re.match(r"texts\[\d+\]", message)
    if line is not None and found:
        name = "standard input" if path == STDIN else path
        message = f"{name}, line {line}: the text{message[found.end() :]}"
    return InputFileError(message)


def _truncated(stats: Any) -> str:
    cut = getattr(stats, "truncated", 0)
    return f", {cut:,} texts truncated" if cut else ""


def _embed_to_file(
    client: Any, texts: Any, args: argparse.Namespace, show: bool
) -> tuple[int, int]:
    """Stream ``texts`` through ``client`` into ``args.output``; returns ``(rows, dim)``.

    The file is written under ``.partial`` and renamed only when every row is in, so a failed
    or interrupted run leaves no truncated ``.npy`` behind.
    """
    try:
        out = NpyWriter(args.output)
    except OSError as exc:
        raise OutputFileError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    with out:
        for _, block in client.embed_stream(texts, progress=show):
            try:
                out.write(block)
            except OSError as exc:
                raise OutputFileError(
                    f"cannot write {args.output}: {exc.strerror or exc}"
                ) from None
    return out.rows, out.dim or 0


def add_embed_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "embed",
        help="embed a file of texts into an .npy file",
        description="Embed every text of INPUT, in order, into OUTPUT (a float32 .npy of N rows "
        "by D dimensions, row i for text i). Memory stays bounded however large the input; "
        "vectors already in the cache are not paid for again, so an interrupted run (Ctrl-C, "
        "an error) resumes where it stopped when run again. " + ENV_HELP,
        epilog="exit status: 0 done, 1 failed, 2 bad usage, 130 interrupted",
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="text file (one text a line), .jsonl/.ndjson, .csv/.tsv, or - for standard input",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT", help="the .npy file to write"
    )
    inputs = parser.add_argument_group("input options")
    inputs.add_argument(
        "--format", choices=FORMATS, help="input format (default: from the file name, else lines)"
    )
    inputs.add_argument(
        "--field", default="text", help="JSONL: the field holding the text (default: %(default)s)"
    )
    inputs.add_argument("--column", help="CSV: the column holding the text (default: the first)")
    inputs.add_argument(
        "--skip-empty",
        action="store_true",
        help="leave empty texts out (by default an empty text is an error naming its line)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary line"
    )
    add_client_options(parser)
    parser.set_defaults(run=_run_embed)


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
    info: dict[str, Any] = {
        "directory": str(directory),
        "size_bytes": 0,
        "vectors": 0,
        "enabled": True,
    }
    if VectorCache.exists(directory):
        with VectorCache(directory) as cache:
            info = cache.info()
    elif directory.exists() and not directory.is_dir():
        info["enabled"] = False  # a file in the way: the library could not use it
    if cache_disabled_by_env():
        info["enabled"] = False
    return info


def _run_cache_info(args: argparse.Namespace) -> int:
    info = cache_info(_cache_directory(args))
    if args.json:
        print(json.dumps(info))
        return 0
    enabled = "yes" if info["enabled"] else "no"
    if cache_disabled_by_env():
        enabled += " (EMBEDSDK_CACHE turns it off)"
    elif not info["enabled"]:
        enabled += " (it cannot be opened: see the warning)"
    print(f"directory  {info['directory']}")
    print(f"enabled    {enabled}")
    print(f"vectors    {info['vectors']:,}")
    print(f"size       {_human_bytes(info['size_bytes'])}")
    return 0


def _run_cache_clear(args: argparse.Namespace) -> int:
    directory = _cache_directory(args)
    removed = 0
    if VectorCache.exists(directory):
        with VectorCache(directory) as cache:
            removed = cache.clear()
    print(f"removed {removed:,} vectors from {directory}")
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
    from ._version import __version__

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
    add_bench_parser(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a provider's message may hold newlines)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename}"
    return _one_line(exc)


@contextlib.contextmanager
def _library_warnings_as_lines() -> Iterator[None]:
    """Print the library's warnings (a cache that cannot be used, ...) as one line each.

    The cache both logs and warns: the log record is shown, and the ``RuntimeWarning``, which
    Python would print again with a source line, is dropped.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("embedsdk: warning: %(message)s"))
    logger = logging.getLogger("embedsdk")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"embedsdk(\.|$)")
            yield
    finally:
        logger.removeHandler(handler)


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
    with _library_warnings_as_lines(), _sigterm_unwinds():
        try:
            status: int = args.run(args)
        except KeyboardInterrupt:
            print("embedsdk: interrupted", file=sys.stderr)
            return 130
        except _Terminated:
            print("embedsdk: terminated", file=sys.stderr)
            return 143
        except EmbedSDKError as exc:
            print(f"embedsdk: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"embedsdk: error: {_os_error(exc)}", file=sys.stderr)
            return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
