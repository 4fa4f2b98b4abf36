"""The clients the bench races: ours three ways, and the peers written as users write them.

Each client embeds a list of texts into a float32 matrix with a fixed batch size and number of
requests in flight, the cache off. Ours go through the module functions of the usage guide;
the peers (openai-python, langchain-openai, and a bare aiohttp loop as the reference for "how
close to the metal") are written the plain way a user would, each with one long-lived client.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
from typing import Any

import numpy as np
import numpy.typing as npt

import embedsdk

Vectors = npt.NDArray[np.float32]

#: Every client the bench knows, in table order: ``id -> label``.
CLIENTS = {
    "serial": "embedsdk serial",
    "threads": "embedsdk threads",
    "async": "embedsdk async",
    "raw": "raw aiohttp",
    "openai": "openai-python",
    "langchain": "langchain-openai",
}
OURS = ("serial", "threads", "async")
#: Peers that need the ``bench`` extra.
EXTRA_PEERS = ("openai", "langchain")


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the bench sends its requests.

    ``latency`` is the simulated provider's seconds per request (``None`` for a real
    endpoint, where the bench estimates it from the serial run).
    """

    base_url: str
    model: str
    api_key: str | None = dataclasses.field(repr=False)
    simulated: bool
    latency: float | None = None
    dim: int | None = None

    @property
    def key(self) -> str:
        """The key to send: the environment's for a real endpoint, a dummy for the simulator."""
        return self.api_key or "sk-bench"


