"""Input policy: bad texts are refused by index before any request; too-long texts are
refused only when surely too long, or cut to fit with ``truncate=True``.

Private access: the last section tests the policy's pure rules directly (``client._planning``:
the lower bound, the cut; ``client._providers``: each model's limit), over hundreds of random
texts and models no server here serves; the sections above go through the entry points.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import AsyncEmbedder, ConfigurationError, Embedder, InvalidInputError, estimate_tokens
from embedsdk.client import PROFILES
from embedsdk.client._planning import apply_input_limit, fit_to_tokens, min_tokens
from embedsdk.client._providers import han_chars_per_token, input_token_limit
from embedsdk.testing import SimulatedProvider, expected_matrix, expected_vector

DIM = 16
Factory = Callable[..., SimulatedProvider]


def _call(entry: str, texts: list[Any], url: str, **options: Any) -> Any:
    """Run ``texts`` through one entry point against ``url``."""
    options = {"base_url": url, "cache": False, **options}
    if entry == "AsyncEmbedder.embed":

        async def run() -> Any:
            async with AsyncEmbedder(**options) as emb:
                return await emb.embed(texts)

        return asyncio.run(run())
    if entry == "get_batch_embeddings":
        return embedsdk.get_batch_embeddings(texts, **options)
    if entry == "get_batch_embeddings_concurrent":
        return embedsdk.get_batch_embeddings_concurrent(texts, **options)
    if entry == "get_batch_embeddings_async":
        return asyncio.run(embedsdk.get_batch_embeddings_async(texts, **options))
    with Embedder(**options) as emb:
        if entry == "Embedder.embed":
            return emb.embed(texts)
        if entry == "Embedder.embed_threaded":
            return emb.embed_threaded(texts, max_workers=3)
        return np.vstack([block for _, block in emb.embed_stream(iter(texts), window=100)])


ENTRY_POINTS = [
    "AsyncEmbedder.embed",
    "Embedder.embed",
    "Embedder.embed_threaded",
    "Embedder.embed_stream",
    "get_batch_embeddings",
    "get_batch_embeddings_concurrent",
    "get_batch_embeddings_async",
]
BAD = {
    "None": None,
    "int": 3,
    "bytes": b"bytes",
    "empty": "",
    "blank": "   ",
    "whitespace": "\n\t\u3000",
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_text_is_refused_by_index_before_any_request(
    simulated_provider_factory: Factory, entry: str, kind: str
) -> None:
    sim = simulated_provider_factory(dim=DIM)
    texts: list[Any] = [f"good {i}" for i in range(10)]
    texts[6] = BAD[kind]
    with pytest.raises(InvalidInputError) as caught:
        _call(entry, texts, sim.base_url)
    assert caught.value.index == 6 and "texts[6]" in str(caught.value)
    assert sim.stats()["requests"] == 0


# -- too long -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "text", "limit"),
    [
        ("BAAI/bge-large-zh-v1.5", "中" * 600, 512),  # WordPiece: every Han character a token
        ("BAAI/bge-large-en-v1.5", "word " * 1200, 512),
        ("netease-youdao/bce-embedding-base_v1", "中文" * 600, 512),
        ("BAAI/bge-m3", "中" * 17000, 8192),
        ("Pro/BAAI/bge-m3", "tokens " * 12000, 8192),
        ("Qwen/Qwen3-Embedding-8B", "中" * 66000, 32768),
        ("text-embedding-3-small", "x" * 70000, 8192),
    ],
    ids=lambda value: value if len(str(value)) < 40 else f"{len(value)} chars",
)
@pytest.mark.parametrize("entry", ["Embedder.embed", "get_batch_embeddings_async"])
def test_a_surely_too_long_text_is_refused_by_index(
    simulated_provider_factory: Factory, entry: str, model: str, text: str, limit: int
) -> None:
    sim = simulated_provider_factory(dim=DIM)
    texts = ["short", "also short", text, "short again"]
    with pytest.raises(InvalidInputError) as caught:
        _call(entry, texts, sim.base_url, model=model)
    message = str(caught.value)
    assert caught.value.index == 2 and "texts[2]" in message
    assert model in message and f"{limit} tokens" in message and "truncate=True" in message
    assert sim.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("model", "text"),
    [
        ("BAAI/bge-large-zh-v1.5", "中" * 500),
        ("BAAI/bge-large-en-v1.5", "word " * 500),  # 2,500 characters, ~500 tokens
        ("BAAI/bge-m3", "中" * 16000),  # bge-m3 merges Han characters: may fit
        ("my-org/custom-embedder", "中" * 200_000),  # unknown model: no local limit
    ],
    ids=lambda value: value if len(str(value)) < 40 else f"{len(value)} chars",
)
def test_a_text_not_surely_too_long_is_sent(
    simulated_provider_factory: Factory, model: str, text: str
) -> None:
    sim = simulated_provider_factory(dim=DIM)
    got = embedsdk.get_batch_embeddings([text, "x"], base_url=sim.base_url, model=model)
    assert np.array_equal(got, expected_matrix([text, "x"], model, DIM))


def test_between_the_bounds_the_server_judges_and_the_error_names_the_input(
    simulated_provider_factory: Factory,
) -> None:
    # At least 511 tokens by our lower bound, 513 by the server's count: sent, refused there.
    sim = simulated_provider_factory(dim=DIM, max_input_tokens=512)
    texts = [f"t{i}" for i in range(30)]
    texts[23] = "中" * 511 + "abc"
    with pytest.raises(embedsdk.InternalServerError) as caught:
        embedsdk.get_batch_embeddings(
            texts, base_url=sim.base_url, model="BAAI/bge-large-zh-v1.5", batch_size=10
        )
    assert "request for input 23)" in str(caught.value) and "too large" in str(caught.value)
    assert caught.value.failed_indices == [23]  # the rest of its batch was embedded
    stats = sim.stats()
    # Two batches; the third refused, then halved until 23 stood alone: one 500 per round
    # (20..24 and 25..29, 20..21 and 22..24, 22 and 23..24, 23 and 24), never a retry.
    assert stats["requests"] == 3 + 8 and stats["status"].get(500) == 1 + 4


def test_a_stream_names_the_index_in_the_whole_input(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM)
    texts = [f"t{i}" for i in range(300)]
    texts[250] = "中" * 600
    with Embedder(base_url=sim.base_url, model="BAAI/bge-large-zh-v1.5") as emb:
        blocks = emb.embed_stream(iter(texts), window=100)
        with pytest.raises(InvalidInputError) as caught:
            list(blocks)
    assert caught.value.index == 250


# -- truncate=True ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_truncate_cuts_too_long_texts_so_the_server_takes_them(
    simulated_provider_factory: Factory, entry: str
) -> None:
    model = "BAAI/bge-large-zh-v1.5"
    sim = simulated_provider_factory(dim=DIM, max_input_tokens=512)  # counts <= our estimate
    texts = ["short", "中" * 600, "  " + "mixed 中文 text " * 300, "文" * 511 + "abc", "end"]
    got = _call(entry, texts, sim.base_url, model=model, truncate=True)

    served = sim.stats()["texts"]
    cut = [t for t in served if t not in texts]
    assert len(cut) == 3 and {"short", "end"} <= set(served)
    for original in texts[1:4]:
        (short,) = [t for t in cut if original.lstrip().startswith(t)]
        assert (
            estimate_tokens(short) <= 512 < estimate_tokens(short + original.lstrip()[len(short)])
        )
    for i, original in enumerate(texts):
        sent = (
            original
            if original in served
            else next(t for t in cut if original.lstrip().startswith(t))
        )
        assert np.array_equal(got[i], expected_vector(sent, model, DIM))


def test_truncate_counts_and_caches_the_cut_text(simulated_provider_factory: Factory) -> None:
    sim = simulated_provider_factory(dim=DIM)
    long = "中" * 600
    options: dict[str, Any] = {
        "base_url": sim.base_url,
        "model": "BAAI/bge-large-zh-v1.5",
        "truncate": True,
    }
    with Embedder(**options) as emb:
        first = emb.embed([long, "a"])
        assert emb.stats.truncated == 1
    with Embedder(**options) as emb:
        again = emb.embed([long])  # same cut, found in the cache
        assert emb.stats.cache_hits == 1
    assert sim.stats()["requests"] == 1
    assert np.array_equal(first[0], again[0])


def test_truncate_with_an_unknown_limit_says_it_could_not_cut(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(dim=DIM, max_input_tokens=100)
    texts = ["short", "x" * 2000]
    with pytest.raises(embedsdk.InternalServerError) as caught:
        embedsdk.get_batch_embeddings(
            texts, base_url=sim.base_url, model="my-org/custom-embedder", truncate=True
        )
    message = str(caught.value)
    assert "input limit of my-org/custom-embedder is unknown" in message
    assert "truncate=True could not cut" in message and "shorten" in message


def test_truncate_with_a_limit_above_the_servers_says_so(
    simulated_provider_factory: Factory,
) -> None:
    # A server configured below the model's own limit (TEI --max-input-length): the texts were
    # cut to the model's 512 tokens, and that is still too long here.
    sim = simulated_provider_factory(dim=DIM, max_input_tokens=100)
    texts = ["short", "中" * 400]
    with pytest.raises(embedsdk.InternalServerError) as caught:
        embedsdk.get_batch_embeddings(
            texts, base_url=sim.base_url, model="BAAI/bge-large-zh-v1.5", truncate=True
        )
    message = str(caught.value)
    assert "truncate=True cut texts to 512 tokens" in message and "takes fewer" in message


def test_without_truncate_a_refusal_suggests_it_when_the_limit_is_known(
    simulated_provider_factory: Factory,
) -> None:
    sim = simulated_provider_factory(dim=DIM, max_input_tokens=100)
    texts = ["short", "中" * 400]
    with pytest.raises(embedsdk.InternalServerError) as caught:
        embedsdk.get_batch_embeddings(texts, base_url=sim.base_url, model="BAAI/bge-m3")
    message = str(caught.value)
    assert "BAAI/bge-m3 takes 8192 tokens per input" in message
    assert "or pass truncate=True" in message and "shorten" in message


def test_truncate_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="truncate"):
        Embedder(base_url="http://127.0.0.1:9/v1", truncate="yes")


# -- the pure functions -------------------------------------------------------------------------


def _random_text(rng: random.Random) -> str:
    alphabet = "abcdefghij klmnop 中文字符向量嵌入 éüß привет 😀 \n\t.,;-=" * 2
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))


def test_the_lower_bound_is_below_the_estimate() -> None:
    rng = random.Random(3)
    for _ in range(300):
        text = _random_text(rng)
        assert min_tokens(text, 1) <= estimate_tokens(text)
        assert min_tokens(text, 2) <= min_tokens(text, 1)


def test_fit_to_tokens_keeps_the_longest_prefix_that_fits() -> None:
    rng = random.Random(4)
    for _ in range(200):
        text = _random_text(rng).lstrip() or "x"
        limit = rng.randint(6, 800)
        cut = fit_to_tokens(text, limit)
        assert text.startswith(cut) and estimate_tokens(cut) <= limit
        assert cut == text or estimate_tokens(text[: len(cut) + 1]) > limit


def test_apply_input_limit_leaves_short_texts_alone_and_returns_the_same_list() -> None:
    texts = ["a" * 100, "中" * 200]
    same, cut = apply_input_limit(texts, 512, truncate=True, model="m")
    assert same is texts and cut == 0
    same, cut = apply_input_limit(texts, 512, truncate=False, model="m")
    assert same is texts and cut == 0


def test_model_limits() -> None:
    generic, siliconflow = PROFILES["generic"], PROFILES["siliconflow"]
    assert input_token_limit(generic, "BAAI/bge-m3") == 8192
    assert input_token_limit(siliconflow, "Pro/BAAI/bge-m3") == 8192
    assert input_token_limit(generic, "BAAI/bge-large-zh-v1.5") == 512
    assert input_token_limit(generic, "netease-youdao/bce-embedding-base_v1") == 512
    assert input_token_limit(generic, "Qwen/Qwen3-Embedding-0.6B") == 32768
    assert input_token_limit(generic, "text-embedding-ada-002") == 8192
    assert input_token_limit(generic, "nomic-embed-text") is None
    assert han_chars_per_token("BAAI/bge-large-zh-v1.5") == 1
    assert han_chars_per_token("BAAI/bge-m3") == 2
