"""``embedsdk embed --ray [ADDRESS]``: the same command, on a Ray cluster.

Reads Parquet, JSON Lines, CSV or plain text (a file, a folder or a glob) with Ray Data,
embeds with :func:`embedsdk.ray.embed_dataset` (one rate limit for every worker) and writes
Parquet: a folder of part files (``-o DIR``), or one file (``-o FILE.parquet``, written by
this process as the blocks arrive). Ray is imported only here.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
from typing import Any

from .._exceptions import ConfigurationError
from ..files import InputFileError, OutputUsageError, check_output, lock_output
from ._options import client_kwargs

#: ``--ray`` with no address: ``$RAY_ADDRESS`` if set, else a Ray started for this command.
LOCAL = "local"
DEFAULT_WORKERS = 4
_READERS = {
    ".parquet": "read_parquet",
    ".jsonl": "read_json",
    ".ndjson": "read_json",
    ".json": "read_json",
    ".csv": "read_csv",
    ".txt": "read_text",
}


def add_ray_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL,
        metavar="ADDRESS",
        help="run on Ray: a running cluster's ADDRESS (auto, ray://HOST:10001), or a local "
        "one when none is given; INPUT may then be Parquet, JSONL, CSV or text (a file, a "
        "folder or a glob), and OUTPUT is Parquet (a folder, or one FILE.parquet). Put it "
        "after INPUT, or write --ray=ADDRESS. Needs pip install 'embedsdk[ray]'",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="with --ray: workers, each with --max-concurrent requests in flight; --rpm and "
        f"--tpm are divided between them (default: {DEFAULT_WORKERS})",
    )


def _paths(pattern: str) -> list[str]:
    """The files a path, folder or glob names (a folder: the files in it)."""
    if os.path.isdir(pattern):
        found = sorted(
            os.path.join(pattern, f)
            for f in os.listdir(pattern)
            if not f.startswith((".", "_")) and os.path.isfile(os.path.join(pattern, f))
        )
    else:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    found = [p for p in found if os.path.isfile(p)]
    if not found:
        raise InputFileError(f"no input file at {pattern}")
    return found


def _reader(paths: list[str], forced: str | None) -> str:
    if forced:
        return {"jsonl": "read_json", "csv": "read_csv", "lines": "read_text"}.get(
            forced, "read_text"
        )
    kinds = {_READERS.get(os.path.splitext(p)[1].lower(), "read_text") for p in paths}
    if len(kinds) > 1:
        raise InputFileError(f"the input mixes formats ({', '.join(sorted(kinds))}): pick one")
    return kinds.pop()


def _init(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigurationError(
            "--ray needs Ray: pip install 'embedsdk[ray]' (Python 3.10 or later)"
        ) from None
    if not ray.is_initialized():
        if address == LOCAL:  # a Ray of its own, not whichever runs on this machine
            address = os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, log_to_driver=False)
    return ray


def run_ray(args: argparse.Namespace) -> int:
    """Embed ``args.input`` on Ray into ``args.output`` (Parquet)."""
    if args.output == "-" or (args.format not in (None, "parquet")):
        raise OutputUsageError("--ray writes Parquet: -o DIR or -o FILE.parquet")
    if args.workers is None:
        args.workers = DEFAULT_WORKERS
    if args.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {args.workers}")
    paths = _paths(args.input)
    one_file = args.output.endswith(".parquet")  # written here: the same rules as without Ray
    if one_file:
        check_output(args.output, "parquet", paths, args.force)
    with lock_output(args.output) if one_file else contextlib.nullcontext():
        return _run_ray(args, paths)


def _run_ray(args: argparse.Namespace, paths: list[str]) -> int:
    reader = _reader(paths, args.input_format)
    column = "text" if reader == "read_text" else (args.column or args.field)
    options = client_kwargs(args)
    ray = _init(args.ray)
    import embedsdk.ray as embedsdk_ray

    ds = getattr(ray.data, reader)(paths)
    if args.skip_empty:
        ds = ds.filter(lambda row: bool(str(row[column] or "").strip()))
    out = embedsdk_ray.embed_dataset(
        ds, column, id_column=args.id_field, concurrency=args.workers, **options
    )
    if not args.keep_text:
        out = out.drop_columns([column])
    rows = _write(out, args.output)
    if not args.quiet:
        print(f"embedded {rows:,} rows on Ray -> {args.output}", file=sys.stderr)
    return 0


def _write(ds: Any, output: str) -> int:
    """A folder of part files, or one ``.parquet`` file written here as blocks arrive (to a
    temporary name first: a failed run leaves no truncated file)."""
    if not output.endswith(".parquet"):
        ds.write_parquet(output)
        return int(ds.count())
    import pyarrow.parquet as pq

    partial = output + ".partial"
    writer = None
    rows = 0
    try:
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    except BaseException:
        if writer is not None:
            writer.close()
        if os.path.exists(partial):
            os.remove(partial)
        raise
    if writer is None:
        raise InputFileError("the input has no rows")
    writer.close()
    os.replace(partial, output)
    return rows
