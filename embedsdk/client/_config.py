"""Options of a client: defaults, environment variables and validation (no I/O)."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, urlsplit

from typing_extensions import TypedDict

from .._exceptions import ConfigurationError
from ..ratecontrol import RateController
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

ENCODING_FORMATS = ("base64", "float")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """Everything that shapes a client's requests. Built by :func:`resolve_options`.

    ``timeout`` is seconds per request (``None``: no limit); ``rpm`` requests and ``tpm``
    estimated tokens per minute; ``max_batch_tokens`` estimated tokens per request;
    ``truncate``: cut texts longer than the model takes instead of refusing them;
    ``max_wait``: the longest wait in seconds a 429 may ask for before the call fails at once
    (``None``: no bound).
    """

    model: str
    base_url: str
    api_key: str | None = dataclasses.field(repr=False)
    api_key_source: str
    batch_size: int | Literal["auto"]
    max_concurrent: int
    rpm: float | None
    tpm: float | None
    max_retries: int
    timeout: float | None
    dimensions: int | None
    encoding_format: str
    cache: Any
    max_batch_tokens: int
    allow_insecure: bool
    provider: str = "generic"
    truncate: bool = False
    adaptive: bool = True  # learn the provider's rate limit from its 429s (see ratecontrol)
    rate_controller: Any = None  # a RateController to share; None: the account's own
    max_wait: float | None = DEFAULT_MAX_WAIT  # seconds a 429 may ask to wait (None: any)

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


class _SharedOptions(TypedDict, total=False):
    base_url: str | None
    api_key: str | None
    rpm: float | None
    tpm: float | None
    max_retries: int
    timeout: float | None
    dimensions: int | None
    encoding_format: Literal["base64", "float"]
    cache: bool | str | os.PathLike[str] | VectorCache | None
    max_batch_tokens: int | None
    allow_insecure: bool
    provider: str | None
    truncate: bool
    adaptive: bool
    rate_controller: RateController | None
    max_wait: float | None


class Options(_SharedOptions, total=False):
    """The client options of the three module functions, for ``**options: Unpack[Options]``
    (their batch size and concurrency are arguments of each call)."""

    model: str | None


class EmbedderOptions(_SharedOptions, total=False):
    """The options of :class:`Embedder` and :class:`AsyncEmbedder` after ``model``: the client
    options and the defaults of each call's batch size and concurrency."""

    batch_size: int | Literal["auto"]
    max_concurrent: int


def _is_cache(value: Any) -> bool:
    return hasattr(value, "get_many") and hasattr(value, "set_many")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_batch_size(value: Any, cap: int | None = None) -> int | Literal["auto"]:
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


def _at_least_one(name: str, value: Any) -> float | None:
    """A per-minute count: at least 1 (a limiter cannot hand out a fraction of a request)."""
    number = _positive_number(name, value)
    if number is not None and number < 1:
        raise ConfigurationError(f"{name} must be at least 1 (per minute), got {value!r}")
    return number


def _optional_str(name: str, value: Any) -> str | None:
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


def find_api_key(api_key: str | None, base_url: str) -> tuple[str | None, str]:
    """The key and where it came from (``"api_key argument"``, ``"environment variable
    NAME"`` or ``"nowhere"``).

    ``api_key=""`` means "send no key" (keyless self-hosted servers); it does not fall back to
    the environment.
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


def _parse_base_url(base_url: str | None) -> str:
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


def _model_name(model: str | None) -> str:
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


def _check_cache(cache: Any) -> Any:
    if isinstance(cache, str) and not cache.strip():
        raise ConfigurationError(
            f"cache must be True, False, a directory or a VectorCache, got {cache!r} "
            "(an empty path names no directory)"
        )
    if not (cache is None or isinstance(cache, (bool, str, os.PathLike)) or _is_cache(cache)):
        raise ConfigurationError(
            f"cache must be True, False, a directory or a VectorCache, got {cache!r}"
        )
    return cache


def _check_controller(controller: Any) -> RateController | None:
    if controller is not None and not isinstance(controller, RateController):
        raise ConfigurationError(f"rate_controller must be a RateController, got {controller!r}")
    return controller


def _encoding(encoding_format: Any, profile: Profile) -> str:
    if encoding_format not in ENCODING_FORMATS:
        raise ConfigurationError(
            f"encoding_format must be one of {ENCODING_FORMATS}, got {encoding_format!r}"
        )
    return "float" if profile.float_only else str(encoding_format)


def _endpoint(
    base_url: str | None, api_key: str | None, allow_insecure: Any
) -> tuple[str, str | None, str]:
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


def resolve_options(
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    batch_size: int | Literal["auto"] = DEFAULT_BATCH_SIZE,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    rpm: float | None = None,
    tpm: float | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float | None = DEFAULT_TIMEOUT,
    dimensions: int | None = None,
    encoding_format: str = "base64",
    cache: Any = True,
    max_batch_tokens: int | None = None,
    allow_insecure: bool = False,
    provider: str | None = None,
    truncate: bool = False,
    adaptive: bool = True,
    rate_controller: Any = None,
    max_wait: float | None = DEFAULT_MAX_WAIT,
) -> ClientOptions:
    """Check every option and fill the rest from the environment.

    Raises :class:`ConfigurationError` naming the bad option; an unknown keyword is a
    ``TypeError`` (Python's own, from this signature). ``timeout=None`` (or infinity): no
    time limit; ``max_wait=None``: no bound on the waits a server asks for.
    """
    url, key, source = _endpoint(base_url, api_key, allow_insecure)
    model = _model_name(model)
    profile = profile_for(url, provider)
    check_dimensions(profile, model, dimensions)
    return ClientOptions(
        model=model,
        base_url=url,
        api_key=key,
        api_key_source=source,
        # The provider's cap wins over a larger batch_size: it would only earn a 413.
        # A cap that is only a guess does not lower the size the user chose: a 413 would.
        batch_size=check_batch_size(batch_size, profile.max_batch if profile.cap_known else None),
        max_concurrent=_positive_int("max_concurrent", max_concurrent),
        rpm=_at_least_one("rpm", rpm),
        tpm=_positive_number("tpm", tpm),
        max_retries=_count("max_retries", max_retries),
        timeout=_timeout(timeout),
        dimensions=None if dimensions is None else _positive_int("dimensions", dimensions),
        encoding_format=_encoding(encoding_format, profile),
        cache=_check_cache(cache),
        max_batch_tokens=profile.max_batch_tokens
        if max_batch_tokens is None
        else _positive_int("max_batch_tokens", max_batch_tokens),
        allow_insecure=allow_insecure,
        provider=profile.name,
        truncate=_flag("truncate", truncate),
        adaptive=_flag("adaptive", adaptive),
        rate_controller=_check_controller(rate_controller),
        max_wait=_max_wait(max_wait),
    )
