"""Checked by ``mypy --strict`` (tests/test_typed_options.py, and tox's ``type`` env): the
option names and types of every entry point are visible to a type checker.

Each line that must be an error carries ``# type: ignore[code]`` (any mistake in a call of an
overloaded function is a ``call-overload``); with ``warn_unused_ignores``
(part of --strict) an ignore that is not needed, because the options went back to ``Any``, is an
error itself.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

import numpy as np

import embedsdk
from embedsdk import AsyncEmbedder, ClientOptions, Embedder, EmbeddingResult, Stats

# Good calls type-check.
vectors = embedsdk.get_batch_embeddings(["a"], model="BAAI/bge-m3", timeout=None, api_key="")
embedsdk.get_batch_embeddings(["a"], max_wait=None)
Embedder(max_wait=600)
embedsdk.get_batch_embeddings_concurrent(["a"], 4, 16, rpm=600, cache=False, dimensions=None)
asyncio.run(embedsdk.get_batch_embeddings_async(["a"], 4, base_url="http://127.0.0.1:8080/v1"))
client = Embedder("BAAI/bge-m3", batch_size=32, max_concurrent=4, adaptive=False)
auto_client = Embedder(batch_size="auto")
embedsdk.get_batch_embeddings(["a"], batch_size="auto")
embedsdk.get_batch_embeddings_concurrent(["a"], 4, "auto")
client.embed(["a"], batch_size="auto")
client.embed_threaded(["a"], max_workers=2, batch_size="auto")
async_client = AsyncEmbedder(encoding_format="float", rate_controller=None, truncate=True)
options: ClientOptions = client.options
stats: Stats = client.stats
timeout: float | None = async_client.options.timeout
blocks: list[tuple[int, np.ndarray]] = list(client.embed_stream(["a"]))
results: list[tuple[int, EmbeddingResult]] = list(client.embed_stream(["a"], errors="return"))
wrong: list[tuple[int, np.ndarray]] = list(client.embed_stream(["a"], errors="return"))  # type: ignore[arg-type]

# A misspelled option, or a value of the wrong type, is an error at every entry point.
embedsdk.get_batch_embeddings(["a"], modle="x")  # type: ignore[call-overload]
embedsdk.get_batch_embeddings(["a"], timeout="60")  # type: ignore[call-overload]
embedsdk.get_batch_embeddings_concurrent(["a"], api_base="x")  # type: ignore[call-overload]
embedsdk.get_batch_embeddings_concurrent(["a"], rpm="600")  # type: ignore[call-overload]
embedsdk.get_batch_embeddings_async(["a"], max_retries=None)  # type: ignore[call-overload]
embedsdk.get_batch_embeddings(["a"], max_wait="5m")  # type: ignore[call-overload]
embedsdk.get_batch_embeddings_async(["a"], batchsize=8)  # type: ignore[call-overload]
Embedder(cache=42)  # type: ignore[arg-type]
Embedder(max_workers=4)  # type: ignore[call-arg]
AsyncEmbedder(encoding_format="int8")  # type: ignore[arg-type]
AsyncEmbedder(provider=3)  # type: ignore[arg-type]
AsyncEmbedder(batch_size="big")  # type: ignore[arg-type]
embedsdk.get_batch_embeddings(["a"], batch_size="Auto")  # type: ignore[call-overload]

# NOT_GIVEN is "the default" for every option and per-call argument, and narrows.
Embedder(model=embedsdk.NOT_GIVEN, timeout=embedsdk.NOT_GIVEN, transport=embedsdk.NOT_GIVEN)
embedsdk.get_batch_embeddings(["a"], api_key=embedsdk.NOT_GIVEN, rpm=embedsdk.NOT_GIVEN)
client.embed(["a"], batch_size=embedsdk.NOT_GIVEN, max_concurrent=None)
client.embed_stream(["a"], window=embedsdk.NOT_GIVEN)


def _size(value: int | embedsdk.NotGiven = embedsdk.NOT_GIVEN) -> int:
    return 8 if value is embedsdk.NOT_GIVEN else value


# Options and the result types are public, typed as what they hold.
typed_options: embedsdk.Options = {"timeout": None, "provider": "dashscope"}
embedsdk.get_batch_embeddings(["a"], **typed_options)
embedder_options: embedsdk.EmbedderOptions = {"batch_size": "auto", "max_concurrent": 2}
rows: embedsdk.Vectors = client.embed(["a"])
fmt: Literal["base64", "float"] = options.encoding_format
provider: embedsdk.Provider = options.provider
cache_option: bool | str | os.PathLike[str] | embedsdk.VectorCache | None = options.cache
controller: embedsdk.RateController | None = options.rate_controller
rewrites: tuple[embedsdk.Rewrite, ...] = options.rewritten
wrong_cache: int = options.cache  # type: ignore[assignment]
wrong_controller: int = options.rate_controller  # type: ignore[assignment]

# errors is a Literal: a variable of the union gets the union, a typo is an error.
mode: embedsdk.ErrorMode = "return"
either: np.ndarray | EmbeddingResult = client.embed(["a"], errors=mode)
embedsdk.get_batch_embeddings(["a"], errors="retrun")  # type: ignore[call-overload]
client.embed(["a"], errors="retrun")  # type: ignore[call-overload]
client.embed_stream(["a"], errors="Return")  # type: ignore[call-overload]
asyncio.run(async_client.embed(["a"], errors="ignore"))  # type: ignore[call-overload]
loose: str = "return"
client.embed(["a"], errors=loose)  # type: ignore[call-overload]
AsyncEmbedder(provider="siliconflw")  # type: ignore[arg-type]
