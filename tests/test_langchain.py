"""embedsdk.langchain against the real langchain-core, its standard test suites, and real
vector stores, on the simulated provider (127.0.0.1 only: pytest-socket refuses any other
address during these tests).

Run by the tox env ``integrations`` (requirements/integrations.txt); skipped where
langchain-core or langchain-tests is not installed. Its async tests need pytest-asyncio in
auto mode, as tox runs them: ``pytest -o asyncio_mode=auto -o
asyncio_default_fixture_loop_scope=function tests/test_langchain.py``.

Private access: the adapter's streaming threshold (``integrations._adapters.STREAM_ABOVE``),
the sync client it shares with the module functions (``client._api``), and the loop, rate
controller and options each client holds are the point of the tests of its streaming, sharing
and ``NOT_GIVEN``; no public name shows them (its per-loop clients: tests/_adapter_clients.py).
"""

from __future__ import annotations

import asyncio
import gc
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
pytest.importorskip("pytest_socket")

from _adapter_clients import loop_clients, loop_clients_count
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

import embedsdk
from embedsdk.client import _api, client_for
from embedsdk.integrations import _adapters
from embedsdk.langchain import EmbedsdkEmbeddings
from embedsdk.testing import SimulatedProvider, expected_matrix

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

KEY = "sk-adapter-secret-0123456789"
TEXTS = ["今天天气很好", "The weather is nice today", "向量检索", "vector search", "你好"]


def matrix(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def module_sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as sim:
        yield sim


@pytest.fixture
def sim(module_sim: SimulatedProvider) -> SimulatedProvider:
    module_sim.configure(latency=0.0)
    module_sim.reset_stats()
    return module_sim


def make(sim: SimulatedProvider, **options: Any) -> EmbedsdkEmbeddings:
    return EmbedsdkEmbeddings(base_url=sim.base_url, api_key=KEY, **options)


# -- LangChain's standard suites -------------------------------------------------------


class TestStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[EmbedsdkEmbeddings]:
        return EmbedsdkEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"base_url": "http://127.0.0.1:9/v1", "api_key": KEY}  # never called

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        env = {"SILICONFLOW_API_KEY": KEY, "EMBEDSDK_MODEL": "Qwen/Qwen3-Embedding-8B"}
        return env, {"dimensions": 256}, {"api_key": KEY, "model": "Qwen/Qwen3-Embedding-8B"}


class TestStandardIntegration(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _server(self, sim: SimulatedProvider) -> None:
        self.base_url = sim.base_url

    @property
    def embeddings_class(self) -> type[EmbedsdkEmbeddings]:
        return EmbedsdkEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "api_key": KEY, "max_concurrent": 4}


# -- what the adapter promises ---------------------------------------------------------


def test_vectors_are_the_servers_in_input_order(sim: SimulatedProvider) -> None:
    emb = make(sim, batch_size=2)
    assert (matrix(emb.embed_documents(TEXTS)) == expected_matrix(TEXTS)).all()
    assert (matrix([emb.embed_query("你好")]) == expected_matrix(["你好"])).all()
    assert emb.embed_documents([]) == []


def test_async_vectors_match_and_run_on_the_callers_loop(sim: SimulatedProvider) -> None:
    emb = make(sim, batch_size=2)

    async def main() -> tuple[list[list[float]], Any]:
        rows = await emb.aembed_documents(TEXTS)
        rows.append(await emb.aembed_query("你好"))
        (client,) = loop_clients()
        assert client._loop is asyncio.get_running_loop()  # sends from this loop
        return rows, client

    rows, client = asyncio.run(main())
    assert (matrix(rows) == expected_matrix([*TEXTS, "你好"])).all()
    assert client.stats.requests == sim.stats()["requests"] == 3
    assert not _api._clients  # no sync client, no loop thread was involved
    assert client.closed  # closed with its loop by asyncio.run
    assert loop_clients_count() == 0


