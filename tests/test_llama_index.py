"""embedsdk.llama_index against the real llama-index-core on the simulated provider
(127.0.0.1 only: pytest-socket refuses any other address during these tests, so a tokenizer
or NLTK download, or a call to OpenAI, would fail them).

Run by the tox env ``integrations``; skipped where llama-index-core is not installed.

Private access: the options the adapter passes on (its ``_options``, and
``integrations._adapters.accepted_options``), the module functions' clients (``client._api``:
none here) and the loop a client is bound to are the point of the tests of its pickling and
sharing; no public name shows them (its per-loop clients: tests/_adapter_clients.py).
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("pytest_socket")

import llama_index.core.instrumentation as instrument
from _adapter_clients import loop_clients, loop_clients_count
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.callbacks import (
    CallbackManager,
    CBEventType,
    EventPayload,
    LlamaDebugHandler,
)
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode
from llama_index.core.storage.kvstore import SimpleKVStore
from pydantic import Field

import embedsdk
from embedsdk.client import _api
from embedsdk.integrations import _adapters
from embedsdk.llama_index import EmbedsdkEmbedding
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
    module_sim.configure(latency=0.0, api_key=None)
    module_sim.reset_stats()
    return module_sim


def make(sim: SimulatedProvider, **options: Any) -> EmbedsdkEmbedding:
    return EmbedsdkEmbedding(base_url=sim.base_url, api_key=KEY, **options)


class Recorder(BaseEventHandler):
    """Keeps the embedding events the instrumentation dispatcher sends."""

    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (EmbeddingStartEvent, EmbeddingEndEvent)):
            self.events.append(event)


@pytest.fixture
def recorder() -> Iterator[tuple[Recorder, SimpleSpanHandler]]:
    root = instrument.get_dispatcher()
    events, spans = Recorder(), SimpleSpanHandler()
    root.add_event_handler(events)
    root.add_span_handler(spans)
    try:
        yield events, spans
    finally:
        root.event_handlers.remove(events)
        root.span_handlers.remove(spans)


# -- embeddings ------------------------------------------------------------------------


def test_text_query_and_batch_vectors(sim: SimulatedProvider) -> None:
    emb = make(sim, batch_size=2)
    assert (matrix(emb.get_text_embedding_batch(TEXTS)) == expected_matrix(TEXTS)).all()
    one = [emb.get_text_embedding("你好"), emb.get_query_embedding("vector search")]
    assert (matrix(one) == expected_matrix(["你好", "vector search"])).all()
    assert emb.get_text_embedding_batch([]) == []


def test_async_vectors_on_the_callers_loop(sim: SimulatedProvider) -> None:
    emb = make(sim, batch_size=2)

    async def main() -> list[list[float]]:
        rows = await emb.aget_text_embedding_batch(TEXTS)
        rows.append(await emb.aget_text_embedding("你好"))
        rows.append(await emb.aget_query_embedding("hello"))
        (client,) = loop_clients()
        assert client._loop is asyncio.get_running_loop()
        return rows

    rows = asyncio.run(main())
    assert (matrix(rows) == expected_matrix([*TEXTS, "你好", "hello"])).all()
    assert not _api._clients  # no loop thread involved
    assert loop_clients_count() == 0  # closed with the loop


@pytest.mark.parametrize("use_async", [False, True])
def test_batch_reaches_embedsdk_concurrency(sim: SimulatedProvider, use_async: bool) -> None:
    """LlamaIndex's own loop sends one embed_batch_size chunk after another (peak 1)."""
    sim.configure(latency=0.2)  # long enough that all four start before one answers
    emb = make(sim, embed_batch_size=10, max_concurrent=4, cache=False)
    texts = [f"chunk {i}" for i in range(80)]
    if use_async:
        rows = asyncio.run(emb.aget_text_embedding_batch(texts))
    else:
        rows = emb.get_text_embedding_batch(texts)
    assert len(rows) == 80
    stats = sim.stats()
    assert stats["batch_sizes"] == [10] * 8  # embed_batch_size became the request size
    assert stats["peak_in_flight"] == 4


def test_llama_index_rate_limiter_keeps_its_own_loop(sim: SimulatedProvider) -> None:
    rate_limiter = pytest.importorskip("llama_index.core.rate_limiter")  # 0.14 and later
    sim.configure(latency=0.05)
    limiter = rate_limiter.TokenBucketRateLimiter(requests_per_minute=6000)
    emb = make(sim, embed_batch_size=10, max_concurrent=4, rate_limiter=limiter, cache=False)
    rows = emb.get_text_embedding_batch([f"chunk {i}" for i in range(30)])
    assert (matrix(rows) == expected_matrix([f"chunk {i}" for i in range(30)])).all()
    assert sim.stats()["peak_in_flight"] == 1  # one chunk at a time, as documented


