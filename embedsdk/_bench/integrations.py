"""The integrations scenario: LangChain and LlamaIndex indexes built by our adapters and by
the frameworks' stock OpenAI classes, on the same simulated server.

For each framework and contender: build an index from ``--integration-texts`` chunks
(LangChain: ``InMemoryVectorStore.from_texts``; LlamaIndex: ``VectorStoreIndex(nodes)``),
with the same batch size, timed from the first request to the finished index. Reported: the
wall time, its ratio to ours, the client process's CPU seconds (the server runs in a child
process), the simulator's peak of requests in flight, and the efficiency against the
concurrent ceiling: ``in flight x batch / latency``, i.e. ``waves x latency`` for the run.

The stock classes send one request at a time (langchain-openai's ``embed_documents``;
LlamaIndex's ``get_text_embedding_batch`` loops over ``embed_batch_size`` chunks), so their
rows show in flight 1; they are built the way their docs show, pointed at the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import importlib.util
import time
from typing import Any, Callable

import numpy as np

from ..client import close_default_clients
from ..integrations import PER_CALL
from . import ceiling, report, runner
from .clients import Target
from .scenarios import effective_batch, target_for
from .texts import mixed_texts

#: Contenders: id -> (framework, label, modules it needs). The "alone" rows build the same
#: index with the framework's own fake embeddings (no network): the framework's own share.
CONTENDERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "core": ("embedsdk", "Embedder.embed, no framework", ()),
    "lc-alone": ("LangChain", "alone (vectors given, no embedding)", ("langchain_core",)),
    "lc-ours": ("LangChain", "EmbedsdkEmbeddings, sync", ("langchain_core",)),
    "lc-ours-async": ("LangChain", "EmbedsdkEmbeddings, async", ("langchain_core",)),
    "lc-openai": ("LangChain", "langchain-openai OpenAIEmbeddings", ("langchain_openai",)),
    "li-alone": ("LlamaIndex", "alone (MockEmbedding)", ("llama_index.core",)),
    "li-ours": ("LlamaIndex", "EmbedsdkEmbedding", ("llama_index.core",)),
    "li-ours-one-batch": (
        "LlamaIndex",
        "EmbedsdkEmbedding, insert_batch_size=all",
        ("llama_index.core",),
    ),
    "li-openai": (
        "LlamaIndex",
        "llama-index OpenAIEmbedding",
        ("llama_index.core", "llama_index.embeddings.openai"),
    ),
}
OURS = ("core", "lc-ours", "lc-ours-async", "li-ours", "li-ours-one-batch")
PEERS = ("lc-openai", "li-openai")  # left out by --no-peers
ALONE = ("lc-alone", "li-alone")


@dataclasses.dataclass
class IntegrationRun:
    """One contender's repetitions and the figures derived from them.

    ``seconds``: the whole build (wall); ``embed_seconds``: the part spent inside the
    embedding calls the framework made; ``cpu_seconds``: the client process's CPU.
    """

    id: str
    framework: str
    label: str
    concurrency: int | None
    seconds: list[float] = dataclasses.field(default_factory=list)
    embed_seconds: list[float] = dataclasses.field(default_factory=list)
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)
    exact: bool | None = None
    requests: int | None = None
    peak_in_flight: int | None = None
    median_s: float = 0.0
    median_embed_s: float = 0.0
    median_cpu_s: float = 0.0
    efficiency: float | None = None  # the ceiling's seconds over the build's
    embed_efficiency: float | None = None  # the ceiling's seconds over the embedding calls'
    x_ours: float | None = None  # build seconds over ours (same framework, sync)


@dataclasses.dataclass
class IntegrationsResult:
    settings: dict[str, Any]
    runs: list[IntegrationRun]
    missing: list[str]

    def to_json(self) -> dict[str, Any]:
        runs = [dataclasses.asdict(r) for r in self.runs]
        return {"settings": self.settings, "runs": runs, "left_out": self.missing}


def available(contender: str) -> bool:
    """Whether the packages a contender needs are installed (found, not imported)."""
    for module in CONTENDERS[contender][2]:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except (ImportError, ValueError):
            return False
    return True


@dataclasses.dataclass
class Contender:
    """How to build one index, read its vectors back, and time its embedding calls."""

    build: Callable[[list[str]], Any]
    vectors: Callable[[Any, list[str]], Any] | None  # None: not the simulator's vectors
    embed_seconds: Callable[[], float]  # inside the embedding calls, since the last call
    close: Callable[[], None] = lambda: None


def _ours_options(target: Target, batch: int, workers: int) -> dict[str, Any]:
    return {
        "base_url": target.base_url,
        "model": target.model,
        "api_key": target.key,
        "batch_size": batch,
        "max_concurrent": workers,
        "cache": False,
    }


# -- LangChain: InMemoryVectorStore.from_texts ------------------------------------------


def _langchain_embeddings(contender: str, target: Target, batch: int, workers: int) -> Any:
    if contender == "lc-alone":
        return _given_vectors(target.dim or 1024)
    if contender == "lc-openai":
        from langchain_openai import OpenAIEmbeddings

        stock: dict[str, Any] = {
            "model": target.model,
            "base_url": target.base_url,
            "api_key": target.key,
            "check_embedding_ctx_length": False,  # else tiktoken downloads its tables
            "chunk_size": batch,
            "max_retries": 0,
        }
        return OpenAIEmbeddings(**stock)
    from embedsdk.langchain import EmbedsdkEmbeddings

    return EmbedsdkEmbeddings(**_ours_options(target, batch, workers))


def _given_vectors(dim: int) -> Any:
    """Embeddings that cost nothing: the store's own share of the build."""
    from langchain_core.embeddings import Embeddings

    row = [0.5] * dim

    class Given(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [row] * len(texts)

        def embed_query(self, text: str) -> list[float]:
            return row

    return Given()


def _metered(inner: Any, spent: list[float]) -> Any:
    """``inner`` behind a LangChain ``Embeddings`` that adds its seconds to ``spent``."""
    from langchain_core.embeddings import Embeddings

    class Metered(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            t0 = time.perf_counter()
            try:
                rows: list[list[float]] = inner.embed_documents(texts)
                return rows
            finally:
                spent.append(time.perf_counter() - t0)

        def embed_query(self, text: str) -> list[float]:
            return list(inner.embed_query(text))

        async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
            t0 = time.perf_counter()
            try:
                rows: list[list[float]] = await inner.aembed_documents(texts)
                return rows
            finally:
                spent.append(time.perf_counter() - t0)

    return Metered()


def _langchain(contender: str, target: Target, batch: int, workers: int) -> Contender:
    from langchain_core.vectorstores import InMemoryVectorStore

    spent: list[float] = []
    embeddings = _metered(_langchain_embeddings(contender, target, batch, workers), spent)

    def build(texts: list[str]) -> Any:
        spent.clear()
        if contender == "lc-ours-async":
            return asyncio.run(InMemoryVectorStore.afrom_texts(texts, embeddings))
        return InMemoryVectorStore.from_texts(texts, embeddings)

    def vectors(store: Any, texts: list[str]) -> Any:
        by_text = {doc["text"]: doc["vector"] for doc in store.store.values()}
        return np.array([by_text[t] for t in texts], dtype=np.float32)

    return Contender(build, None if contender in ALONE else vectors, lambda: sum(spent))


# -- LlamaIndex: VectorStoreIndex(nodes) ------------------------------------------------


def _llama_index_model(contender: str, target: Target, batch: int, workers: int) -> Any:
    if contender == "li-alone":
        from llama_index.core.embeddings import MockEmbedding

        return MockEmbedding(embed_dim=target.dim or 1024, embed_batch_size=batch)
    if contender == "li-openai":
        from llama_index.embeddings.openai import OpenAIEmbedding

        return OpenAIEmbedding(
            model_name=target.model,
            api_base=target.base_url,
            api_key=target.key,
            embed_batch_size=batch,
            max_retries=0,
        )
    from embedsdk.llama_index import EmbedsdkEmbedding

    return EmbedsdkEmbedding(**_ours_options(target, batch, workers))


def _llama_index(contender: str, target: Target, batch: int, workers: int) -> Contender:
    import llama_index.core.instrumentation as instrument
    from llama_index.core import VectorStoreIndex
    from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
    from llama_index.core.schema import TextNode

    model = _llama_index_model(contender, target, batch, workers)
    spans = SimpleSpanHandler()  # times get_text_embedding_batch, as LlamaIndex traces it
    root = instrument.get_dispatcher()  # type: ignore[attr-defined]

    def build(texts: list[str]) -> Any:
        nodes = [TextNode(text=t, id_=str(i)) for i, t in enumerate(texts)]
        spans.completed_spans.clear()
        root.add_span_handler(spans)
        # insert_batch_size: nodes embedded per call (LlamaIndex's default, 2,048, or all).
        size = len(nodes) if contender == "li-ours-one-batch" else 2048
        try:
            return VectorStoreIndex(nodes, embed_model=model, insert_batch_size=size)
        finally:
            root.span_handlers.remove(spans)

    def embed_seconds() -> float:
        done = spans.completed_spans
        name = ".get_text_embedding_batch"
        return float(sum(s.duration for s in done if s.id_.partition("-")[0].endswith(name)))

    def vectors(index: Any, texts: list[str]) -> Any:
        stored = index.vector_store.data.embedding_dict
        return np.array([stored[str(i)] for i in range(len(texts))], dtype=np.float32)

    return Contender(build, None if contender in ALONE else vectors, embed_seconds)


def _core(contender: str, target: Target, batch: int, workers: int) -> Contender:
    """The reference: embedsdk's own sync client, numpy out, no framework around it."""
    from embedsdk import Embedder

    options = _ours_options(target, batch, workers)
    client = Embedder(**{k: v for k, v in options.items() if k not in PER_CALL})
    spent: list[float] = []

    def build(texts: list[str]) -> Any:
        t0 = time.perf_counter()
        vectors = client.embed(texts, batch_size=batch, max_concurrent=workers)
        spent[:] = [time.perf_counter() - t0]
        return vectors

    return Contender(build, lambda vectors, texts: vectors, lambda: sum(spent), client.close)


def _contender(contender: str, target: Target, batch: int, workers: int) -> Contender:
    if contender == "core":
        return _core(contender, target, batch, workers)
    make = _langchain if contender.startswith("lc-") else _llama_index
    return make(contender, target, batch, workers)


# -- measuring --------------------------------------------------------------------------


def _timed(build: Callable[[list[str]], Any], texts: list[str]) -> tuple[Any, float, float]:
    gc.collect()  # the previous index's garbage is not this run's cost
    cpu0, t0 = time.process_time(), time.perf_counter()
    index = build(texts)
    return index, time.perf_counter() - t0, time.process_time() - cpu0


def _concurrency(contender: str, workers: int) -> int | None:
    return workers if contender in OURS else None if contender in ALONE else 1


def _measure(
    ids: list[str], texts: list[str], target: Target, sim: Any, batch: int, args: Any
) -> list[IntegrationRun]:
    contenders = {i: _contender(i, target, batch, args.concurrency) for i in ids}
    try:
        return _repeat(contenders, texts, target, sim, batch, args)
    finally:
        for contender in contenders.values():
            contender.close()


def _repeat(
    contenders: dict[str, Contender],
    texts: list[str],
    target: Target,
    sim: Any,
    batch: int,
    args: Any,
) -> list[IntegrationRun]:
    ids = list(contenders)
    runs = {
        i: IntegrationRun(i, *CONTENDERS[i][:2], _concurrency(i, args.concurrency)) for i in ids
    }
    warm = texts[: batch * args.concurrency]
    for i in ids:  # connections opened, imports done
        contenders[i].build(warm)
    want = runner.expected(texts, target) if args.verify else None
    for rep in range(args.repeat):
        order = ids[rep % len(ids) :] + ids[: rep % len(ids)]  # no one always goes first
        for i in order:
            contender, run = contenders[i], runs[i]
            sim.reset_stats()
            index, seconds, cpu = _timed(contender.build, texts)
            run.seconds.append(seconds)
            run.embed_seconds.append(contender.embed_seconds())
            run.cpu_seconds.append(cpu)
            if rep == 0:
                stats = sim.stats()
                run.requests, run.peak_in_flight = stats["requests"], stats["peak_in_flight"]
                if want is not None and contender.vectors is not None:
                    run.exact = bool(np.array_equal(contender.vectors(index, texts), want))
            del index
            runner.log(f"  {run.framework}, {run.label}: {seconds:.2f} s", args.quiet)
    return [runs[i] for i in ids]


def _summarize(runs: list[IntegrationRun], ceiling_s: float) -> None:
    for run in runs:
        run.median_s = ceiling.median(run.seconds)
        run.median_embed_s = ceiling.median(run.embed_seconds)
        run.median_cpu_s = ceiling.median(run.cpu_seconds)
        if run.id not in ALONE:
            run.efficiency = ceiling.ratio(ceiling_s, run.median_s)
            run.embed_efficiency = ceiling.ratio(ceiling_s, run.median_embed_s)
    ours = {r.framework: r for r in runs if r.id in ("lc-ours", "li-ours")}
    for run in runs:
        base = ours.get(run.framework)
        if base is not None and base.median_s > 0:
            run.x_ours = run.median_s / base.median_s


def run_integrations(args: argparse.Namespace) -> IntegrationsResult:
    """Build each framework's index with each contender, ``args.repeat`` times."""
    n = args.integration_texts
    wanted = [i for i in CONTENDERS if not (args.no_peers and i in PEERS)]
    ids = [i for i in wanted if available(i)]
    missing = [i for i in wanted if i not in ids]
    runner.log(
        f"integrations: {n:,} chunks, latency {args.latency * 1000:g} ms, "
        f"{args.concurrency} in flight, {args.repeat} repetitions"
        + (f"; not installed, left out: {', '.join(missing)}" if missing else ""),
        args.quiet,
    )
    with target_for(args, args.latency, args.dim, real=False) as (target, sim):
        batch = effective_batch(target, args.batch_size)
        try:
            runs = _measure(ids, mixed_texts(n, seed=args.seed), target, sim, batch, args)
        finally:
            close_default_clients()  # the sync adapters' client: its thread and connections
    ceiling_s = ceiling.ceiling_seconds(n, batch, args.concurrency, args.latency)
    _summarize(runs, ceiling_s)
    settings = {
        "texts": n,
        "latency_s": args.latency,
        "batch_size": batch,
        "concurrency": args.concurrency,
        "dim": args.dim,
        "repeat": args.repeat,
        "ceiling_s": ceiling_s,
        "ceiling_texts_per_s": ceiling.steady_ceiling(args.concurrency, batch, args.latency),
    }
    return IntegrationsResult(settings, runs, missing)


def format_table(result: IntegrationsResult) -> str:
    """Wall time, its ratio to ours, client CPU and efficiency against the ceiling."""
    s = result.settings
    title = (
        f"Integrations: an index of {s['texts']:,} chunks on the simulated provider, latency "
        f"{s['latency_s'] * 1000:g} ms, batch {s['batch_size']}, {s['concurrency']} in flight "
        f"for ours, median of {s['repeat']}; ceiling {s['ceiling_s']:.2f} s "
        f"({s['concurrency']} x {s['batch_size']} / {s['latency_s']:g} s = "
        f"{s['ceiling_texts_per_s']:,.0f} texts/s); build: the whole index, embedding: "
        "inside the embedding calls the framework made; eff. = ceiling / seconds; CPU of the "
        "client process only"
    )
    headers = [
        "framework / client", "in flight", "build s", "x ours", "eff.", "embedding s",
        "eff.", "CPU s", "requests", "peak in flight", "exact",
    ]  # fmt: skip
    rows = [
        [
            f"{r.framework}: {r.label}",
            "-" if r.concurrency is None else str(r.concurrency),
            f"{r.median_s:.2f}",
            report.times(r.x_ours),
            report.pct(r.efficiency),
            f"{r.median_embed_s:.2f}",
            report.pct(r.embed_efficiency),
            f"{r.median_cpu_s:.2f}",
            "-" if r.requests is None else str(r.requests),
            "-" if r.peak_in_flight is None else str(r.peak_in_flight),
            report.yes_no(r.exact),
        ]
        for r in result.runs
    ]
    notes = [f"left out (not installed): {', '.join(result.missing)}"] if result.missing else []
    return "\n".join([title, "", report.table(headers, rows), *notes])
