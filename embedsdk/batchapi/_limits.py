"""What each provider's Batch API takes (its prices: :mod:`embedsdk._prices`).

These are facts about another API than ``/embeddings`` (a file per batch, a queue of its
own), so they live next to the code that uses them; the ``/embeddings`` profile
(:mod:`embedsdk.client._providers`) still gives the inputs and tokens per request, which a
batch's lines obey as well.

Read from the providers' public docs (2026-12; see ../shared/provider-facts.md): OpenAI,
50,000 requests and 200 MB per file, 50,000 embedding inputs per batch, half the price.
Others that sell batch embeddings (DashScope, Gemini, Voyage, Jina) publish no limits of an
OpenAI-compatible route that we could confirm: they get OpenAI's, which the server answers
with a clear validation error if it takes less. SiliconFlow documents batches of chat
completions only (5,000 lines, 1 GB): an embedding batch there is refused, and the error says
to use the default route.

>>> limits_for("openai").requests_per_file
50000
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BatchLimits:
    """How a job is cut into batches.

    ``requests_per_file``: lines of one uploaded file (one batch each); ``bytes_per_file``:
    its size; ``inputs_per_batch``: embedding inputs over all its lines; ``discount``: the
    share of the ``/embeddings`` price a batch saves (0.5: half price).
    """

    requests_per_file: int = 50_000
    bytes_per_file: int = 200_000_000
    inputs_per_batch: int = 50_000
    discount: float = 0.5

    def __post_init__(self) -> None:
        for name in ("requests_per_file", "bytes_per_file", "inputs_per_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.discount < 1.0:
            raise ValueError(f"discount must be in [0, 1), got {self.discount!r}")


OPENAI = BatchLimits()

#: Per provider profile name; any other gets OpenAI's (the API's shape is OpenAI's).
LIMITS = {
    "openai": OPENAI,
    # Listed at half price; the compatible route's limits are not published apart from
    # OpenAI's shape: the same, until a server says otherwise.
    "dashscope": OPENAI,
    # Its Batch API takes 5,000 lines and 1 GB per file, for chat completions only (2026-12).
    "siliconflow": BatchLimits(requests_per_file=5_000, bytes_per_file=1_000_000_000),
}


def limits_for(provider: str) -> BatchLimits:
    """The Batch API limits of a provider profile (OpenAI's when it publishes none)."""
    return LIMITS.get(provider, OPENAI)
