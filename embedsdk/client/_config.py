"""Options of a client: their declaration, defaults, environment variables and validation
(no I/O).

:data:`OPTION_TABLE` declares every option once (name, type, default, one-line doc, the
command line's flags or why there is none). The typed dicts below, the clients' keywords, the
command line's flags and docs/api.md's table are checked against it
(tests/test_option_table.py), and the options part of the entry points' docstrings and the
defaults of :func:`resolve_options` and of the command line's flags are made from it.

:data:`NOT_GIVEN` is "left to its default" everywhere: passing it is the same as leaving the
option out. ``None`` keeps its meaning of "no limit" / "none" (``timeout``, ``rpm``, ``tpm``,
``max_wait``, ``dimensions``, ``cache``); where it meant "not given" before (``model``,
``base_url``, ``api_key``, ``provider``, ``max_batch_tokens``, ``rate_controller``,
``transport`` and the per-call ``batch_size`` / ``max_concurrent`` / ``window``) it still
does, since it can mean nothing else there.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import logging
import os
import re
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, Final, Literal, NamedTuple, TypeVar, Union
from urllib.parse import SplitResult, urlsplit

from typing_extensions import TypedDict, Unpack

from .._exceptions import ConfigurationError
from .._prices import Price, as_price
from ..ratecontrol import RateController
from ._events import Event, Hook, check_hooks
from ._providers import (
    PROFILES,
    Profile,
    all_key_variables,
    check_dimensions,
    key_variables_for,
    profile_for,
)

if TYPE_CHECKING:
    from ..cache import VectorCache

logger = logging.getLogger("embedsdk")

T = TypeVar("T")


class NotGiven(enum.Enum):
    """The type of :data:`NOT_GIVEN`, for annotations (``int | NotGiven``).

    An enum of one member, as PEP 484 advises for a sentinel: a type checker narrows
    ``value is NOT_GIVEN`` and ``isinstance(value, NotGiven)``, and it pickles and copies as
    the same object (Ray workers, LlamaIndex's worker processes get it back as it was).
    """

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    __str__ = __repr__


#: "Left to its default", for every option and per-call argument: the same as leaving it out
#: (httpx's ``USE_CLIENT_DEFAULT``, openai-python's ``NOT_GIVEN``). A function that forwards
#: its caller's options can pass it on rather than building a dict of the given ones.
NOT_GIVEN: Final = NotGiven.NOT_GIVEN

#: ``batch_size``: texts per request, or ``"auto"`` (chosen as the run goes).
BatchSize = Union[int, Literal["auto"]]
#: ``encoding_format``: the wire format of the vectors.
EncodingFormat = Literal["base64", "float"]
#: ``provider``: a provider profile's name (``_providers.PROFILES``, in that order).
Provider = Literal["siliconflow", "openai", "dashscope", "zhipu", "tei", "generic"]
#: ``errors``: raise the first failure, or return an ``EmbeddingResult`` with every one.
ErrorMode = Literal["raise", "return"]

DEFAULT_BASE_URL = "https://api.siliconflow.cn/v1"
DEFAULT_MODEL = "BAAI/bge-m3"
#: ``batch_size="auto"``: the client chooses each batch's size as the run goes (``_autobatch``).
AUTO: Literal["auto"] = "auto"
#: The default: "auto" never carried fewer texts per second than a fixed 20 (the original
#: guide's), 32 or 64 in ``embedsdk bench --scenario batch``, and ends small calls no later.
DEFAULT_BATCH_SIZE: Literal["auto"] = AUTO
DEFAULT_MAX_CONCURRENT = 5
DEFAULT_MAX_RETRIES = 6
DEFAULT_TIMEOUT = 60.0
#: Seconds a server may ask the client to wait (``Retry-After``, ``x-ratelimit-reset-*``)
#: before the call fails at once rather than sleeps: a rate limit's wait passes within a
#: minute or two, a quota spent for the day (Azure's "retry after 86400 seconds") does not.
DEFAULT_MAX_WAIT = 300.0

#: The key variable read for every base URL, before the provider's own (see
#: :func:`api_key_variables`).
GENERIC_KEY_VARIABLE = "EMBEDSDK_API_KEY"

#: Every variable a key may come from, for help texts. Which of them a client reads depends on
#: its base URL: :func:`api_key_variables`.
API_KEY_VARIABLES = (GENERIC_KEY_VARIABLE, *all_key_variables())

ENCODING_FORMATS: tuple[EncodingFormat, ...] = ("base64", "float")


# -- the declaration -------------------------------------------------------------------------

#: Where an option is taken. ``"every"``: by every entry point, as a keyword of
#: ``**options`` (``Options``, ``EmbedderOptions``; ``model`` is the clients' first
#: parameter). ``"call"``: the clients' default for each call (``EmbedderOptions``), and an
#: argument of each call (the module functions' own parameters). ``"clients"``: by
#: ``Embedder`` and ``AsyncEmbedder`` only.
Scope = Literal["every", "call", "clients"]


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One option, as every place that lists the options must show it.

    ``annotation``: its type as the typed dicts (and the clients' own parameters) write it;
    ``default``: what leaving it out gives (:data:`NOT_GIVEN`: worked out when the client is
    made, as ``shown_default`` says); ``shown_default``: that default in words, as the API
    reference's Default column has it (without its backticks); ``doc``: one line, the
    beginning of the API reference's Meaning column; ``flags``: the command line's flags that
    set it (the first one is the name its messages use), or ``()`` and ``no_flag``, why there
    is none.
    """

    name: str
    annotation: str
    default: object
    shown_default: str
    doc: str
    flags: tuple[str, ...] = ()
    no_flag: str = ""
    scope: Scope = "every"


def _spec(*args: Any, **kwargs: Any) -> tuple[str, OptionSpec]:
    spec = OptionSpec(*args, **kwargs)
    return spec.name, spec


#: Every option, in the API reference's order.
OPTION_TABLE: Mapping[str, OptionSpec] = types.MappingProxyType(
    dict(
        [
            _spec(
                "model",
                "str | NotGiven | None",
                NOT_GIVEN,
                f'$EMBEDSDK_MODEL, else "{DEFAULT_MODEL}"',
                "Model name sent with each request",
                ("--model",),
            ),
            _spec(
                "base_url",
                "str | NotGiven | None",
                NOT_GIVEN,
                f'$EMBEDSDK_BASE_URL, else "{DEFAULT_BASE_URL}"',
                "Requests go to `{base_url}/embeddings`",
                ("--base-url",),
            ),
            _spec(
                "api_key",
                "str | NotGiven | None",
                NOT_GIVEN,
                "from the environment, by host",
                'The API key, sent as `Authorization: Bearer ...`; `""` sends none',
                ("--api-key-file", "--no-api-key"),
            ),
            _spec(
                "batch_size",
                "BatchSize | NotGiven",
                DEFAULT_BATCH_SIZE,
                '"auto"',
                'Texts per request, or `"auto"` to choose each batch\'s size as the run goes',
                ("--batch-size",),
                scope="call",
            ),
            _spec(
                "max_concurrent",
                "int | NotGiven",
                DEFAULT_MAX_CONCURRENT,
                str(DEFAULT_MAX_CONCURRENT),
                "Requests in flight at most",
                ("--max-concurrent",),
                scope="call",
            ),
            _spec(
                "rpm",
                "float | NotGiven | None",
                None,
                "None (no limit)",
                "Requests per minute at most (> 0), a hard ceiling",
                ("--rpm",),
            ),
            _spec(
                "tpm",
                "float | NotGiven | None",
                None,
                "None (no limit)",
                "Estimated tokens per minute at most (> 0), a hard ceiling",
                ("--tpm",),
            ),
            _spec(
                "max_retries",
                "int | NotGiven",
                DEFAULT_MAX_RETRIES,
                str(DEFAULT_MAX_RETRIES),
                "Retries per request after the first attempt",
                ("--max-retries",),
            ),
            _spec(
                "max_wait",
                "float | NotGiven | None",
                DEFAULT_MAX_WAIT,
                f"{DEFAULT_MAX_WAIT!r}",
                "The longest wait, in seconds, that a 429 may ask for; a longer one raises "
                "`WaitTooLongError` at once; `None`: no bound",
                ("--max-wait",),
            ),
            _spec(
                "timeout",
                "float | NotGiven | None",
                DEFAULT_TIMEOUT,
                f"{DEFAULT_TIMEOUT!r}",
                "Seconds per request, the whole of it (connect, send, read); `None`: no limit",
                ("--timeout",),
            ),
            _spec(
                "dimensions",
                "int | NotGiven | None",
                None,
                "None (not sent)",
                "Output dimension, for models that support it",
                ("--dimensions",),
            ),
            _spec(
                "encoding_format",
                "EncodingFormat | NotGiven",
                NOT_GIVEN,
                '"base64", or "float" for a float-only provider (DashScope)',
                "Wire format of the vectors",
                ("--encoding-format",),
            ),
            _spec(
                "cache",
                "bool | str | os.PathLike[str] | VectorCache | NotGiven | None",
                True,
                "True",
                "Disk cache of vectors: `True` (the default directory), `False`/`None` (none), "
                "a directory or a `VectorCache`",
                ("--cache-dir", "--no-cache"),
            ),
            _spec(
                "max_batch_tokens",
                "int | NotGiven | None",
                NOT_GIVEN,
                "the provider profile's (SiliconFlow 524,288, OpenAI 300,000, generic 60,000)",
                "Estimated tokens per request at most",
                ("--max-batch-tokens",),
            ),
            _spec(
                "allow_insecure",
                "bool | NotGiven",
                False,
                "False",
                "Allow sending the key over plain `http` to a host that is not loopback",
                ("--allow-insecure",),
            ),
            _spec(
                "provider",
                "Provider | NotGiven | None",
                NOT_GIVEN,
                'from the base URL\'s host, else "generic"',
                "Which provider profile sets the caps",
                ("--provider",),
            ),
            _spec(
                "truncate",
                "bool | NotGiven",
                False,
                "False",
                "Cut texts longer than the model takes, instead of refusing them",
                ("--truncate",),
            ),
            _spec(
                "adaptive",
                "bool | NotGiven",
                True,
                "True",
                "Learn the provider's rate limit from its 429s and pace just under it",
                ("--no-adaptive",),
            ),
            _spec(
                "price",
                "float | str | Price | NotGiven | None",
                NOT_GIVEN,
                "the published one, where listed (embedsdk.price_for)",
                "Price per million input tokens, for the cost in usage and summaries: a number "
                '(US dollars), a string such as `"0.5 CNY"`, or a `Price`',
                ("--price",),
            ),
            _spec(
                "event_hooks",
                "Mapping[str, Iterable[Callable[[Event], Any]] | Callable[[Event], Any]] | NotGiven"
                " | None",
                NOT_GIVEN,
                "None",
                'Callables given each `Event` of a call: `"call"`, `"request"`, `"response"`, '
                '`"retry"`, `"pause"`, `"call_end"`',
                no_flag="Python callables; the command line prints its own summary, and "
                "`embedsdk.telemetry` reports to OpenTelemetry",
            ),
            _spec(
                "rate_controller",
                "RateController | NotGiven | None",
                NOT_GIVEN,
                "the account's: one per endpoint, key and model in this process",
                "The `RateController` to pace with: which clients pace together",
                no_flag="a Python object, shared between clients of one process; the command "
                "line's one client paces with its account's own (--no-adaptive: none)",
            ),
            _spec(
                "transport",
                "Transport | NotGiven | None",
                NOT_GIVEN,
                "the network, through aiohttp (AiohttpTransport)",
                "Replaces the network (a `MockTransport` in tests)",
                no_flag="a Python object that stands in for the network, for tests; the command "
                "line reaches a server by --base-url (python -m embedsdk.testing runs one)",
                scope="clients",
            ),
        ]
    )
)


def option_names(*scopes: Scope) -> tuple[str, ...]:
    """The declared options of these scopes, in order."""
    return tuple(name for name, spec in OPTION_TABLE.items() if spec.scope in scopes)


def options_doc(*scopes: Scope, indent: str = "    ") -> str:
    """The options of these scopes as a docstring paragraph (appended to the entry points'
    docstrings, so that ``help()`` lists them as the declaration has them)."""
    lines = [
        "",
        "Options (each may be left out or passed as ``NOT_GIVEN`` for its default; "
        "see docs/api.md#options):",
        "",
    ]
    for name in option_names(*scopes):
        spec = OPTION_TABLE[name]
        doc = spec.doc.replace("`", "``")
        lines.append(f"- ``{name}`` (default: {spec.shown_default}): {doc}.")
    return "\n".join(indent + line if line else "" for line in lines) + "\n"


def document_options(*scopes: Scope) -> Callable[[T], T]:
    """A decorator appending :func:`options_doc` to a function's or a class's docstring
    (nothing under ``python -OO``, which drops docstrings)."""

    def add(target: T) -> T:
        doc = target.__doc__
        if doc:
            # The docstring's own indent: four spaces as written, none from Python 3.13 on
            # (the compiler strips it), so that inspect.getdoc dedents the whole.
            lines = [line for line in doc.splitlines()[1:] if line.strip()]
            indent = min((len(line) - len(line.lstrip()) for line in lines), default=0)
            target.__doc__ = doc.rstrip() + "\n" + options_doc(*scopes, indent=" " * indent)
        return target

    return add


# -- the typed options -----------------------------------------------------------------------


class _SharedOptions(TypedDict, total=False):
    base_url: str | NotGiven | None
    api_key: str | NotGiven | None
    rpm: float | NotGiven | None
    tpm: float | NotGiven | None
    max_retries: int | NotGiven
    max_wait: float | NotGiven | None
    timeout: float | NotGiven | None
    dimensions: int | NotGiven | None
    encoding_format: EncodingFormat | NotGiven
    cache: bool | str | os.PathLike[str] | VectorCache | NotGiven | None
    max_batch_tokens: int | NotGiven | None
    allow_insecure: bool | NotGiven
    provider: Provider | NotGiven | None
    truncate: bool | NotGiven
    adaptive: bool | NotGiven
    price: float | str | Price | NotGiven | None
    event_hooks: (
        Mapping[str, Iterable[Callable[[Event], Any]] | Callable[[Event], Any]] | NotGiven | None
    )
    rate_controller: RateController | NotGiven | None


class Options(_SharedOptions, total=False):
    """The client options of the three module functions, for ``**options: Unpack[Options]``
    (their batch size and concurrency are arguments of each call). Declared in
    :data:`OPTION_TABLE`."""

    model: str | NotGiven | None


class EmbedderOptions(_SharedOptions, total=False):
    """The options of :class:`Embedder` and :class:`AsyncEmbedder` after ``model``: the client
    options and the defaults of each call's batch size and concurrency."""

    batch_size: BatchSize | NotGiven
    max_concurrent: int | NotGiven


class _ResolvedOptions(Options, EmbedderOptions, total=False):
    """What :func:`resolve_options` takes: every option but ``transport``."""


#: The keys of ``**options`` on :class:`Embedder` and :class:`AsyncEmbedder`.
EMBEDDER_OPTIONS = tuple(n for n in option_names("every", "call") if n != "model")


# -- the resolved options --------------------------------------------------------------------


class Rewrite(NamedTuple):
    """An option the client uses otherwise than it was given, and why: said once per client
    at INFO (``embedsdk`` logger), and listed in ``ClientOptions.rewritten``."""

    option: str
    given: object
    used: object
    why: str

    def message(self) -> str:
        return f"{self.option}={self.given!r} was given; {self.used!r} is used: {self.why}"


#: The attribute set on the log record of a rewrite (see :class:`RewriteLog`).
REWRITE_MARK = "embedsdk_rewrite"


class RewriteLog:
    """Says each rewrite of one client's options once, at INFO, however many calls meet it
    (a per-call ``batch_size`` above the cap is lowered at every call)."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str, str]] = set()

    def say(self, rewrite: Rewrite) -> None:
        key = (rewrite.option, repr(rewrite.given), repr(rewrite.used))
        if key not in self._said:
            self._said.add(key)
            # Marked, so that a front end (the command line) can show these and no other INFO.
            logger.info("%s", rewrite.message(), extra={REWRITE_MARK: True})


def batch_cap_rewrite(asked: int, cap: int, provider_cap: int, provider: str) -> Rewrite:
    """``batch_size=asked`` lowered to ``cap``, and why: the provider's published cap, a
    smaller one the server showed by refusing a batch (413), or the most any provider takes."""
    if cap == provider_cap:
        why = f"{provider} takes at most {cap} texts per request; a larger batch would be refused"
    elif cap < provider_cap:
        why = f"this server refused a larger batch, so {cap} texts per request is its cap now"
    else:
        why = f"{cap} texts per request is the most any provider takes"
    return Rewrite("batch_size", asked, cap, why)


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """Everything that shapes a client's requests. Built by :func:`resolve_options`.

    ``timeout`` is seconds per request (``None``: no limit); ``rpm`` requests and ``tpm``
    estimated tokens per minute; ``max_batch_tokens`` estimated tokens per request;
    ``truncate``: cut texts longer than the model takes instead of refusing them;
    ``max_wait``: the longest wait in seconds a 429 may ask for before the call fails at once
    (``None``: no bound); ``rewritten``: the options used otherwise than given, and why (not
    part of the options' identity).
    """

    model: str
    base_url: str
    api_key: str | None = dataclasses.field(repr=False)
    api_key_source: str
    batch_size: BatchSize
    max_concurrent: int
    rpm: float | None
    tpm: float | None
    max_retries: int
    timeout: float | None
    dimensions: int | None
    encoding_format: EncodingFormat
    cache: bool | str | os.PathLike[str] | VectorCache | None
    max_batch_tokens: int
    allow_insecure: bool
    provider: Provider = "generic"
    truncate: bool = False
    adaptive: bool = True  # learn the provider's rate limit from its 429s (see ratecontrol)
    rate_controller: RateController | None = None  # a RateController to share; None: the account's
    max_wait: float | None = DEFAULT_MAX_WAIT  # seconds a 429 may ask to wait (None: any)
    price: Price | None = None  # per million tokens: the given one, else the published one
    # (kind, hooks) pairs: hashable, so that clients with other hooks are other clients
    event_hooks: tuple[tuple[str, tuple[Hook, ...]], ...] = dataclasses.field(
        default=(), repr=False
    )
    rewritten: tuple[Rewrite, ...] = dataclasses.field(default=(), compare=False)

    @property
    def endpoint(self) -> str:
        return self.base_url + "/embeddings"

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(urlsplit(self.base_url).hostname or "")

    @property
    def request_size(self) -> int:
        """Texts per request to plan around: ``batch_size``, or the provider's cap for
        ``"auto"`` (where the sizer starts)."""
        if isinstance(self.batch_size, int):
            return self.batch_size
        return profile_for(self.base_url, self.provider).max_batch


# -- checks ------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_cache(value: Any) -> bool:
    return hasattr(value, "get_many") and hasattr(value, "set_many")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_batch_size(value: Any, cap: int | None = None) -> BatchSize:
    """``"auto"``, or a positive integer lowered to ``cap`` (a larger one would only earn a
    413); anything else is a :class:`ConfigurationError`."""
    if value == AUTO and isinstance(value, str):
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f'batch_size must be a positive integer or "auto", got {value!r}')
    return value if cap is None else min(value, cap)


def _positive_number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number or None, got {value!r}")
    return float(value)


def _timeout(value: Any) -> float | None:
    """Seconds per request, or ``None`` for no limit; infinity is ``None`` too.

    Infinity is taken rather than refused: it means what ``None`` means, and ``--timeout inf``
    is the only way the command line can say it. Passed on, aiohttp would overflow on it
    (``OverflowError`` from its deadline arithmetic) at the first request.
    """
    seconds = _positive_number("timeout", value)
    return None if seconds == float("inf") else seconds


def _max_wait(value: Any) -> float | None:
    """Seconds, at least 0, or ``None`` (no bound)."""
    if value is None:
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not number >= 0:  # NaN too
        raise ConfigurationError(
            f"max_wait must be a number of seconds >= 0 or None, got {value!r}"
        )
    return float(number)


def _optional_str(name: str, value: Any) -> str | None:
    """A str, or ``None`` when not given (:data:`NOT_GIVEN`, or ``None`` as before)."""
    if value is NOT_GIVEN:
        return None
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str or None, got {type(value).__name__}")
    return value


def _clean_key(value: str, source: str) -> str | None:
    """The key without the blanks a copy-paste or ``$(cat file)`` leaves around it.

    Blanks inside it would make aiohttp refuse the header with a bare ``ValueError``; the
    message names where the key came from, never the key. An empty key is no key.
    """
    key = value.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise ConfigurationError(
            f"the API key from the {source} contains blanks or control characters"
        )
    return key or None


def api_key_variables(base_url: str) -> tuple[str, ...]:
    """The environment variables a client of ``base_url`` reads its key from, in order:
    ``EMBEDSDK_API_KEY`` (goes wherever the user points), then the provider-named ones of the
    provider whose host ``base_url`` is (``SILICONFLOW_API_KEY`` only to SiliconFlow...)."""
    return (GENERIC_KEY_VARIABLE, *key_variables_for(base_url))


def find_api_key(api_key: str | NotGiven | None, base_url: str) -> tuple[str | None, str]:
    """The key and where it came from (``"api_key argument"``, ``"environment variable
    NAME"`` or ``"nowhere"``).

    ``api_key=""`` means "send no key" (keyless self-hosted servers); it does not fall back to
    the environment. :data:`NOT_GIVEN` (or ``None``): from the environment.
    """
    given = _optional_str("api_key", api_key)
    if given is not None:
        return _clean_key(given, "api_key argument"), "api_key argument"
    for name in api_key_variables(base_url):
        value = os.environ.get(name)
        if value and value.strip():
            return _clean_key(value, f"environment variable {name}"), f"environment variable {name}"
    return None, "nowhere"


def _require_key(source: str, base_url: str) -> None:
    """Refuse a non-loopback base URL when no key was found and ``api_key=""`` was not said.

    The message names the variables that apply to this host, and the provider-named ones
    that are set but belong to another provider's hosts.
    """
    host = urlsplit(base_url).hostname or ""
    if source != "nowhere" or _is_loopback(host):
        return
    applicable = api_key_variables(base_url)
    elsewhere = [
        f"{name} is set, but only sent to {', '.join(profile.hosts)}"
        for profile in PROFILES.values()
        for name in profile.key_variables
        if name not in applicable and os.environ.get(name, "").strip()
    ]
    note = f" ({'; '.join(elsewhere)})" if elsewhere else ""
    raise ConfigurationError(
        f"no API key for {host}: pass api_key=... or set {_or(applicable)}{note}; "
        'for a server that takes none, pass api_key=""'
    )


def _or(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _from_env(name: str) -> str | None:
    """The variable's value without surrounding blanks; unset, empty or blank is ``None``."""
    value = os.environ.get(name, "").strip()
    return value or None


def _parse_base_url(base_url: object) -> str:
    """The argument, else ``$EMBEDSDK_BASE_URL``, else SiliconFlow; checked, without the
    trailing ``/``. An empty argument is an error, not the default."""
    given = _optional_str("base_url", base_url)
    url = given if given is not None else _from_env("EMBEDSDK_BASE_URL") or DEFAULT_BASE_URL
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[::1/v1": an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"base_url must be an http(s) URL, got {url!r}")
    if "@" in parts.netloc or parts.query or parts.fragment:
        # Requests go to base_url + "/embeddings": a query would end up before that path, and
        # aiohttp refuses "user:password@" next to the Authorization header (a ValueError).
        # The URL is not echoed: its user-info or query may hold a secret.
        raise ConfigurationError(
            "base_url must not contain user-info (user:password@), a query (?...) or a "
            "fragment (#...); pass the key as api_key or in the environment"
        )
    _check_host_and_port(url, parts)
    return url.rstrip("/")


def _check_clear_text(base_url: str, has_key: bool, allow_insecure: bool) -> None:
    parts = urlsplit(base_url)
    insecure = parts.scheme == "http" and not _is_loopback(parts.hostname or "")
    if insecure and has_key and not allow_insecure:
        raise ConfigurationError(
            f"refusing to send the API key in clear text to {parts.hostname}: use https, "
            "or pass allow_insecure=True if this network is trusted"
        )


def _model_name(model: object) -> str:
    """The argument, else ``$EMBEDSDK_MODEL``, else bge-m3; a blank argument is an error."""
    given = _optional_str("model", model)
    if given is None:
        return _from_env("EMBEDSDK_MODEL") or DEFAULT_MODEL
    if not given.strip():
        raise ConfigurationError(f"model must be a model name, got {given!r}")
    return given.strip()


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _check_cache(cache: Any) -> bool | str | os.PathLike[str] | VectorCache | None:
    if isinstance(cache, str) and not cache.strip():
        raise ConfigurationError(
            f"cache must be True, False, a directory or a VectorCache, got {cache!r} "
            "(an empty path names no directory)"
        )
    if not (cache is None or isinstance(cache, (bool, str, os.PathLike)) or _is_cache(cache)):
        raise ConfigurationError(
            f"cache must be True, False, a directory or a VectorCache, got {cache!r}"
        )
    # Any object with VectorCache's get_many / set_many passes (a test's stand-in); the type
    # names the one kind the API offers.
    checked: bool | str | os.PathLike[str] | VectorCache | None = cache
    return checked


def _check_controller(controller: Any, adaptive: bool) -> RateController | None:
    """The controller to pace with, or ``None`` for the account's own (when not given)."""
    if controller is NOT_GIVEN or controller is None:
        return None
    if not isinstance(controller, RateController):
        raise ConfigurationError(f"rate_controller must be a RateController, got {controller!r}")
    if not adaptive:
        # It used to be left unused without a word: a client meant to share another's pace
        # paced by nothing but rpm / tpm and its backoff.
        raise ConfigurationError(
            "rate_controller was given with adaptive=False, which paces by no controller: "
            "drop adaptive=False to pace with this controller, or drop rate_controller to "
            "pace by rpm / tpm and backoff only"
        )
    return controller


def _encoding(value: Any, profile: Profile) -> tuple[EncodingFormat, tuple[Rewrite, ...]]:
    """The wire format, and the rewrite when a float-only provider cannot send the one asked
    for. Left out, it is base64 (a third fewer bytes than float lists), or float where
    base64 is not spoken, without a word."""
    if value is NOT_GIVEN:
        return ("float" if profile.float_only else "base64"), ()
    if not isinstance(value, str) or value not in ENCODING_FORMATS:
        raise ConfigurationError(
            f"encoding_format must be one of {ENCODING_FORMATS}, got {value!r}"
        )
    if profile.float_only and value != "float":
        why = f"{profile.name} answers only with float lists (it has no base64)"
        return "float", (Rewrite("encoding_format", value, "float", why),)
    return ("float" if value == "float" else "base64"), ()


def _batch_size(value: Any, profile: Profile) -> tuple[BatchSize, tuple[Rewrite, ...]]:
    """The client's batch size, lowered to the provider's cap when that is known (a larger
    batch would only earn a 413); a cap that is only a guess lowers nothing: a 413 would."""
    size = check_batch_size(value)
    if isinstance(size, int) and profile.cap_known and size > profile.max_batch:
        cap = profile.max_batch
        return cap, (batch_cap_rewrite(size, cap, cap, profile.name),)
    return size, ()


def _endpoint(base_url: Any, api_key: Any, allow_insecure: Any) -> tuple[str, str | None, str]:
    """The base URL, the key for it and where that came from, all checked."""
    url = _parse_base_url(base_url)
    key, source = find_api_key(api_key, url)
    _check_clear_text(url, key is not None, _flag("allow_insecure", allow_insecure))
    _require_key(source, url)
    return url, key, source


_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.I)


def _check_host_and_port(base_url: str, parts: SplitResult) -> None:
    """Refuse a URL aiohttp cannot use, before any request: a port out of 1..65535, a host
    that is no IP address and no DNS name (blanks, ``%``, empty or over-long labels,
    ``1.2.3.4.5``), blanks or control characters anywhere. Unchecked, such a URL fails at
    every attempt with an error that does not say which part is wrong."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in base_url):
        raise ConfigurationError(f"base_url contains blanks or control characters: {base_url!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigurationError(
            f"base_url has no usable port (1 to 65535): {base_url!r}; e.g. http://127.0.0.1:8080/v1"
        )
    host = parts.hostname or ""
    if "[" in parts.netloc or re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigurationError(f"base_url's host {host!r} is not an IP address") from None
        return
    try:
        ascii_host = host.rstrip(".").encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = ""
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ConfigurationError(f"base_url's host {host!r} is not a valid host name")


def unexpected_option(owner: str, name: str, known: tuple[str, ...]) -> TypeError:
    """The error for an unknown keyword: Python's words, and the option meant, if one is near."""
    near = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return TypeError(f"{owner}() got an unexpected keyword argument {name!r}{hint}")


def check_option_names(owner: str, given: Iterable[str], known: tuple[str, ...]) -> None:
    """Refuse the first keyword (in sorted order) that is not one of ``known``, in the words
    of ``owner()``: the name the user called."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise unexpected_option(owner, unknown[0], known)


def given_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without those left to their default (:data:`NOT_GIVEN`): what a wrapper
    (an adapter, the CLI) passes on, so that it reads "not given" as the client does."""
    return {name: value for name, value in options.items() if value is not NOT_GIVEN}


def _filled(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option :func:`resolve_options` takes: the value given, else (left out or
    :data:`NOT_GIVEN`) the declared default, which may be :data:`NOT_GIVEN` itself."""
    names = option_names("every", "call")
    check_option_names("resolve_options", given, names)
    filled = {}
    for name in names:
        value = given.get(name, NOT_GIVEN)
        filled[name] = OPTION_TABLE[name].default if value is NOT_GIVEN else value
    return filled


def _given(value: Any) -> Any:
    return None if value is NOT_GIVEN else value


def _hooks(value: Any) -> tuple[tuple[str, tuple[Hook, ...]], ...]:
    try:
        return tuple(check_hooks(_given(value)).items())
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None


def _provider(value: Any) -> str | None:
    """The ``provider`` asked for, or ``None`` (not given: from the base URL)."""
    return None if value is NOT_GIVEN else value


def _provider_name(profile: Profile) -> Provider:
    """The profile's name, as the ``Provider`` literal (tests/test_option_table.py checks
    that the literal names every profile)."""
    name: Provider = profile.name  # type: ignore[assignment]
    return name


def resolve_options(**given: Unpack[_ResolvedOptions]) -> ClientOptions:
    """Check every option and fill the rest from :data:`OPTION_TABLE` and the environment.

    Raises :class:`ConfigurationError` naming the bad option; an unknown keyword is a
    ``TypeError``. ``timeout=None`` (or infinity): no time limit; ``max_wait=None``: no
    bound on the waits a server asks for; :data:`NOT_GIVEN`: the default, as left out.
    """
    values = _filled(given)
    url, key, source = _endpoint(values["base_url"], values["api_key"], values["allow_insecure"])
    model = _model_name(values["model"])
    profile = profile_for(url, _provider(values["provider"]))
    dimensions = values["dimensions"]
    check_dimensions(profile, model, dimensions)
    batch_size, lowered = _batch_size(values["batch_size"], profile)
    encoding, switched = _encoding(values["encoding_format"], profile)
    adaptive = _flag("adaptive", values["adaptive"])
    tokens = values["max_batch_tokens"]
    return ClientOptions(
        model=model,
        base_url=url,
        api_key=key,
        api_key_source=source,
        batch_size=batch_size,
        max_concurrent=_positive_int("max_concurrent", values["max_concurrent"]),
        rpm=_positive_number("rpm", values["rpm"]),
        tpm=_positive_number("tpm", values["tpm"]),
        max_retries=_count("max_retries", values["max_retries"]),
        timeout=_timeout(values["timeout"]),
        dimensions=None if dimensions is None else _positive_int("dimensions", dimensions),
        encoding_format=encoding,
        cache=_check_cache(values["cache"]),
        max_batch_tokens=profile.max_batch_tokens
        if tokens is NOT_GIVEN or tokens is None
        else _positive_int("max_batch_tokens", tokens),
        allow_insecure=_flag("allow_insecure", values["allow_insecure"]),
        provider=_provider_name(profile),
        truncate=_flag("truncate", values["truncate"]),
        adaptive=adaptive,
        rate_controller=_check_controller(values["rate_controller"], adaptive),
        max_wait=_max_wait(values["max_wait"]),
        price=as_price(_given(values["price"]), profile.name, model),
        event_hooks=_hooks(values["event_hooks"]),
        rewritten=lowered + switched,
    )