def test_one_async_client_per_loop_and_options(sim: SimulatedProvider) -> None:
    a, b = make(sim), make(sim, max_concurrent=9, batch_size=3)  # per-call settings differ
    other = make(sim, dimensions=64)

    async def main() -> int:
        await a.aembed_documents(["x"])
        await b.aembed_documents(["y"])
        await other.aembed_documents(["z"])
        return len(loop_clients())

    assert asyncio.run(main()) == 2  # a and b share one; other has its own
    assert asyncio.run(main()) == 2  # a new loop: new clients, the old ones closed
    gc.collect()  # an unclosed aiohttp session would warn here (an error in this suite)


def test_whole_list_goes_out_concurrently(sim: SimulatedProvider) -> None:
    sim.configure(latency=0.2)  # long enough that all four start before one answers
    emb = make(sim, batch_size=10, max_concurrent=4, cache=False)
    texts = [f"chunk {i}" for i in range(80)]
    assert len(emb.embed_documents(texts)) == 80
    stats = sim.stats()
    assert stats["requests"] == 8
    assert stats["batch_sizes"] == [10] * 8
    assert stats["peak_in_flight"] == 4


def test_long_lists_arrive_whole_and_in_order(sim: SimulatedProvider) -> None:
    """Past a window, vectors become lists block by block while the next are in flight."""
    texts = [f"text {i % 1700}" for i in range(3 * _adapters.STREAM_ABOVE)]  # repeats too
    emb = make(sim, cache=False, batch_size=32, max_concurrent=4)
    assert (matrix(emb.embed_documents(texts)) == expected_matrix(texts)).all()
    assert (matrix(asyncio.run(emb.aembed_documents(texts))) == expected_matrix(texts)).all()


def test_cancelling_a_long_async_call_leaves_nothing_running(sim: SimulatedProvider) -> None:
    sim.configure(latency=0.2)
    emb = make(sim, cache=False, batch_size=8, max_concurrent=4)
    texts = [f"text {i}" for i in range(3 * _adapters.STREAM_ABOVE)]

    async def main() -> set[asyncio.Task[Any]]:
        call = asyncio.ensure_future(emb.aembed_documents(texts))
        while not sim.stats()["requests"]:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(main()) == set()  # no window still fetching
    assert sim.stats()["requests"] < len(texts) // 8


def test_sync_and_async_share_the_cache_and_the_rate_controller(
    sim: SimulatedProvider,
) -> None:
    emb = make(sim)
    emb.embed_documents(TEXTS)
    sent = sim.stats()["requests"]

    async def main() -> Any:
        rows = await emb.aembed_documents(TEXTS)  # all from the disk cache
        (client,) = loop_clients()
        return rows, client._rate

    rows, rate = asyncio.run(main())
    assert (matrix(rows) == expected_matrix(TEXTS)).all()
    assert sim.stats()["requests"] == sent
    (sync_client,) = _api._clients.values()
    assert rate is sync_client._core._rate is not None


def test_sync_calls_share_the_module_functions_client(sim: SimulatedProvider) -> None:
    emb = make(sim, cache=False)
    emb.embed_documents(["a"])
    options = {"base_url": sim.base_url, "api_key": KEY, "cache": False}
    embedsdk.get_batch_embeddings(["b"], **options)  # type: ignore[arg-type]
    client = client_for("get_batch_embeddings", options)  # type: ignore[arg-type]
    # One client took both calls: one loop thread, one connection pool.
    assert client.stats.requests == sim.stats()["requests"] == 2


def test_the_key_shows_nowhere(sim: SimulatedProvider) -> None:
    emb = make(sim, rpm=600)
    for text in (repr(emb), str(emb), emb.model_dump_json(), str(emb.model_dump())):
        assert KEY not in text
    assert "api_key" not in emb.model_dump()
    assert emb.api_key is not None and emb.api_key.get_secret_value() == KEY
    assert pickle.loads(pickle.dumps(emb)).embed_query("a")  # still usable after a copy


