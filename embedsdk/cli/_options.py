"""The library's client options as the command line's flags, both ways: the flags of every
command that makes a client (``embed``, ``embed --ray``), the options they give, and a
library message put in the flags' words.

Which option each flag sets, and each flag's default, come from the library's declaration of
the options (``OPTION_TABLE``); the help texts are the command line's own words.
tests/test_option_table.py fails when ``embedsdk embed --help`` and the declaration disagree.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from .._exceptions import ConfigurationError
from .._prices import Price, parse_price
from ..client import API_KEY_VARIABLES, NOT_GIVEN, OPTION_TABLE, PROFILES, given_options

ENV_HELP = (
    "The API key comes from the environment ("
    + ", ".join(API_KEY_VARIABLES)
    + ") or from --api-key-file, never from a flag's value, which other users could read in "
    "the process list; --no-api-key sends none. EMBEDSDK_BASE_URL and EMBEDSDK_MODEL set the "
    "defaults of --base-url and --model; EMBEDSDK_CACHE_DIR moves the cache and "
    "EMBEDSDK_CACHE=0 turns it off."
)


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
    """``1 text``, ``2 texts``, ``1 retry``, ``3 retries``, ``2 batches`` (with thousands
    separators)."""
    if count == 1:
        return f"1 {noun}"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        many = noun[:-1] + "ies"
    elif noun.endswith(("s", "x", "ch", "sh")):
        many = noun + "es"
    else:
        many = noun + "s"
    return f"{count:,} {many}"


# -- client options --------------------------------------------------------------------------


def _default(name: str) -> Any:
    """The option's declared default, as its flag's: :data:`~embedsdk.NOT_GIVEN` where the
    library works it out (``client_kwargs`` then leaves the option out)."""
    return OPTION_TABLE[name].default


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """The library's client options as flags."""
    group = parser.add_argument_group("client options")
    _add_endpoint_options(group)
    _add_pacing_options(group)
    _add_request_options(group)
    _add_cache_options(group)
    group.add_argument(
        "--price",
        type=_price,
        default=_default("price"),
        metavar="PRICE",
        help="your price per million tokens, for the cost shown (0.02 or $0.02: US dollars; "
        "0.5 CNY or ¥0.5: yuan); default: the provider's published price, where listed",
    )


def _price(value: str) -> Price:
    try:
        return parse_price(value)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_endpoint_options(group: Any) -> None:
    group.add_argument(
        "--model",
        default=_default("model"),
        help="model name (default: $EMBEDSDK_MODEL, else BAAI/bge-m3)",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        default=_default("base_url"),
        help="API base URL, up to /v1 (default: $EMBEDSDK_BASE_URL, else SiliconFlow)",
    )
    group.add_argument(
        "--provider",
        choices=sorted(PROFILES),
        default=_default("provider"),
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
        default=_default("batch_size"),
        metavar="N|auto",
        help="texts per request, at most the provider's cap; auto: chosen as the run goes, "
        "from the cap, the rate limits met and the latency (default: %(default)s)",
    )
    group.add_argument(
        "--max-batch-tokens",
        type=int,
        metavar="N",
        default=_default("max_batch_tokens"),
        help="estimated tokens per request (default: the provider's)",
    )
    group.add_argument(
        "--max-concurrent",
        type=int,
        default=_default("max_concurrent"),
        metavar="N",
        help="requests in flight (default: %(default)s)",
    )
    group.add_argument(
        "--rpm",
        type=float,
        metavar="N",
        default=_default("rpm"),
        help="at most N requests per minute (N > 0; 0.25: 15 an hour)",
    )
    group.add_argument(
        "--tpm",
        type=float,
        metavar="N",
        default=_default("tpm"),
        help="at most N tokens per minute (N > 0)",
    )
    group.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        default=_default("adaptive"),
        help="do not learn the provider's rate limit from its 429 answers",
    )


def _add_request_options(group: Any) -> None:
    group.add_argument(
        "--max-retries",
        type=int,
        default=_default("max_retries"),
        metavar="N",
        help="retries per request (default: %(default)s)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=_default("timeout"),
        metavar="SECONDS",
        help="seconds per request (default: %(default)g)",
    )
    group.add_argument(
        "--max-wait",
        type=_seconds_or_none,
        default=_default("max_wait"),
        metavar="SECONDS|none",
        help="longest wait a rate-limited server may ask for (Retry-After); a longer one "
        "fails at once; none: no bound (default: %(default)g)",
    )
    group.add_argument(
        "--dimensions",
        type=int,
        metavar="N",
        default=_default("dimensions"),
        help="output dimensions (Qwen3-Embedding models)",
    )
    group.add_argument(
        "--encoding-format",
        choices=("base64", "float"),
        default=_default("encoding_format"),
        help="wire format of vectors (default: base64, or float for a provider that sends "
        "only float)",
    )
    group.add_argument(
        "--truncate",
        action="store_true",
        default=_default("truncate"),
        help="cut texts longer than the model takes (by default such a text is an error)",
    )
    group.add_argument(
        "--allow-insecure",
        action="store_true",
        default=_default("allow_insecure"),
        help="allow sending the key over plain http to a non-local host",
    )


def _add_cache_options(group: Any) -> None:
    cache = group.add_mutually_exclusive_group()
    cache.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        default=_default("cache"),
        help="neither read nor write the vector cache",
    )
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="vector cache directory (default: $EMBEDSDK_CACHE_DIR, else ~/.cache/embedsdk)",
    )


def api_key_of(args: argparse.Namespace) -> Any:
    """``""`` for ``--no-api-key``, the file's key for ``--api-key-file``, else ``NOT_GIVEN``
    (the environment). The key is never echoed."""
    if getattr(args, "no_api_key", False):
        return ""
    path = getattr(args, "api_key_file", None)
    if path is None:
        return NOT_GIVEN
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


#: Options whose flag keeps the value under the option's own name (``dest``); ``api_key``
#: and ``cache`` are made of two flags each.
_SAME_NAME = tuple(
    name for name, spec in OPTION_TABLE.items() if spec.flags and name not in ("api_key", "cache")
)


def client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :class:`embedsdk.Embedder` from the parsed client options; an
    option left to the library (``NOT_GIVEN``) is left out, so that whatever receives them
    (``embedsdk.ray`` too) sees only what was given or has a plain default."""
    cache: bool | str = getattr(args, "cache", True)
    if cache and getattr(args, "cache_dir", None):
        cache = args.cache_dir
    kwargs = {name: getattr(args, name) for name in _SAME_NAME}
    kwargs.update(api_key=api_key_of(args), cache=cache)
    return given_options(kwargs)


# -- the library's words, as flags -----------------------------------------------------------

#: Each client option and the flag that names it in messages (its first, as declared).
OPTION_FLAGS = {name: spec.flags[0] for name, spec in OPTION_TABLE.items() if spec.flags}
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
