"""Values that used to become something else silently: empty options, ``timeout=None``,
unordered ``texts``, the width of an empty answer; and the bar that suits notebooks."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Iterable, Iterator
from typing import Any, Callable

import aiohttp
import numpy as np
import pytest
import tqdm.auto

import embedsdk
from embedsdk import AsyncEmbedder, ConfigurationError, Embedder, MockTransport, Request, Response
from embedsdk.client import DEFAULT_MODEL, resolve_options
from embedsdk.testing import SimulatedProvider

LOCAL = "http://127.0.0.1:9/v1"  # MockTransport answers: nothing is sent there
DIM = 3


class Server:
    """Answers ``DIM``-wide vectors (``dimensions`` when asked) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        payload = request.json()
        width = payload.get("dimensions", DIM)
        data = [
            {"index": i, "embedding": [float(len(t))] + [1.0] * (width - 1)}
            for i, t in enumerate(payload["input"])
        ]
        return Response(200, {}, json.dumps({"data": data}).encode())


# -- empty options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("model", ""), ("model", "  "), ("base_url", ""), ("cache", ""), ("cache", "  ")],
)
@pytest.mark.parametrize("entry", ["AsyncEmbedder", "Embedder", "function"])
def test_an_empty_option_is_refused_at_once(entry: str, name: str, value: str) -> None:
    server = Server()
    options: dict[str, Any] = {"base_url": LOCAL, name: value}
    with pytest.raises(ConfigurationError, match=name):
        if entry == "AsyncEmbedder":
            AsyncEmbedder(transport=MockTransport(server), **options)
        elif entry == "Embedder":
            Embedder(transport=MockTransport(server), **options).close()
        else:
            embedsdk.get_batch_embeddings(["a"], **options)
    assert server.requests == []


def test_blank_environment_defaults_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSDK_MODEL", "  ")
    monkeypatch.setenv("EMBEDSDK_BASE_URL", "")
    o = resolve_options(api_key="k")
    assert (o.model, o.provider) == (DEFAULT_MODEL, "siliconflow")


def test_model_loses_the_blanks_around_it() -> None:
    assert resolve_options(base_url=LOCAL, model=" BAAI/bge-m3\n").model == "BAAI/bge-m3"


# -- timeout=None -----------------------------------------------------------------------------


def test_timeout_none_is_kept_and_sent_as_no_limit() -> None:
    assert resolve_options(base_url=LOCAL, timeout=None).timeout is None
    assert resolve_options(base_url=LOCAL).timeout == 60.0
    server = Server()

    async def go() -> None:
        async with AsyncEmbedder(
            base_url=LOCAL, transport=MockTransport(server), cache=False, timeout=None
        ) as emb:
            await emb.embed(["a"])

    asyncio.run(go())
    assert [r.timeout for r in server.requests] == [None]


def test_timeout_infinity_means_no_limit() -> None:
    # --timeout inf is how the command line says "no limit"; aiohttp would overflow on it.
    assert resolve_options(base_url=LOCAL, timeout=float("inf")).timeout is None
    with pytest.raises(embedsdk.ConfigurationError, match="timeout"):
        resolve_options(base_url=LOCAL, timeout=float("-inf"))
    with pytest.raises(embedsdk.ConfigurationError, match="timeout"):
        resolve_options(base_url=LOCAL, timeout=float("nan"))


@pytest.mark.parametrize(("timeout", "total"), [(None, None), (2.5, 2.5), (float("inf"), None)])
def test_aiohttp_gets_no_time_limit_for_timeout_none(
    monkeypatch: pytest.MonkeyPatch, timeout: float | None, total: float | None
) -> None:
    seen: list[aiohttp.ClientTimeout] = []
    post = aiohttp.ClientSession.post

    def spy(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["timeout"])
        return post(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "post", spy)
    with SimulatedProvider(dim=DIM) as sim:
        vectors = embedsdk.get_batch_embeddings(
            ["a"], base_url=sim.base_url, cache=False, timeout=timeout
        )
    assert vectors.shape == (1, DIM)
    # Not the session's default either (5 minutes in all, 30 s to connect).
    assert [(t.total, t.connect, t.sock_connect, t.sock_read) for t in seen] == [
        (total, None, None, None)
    ]


# -- unordered texts --------------------------------------------------------------------------

UNORDERED: list[Callable[[], Any]] = [
    lambda: {"b", "a"},
    lambda: frozenset({"b", "a"}),
    lambda: {"b": 1, "a": 2},
    lambda: collections.Counter(["b", "a"]),
    lambda: {"b": 1}.items(),
]


def _entry_points(server: Server) -> dict[str, Callable[[Any], Any]]:
    sync = Embedder(base_url=LOCAL, transport=MockTransport(server), cache=False)

    async def async_embed(texts: Any) -> Any:
        emb = AsyncEmbedder(base_url=LOCAL, transport=MockTransport(server), cache=False)
        return await emb.embed(texts)

    async def async_stream(texts: Any) -> Any:
        emb = AsyncEmbedder(base_url=LOCAL, transport=MockTransport(server), cache=False)
        return [block async for block in emb.embed_stream(texts)]

    async def embed_async(texts: Any) -> Any:
        return await sync.embed_async(texts)

    return {
        "AsyncEmbedder.embed": lambda t: asyncio.run(async_embed(t)),
        "AsyncEmbedder.embed_stream": lambda t: asyncio.run(async_stream(t)),
        "Embedder.embed": sync.embed,
        "Embedder.embed_async": lambda t: asyncio.run(embed_async(t)),
        "Embedder.embed_threaded": lambda t: sync.embed_threaded(t, max_workers=2),
        "Embedder.embed_stream": lambda t: list(sync.embed_stream(t)),
        "get_batch_embeddings": lambda t: embedsdk.get_batch_embeddings(t, base_url=LOCAL),
        "get_batch_embeddings_concurrent": lambda t: embedsdk.get_batch_embeddings_concurrent(
            t, base_url=LOCAL
        ),
        "get_batch_embeddings_async": lambda t: asyncio.run(
            embedsdk.get_batch_embeddings_async(t, base_url=LOCAL)
        ),
    }