class BenchClient:
    """One contender: ``embed`` returns ``(len(texts), D)`` float32, rows in input order."""

    id = ""

    def __init__(self, target: Target, batch_size: int, concurrency: int) -> None:
        self.target = target
        self.batch_size = batch_size
        self.concurrency = concurrency

    @property
    def label(self) -> str:
        return CLIENTS[self.id]

    async def start(self) -> None:
        """Create long-lived state inside the running loop (sessions belong to their loop)."""

    async def embed(self, texts: list[str]) -> Vectors:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections."""

    def batches(self, texts: list[str]) -> list[list[str]]:
        b = self.batch_size
        return [texts[i : i + b] for i in range(0, len(texts), b)]


def _our_options(target: Target, cache: Any = False) -> dict[str, Any]:
    return {
        "base_url": target.base_url,
        "model": target.model,
        "api_key": target.api_key or ("sk-bench" if target.simulated else None),
        "cache": cache,
    }


class Serial(BenchClient):
    """``embedsdk.get_batch_embeddings``: one request at a time."""

    id = "serial"

    def __init__(self, target: Target, batch_size: int, concurrency: int) -> None:
        super().__init__(target, batch_size, 1)

    async def embed(self, texts: list[str]) -> Vectors:
        # A blocking call, as users make it: the bench's own loop has nothing else to do.
        vectors: Vectors = embedsdk.get_batch_embeddings(
            texts, batch_size=self.batch_size, **_our_options(self.target)
        )
        return vectors


class Threads(BenchClient):
    """``embedsdk.get_batch_embeddings_concurrent(max_workers=W)``: a thread pool."""

    id = "threads"

    async def embed(self, texts: list[str]) -> Vectors:
        vectors: Vectors = embedsdk.get_batch_embeddings_concurrent(
            texts,
            max_workers=self.concurrency,
            batch_size=self.batch_size,
            **_our_options(self.target),
        )
        return vectors


class Async(BenchClient):
    """``await embedsdk.get_batch_embeddings_async(max_concurrent=W)``."""

    id = "async"

    async def embed(self, texts: list[str]) -> Vectors:
        vectors: Vectors = await embedsdk.get_batch_embeddings_async(
            texts,
            max_concurrent=self.concurrency,
            batch_size=self.batch_size,
            **_our_options(self.target),
        )
        return vectors

    async def aclose(self) -> None:
        embedsdk.close_default_clients()


class RawAiohttp(BenchClient):
    """The reference: one session, a semaphore, base64 decoded into numpy, nothing else.

    No retries, no checks, no de-duplication, no token budget: the least any aiohttp client
    can do for the same work.
    """

    id = "raw"
    _session: Any = None

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()

    async def _one(self, sem: asyncio.Semaphore, batch: list[str]) -> list[Vectors]:
        body = {"model": self.target.model, "input": batch, "encoding_format": "base64"}
        headers = {"Authorization": f"Bearer {self.target.key}"}
        async with (
            sem,
            self._session.post(
                self.target.base_url + "/embeddings", json=body, headers=headers
            ) as resp,
        ):
            resp.raise_for_status()
            data = (await resp.json())["data"]
        rows: list[Vectors] = [np.empty(0, np.float32)] * len(batch)
        for item in data:
            rows[item["index"]] = np.frombuffer(base64.b64decode(item["embedding"]), "<f4")
        return rows

    async def embed(self, texts: list[str]) -> Vectors:
        sem = asyncio.Semaphore(self.concurrency)
        parts = await asyncio.gather(*(self._one(sem, b) for b in self.batches(texts)))
        return np.stack([row for part in parts for row in part])

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class OpenAIPython(BenchClient):
    """openai-python as users write it: ``AsyncOpenAI`` and a semaphore over batches."""

    id = "openai"
    _client: Any = None

    async def start(self) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(
            base_url=self.target.base_url, api_key=self.target.key, max_retries=0
        )

    async def _one(self, sem: asyncio.Semaphore, batch: list[str]) -> list[list[float]]:
        async with sem:
            resp = await self._client.embeddings.create(model=self.target.model, input=batch)
        return [item.embedding for item in resp.data]

    async def embed(self, texts: list[str]) -> Vectors:
        sem = asyncio.Semaphore(self.concurrency)
        parts = await asyncio.gather(*(self._one(sem, b) for b in self.batches(texts)))
        return np.array([row for part in parts for row in part], dtype=np.float32)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


class LangChain(BenchClient):
    """langchain-openai's ``OpenAIEmbeddings.aembed_documents``.

    It sends its chunks one after another (langchain-openai 1.x), so it runs at concurrency 1
    whatever the others use. ``check_embedding_ctx_length=False``: otherwise it tokenizes with
    tiktoken, which downloads its tables on first use.
    """

    id = "langchain"
    _emb: Any = None

    def __init__(self, target: Target, batch_size: int, concurrency: int) -> None:
        super().__init__(target, batch_size, 1)

    async def start(self) -> None:
        from langchain_openai import OpenAIEmbeddings

        options: dict[str, Any] = {
            "model": self.target.model,
            "base_url": self.target.base_url,
            "api_key": self.target.key,
            "check_embedding_ctx_length": False,
            "chunk_size": self.batch_size,
            "max_retries": 0,
        }
        self._emb = OpenAIEmbeddings(**options)

    async def embed(self, texts: list[str]) -> Vectors:
        return np.array(await self._emb.aembed_documents(texts), dtype=np.float32)

    async def aclose(self) -> None:
        client = getattr(self._emb, "async_client", None)
        owner = getattr(client, "_client", None)  # AsyncOpenAI behind the embeddings resource
        if owner is not None and hasattr(owner, "close"):
            await owner.close()


_CLASSES: dict[str, type[BenchClient]] = {
    c.id: c for c in (Serial, Threads, Async, RawAiohttp, OpenAIPython, LangChain)
}


def available(client_id: str) -> bool:
    """Whether a client can run here (the peers need the ``bench`` extra)."""
    module = {"openai": "openai", "langchain": "langchain_openai"}.get(client_id)
    if module is None:
        return True
    # find_spec, not import: the check must not cost the second an import of openai takes.
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def make_clients(
    ids: list[str], target: Target, batch_size: int, concurrency: int
) -> list[BenchClient]:
    """Build the clients named by ``ids`` (unknown or unavailable ones are left out)."""
    return [
        _CLASSES[i](target, batch_size, concurrency) for i in ids if i in _CLASSES and available(i)
    ]
