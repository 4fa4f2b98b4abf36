"""``embedsdk embed``: its flags (the client options' are ``_options``') and its run.

Reads the texts lazily (:mod:`embedsdk.files._inputs`), streams them through ``embed_stream`` and
writes each block as it arrives (:mod:`embedsdk.files._writers`), so memory stays bounded.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, Union

from .._exceptions import APIError, APIStatusError, ConfigurationError, InvalidInputError
from ..client import (
    Embedder,
    EmbeddingResult,
    held_back_by,
)
from ..files import (
    FORMATS,
    OUTPUT_FORMATS,
    STDIN,
    STDOUT,
    InputFileError,
    LineNumbers,
    OutputFileError,
    OutputUsageError,
    Row,
    Writer,
    check_input,
    check_output,
    count_rows,
    detect_format,
    lock_output,
    open_writer,
    output_format,
    read_rows,
)
from ..http import refused_alone
from ._estimate import add_estimate_options, money_note
from ._options import ENV_HELP, add_client_options, client_kwargs, in_flags, plural

#: The ids and texts of the rows whose vectors are not written yet.
Meta = collections.deque[tuple[Union[int, str], str]]


class _Sized:
    """An iterator with a known length, so the progress bar can show an ETA."""

    def __init__(self, items: Iterator[str], total: int) -> None:
        self._items, self._total = items, total

    def __iter__(self) -> Iterator[str]:
        return self._items

    def __len__(self) -> int:
        return self._total


def _check_flags(args: argparse.Namespace, fmt: str, input_fmt: str) -> None:
    """Flags that do not go together: refused before anything is read or sent."""
    if fmt == "npy":
        for flag, given in (("--keep-text", args.keep_text), ("--id-field", args.id_field)):
            if given:
                raise OutputUsageError(
                    f"{flag} needs Parquet or JSON Lines output (-o FILE.parquet or "
                    "FILE.jsonl, or --format): an .npy holds only the vectors"
                )
    if args.id_field is not None and input_fmt == "lines":
        raise OutputUsageError(
            "--id-field needs JSONL or CSV input (one text a line has no fields)"
        )


def _prepare(args: argparse.Namespace) -> tuple[str, str]:
    """Check the command before anything is sent; returns ``(output format, input format)``."""
    input_fmt = detect_format(args.input, args.input_format)
    fmt = output_format(args.output, args.format)
    _check_flags(args, fmt, input_fmt)
    check_input(args.input)
    inputs = [p for p in (args.input, getattr(args, "api_key_file", None)) if p and p != STDIN]
    check_output(args.output, fmt, inputs, args.force)
    return fmt, input_fmt


def rows_of(args: argparse.Namespace, input_fmt: str, numbers: LineNumbers) -> Iterator[Row]:
    """The rows of INPUT as the input flags say, each one's line noted in ``numbers``."""
    return read_rows(
        args.input,
        input_fmt,
        field=args.field,
        column=args.column,
        id_field=args.id_field,
        skip_empty=args.skip_empty,
        numbers=numbers,
    )


def _texts(rows: Iterator[Row], meta: Meta | None, keep_text: bool) -> Iterator[str]:
    """The texts of ``rows``; each row's ``(id, text)`` is queued in ``meta`` for the writer.

    The queue holds only the rows read and not yet written (two windows of ``embed_stream``
    at most), so memory stays bounded.
    """
    for row in rows:
        if meta is not None:
            meta.append((row.id, row.text if keep_text else ""))
        yield row.text


def run_embed(args: argparse.Namespace) -> int:
    if getattr(args, "dry_run", False):  # reads INPUT, sends nothing, writes nothing
        from ._estimate import run_dry

        return run_dry(args, _prepare, rows_of, _named_by_line)
    if getattr(args, "ray", None) is not None and getattr(args, "via", None) == "batch":
        raise ConfigurationError(
            "--via batch and --ray do not go together yet: the Batch API route runs from one "
            "process (leave out --ray; the provider runs the batches)"
        )
    if getattr(args, "ray", None) is not None:  # a separate path: Ray reads and writes
        from ._ray import run_ray

        return run_ray(args)
    if getattr(args, "workers", None) is not None:  # Ray's workers: without Ray, a no-op
        raise ConfigurationError(
            "--workers needs --ray; without Ray one process sends every request: set how "
            "many are in flight with --max-concurrent"
        )
    if getattr(args, "via", "embeddings") == "batch":  # plans, waits, then writes as below
        from ._batch import run_via_batch

        return run_via_batch(args, _prepare, rows_of, _run, _named_by_line)
    fmt, input_fmt = _prepare(args)
    with lock_output(args.output):  # one run per output: two would mix their rows
        return _run(args, fmt, input_fmt)


