"""The ``embedsdk`` command (also ``python -m embedsdk``).

Subcommands:
  embed   embed a file of texts (lines, JSONL, CSV or stdin) into an .npy file
  bench   measure serial, thread-pool and async (and the peers) on the simulated provider or
          a real endpoint
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ._config import API_KEY_VARIABLES, DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENT
from ._exceptions import EmbedSDKError
from ._inputs import FORMATS, count_rows, detect_format, read_texts
from ._npy import NpyWriter

ENV_HELP = (
    "The API key comes from "
    + ", ".join(API_KEY_VARIABLES)
    + "; EMBEDSDK_BASE_URL and EMBEDSDK_MODEL set the defaults of --base-url and --model."
)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The library's client options as flags (shared by embed and bench)."""
    group = parser.add_argument_group("client options")
    group.add_argument("--model", help="model name (default: BAAI/bge-m3)")
    group.add_argument("--base-url", help="API base URL (default: SiliconFlow)")
    group.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="texts per request (default: %(default)s)",
    )
    group.add_argument(
        "--max-concurrent",
        type=int,
        default=DEFAULT_MAX_CONCURRENT,
        metavar="N",
        help="requests in flight (default: %(default)s)",
    )
    group.add_argument("--rpm", type=float, help="at most this many requests per minute")
    group.add_argument("--tpm", type=float, help="at most this many tokens per minute")
    group.add_argument(
        "--max-retries",
        type=int,
        default=6,
        metavar="N",
        help="retries per request (default: %(default)s)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="seconds per request (default: %(default)s)",
    )
    group.add_argument("--dimensions", type=int, help="output dimensions (Qwen3 models only)")
    group.add_argument(
        "--encoding-format",
        choices=("base64", "float"),
        default="base64",
        help="wire format of vectors (default: %(default)s)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow sending the key over plain http to a non-local host",
    )


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": args.model,
        "base_url": args.base_url,
        "batch_size": args.batch_size,
        "max_concurrent": args.max_concurrent,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_retries": args.max_retries,
        "timeout": args.timeout,
        "dimensions": args.dimensions,
        "encoding_format": args.encoding_format,
        "allow_insecure": args.allow_insecure,
    }


class _Sized:
    """An iterator with a known length, so the progress bar can show an ETA."""

    def __init__(self, items: Iterator[str], total: int | None) -> None:
        self._items, self._total = items, total

    def __iter__(self) -> Iterator[str]:
        return self._items

    def __len__(self) -> int:
        return self._total or 0


def _run_embed(args: argparse.Namespace) -> int:
    from ._sync import Embedder

    fmt = detect_format(args.input, args.format)
    texts = read_texts(
        args.input, fmt, field=args.field, column=args.column, skip_empty=args.skip_empty
    )
    total = count_rows(args.input, fmt)
    show = not args.quiet and sys.stderr.isatty()
    started = time.perf_counter()
    with Embedder(**client_kwargs(args)) as client, NpyWriter(args.output) as out:
        source = _Sized(texts, total) if total else texts
        for _, block in client.embed_stream(source, progress=show):
            out.write(block)
        stats = client.stats
    if not args.quiet:
        elapsed = time.perf_counter() - started
        print(
            f"embedded {out.rows} texts ({out.dim} dims) in {elapsed:.1f} s "
            f"({out.rows / max(elapsed, 1e-9):,.0f} texts/s): {stats.requests} requests, "
            f"{stats.cache_hits} cache hits, {stats.retries} retries, {stats.tokens} tokens "
            f"-> {args.output}",
            file=sys.stderr,
        )
    return 0


def add_embed_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "embed",
        help="embed a file of texts into an .npy file",
        description="Embed every text of INPUT, in order, into OUTPUT.npy (float32, N x D). "
        "Memory stays bounded however large the input; vectors already in the cache are "
        "not paid for again, so an interrupted run resumes where it stopped. " + ENV_HELP,
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="text file (one text a line), .jsonl, .csv, or - for standard input",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT.npy", help="where to write the vectors"
    )
    parser.add_argument(
        "--format", choices=FORMATS, help="input format (default: from the file name, else lines)"
    )
    parser.add_argument("--field", default="text", help="JSONL field (default: %(default)s)")
    parser.add_argument("--column", help="CSV column (default: the first)")
    parser.add_argument(
        "--skip-empty",
        action="store_true",
        help="leave out empty lines instead of stopping at the first",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    add_client_options(parser)
    parser.set_defaults(run=_run_embed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedsdk",
        description="Batch embeddings from OpenAI-compatible /embeddings APIs (SiliconFlow first).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from ._bench.cli import add_bench_parser

    add_embed_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except EmbedSDKError as exc:
        print(f"embedsdk: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("embedsdk: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
