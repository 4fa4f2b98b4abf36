"""What each provider accepts, chosen from the base URL (see shared provider facts).

A profile caps the batch size and the tokens per request, says whether ``dimensions`` may be
sent for a model, and whether the server only speaks float lists. Pure data and functions.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError


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
    ``float_only``: the server cannot send base64.
    """

    name: str
    max_batch: int
    max_batch_tokens: int
    dimensions_for: Callable[[str], bool] = _always
    float_only: bool = False
    hosts: tuple[str, ...] = ()


PROFILES = {
    p.name: p
    for p in (
        # 32 per the published spec, 64 seen enforced (413 code 20042); bge-m3 takes 8192
        # tokens per input. dimensions: Qwen3-Embedding only (bge answers code 20015 / 500).
        Profile(
            "siliconflow",
            64,
            64 * 8192,
            _matching(r"qwen3-embedding"),
            hosts=("api.siliconflow.cn", "api.siliconflow.com"),
        ),
        Profile("openai", 2048, 300_000, _matching(r"text-embedding-3"), hosts=("api.openai.com",)),
        Profile(
            "dashscope",
            10,
            10 * 8192,
            _matching(r"text-embedding-v[34]"),
            float_only=True,
            hosts=("dashscope.aliyuncs.com", "dashscope-intl.aliyuncs.com"),
        ),
        Profile("zhipu", 64, 64 * 3072, _matching(r"embedding-3"), hosts=("open.bigmodel.cn",)),
        # text-embeddings-inference's default --max-client-batch-size is 32; it has no
        # `dimensions`. Self-hosted servers (vLLM, Ollama, infinity, llama.cpp) and anything
        # unknown get the same cautious cap; a 413 lowers it further at run time.
        Profile("tei", 32, 32 * 512, _never),
        Profile("generic", 32, 60_000, _always),
    )
}


def profile_for(base_url: str, name: str | None = None) -> Profile:
    """The profile named ``name``, else the one whose host matches ``base_url``, else generic."""
    if name is not None:
        try:
            return PROFILES[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown provider {name!r}; choose one of {sorted(PROFILES)}"
            ) from None
    host = (urlsplit(base_url).hostname or "").lower()
    for profile in PROFILES.values():
        if host in profile.hosts:
            return profile
    return PROFILES["generic"]


def check_dimensions(profile: Profile, model: str, dimensions: int | None) -> None:
    """Refuse ``dimensions`` locally where the provider would answer with an error."""
    if dimensions is not None and not profile.dimensions_for(model):
        raise ConfigurationError(
            f"{profile.name} does not accept dimensions= for model {model!r} "
            "(on SiliconFlow only the Qwen3-Embedding models take it); leave it out, or pass "
            "provider='generic' if your server does support it"
        )