def _run(
    args: argparse.Namespace, fmt: str, input_fmt: str, overrides: dict[str, Any] | None = None
) -> int:
    """Read, embed and write, with the command checked and the output locked; ``overrides``:
    client options in place of the flags' (the Batch API route's store as the cache)."""
    numbers = LineNumbers()
    rows = rows_of(args, input_fmt, numbers)
    meta: Meta | None = None if fmt == "npy" else collections.deque()
    texts = _texts(rows, meta, args.keep_text)
    total = count_rows(args.input, input_fmt)
    show = not args.quiet and sys.stderr.isatty()
    started = time.perf_counter()
    refused: Refused = []
    with Embedder(**{**client_kwargs(args), **(overrides or {})}) as client:
        try:
            out = _embed_into(
                client, _Sized(texts, total) if total else texts, args, fmt, meta, show, refused
            )
        except InvalidInputError as exc:
            raise _named_by_line(exc, _shown(args), numbers) from None
        except APIError as exc:
            if client.options.cache is not False and client.stats.requests:
                exc.args = (
                    f"{exc}; the vectors fetched so far are cached: "
                    "run the same command again to resume",
                )
            raise
        stats = client.stats
        slots = client.options.max_concurrent
    elapsed = time.perf_counter() - started
    if not args.quiet:
        # What held the run back: the bar says it at its end, where there is one.
        verdict = "" if show else held_back_by(stats, elapsed, slots)
        money = money_note(stats)
        print(
            _summary(out, stats, numbers, elapsed, args, len(refused), fmt, money, verdict),
            file=sys.stderr,
        )
    if refused:
        print(f"embedsdk: error: {_refusals(refused, numbers, args, fmt)}", file=sys.stderr)
        return 1
    return 0


def _summary(
    out: Writer,
    stats: Any,
    numbers: LineNumbers,
    elapsed: float,
    args: argparse.Namespace,
    refused: int = 0,
    fmt: str = "",
    money: str = "",
    verdict: str = "",
) -> str:
    estimated = getattr(stats, "tokens_estimated", 0)
    asides = [f"{estimated:,} of them estimated: the server sent no count"] if estimated else []
    asides += [money] if money else []
    notes = [
        plural(stats.requests, "request"),
        plural(stats.cache_hits, "cache hit"),
        plural(stats.retries, "retry"),
        plural(stats.tokens, "token") + (f" ({'; '.join(asides)})" if asides else ""),
    ]
    if getattr(stats, "rate_limited", 0):
        notes.append(plural(stats.rate_limited, "429 answer"))
    if getattr(stats, "truncated", 0):
        notes.append(plural(stats.truncated, "text") + " truncated")
    if numbers.skipped:
        notes.append(plural(numbers.skipped, "empty line") + " skipped")
    if refused:
        notes.append(plural(refused, "text") + " refused by the server")
    if verdict:
        notes.append(f"held back by {verdict}")
    where = "standard output" if args.output == STDOUT else args.output
    dims = "1 dim" if out.dim == 1 else f"{out.dim or 0} dims"
    embedded = out.rows - refused if fmt == "npy" else out.rows  # an .npy keeps a NaN row
    return (
        f"embedded {plural(embedded, 'text')} ({dims}) in {elapsed:.1f} s "
        f"({embedded / max(elapsed, 1e-9):,.0f} texts/s): {', '.join(notes)} -> {where}"
    )


#: Texts the server refused on their own: (input position, its error), in input order.
Refused = list[tuple[int, APIStatusError]]
#: Refused lines named one by one in the report; the rest are counted.
NAMED_REFUSALS = 10


def _refusals(refused: Refused, numbers: LineNumbers, args: argparse.Namespace, fmt: str) -> str:
    """The report of the texts the server refused: their lines, its words, what to do."""
    source = "standard input" if _shown(args) == STDIN else args.input
    where = "standard output" if args.output == STDOUT else args.output
    one = len(refused) == 1
    them = "it" if one else "them"
    if fmt == "npy":
        kept = f"{'its row' if one else 'their rows'} in {where} {'is' if one else 'are'} NaN"
    else:
        kept = f"{where} leaves {them} out"
    named = [
        f"line {numbers.line(index)}: HTTP {exc.status_code}: {exc.message}"
        for index, exc in refused[:NAMED_REFUSALS]
    ]
    if len(refused) > NAMED_REFUSALS:
        named.append(f"and {len(refused) - NAMED_REFUSALS:,} more")
    return (
        f"the server refused {plural(len(refused), 'text')} of {source} ({kept}; every other "
        f"text was embedded): {'; '.join(named)}. Fix or remove {them} and run the same "
        f"command again to embed {them}"
    )


def _shown(args: argparse.Namespace) -> str:
    """The input as messages name it (``--via batch`` reads standard input from a copy)."""
    return str(getattr(args, "shown_input", args.input))


def _named_by_line(exc: InvalidInputError, path: str, numbers: LineNumbers) -> InputFileError:
    """The library names a bad text by its index in the stream; the user knows lines."""
    message = in_flags(str(exc))
    line = numbers.line(exc.index)
    found = re.match(r"texts\[\d+\]", message)
    if line is not None and found:
        name = "standard input" if path == STDIN else path
        message = f"{name}, line {line}: the text{message[found.end() :]}"
    return InputFileError(message)


