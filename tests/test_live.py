"""Opt-in live tests: one real request per provider, run only when its key is set.

    SILICONFLOW_API_KEY=sk-... python -m pytest -m live tests/test_live.py

Keys are read when this module is collected: the autouse fixture in conftest.py removes the
SiliconFlow variables from the environment during each test, so each test passes its key as
``api_key=``. Each embeds one Chinese and one English text and checks what comes back.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import pytest

import embedsdk

TEXTS = ["今天天气很好，适合出去散步。", "The weather is nice today, good for a walk."]


class Live(NamedTuple):
    provider: str
    variables: tuple[str, ...]
    base_url: str
    model: str
    dim: int


LIVE = [
    Live(
        "siliconflow",
        ("SILICONFLOW_API_KEY", "siliconflow_api_key"),
        "https://api.siliconflow.cn/v1",
        "BAAI/bge-m3",
        1024,
    ),
    Live(
        "openai", ("OPENAI_API_KEY",), "https://api.openai.com/v1", "text-embedding-3-small", 1536
    ),
    Live(
        "dashscope",
        ("DASHSCOPE_API_KEY",),
        "https://dashscope.aliyuncs.com/compatible-mode/v1",
        "text-embedding-v4",
        1024,
    ),
    Live(
        "zhipu", ("ZHIPUAI_API_KEY",), "https://open.bigmodel.cn/api/paas/v4", "embedding-3", 2048
    ),
]


def _key(variables: tuple[str, ...]) -> str | None:
    return next((os.environ[v] for v in variables if os.environ.get(v)), None)


#: Read now, at collection, before conftest's fixture clears the environment.
KEYS = {live.provider: _key(live.variables) for live in LIVE}


@pytest.mark.live
@pytest.mark.parametrize("live", LIVE, ids=[live.provider for live in LIVE])
def test_live_provider(live: Live) -> None:
    key = KEYS[live.provider]
    if not key:
        pytest.skip(f"set {' or '.join(live.variables)} to run the live {live.provider} test")
    with embedsdk.Embedder(
        live.model, base_url=live.base_url, api_key=key, cache=False, timeout=30.0
    ) as emb:
        assert emb.options.provider == live.provider  # the profile came from the URL
        vecs = emb.embed(TEXTS)
        stats = emb.stats
    assert vecs.shape == (2, live.dim)
    assert vecs.dtype == np.float32 and vecs.flags.c_contiguous
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=0.05)
    assert not np.allclose(vecs[0], vecs[1])
    # One request per attempt: the default encoding was taken (no base64 fallback needed).
    assert stats.requests - stats.retries == 1


@pytest.mark.live
def test_live_openai_batch_api(tmp_path: object) -> None:
    """Two texts through OpenAI's Batch API, against the same through /embeddings. Opt in
    with EMBEDSDK_LIVE_BATCH=1 and OPENAI_API_KEY: a batch may take minutes to hours."""
    from pathlib import Path

    from embedsdk.batchapi import embed_via_batch

    key = KEYS["openai"]
    if not key or os.environ.get("EMBEDSDK_LIVE_BATCH") != "1":
        pytest.skip("set OPENAI_API_KEY and EMBEDSDK_LIVE_BATCH=1 to run the live Batch API test")
    options = {"base_url": "https://api.openai.com/v1", "api_key": key, "cache": False}
    model = "text-embedding-3-small"
    batched = embed_via_batch(TEXTS, job_dir=Path(str(tmp_path)) / "job", model=model, **options)
    direct = embedsdk.get_batch_embeddings(TEXTS, model=model, **options)
    assert batched.shape == direct.shape == (2, 1536)
    cosine = (batched * direct).sum(axis=1)
    assert (cosine > 0.999).all()  # the same model; the backends may round differently
