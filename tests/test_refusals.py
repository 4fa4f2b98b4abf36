"""One refused input costs only itself: a batch the server refuses for what one of its texts
holds is split until the refused texts stand alone; the others get their vectors.

Against the simulated provider (``refuse_inputs``: any request holding a text with a marker
is answered 400 in a provider's style) and against MockTransport handlers that count the
requests. Nothing here depends on time.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import (
    AsyncEmbedder,
    BadRequestError,
    EmbeddingResult,
    MockTransport,
    Request,
    Response,
    UnprocessableEntityError,
)
from embedsdk.testing import SimulatedProvider, expected_matrix

DIM = 8
MODEL = "BAAI/bge-m3"
BAD = "<refused>"
STYLES = ("siliconflow", "openai", "tei", "text")
REASON = "input contains content that cannot be processed"

Factory = Callable[..., SimulatedProvider]


def texts_with_bad(n: int, bad: tuple[int, ...]) -> list[str]:
    return [f"text {i} {BAD}" if i in bad else f"text {i}: the quick brown fox" for i in range(n)]


def refusing(factory: Factory, style: str = "siliconflow") -> SimulatedProvider:
    return factory(dim=DIM, refuse_inputs=(BAD,), error_style=style)


# -- the issue: 200 texts, #137 refused ----------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_errors_return_keeps_every_row_but_the_refused_one(
    simulated_provider_factory: Factory, style: str
) -> None:
    sim = refusing(simulated_provider_factory, style)
    texts = texts_with_bad(200, (137,))
    result = embedsdk.get_batch_embeddings(
        texts, batch_size=32, base_url=sim.base_url, cache=False, errors="return"
    )
    assert isinstance(result, EmbeddingResult)
    assert result.failed_indices == [137]
    assert int(result.ok.sum()) == 199
    expected = expected_matrix(texts, MODEL, DIM)
    assert np.array_equal(result.vectors[result.ok], expected[result.ok])
    (error,) = result.errors
    assert isinstance(error, BadRequestError)
    assert error.failed_indices == [137] and error.batch_indices == [137]
    assert REASON in str(error) and "input 137" in str(error)
    assert result.error_for(137) is error


def test_errors_raise_names_the_refused_input_and_the_reason(
    simulated_provider_factory: Factory,
) -> None:
    sim = refusing(simulated_provider_factory)
    texts = texts_with_bad(200, (137,))
    with pytest.raises(BadRequestError) as info:
        embedsdk.get_batch_embeddings(texts, batch_size=32, base_url=sim.base_url, cache=False)
    exc = info.value
    message = str(exc)
    assert "HTTP 400" in message and REASON in message
    assert "in the request for input 137)" in message and "128..159" not in message
    assert exc.batch_indices == [137]
    # Serial: the batch of 137 is fully settled (its other inputs embedded), the next ones
    # were not sent when it failed.
    assert exc.failed_indices == [137, *range(160, 200)]
    assert exc.partial is not None
    expected = expected_matrix(texts, MODEL, DIM)
    assert np.array_equal(exc.partial[:137], expected[:137])
    assert np.array_equal(exc.partial[138:160], expected[138:160])


def test_duplicates_of_the_refused_text_fail_with_it(simulated_provider_factory: Factory) -> None:
    sim = refusing(simulated_provider_factory)
    texts = texts_with_bad(40, (5,))
    texts[30] = texts[5]
    result = embedsdk.get_batch_embeddings(
        texts, batch_size=16, base_url=sim.base_url, cache=False, errors="return"
    )
    assert result.failed_indices == [5, 30]
    assert [e.failed_indices for e in result.errors] == [[5, 30]]


# -- what it costs -------------------------------------------------------------------------


class Counting:
    """A MockTransport handler: ``refuse(texts)`` gives an error Response or ``None`` (the
    vectors). Counts the requests and the inputs of each."""

    def __init__(self, refuse: Callable[[list[str]], Response | None]) -> None:
        self.refuse = refuse
        self.sizes: list[int] = []

    def __call__(self, request: Request) -> Response:
        texts = request.json()["input"]
        self.sizes.append(len(texts))
        refused = self.refuse(texts)
        if refused is not None:
            return refused
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        return Response(200, {}, json.dumps({"data": data}).encode())


def siliconflow_400(message: str = REASON) -> Response:
    return Response(400, {}, json.dumps({"code": 20015, "message": message, "data": None}).encode())


def when_any(marker: str, answer: Response) -> Callable[[list[str]], Response | None]:
    return lambda texts: answer if any(marker in t for t in texts) else None


def embed(handler: Counting, texts: list[str], max_retries: int = 6, **call: Any) -> Any:
    async def main() -> Any:
        async with AsyncEmbedder(
            base_url="http://127.0.0.1:9/v1",
            transport=MockTransport(handler),
            cache=False,
            provider="siliconflow",  # batches of up to 64
            max_retries=max_retries,
        ) as emb:
            return await emb.embed(texts, **call), emb.stats

    return asyncio.run(main())


@pytest.mark.parametrize("bad", [0, 17, 63])
def test_one_refused_input_costs_two_requests_per_halving(bad: int) -> None:
    server = Counting(when_any(BAD, siliconflow_400()))
    result, stats = embed(server, texts_with_bad(64, (bad,)), batch_size=64, errors="return")
    assert result.failed_indices == [bad]
    assert len(server.sizes) == 1 + 2 * int(math.log2(64))  # the batch, then 2 per halving
    assert stats.refused == 1 and stats.splits == 6


def test_several_refused_inputs_cost_at_most_2_log2_batch_each() -> None:
    bad = (3, 40, 41, 60)
    server = Counting(when_any(BAD, siliconflow_400()))
    result, _ = embed(server, texts_with_bad(64, bad), batch_size=64, errors="return")
    assert result.failed_indices == list(bad)
    assert len(result.errors) == 4
    assert len(server.sizes) - 1 <= 2 * math.log2(64) * len(bad)


def test_two_refused_inputs_in_different_halves_are_both_found() -> None:
    server = Counting(when_any(BAD, siliconflow_400()))
    result, _ = embed(server, texts_with_bad(32, (4, 20)), batch_size=32, errors="return")
    assert result.failed_indices == [4, 20]
    assert int(result.ok.sum()) == 30


def test_a_batch_refused_whatever_it_holds_is_not_split_to_the_end() -> None:
    server = Counting(
        lambda texts: siliconflow_400("The parameter is invalid. Please check again.")
    )
    texts = texts_with_bad(192, ())
    result, _ = embed(server, texts, batch_size=64, max_concurrent=1, errors="return")
    assert result.failed_indices == list(range(192))
    # The first batch: itself, its halves, its quarters. The next ones (refused the same
    # way, and no input ever found to be the cause): one request each.
    assert server.sizes == [64, 32, 32, 16, 16, 16, 16, 64, 64]
    first = result.errors[0]
    assert first.failed_indices == list(range(64))
    assert "in the request for inputs 0..63" in str(first)
    assert "not one of its inputs, is the likely cause" in str(first)
    assert "an earlier batch of this call" in str(result.errors[1])


def test_a_whole_refusal_raises_the_first_error() -> None:
    server = Counting(
        lambda texts: siliconflow_400("The parameter is invalid. Please check again.")
    )
    with pytest.raises(BadRequestError) as info:
        embed(server, texts_with_bad(64, ()), batch_size=64)
    assert info.value.batch_indices == list(range(64))
    assert "The parameter is invalid" in str(info.value)
    assert len(server.sizes) == 7


def test_a_refusal_about_the_request_is_not_split() -> None:
    answer = siliconflow_400("dimensions is not supported for this model")
    server = Counting(lambda texts: answer)
    with pytest.raises(BadRequestError, match=r"in the request for inputs 0\.\.31"):
        embed(server, texts_with_bad(32, ()), batch_size=32)
    assert server.sizes == [32]


def test_a_422_naming_the_input_field_is_split() -> None:
    detail = {"detail": [{"loc": ["body", "input", 0], "msg": "String too short"}]}
    answer = Response(422, {}, json.dumps(detail).encode())
    server = Counting(when_any(BAD, answer))
    result, _ = embed(server, texts_with_bad(16, (9,)), batch_size=16, errors="return")
    assert result.failed_indices == [9]
    assert isinstance(result.errors[0], UnprocessableEntityError)


def test_the_halves_go_through_the_paced_path_with_its_retries() -> None:
    """A half refused by a rate limit is retried after the controller's pause, as any
    request: the halves are sent by the same sender, not around it."""
    refused = siliconflow_400()
    limited = Response(429, {}, b'{"message": "Request was rejected due to rate limiting."}')
    seen: list[int] = []

    def answer(texts: list[str]) -> Response | None:
        seen.append(len(texts))
        if len(seen) == 2:  # the first half
            return limited
        return refused if any(BAD in t for t in texts) else None

    server = Counting(answer)
    result, stats = embed(server, texts_with_bad(8, (6,)), batch_size=8, errors="return")
    assert result.failed_indices == [6]
    assert stats.rate_limited == 1 and stats.retries == 1
    assert server.sizes[:3] == [8, 4, 4]  # the batch, the first half refused by 429, again


def test_errors_raise_names_every_refused_input_of_the_batch() -> None:
    server = Counting(when_any(BAD, siliconflow_400()))
    with pytest.raises(BadRequestError) as info:
        embed(server, texts_with_bad(32, (4, 20)), batch_size=32)
    message = str(info.value)
    assert "in the request for input 4)" in message
    assert "it also refuses input 20 alone" in message
    assert info.value.failed_indices == [4, 20]


# -- embed_stream --------------------------------------------------------------------------


def test_a_stream_with_errors_return_gives_results_and_goes_on(
    simulated_provider_factory: Factory,
) -> None:
    sim = refusing(simulated_provider_factory)
    texts = texts_with_bad(300, (137, 250))
    with embedsdk.Embedder(base_url=sim.base_url, cache=False, batch_size=32) as emb:
        blocks = list(emb.embed_stream(iter(texts), window=100, errors="return"))
    assert [start for start, _ in blocks] == [0, 100, 200]
    assert all(isinstance(block, EmbeddingResult) for _, block in blocks)
    assert [block.start for _, block in blocks] == [0, 100, 200]
    assert [block.failed_indices for _, block in blocks] == [[], [137], [250]]
    (error,) = blocks[1][1].errors
    assert error.failed_indices == [137] and "input 137)" in str(error)
    assert blocks[1][1].error_for(137) is error
    vectors = np.vstack([block.vectors for _, block in blocks])
    ok = np.concatenate([block.ok for _, block in blocks])
    assert np.flatnonzero(~ok).tolist() == [137, 250]
    expected = expected_matrix(texts, MODEL, DIM)
    assert np.array_equal(vectors[ok], expected[ok]) and np.isnan(vectors[~ok]).all()


def test_a_stream_with_errors_raise_names_the_refused_input(
    simulated_provider_factory: Factory,
) -> None:
    sim = refusing(simulated_provider_factory)
    texts = texts_with_bad(300, (137,))
    seen = []
    with (
        embedsdk.Embedder(base_url=sim.base_url, cache=False, batch_size=32) as emb,
        pytest.raises(BadRequestError) as info,
    ):
        for start, block in emb.embed_stream(iter(texts), window=100):
            seen.append(start)
            assert isinstance(block, np.ndarray)
    assert seen == [0]
    assert "in the request for input 137)" in str(info.value)
    assert info.value.batch_indices == [137]


def test_a_stream_does_not_lend_a_row_the_previous_window_failed() -> None:
    """Window 1 borrows the texts it shares with window 0 while window 0 is still fetching
    them; a text window 0 then fails (refused) is not lent as a vector: window 1 asks for it
    itself and fails it under its own position."""
    texts = [*texts_with_bad(50, (5,)), f"text 5 {BAD}", "text 1: the quick brown fox"]
    texts += [f"text {i}: the quick brown fox" for i in range(100, 148)]
    gates: list[asyncio.Event] = []  # made on the loop (Python 3.9 binds it at creation)
    server = Counting(when_any(BAD, siliconflow_400()))

    async def handle(request: Request) -> Response:
        inputs = request.json()["input"]
        if any(t.startswith("text 1") and len(t.split()[1]) == 4 for t in inputs):
            gates[0].set()  # window 1 is fetching its own texts: it planned while 0 was busy
        else:
            await asyncio.wait_for(gates[0].wait(), 10)  # never hang the suite
        return server(request)

    async def main() -> list[tuple[int, Any]]:
        gates.append(asyncio.Event())
        async with AsyncEmbedder(
            base_url="http://127.0.0.1:9/v1", transport=MockTransport(handle), cache=False
        ) as emb:
            stream = emb.embed_stream(
                texts, window=50, batch_size=10, max_concurrent=8, errors="return"
            )
            return [block async for block in stream]

    blocks = asyncio.run(main())
    assert [block.failed_indices for _, block in blocks] == [[5], [50]]
    second = blocks[1][1]
    assert second.ok[1]  # "text 1", borrowed from window 0, arrived there
    assert np.isnan(second.vectors[0]).all()
    assert "input 50)" in str(second.errors[0])


def test_another_failure_while_splitting_names_the_part_it_came_from() -> None:
    overloaded = Response(503, {}, b'{"code": 50505, "message": "Model service overloaded."}')

    def answer(texts: list[str]) -> Response | None:
        if len(texts) == 16:
            return siliconflow_400()  # the batch: refused
        return overloaded if texts[0].startswith("text 8:") else None  # its second half: 503

    server = Counting(answer)
    with pytest.raises(embedsdk.InternalServerError) as info:
        embed(server, texts_with_bad(16, ()), batch_size=16, max_retries=0)
    assert "in the request for inputs 8..15" in str(info.value)
    assert info.value.batch_indices == list(range(8, 16))
    assert info.value.failed_indices == list(range(8, 16))  # its first half was embedded


@pytest.mark.parametrize("failure", ["503", "no answer"])
def test_a_part_that_fails_after_its_retries_says_so_and_names_itself(failure: str) -> None:
    """A part of a refused batch sent again that fails for good after its retries says how
    many attempts it made, and names the part (not the whole batch), like any request."""
    overloaded = Response(503, {}, b'{"code": 50505, "message": "Model service overloaded."}')

    def answer(texts: list[str]) -> Response | None:
        if len(texts) == 16:
            return siliconflow_400()  # the batch: refused
        if not texts[0].startswith("text 8:"):
            return None
        if failure == "503":
            return overloaded
        raise embedsdk.APIConnectionError("server disconnected", reason="disconnected")

    with pytest.raises(embedsdk.APIError) as info:
        embed(Counting(answer), texts_with_bad(16, ()), batch_size=16, max_retries=2)
    assert "(in the request for inputs 8..15); gave up after 3 attempts" in str(info.value)
    assert info.value.batch_indices == list(range(8, 16))
    assert info.value.failed_indices == list(range(8, 16))