def test_callbacks_get_one_event_per_embed_batch_size(sim: SimulatedProvider) -> None:
    debug = LlamaDebugHandler()
    emb = make(sim, embed_batch_size=2, callback_manager=CallbackManager([debug]))
    rows = emb.get_text_embedding_batch(TEXTS)
    pairs = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert len(pairs) == 3  # 5 texts in chunks of 2
    chunks = [text for _, end in pairs for text in end.payload[EventPayload.CHUNKS]]
    vectors = [v for _, end in pairs for v in end.payload[EventPayload.EMBEDDINGS]]
    assert chunks == TEXTS and vectors == rows
    for start, _ in pairs:
        assert KEY not in str(start.payload[EventPayload.SERIALIZED])


def test_instrumentation_events_and_spans(
    sim: SimulatedProvider, recorder: tuple[Recorder, SimpleSpanHandler]
) -> None:
    events, spans = recorder
    emb = make(sim, embed_batch_size=2)
    emb.get_text_embedding_batch(TEXTS)
    asyncio.run(emb.aget_text_embedding_batch(TEXTS))
    starts = [e for e in events.events if isinstance(e, EmbeddingStartEvent)]
    ends = [e for e in events.events if isinstance(e, EmbeddingEndEvent)]
    assert len(starts) == len(ends) == 6
    assert [t for e in ends[:3] for t in e.chunks] == TEXTS
    assert all(KEY not in str(e.model_dict) for e in starts)
    names = {span.id_.partition("-")[0] for span in spans.completed_spans}
    assert "EmbedsdkEmbedding.get_text_embedding_batch" in names
    assert "EmbedsdkEmbedding.aget_text_embedding_batch" in names


def test_a_failure_ends_every_event(sim: SimulatedProvider) -> None:
    sim.configure(api_key="sk-another-key")  # -> 401
    debug = LlamaDebugHandler()
    emb = make(sim, embed_batch_size=2, callback_manager=CallbackManager([debug]))
    with pytest.raises(embedsdk.AuthenticationError) as caught:
        emb.get_text_embedding_batch(TEXTS)
    assert KEY not in str(caught.value)
    pairs = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert len(pairs) == 3
    assert all(end.payload[EventPayload.EXCEPTION] is caught.value for _, end in pairs)


def test_llama_index_embeddings_cache(sim: SimulatedProvider) -> None:
    emb = make(sim, embeddings_cache=SimpleKVStore(), cache=False)
    first = emb.get_text_embedding_batch(TEXTS)
    sent = sim.stats()["requests"]
    assert emb.get_text_embedding_batch(TEXTS) == first
    assert sim.stats()["requests"] == sent


# -- options and the key ---------------------------------------------------------------


def test_options_are_checked_before_any_request() -> None:
    url = "http://127.0.0.1:9/v1"
    with pytest.raises(TypeError, match="'rpmm'"):
        EmbedsdkEmbedding(base_url=url, rpmm=5)
    with pytest.raises(TypeError, match="model_name or model"):
        EmbedsdkEmbedding("BAAI/bge-m3", model="Qwen/Qwen3-Embedding-8B", base_url=url)
    with pytest.raises(embedsdk.ConfigurationError, match="max_concurrent"):
        EmbedsdkEmbedding(base_url=url, max_concurrent=0)


def test_llama_index_fields_fill_in_embedsdk_settings() -> None:
    url = "http://127.0.0.1:9/v1"
    emb = EmbedsdkEmbedding(base_url=url)  # batch_size="auto": events of the provider's cap
    assert (emb.batch_size, emb.embed_batch_size) == ("auto", 32)
    emb = EmbedsdkEmbedding(base_url=url, provider="siliconflow")
    assert (emb.batch_size, emb.embed_batch_size) == ("auto", 64)
    emb = EmbedsdkEmbedding(base_url=url, embed_batch_size=16, num_workers=7)
    assert (emb.batch_size, emb.max_concurrent, emb.embed_batch_size) == (16, 7, 16)
    emb = EmbedsdkEmbedding(model="Qwen/Qwen3-Embedding-8B", base_url=url, batch_size=32)
    assert (emb.model_name, emb.batch_size, emb.embed_batch_size) == (
        "Qwen/Qwen3-Embedding-8B",
        32,
        32,
    )
    emb = EmbedsdkEmbedding(base_url=url, batch_size=64, embed_batch_size=8)
    assert (emb.batch_size, emb.embed_batch_size) == (64, 8)


def test_every_client_option_is_accepted(sim: SimulatedProvider) -> None:
    emb = make(
        sim,
        model_name="Qwen/Qwen3-Embedding-8B",
        dimensions=32,
        rpm=6000,
        tpm=10_000_000,
        max_retries=2,
        timeout=5,
        encoding_format="float",
        max_batch_tokens=4000,
        truncate=True,
        rate_controller=embedsdk.RateController(),
    )
    want = expected_matrix(["a", "b"], model="Qwen/Qwen3-Embedding-8B", dim=32)
    assert (matrix(emb.get_text_embedding_batch(["a", "b"])) == want).all()


def test_the_key_shows_nowhere(sim: SimulatedProvider) -> None:
    emb = make(sim, rpm=600)
    for text in (repr(emb), str(emb), emb.to_json(), str(emb.to_dict()), str(emb.to_payload())):
        assert KEY not in text
    assert "api_key" not in emb.to_dict()