def _embed_into(
    client: Any,
    texts: Any,
    args: argparse.Namespace,
    fmt: str,
    meta: Meta | None,
    show: bool,
    refused: Refused,
) -> Writer:
    """Stream ``texts`` through ``client`` into ``args.output``; returns the closed writer.

    The output appears only when every row is in (see :mod:`embedsdk.files._writers`), so a failed
    or interrupted run leaves no truncated file behind. Texts the server refuses on their own
    (``_retry.refused_alone``) do not fail the run: they are added to ``refused``, NaN rows in
    an ``.npy`` (row i stays text i), left out of Parquet and JSON Lines (whose ids say which
    rows are there). Any other failure ends the run as before.
    """
    name = "standard output" if args.output == STDOUT else args.output
    with open_writer(args.output, fmt, keep_text=args.keep_text) as out:
        for _, result in client.embed_stream(texts, progress=show, errors="return"):
            refused.extend(_refused_in(result))
            block, ok = result.vectors, result.ok
            rows = None if meta is None else [meta.popleft() for _ in range(len(block))]
            if rows is not None and not ok.all():
                block, rows = block[ok], [row for row, good in zip(rows, ok) if good]
                if not rows:
                    continue
            try:
                out.write(block, rows)
            except OSError as exc:
                raise OutputFileError(f"cannot write {name}: {exc.strerror or exc}") from None
    return out


def _refused_in(result: EmbeddingResult) -> Refused:
    """The texts of a block the server refused on their own; any other error is raised."""
    found: Refused = []
    for exc in result.errors:
        if not isinstance(exc, APIStatusError) or not refused_alone(exc):
            raise exc
        found.extend((index, exc) for index in exc.failed_indices or ())
    return sorted(found, key=lambda pair: pair[0])


# -- the parser ------------------------------------------------------------------------------


def _name(value: str) -> str:
    """A field, column or file name: not empty (``--column ""`` must not mean the default)."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _format_name(value: str) -> str:
    """``--format``'s type: an output format, with a hint for an input format's name."""
    if value in OUTPUT_FORMATS:
        return value
    if value in FORMATS:
        raise argparse.ArgumentTypeError(
            f"{value!r} is an input format: use --input-format {value} (--format names the "
            f"output: {', '.join(OUTPUT_FORMATS)})"
        )
    raise argparse.ArgumentTypeError(f"choose one of {', '.join(OUTPUT_FORMATS)}, not {value!r}")


def add_embed_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "embed",
        help="embed a file of texts into .npy, Parquet or JSON Lines",
        description="Embed every text of INPUT, in order, into OUTPUT: a float32 .npy of N rows "
        "by D dimensions (row i for text i), or Parquet / JSON Lines rows of id, text (with "
        "--keep-text) and embedding. Memory stays bounded however large the input; vectors "
        "already in the cache are not paid for again, so an interrupted run (Ctrl-C, an error) "
        "resumes where it stopped when run again. " + ENV_HELP,
        epilog="exit status: 0 done, 1 failed, 2 bad usage or configuration, 130 interrupted",
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="text file (one text a line), .jsonl/.ndjson, .csv/.tsv, or - for standard input",
    )
    _add_output_options(parser)
    _add_input_options(parser)
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary line"
    )
    add_client_options(parser)
    from ._ray import add_ray_option  # imports no Ray

    add_ray_option(parser)
    from ._batch import add_batch_options

    add_batch_options(parser)
    add_estimate_options(parser)
    parser.set_defaults(run=run_embed)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="the file to write: .npy, .parquet or .jsonl (or - for standard output, "
        "when it is not a terminal)",
    )
    group = parser.add_argument_group("output options")
    group.add_argument(
        "--format",
        type=_format_name,
        metavar="{" + ",".join(OUTPUT_FORMATS) + "}",
        help="output format (default: from OUTPUT's suffix; npy for -)",
    )
    group.add_argument(
        "--keep-text",
        action="store_true",
        help="Parquet / JSON Lines: write each text next to its vector",
    )
    group.add_argument(
        "--id-field",
        type=_name,
        metavar="NAME",
        help="Parquet / JSON Lines: the JSONL field or CSV column whose value is each row's "
        "id (default: the line number)",
    )
    group.add_argument(
        "--force",
        action="store_true",
        help="replace OUTPUT even if it is not an output of this command (another format, "
        "or an .npy / Parquet of other data); never an input",
    )


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("input options")
    inputs.add_argument(
        "--input-format",
        choices=FORMATS,
        help="input format (default: from the file name, else lines)",
    )
    inputs.add_argument(
        "--field",
        type=_name,
        default="text",
        help="JSONL: the field holding the text (default: %(default)s)",
    )
    inputs.add_argument(
        "--column",
        type=_name,
        help="CSV: the column holding the text (default: the one named text)",
    )
    inputs.add_argument(
        "--skip-empty",
        action="store_true",
        help="leave empty texts out (by default an empty text is an error naming its line); "
        "the summary says how many, and Parquet / JSON Lines ids keep the line numbers",
    )


def is_usage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the command's fault (exit 2) rather than the run's (exit 1)."""
    return isinstance(exc, (ConfigurationError, OutputUsageError))


__all__ = ["ENV_HELP", "add_embed_parser", "client_kwargs", "in_flags", "is_usage_error", "plural"]