ENTRY_NAMES = list(_entry_points(Server()))


@pytest.mark.parametrize("make", UNORDERED, ids=lambda f: type(f()).__name__)
@pytest.mark.parametrize("entry", ENTRY_NAMES)
def test_unordered_texts_are_a_type_error(entry: str, make: Callable[[], Any]) -> None:
    server = Server()
    call = _entry_points(server)[entry]
    with pytest.raises(TypeError, match="ordered") as info:
        call(make())
    assert type(make()).__name__ in str(info.value)
    assert server.requests == []


class DataFrame:
    """What of a pandas (or polars) DataFrame matters here: ``columns`` and ``shape``, and
    iterating it gives its column names."""

    def __init__(self, columns: dict[str, list[str]]) -> None:
        self._columns = columns
        self.columns = list(columns)
        self.shape = (len(next(iter(columns.values()))), len(columns))

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, name: str) -> list[str]:
        return self._columns[name]


def _data_frames() -> list[Any]:
    frames: list[Any] = [DataFrame({"text": ["b", "a"]})]
    try:
        import pandas as pd
    except ImportError:  # the stand-in alone
        return frames
    return [*frames, pd.DataFrame({"text": ["b", "a"]})]


@pytest.mark.parametrize("frame", _data_frames(), ids=lambda f: type(f).__module__)
@pytest.mark.parametrize("entry", ENTRY_NAMES)
def test_a_data_frame_is_refused_with_its_column_to_pass(entry: str, frame: Any) -> None:
    server = Server()
    call = _entry_points(server)[entry]
    with pytest.raises(TypeError, match="DataFrame") as info:
        call(frame)
    assert "column names" in str(info.value) and "df['text']" in str(info.value)
    assert server.requests == []


def test_a_data_frame_column_is_taken_in_its_order() -> None:
    frames = _data_frames()
    server = Server()
    with Embedder(base_url=LOCAL, transport=MockTransport(server), cache=False) as emb:
        for frame in frames:
            vectors = emb.embed(frame["text"])
            assert vectors.shape[0] == 2
    assert [r.json()["input"] for r in server.requests] == [["b", "a"]] * len(frames)


@pytest.mark.parametrize(
    "texts",
    [
        {"b": 1, "a": 2}.keys(),
        {1: "b", 2: "a"}.values(),
        ("b", "a"),
        (t for t in ["b", "a"]),
        np.array(["b", "a"]),
    ],
    ids=["dict_keys", "dict_values", "tuple", "generator", "ndarray"],
)
def test_ordered_containers_are_taken_in_their_order(texts: Iterable[str]) -> None:
    server = Server()
    with Embedder(base_url=LOCAL, transport=MockTransport(server), cache=False) as emb:
        vectors = emb.embed(texts)  # type: ignore[arg-type]
    assert vectors[:, 0].tolist() == [1.0, 1.0]
    assert server.requests[0].json()["input"] == ["b", "a"]


# -- the width of an empty answer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "width"),
    [
        ({}, 1024),  # BAAI/bge-m3
        ({"dimensions": 512}, 512),
        ({"model": "Qwen/Qwen3-Embedding-8B"}, 4096),
        ({"model": "Qwen/Qwen3-Embedding-8B", "dimensions": 256}, 256),
        ({"model": "my-own-model", "dimensions": 64}, 64),
        ({"model": "my-own-model"}, 0),  # unknown: nothing to go by
    ],
)
def test_empty_input_has_the_known_width_everywhere(options: dict[str, Any], width: int) -> None:
    server = Server()
    base = {"base_url": LOCAL, "provider": "generic", "cache": False, **options}
    with Embedder(transport=MockTransport(server), **base) as emb:
        shapes = [emb.embed([]).shape, emb.embed_threaded([], max_workers=2).shape]
        shapes.append(emb.embed([], errors="return").vectors.shape)
        emb.embed(["a"])  # vectors arrive (DIM wide without dimensions): no change
        shapes.append(emb.embed([]).shape)
    for function in (embedsdk.get_batch_embeddings, embedsdk.get_batch_embeddings_concurrent):
        shapes.append(function([], **base).shape)
    shapes.append(asyncio.run(embedsdk.get_batch_embeddings_async([], **base)).shape)
    assert shapes == [(0, width)] * len(shapes)
    assert len(server.requests) == 1


# -- progress ---------------------------------------------------------------------------------


def test_progress_bar_is_tqdm_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    # tqdm.auto draws a widget in Jupyter and the text bar elsewhere.
    bars: list[object] = []
    init = tqdm.auto.tqdm.__init__

    def noting(bar: Any, *args: Any, **kwargs: Any) -> None:
        bars.append(bar)
        init(bar, *args, **kwargs)

    monkeypatch.setattr(tqdm.auto.tqdm, "__init__", noting)
    with Embedder(base_url=LOCAL, transport=MockTransport(Server()), cache=False) as emb:
        emb.embed(["a", "b"], progress=True)
    assert bars and all(type(bar) is tqdm.auto.tqdm for bar in bars)
