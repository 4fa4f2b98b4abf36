"""``embedsdk embed``: its flags (the library's client options among them) and its run.

Reads the texts lazily (:mod:`embedsdk._inputs`), streams them through ``embed_stream`` and
writes each block as it arrives (:mod:`embedsdk._writers`), so memory stays bounded.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, Union

from ._config import (
    API_KEY_VARIABLES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_WAIT,
    DEFAULT_TIMEOUT,
)
from ._exceptions import APIError, APIStatusError, ConfigurationError, InvalidInputError
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
from ._job import EmbeddingResult
from ._npy import OutputFileError
from ._providers import PROFILES
from ._retry import refused_alone
from ._sync import Embedder
from ._writers import (
    OUTPUT_FORMATS,
    STDOUT,
    OutputUsageError,
    Writer,
    check_output,
    lock_output,
    open_writer,
    output_format,
)

ENV_HELP = (
    "The API key comes from the environment ("
    + ", ".join(API_KEY_VARIABLES)
    + ") or from --api-key-file, never from a flag's value, which other users could read in "
    "the process list; --no-api-key sends none. EMBEDSDK_BASE_URL and EMBEDSDK_MODEL set the "
    "defaults of --base-url and --model; EMBEDSDK_CACHE_DIR moves the cache and "
    "EMBEDSDK_CACHE=0 turns it off."
)

Meta = collections.deque[tuple[Union[int, str], str]]


class _KeyNotOnCommandLine(argparse.Action):
    """``--api-key VALUE``: refused, without repeating VALUE (a key) in the message. Without
    it, argparse would take ``--api-key`` for an abbreviation of ``--api-key-file`` and print
    the key as a file it cannot read."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "--api-key is not taken: a key on the command line shows in the process list and "
            "the shell's history. Set " + " or ".join(API_KEY_VARIABLES[:2]) + " (or another "
            "provider's variable, see --help), or put the key in a file for --api-key-file"
        )


def plural(count: int, noun: str) -> str:
    """``1 text``, ``2 texts``, ``1 retry``, ``3 retries`` (with thousands separators)."""
    if count == 1:
        return f"1 {noun}"
    many = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{count:,} {many}"


# -- client options --------------------------------------------------------------------------


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The library's client options as flags."""
    group = parser.add_argument_group("client options")
    _add_endpoint_options(group)
    _add_pacing_options(group)
    _add_request_options(group)
    _add_cache_options(group)


def _add_endpoint_options(group: Any) -> None:
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
    key = group.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="read the API key from FILE (default: from the environment, see below)",
    )
    group.add_argument("--api-key", action=_KeyNotOnCommandLine, help=argparse.SUPPRESS)
    key.add_argument(
        "--no-api-key",
        action="store_true",
        help="send no API key, whatever the environment holds (keyless self-hosted servers)",
    )


def _batch_size(text: str) -> int | str:
    """``--batch-size``: a whole number (checked by the library), or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def _seconds_or_none(text: str) -> float | None:
    """``--max-wait``: a number of seconds (checked by the library), or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or none, got {text!r}") from None


def _add_pacing_options(group: Any) -> None:
    group.add_argument(
        "--batch-size",
        type=_batch_size,
        default=DEFAULT_BATCH_SIZE,
        metavar="N|auto",
        help="texts per request, at most the provider's cap; auto: chosen as the run goes, "
        "from the cap, the rate limits met and the latency (default: %(default)s)",
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
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        help="do not learn the provider's rate limit from its 429 answers",
    )


def _add_request_options(group: Any) -> None:
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
        "--max-wait",
        type=_seconds_or_none,
        default=DEFAULT_MAX_WAIT,
        metavar="SECONDS|none",
        help="longest wait a rate-limited server may ask for (Retry-After); a longer one "
        "fails at once; none: no bound (default: %(default)g)",
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
        "--truncate",
        action="store_true",
        help="cut texts longer than the model takes (by default such a text is an error)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow sending the key over plain http to a non-local host",
    )


def _add_cache_options(group: Any) -> None:
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


