"""What each provider accepts, chosen from the base URL (see shared provider facts).

A profile caps the inputs and the estimated tokens per request, knows the tokens one input may
have where the provider publishes it, says whether ``dimensions`` may be sent for a model, and
whether the server only speaks float lists, and which environment variables may hold a key for
its hosts (and only for them). Pure data and functions: no I/O.

>>> profile_for("https://api.siliconflow.cn/v1").max_batch
64
>>> profile_for("http://127.0.0.1:8080/v1", "tei").dimensions_for("BAAI/bge-m3")
False
>>> key_variables_for("https://api.openai.com/v1")
('OPENAI_API_KEY',)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError
from .._prices import Price, price_for


def _never(model: str) -> bool:
    return False


def _always(model: str) -> bool:
    return True


def _matching(pattern: str) -> Callable[[str], bool]:
    regex = re.compile(pattern, re.I)
    return lambda model: regex.search(model) is not None


@dataclasses.dataclass(frozen=True)
class Profile:
    """Limits of one kind of server.

    ``max_batch``: inputs per request; ``max_batch_tokens``: estimated tokens per request;
    ``dimensions_for(model)``: whether the ``dimensions`` parameter may be sent;
    ``float_only``: the server cannot send base64; ``hosts``: base-URL host names that select
    this profile; ``input_tokens``: ``(model regex, tokens per input)`` pairs, first match
    wins, else ``default_input_tokens`` (``None``: not published); ``key_variables``:
    environment variables holding a key for these hosts, in order of precedence (read only
    when the base URL's host is one of ``hosts``, never for ``provider=`` alone);
    ``cap_known``: whether ``max_batch`` is the server's (``False``: a cautious guess, which
    ``batch_size="auto"`` may go past while requests are what a limit counts, until the
    server refuses a batch).
    """

    name: str
    max_batch: int
    max_batch_tokens: int
    dimensions_for: Callable[[str], bool] = _always
    float_only: bool = False
    hosts: tuple[str, ...] = ()
    input_tokens: tuple[tuple[str, int], ...] = ()
    default_input_tokens: int | None = None
    key_variables: tuple[str, ...] = ()
    cap_known: bool = True

    def max_input_tokens(self, model: str) -> int | None:
        """Tokens one input of ``model`` may have on this provider, or ``None`` if unknown."""
        for pattern, tokens in self.input_tokens:
            if re.search(pattern, model, re.I):
                return tokens
        return self.default_input_tokens

    def price_for(self, model: str) -> Price | None:
        """The published ``/embeddings`` price of ``model`` here, with the date it was read
        (:mod:`embedsdk._prices`), or ``None``."""
        return price_for(self.name, model)

    def matches_host(self, host: str) -> bool:
        """``host`` is one of ours, or a subdomain of one (regional endpoints)."""
        return any(host == h or host.endswith("." + h) for h in self.hosts)


PROFILES = {
    p.name: p
    for p in (
        # 32 per the published spec, 64 seen enforced (413 code 20042). dimensions: the
        # Qwen3-Embedding models only (bge answers code 20015, lately a 500).
        Profile(
            "siliconflow",
            64,
            64 * 8192,
            _matching(r"qwen3-embedding"),
            hosts=("api.siliconflow.cn", "api.siliconflow.com"),
            input_tokens=(
                (r"qwen3-embedding", 32768),
                (r"bge-m3", 8192),
                (r"bge-large|bce-embedding", 512),
            ),
            # The lower-case name is the one the original usage guide spells.
            key_variables=("SILICONFLOW_API_KEY", "siliconflow_api_key"),
        ),
        # 2048 inputs and 300k tokens per request, 8192 per input; only the -3 models take
        # `dimensions` (ada-002 answers 400).
        Profile(
            "openai",
            2048,
            300_000,
            _matching(r"text-embedding-3"),
            hosts=("api.openai.com",),
            default_input_tokens=8192,
            key_variables=("OPENAI_API_KEY",),
        ),
        # Compatible mode: at most 10 inputs per request and float lists only; v3/v4 take
        # `dimensions` and 8192 tokens per input.
        Profile(
            "dashscope",
            10,
            10 * 8192,
            _matching(r"text-embedding-v[34]"),
            float_only=True,
            hosts=("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com"),
            input_tokens=((r"text-embedding-v[34]", 8192),),
            key_variables=("DASHSCOPE_API_KEY",),
        ),
        # About 64 inputs (unverified); embedding-3 takes `dimensions` and 3072 tokens per
        # input, embedding-2 512. Base URL https://open.bigmodel.cn/api/paas/v4.
        Profile(
            "zhipu",
            64,
            64 * 3072,
            _matching(r"embedding-3"),
            hosts=("open.bigmodel.cn", "api.z.ai"),
            input_tokens=((r"embedding-3", 3072), (r"embedding-2", 512)),
            key_variables=("ZHIPUAI_API_KEY",),
        ),
        # text-embeddings-inference's default --max-client-batch-size is 32; it has no
        # `dimensions`. Self-hosted servers (vLLM, Ollama, infinity, llama.cpp) and anything
        # unknown get the same cautious cap as a guess: a 413 lowers it at run time, and
        # batch_size="auto" tries past it while requests are what a limit counts.
        Profile("tei", 32, 32 * 512, _never),
        Profile("generic", 32, 60_000, _always, cap_known=False),
    )
}


def profile_for(base_url: str, name: str | None = None) -> Profile:
    """The profile named ``name``, else the one whose host matches ``base_url``, else generic.

    ``name`` is case-insensitive; an unknown name is a :class:`ConfigurationError` listing
    the known ones.
    """
    if name is not None:
        try:
            return PROFILES[name.strip().lower()]
        except (KeyError, AttributeError):
            raise ConfigurationError(
                f"unknown provider {name!r}; choose one of {sorted(PROFILES)}"
            ) from None
    return profile_for_host(base_url) or PROFILES["generic"]


def profile_for_host(base_url: str) -> Profile | None:
    """The profile whose hosts include ``base_url``'s host, or ``None`` for any other host."""
    host = (urlsplit(base_url).hostname or "").lower()
    return next((p for p in PROFILES.values() if p.matches_host(host)), None)