#: A value for every option but the key and base_url (given by make), none of them the default.
EVERY_OPTION: dict[str, Any] = {
    "model": "Qwen/Qwen3-Embedding-8B",
    "dimensions": 32,
    "rpm": 6000,
    "tpm": 10_000_000,
    "max_retries": 2,
    "timeout": 5,
    "max_wait": 30,
    "encoding_format": "float",
    "max_batch_tokens": 4000,
    "truncate": True,
    "cache": False,
    "adaptive": False,
    "allow_insecure": True,
    "provider": "generic",
    "batch_size": 16,
    "max_concurrent": 3,
    "price": 0.05,
}


def test_a_pickled_copy_keeps_every_option_and_sends_to_the_same_server(
    sim: SimulatedProvider,
) -> None:
    # IngestionPipeline(num_workers=...) pickles the model into its worker processes. A
    # RateController holds locks: it cannot cross processes, so it is left out; so are event
    # hooks (callables, often closures, which pickle cannot carry).
    given = {"base_url", "api_key", "rate_controller", "event_hooks", *EVERY_OPTION}
    assert given == _adapters.accepted_options()  # a new option must be added above
    emb = make(sim, embed_batch_size=8, num_workers=2, **EVERY_OPTION)
    copy = pickle.loads(pickle.dumps(emb))
    assert copy._options() == emb._options()
    assert {k: copy._options()[k] for k in EVERY_OPTION if k != "model"} == {
        k: v for k, v in EVERY_OPTION.items() if k != "model"
    }
    assert (copy.model_name, copy.embed_batch_size, copy.num_workers) == (emb.model_name, 8, 2)
    assert copy.to_dict() == emb.to_dict()
    want = expected_matrix(["a"], model="Qwen/Qwen3-Embedding-8B", dim=32)
    assert (matrix([copy.get_text_embedding("a")]) == want).all()
    assert sim.stats()["requests"] == 1  # here, not to the default base URL


def test_a_pickled_copy_keeps_where_the_key_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-from-the-environment")
    url = "http://127.0.0.1:9/v1"
    keyless = pickle.loads(pickle.dumps(EmbedsdkEmbedding(base_url=url, api_key="")))
    assert keyless._options()["api_key"] == ""  # still no key, not the environment's
    from_env = pickle.loads(pickle.dumps(EmbedsdkEmbedding(base_url=url)))
    assert "api_key" not in from_env._options()  # still read from the environment per call
    given = pickle.loads(pickle.dumps(EmbedsdkEmbedding(base_url=url, api_key=KEY)))
    assert given._options()["api_key"] == KEY


def test_not_given_is_left_to_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key=NOT_GIVEN reads the environment per call, as leaving it out does."""
    monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-from-the-environment")
    url = "http://127.0.0.1:9/v1"
    emb = EmbedsdkEmbedding(base_url=url, api_key=embedsdk.NOT_GIVEN, rpm=embedsdk.NOT_GIVEN)
    assert "api_key" not in emb._options()
    assert emb._options() == EmbedsdkEmbedding(base_url=url)._options()


def test_shares_the_async_client_with_the_langchain_adapter(sim: SimulatedProvider) -> None:
    langchain = pytest.importorskip("embedsdk.langchain")
    li, lc = make(sim), langchain.EmbedsdkEmbeddings(base_url=sim.base_url, api_key=KEY)

    async def main() -> int:
        await li.aget_text_embedding("a")
        await lc.aembed_query("b")
        return len(loop_clients())

    assert asyncio.run(main()) == 1


# -- indexes ---------------------------------------------------------------------------


def test_vector_store_index_from_nodes(sim: SimulatedProvider) -> None:
    nodes = [TextNode(text=t) for t in TEXTS]
    index = VectorStoreIndex(nodes, embed_model=make(sim))
    (hit,) = index.as_retriever(similarity_top_k=1).retrieve("向量检索")
    assert hit.node.get_content() == "向量检索"
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1)
    assert str(engine.query("vector search"))  # no OpenAI LLM reached for


def test_from_documents_stays_offline(sim: SimulatedProvider) -> None:
    """Sentence splitting uses tiktoken's and NLTK's tables that llama-index-core ships."""
    documents = [Document(text=f"{t} " * 600) for t in TEXTS]
    index = VectorStoreIndex.from_documents(documents, embed_model=make(sim))
    chunks = [node.get_content() for node in index.docstore.docs.values()]
    assert len(chunks) > len(documents)  # the splitter (with its tokenizer) did cut them
    (hit,) = index.as_retriever(similarity_top_k=1).retrieve(chunks[-1])
    assert hit.node.get_content() == chunks[-1]


def test_async_retrieval(sim: SimulatedProvider) -> None:
    async def main() -> str:
        index = VectorStoreIndex([TextNode(text=t) for t in TEXTS], embed_model=make(sim))
        (hit,) = await index.as_retriever(similarity_top_k=1).aretrieve("vector search")
        return hit.node.get_content()

    assert asyncio.run(main()) == "vector search"