def _api_key(args: argparse.Namespace) -> str | None:
    """``""`` for ``--no-api-key``, the file's key for ``--api-key-file``, else None (the
    environment). The key is never echoed."""
    if getattr(args, "no_api_key", False):
        return ""
    path = getattr(args, "api_key_file", None)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read(1 << 16).strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigurationError(f"cannot read --api-key-file {path}: {reason}") from None
    if not key:
        raise ConfigurationError(
            f"--api-key-file {path} is empty (use --no-api-key to send no key)"
        )
    return key


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :class:`embedsdk.Embedder` from the parsed client options."""
    cache: bool | str = getattr(args, "cache", True)
    if cache and getattr(args, "cache_dir", None):
        cache = args.cache_dir
    names = (
        "model base_url provider batch_size max_batch_tokens max_concurrent rpm tpm "
        "max_retries timeout max_wait dimensions encoding_format allow_insecure truncate "
        "adaptive"
    )
    return {
        **{name: getattr(args, name) for name in names.split()},
        "api_key": _api_key(args),
        "cache": cache,
    }


# -- the library's words, as flags -----------------------------------------------------------

#: Each client option and the flag that sets it.
OPTION_FLAGS = {
    "model": "--model",
    "base_url": "--base-url",
    "provider": "--provider",
    "api_key": "--api-key-file",
    "batch_size": "--batch-size",
    "max_batch_tokens": "--max-batch-tokens",
    "max_concurrent": "--max-concurrent",
    "rpm": "--rpm",
    "tpm": "--tpm",
    "max_retries": "--max-retries",
    "timeout": "--timeout",
    "max_wait": "--max-wait",
    "dimensions": "--dimensions",
    "encoding_format": "--encoding-format",
    "truncate": "--truncate",
    "allow_insecure": "--allow-insecure",
    "adaptive": "--no-adaptive",
    "cache": "--cache-dir",
}
_ASSIGNED = re.compile(
    r"\b(%s)=(\"\"|''|True|\.\.\.|'[^']*'|\"[^\"]*\"|(?=[\s,;.)]|$))"  # noqa: UP031
    % "|".join(OPTION_FLAGS)
)
# "batch_size must be ...", at the start of the message or of one of its clauses.
_SUBJECT = re.compile(r"(?:^|(?<=[:;] ))(%s)(?= must\b)" % "|".join(OPTION_FLAGS))  # noqa: UP031
# Names with an underscore are never English words: safe to replace wherever they appear.
_BARE = re.compile(r"\b(%s)\b" % "|".join(n for n in OPTION_FLAGS if "_" in n))  # noqa: UP031


def _assigned(found: re.Match[str]) -> str:
    name, value = found.groups()
    if name == "api_key":
        return "--no-api-key" if value in ('""', "''") else "--api-key-file FILE"
    flag = OPTION_FLAGS[name]
    return f"{flag} {value[1:-1]}" if value[:1] in "'\"" and value else flag


def in_flags(message: str, server_words: bool = False) -> str:
    """A library message in the command line's words: ``--batch-size``, not ``batch_size``.

    ``server_words``: the message quotes a server (an :class:`APIError`), so only the
    library's own hints about the key are translated, never the server's text.

    >>> in_flags("pass allow_insecure=True if this network is trusted")
    'pass --allow-insecure if this network is trusted'
    """
    message = message.replace("api_key argument", "--api-key-file")
    message = message.replace("pass api_key= or", "pass --api-key-file FILE or")
    if server_words:
        return message
    message = message.replace("pass truncate=True to the client", "use --truncate")
    message = message.replace("the key as api_key", "the key with --api-key-file")
    message = _ASSIGNED.sub(_assigned, message)
    message = _SUBJECT.sub(lambda m: OPTION_FLAGS[m.group(1)], message)
    message = _BARE.sub(lambda m: OPTION_FLAGS[m.group(1)], message)
    message = message.replace(" or None, got", ", got")  # a flag cannot be None
    if message.startswith("no API key") and "--no-api-key" not in message:
        message += "; or --no-api-key for a server that takes none"
    return message


# -- embed -----------------------------------------------------------------------------------


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
    if getattr(args, "ray", None) is not None:  # a separate path: Ray reads and writes
        from ._cli_ray import run_ray

        return run_ray(args)
    if getattr(args, "workers", None) is not None:  # Ray's workers: without Ray, a no-op
        raise ConfigurationError(
            "--workers needs --ray; without Ray one process sends every request: set how "
            "many are in flight with --max-concurrent"
        )
    fmt, input_fmt = _prepare(args)
    with lock_output(args.output):  # one run per output: two would mix their rows
        return _run(args, fmt, input_fmt)


def _run(args: argparse.Namespace, fmt: str, input_fmt: str) -> int:
    """Read, embed and write, with the command checked and the output locked."""
    numbers = LineNumbers()
    rows = read_rows(
        args.input,
        input_fmt,
        field=args.field,
        column=args.column,
        id_field=args.id_field,
        skip_empty=args.skip_empty,
        numbers=numbers,
    )
    meta: Meta | None = None if fmt == "npy" else collections.deque()
    texts = _texts(rows, meta, args.keep_text)
    total = count_rows(args.input, input_fmt)
    show = not args.quiet and sys.stderr.isatty()
    started = time.perf_counter()
    refused: Refused = []
    with Embedder(**client_kwargs(args)) as client:
        try:
            out = _embed_into(
                client, _Sized(texts, total) if total else texts, args, fmt, meta, show, refused
            )
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
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print(_summary(out, stats, numbers, elapsed, args, len(refused), fmt), file=sys.stderr)
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
) -> str:
    notes = [
        plural(stats.requests, "request"),
        plural(stats.cache_hits, "cache hit"),
        plural(stats.retries, "retry"),
        plural(stats.tokens, "token"),
    ]
    if getattr(stats, "truncated", 0):
        notes.append(plural(stats.truncated, "text") + " truncated")
    if numbers.skipped:
        notes.append(plural(numbers.skipped, "empty line") + " skipped")
    if refused:
        notes.append(plural(refused, "text") + " refused by the server")
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
    source = "standard input" if args.input == STDIN else args.input
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

    The output appears only when every row is in (see :mod:`embedsdk._writers`), so a failed
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
    from ._cli_ray import add_ray_option  # imports no Ray

    add_ray_option(parser)
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