def key_variables_for(base_url: str) -> tuple[str, ...]:
    """Provider-named variables that may hold the key for ``base_url``: those of the provider
    whose host it is, and none for any other host, so that a SiliconFlow key is never sent
    to OpenAI nor to a URL that merely claims ``provider="siliconflow"``."""
    profile = profile_for_host(base_url)
    return () if profile is None else profile.key_variables


def all_key_variables() -> tuple[str, ...]:
    """Every provider-named key variable, in profile order (for help texts)."""
    return tuple(v for p in PROFILES.values() for v in p.key_variables)


def check_dimensions(profile: Profile, model: str, dimensions: int | None) -> None:
    """Refuse ``dimensions`` locally where the provider would answer with an error."""
    if dimensions is not None and not profile.dimensions_for(model):
        raise ConfigurationError(
            f"{profile.name} does not accept dimensions= for model {model!r}"
            f"{_DIMENSIONS_HINTS.get(profile.name, '')}; leave it out, or pass "
            "provider='generic' if your server does support it"
        )


_DIMENSIONS_HINTS = {
    "siliconflow": " (on SiliconFlow only the Qwen/Qwen3-Embedding-* models take it)",
    "openai": " (only the text-embedding-3-* models take it)",
    "dashscope": " (only text-embedding-v3 and v4 take it)",
    "zhipu": " (only embedding-3 takes it)",
    "tei": " (text-embeddings-inference has no dimensions parameter)",
}


#: Output dimensions of well-known models (their default where ``dimensions`` may change it),
#: wherever they are served: used only to shape the answer to an empty input.
KNOWN_DIMENSIONS = {
    "BAAI/bge-m3": 1024,
    "Pro/BAAI/bge-m3": 1024,
    "BAAI/bge-large-zh-v1.5": 1024,
    "BAAI/bge-large-en-v1.5": 1024,
    "netease-youdao/bce-embedding-base_v1": 768,
    "Qwen/Qwen3-Embedding-0.6B": 1024,
    "Qwen/Qwen3-Embedding-4B": 2560,
    "Qwen/Qwen3-Embedding-8B": 4096,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "text-embedding-v3": 1024,
    "text-embedding-v4": 1024,
    "embedding-2": 1024,
    "embedding-3": 2048,
}


def known_dimension(model: str, dimensions: int | None = None) -> int | None:
    """The length of ``model``'s vectors before any arrive: ``dimensions`` when it is given,
    else the model's known default, else ``None``."""
    return dimensions if dimensions is not None else KNOWN_DIMENSIONS.get(model)


#: Tokens per input that the models themselves take (their position limit), wherever they are
#: served: used when the provider's profile publishes nothing for the model (self-hosted
#: servers, the simulated provider). Unknown models get no local limit.
MODEL_INPUT_TOKENS = (
    (r"qwen3-embedding", 32768),
    (r"bge-m3", 8192),
    (r"bge-(large|base|small)-(zh|en)|bce-embedding", 512),
    (r"text-embedding-(3-small|3-large|ada-002)", 8192),
)

#: BERT WordPiece models: every Han character is a token of its own.
_WORDPIECE = re.compile(r"bge-(large|base|small)-(zh|en)", re.I)


def input_token_limit(profile: Profile, model: str) -> int | None:
    """Tokens one input of ``model`` may have: the provider's figure, else the model's own."""
    limit = profile.max_input_tokens(model)
    if limit is not None:
        return limit
    for pattern, tokens in MODEL_INPUT_TOKENS:
        if re.search(pattern, model, re.I):
            return tokens
    return None


def han_chars_per_token(model: str) -> int:
    """At most how many Han characters one token of ``model`` covers (for a lower bound)."""
    return 1 if _WORDPIECE.search(model) else 2