def test_not_given_is_left_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key=NOT_GIVEN reads the environment per call, as leaving it out does: it is not
    a key that was given."""
    monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-from-the-environment")
    url = "http://127.0.0.1:9/v1"
    emb = EmbedsdkEmbeddings(base_url=url, api_key=embedsdk.NOT_GIVEN, rpm=embedsdk.NOT_GIVEN)
    assert "api_key" not in emb._options()
    assert "rpm" not in emb._options()
    assert emb._options() == EmbedsdkEmbeddings(base_url=url)._options()


def test_options_are_checked_before_any_request() -> None:
    with pytest.raises(TypeError, match="'rpmm'"):
        EmbedsdkEmbeddings(base_url="http://127.0.0.1:9/v1", rpmm=5)
    with pytest.raises(embedsdk.ConfigurationError, match="batch_size"):
        EmbedsdkEmbeddings(base_url="http://127.0.0.1:9/v1", batch_size=0)
    with pytest.raises(embedsdk.ConfigurationError, match="no API key"):
        EmbedsdkEmbeddings()  # the default endpoint needs a key


def test_every_client_option_is_accepted(sim: SimulatedProvider) -> None:
    controller = embedsdk.RateController()
    emb = make(
        sim,
        model="Qwen/Qwen3-Embedding-8B",
        dimensions=32,
        rpm=6000,
        tpm=10_000_000,
        max_retries=2,
        timeout=5,
        encoding_format="float",
        max_batch_tokens=4000,
        truncate=True,
        rate_controller=controller,
    )
    vectors = matrix(emb.embed_documents(["a", "b"]))
    want = expected_matrix(["a", "b"], model="Qwen/Qwen3-Embedding-8B", dim=32)
    assert (vectors == want).all()


def test_bad_input_names_the_item(sim: SimulatedProvider) -> None:
    with pytest.raises(embedsdk.InvalidInputError, match="1"):
        make(sim).embed_documents(["ok", ""])
    assert sim.stats()["requests"] == 0


# -- vector stores and caches ----------------------------------------------------------


def _top(docs: list[Document]) -> str:
    return docs[0].page_content


def test_in_memory_vector_store(sim: SimulatedProvider) -> None:
    store = InMemoryVectorStore.from_texts(TEXTS, make(sim))
    assert _top(store.similarity_search("向量检索", k=1)) == "向量检索"


def test_in_memory_vector_store_async(sim: SimulatedProvider) -> None:
    async def main() -> str:
        store = await InMemoryVectorStore.afrom_texts(TEXTS, make(sim))
        return _top(await store.asimilarity_search("vector search", k=1))

    assert asyncio.run(main()) == "vector search"


def test_faiss(sim: SimulatedProvider) -> None:
    pytest.importorskip("faiss")
    faiss_store = pytest.importorskip("langchain_community.vectorstores")
    store = faiss_store.FAISS.from_texts(TEXTS, make(sim))
    assert _top(store.similarity_search("你好", k=1)) == "你好"


def test_chroma(sim: SimulatedProvider) -> None:
    chroma = pytest.importorskip("langchain_chroma")
    chromadb = pytest.importorskip("chromadb")
    client = chromadb.EphemeralClient(chromadb.config.Settings(anonymized_telemetry=False))
    store = chroma.Chroma.from_texts(TEXTS, make(sim), client=client, collection_name="texts")
    assert _top(store.similarity_search("今天天气很好", k=1)) == "今天天气很好"


def test_cache_backed_embeddings(sim: SimulatedProvider) -> None:
    cache_module = pytest.importorskip("langchain_classic.embeddings")
    from langchain_core.stores import InMemoryByteStore

    underlying = make(sim, cache=False)
    cached = cache_module.CacheBackedEmbeddings.from_bytes_store(
        underlying, InMemoryByteStore(), namespace=underlying.model, key_encoder="blake2b"
    )
    first = cached.embed_documents(TEXTS)
    sent = sim.stats()["requests"]
    assert cached.embed_documents(TEXTS) == first
    assert sim.stats()["requests"] == sent  # the second time from LangChain's store
    assert (matrix(first) == expected_matrix(TEXTS)).all()
