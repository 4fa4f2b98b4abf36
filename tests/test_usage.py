"""Usage and events (issue 24): what each call used (``EmbeddingResult.usage``,
``embedsdk.track_usage``), the event hooks (``event_hooks=``, global hooks), the caller's
context carried to the sync clients' loop thread, and what the progress bar says held a run
back.

Counts are checked against what the server counted: the simulated provider over HTTP, or a
mock transport where an answer must lack ``usage`` or a request must fail once.

Private access: the bar's counters (``Progress``) are checked on made-up counters, where a
real run could not be steered to each case; one test submits a call to a sync client's loop
thread itself (``_portal``, ``_core``) to cancel it as Ctrl-C does; one makes the cache's
lookup fail (``_core.runner._cache``), as a broken disk would.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import (
    AsyncEmbedder,
    ConfigurationError,
    Embedder,
    Event,
    MockTransport,
    Price,
    Request,
    Response,
    Stats,
    track_usage,
)
from embedsdk.client import EVENTS, add_global_hooks, held_back_by
from embedsdk.client._progress import Progress
from embedsdk.testing import SimulatedProvider, count_tokens

DIM = 8


def texts_for(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} {i}: 今天天气很好 the weather is nice" for i in range(n)]


def on(sim: SimulatedProvider, **more: Any) -> dict[str, Any]:
    return {"base_url": sim.base_url, "dimensions": DIM, "cache": False, **more}


class Answers:
    """A mock server: vectors for every input; ``usage`` unless told not to (or with
    ``prompt_tokens`` set to ``counted``, as some gateways send it); ``fail`` answers 500 to
    that many requests first."""

    def __init__(self, usage: bool = True, fail: int = 0, counted: Any = None) -> None:
        self.usage, self.fail, self.requests, self.counted = usage, fail, 0, counted

    def __call__(self, request: Request) -> Response:
        self.requests += 1
        if self.fail:
            self.fail -= 1
            return Response(500, {}, b'{"code": 50000, "message": "boom", "data": null}')
        inputs = request.json()["input"]
        body: dict[str, Any] = {
            "data": [{"index": i, "embedding": [float(i)] * DIM} for i in range(len(inputs))]
        }
        if self.usage:
            tokens = 3 * len(inputs) if self.counted is None else self.counted
            body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return Response(200, {}, json.dumps(body).encode())


def mock(answers: Answers, **more: Any) -> dict[str, Any]:
    more.setdefault("max_retries", 2)
    return {"base_url": "http://127.0.0.1:9/v1", "transport": MockTransport(answers),
            "cache": False, **more}  # fmt: skip


# -- a call's usage ----------------------------------------------------------------------------


def test_a_calls_usage_is_what_the_server_counted(simulated_provider: SimulatedProvider) -> None:
    texts = texts_for(90) + texts_for(10)  # 10 repeats, sent once
    with Embedder(**on(simulated_provider, batch_size=25)) as emb:
        result = emb.embed(texts, errors="return")
        served = simulated_provider.stats()
        usage = result.usage
        assert (usage.requests, usage.inputs_sent) == (served["requests"], 90) == (4, 90)
        assert usage.tokens == served["tokens"] > 0 and usage.tokens_estimated == 0
        assert usage.bytes_sent > 90 * 10 and usage.bytes_received > 90 * DIM
        assert usage.busy_seconds > 0 and usage.retries == usage.rate_limited == 0
        second = emb.embed(texts[:30], errors="return").usage
        assert second.requests == 2 and emb.stats.requests == 6  # the client's total goes on
        assert emb.stats.tokens == usage.tokens + second.tokens


@pytest.mark.parametrize(
    "answers",
    [Answers(usage=False), Answers(counted=0), Answers(counted=True), Answers(counted="12")],
    ids=["no usage", "zero", "a bool", "a string"],
)
def test_tokens_the_server_does_not_report_are_estimated_and_marked(answers: Answers) -> None:
    with Embedder(**mock(answers, batch_size=4)) as emb:
        usage = emb.embed(texts_for(8), errors="return").usage
    assert usage.requests == 2 and usage.tokens == usage.tokens_estimated > 0
    assert usage.tokens == sum(embedsdk.estimate_tokens(t) for t in texts_for(8))


def test_retries_and_their_waits_are_counted() -> None:
    answers = Answers(fail=2)
    with Embedder(**mock(answers, batch_size=8)) as emb:
        usage = emb.embed(texts_for(8), errors="return").usage
    assert (
        (usage.requests, usage.retries, usage.inputs_sent) == (3, 2, 8) == (answers.requests, 2, 8)
    )
    assert usage.waited_seconds > 0  # the backoff before each retry


def test_cache_hits_and_the_money_they_saved(
    simulated_provider: SimulatedProvider, tmp_path: Any
) -> None:
    options = on(simulated_provider, cache=str(tmp_path), price="0.5 CNY", batch_size=10)
    texts = texts_for(20)
    with Embedder(**options) as emb:
        cold = emb.embed(texts, errors="return").usage
        warm = emb.embed(texts, errors="return").usage
    assert (cold.cache_misses, warm.cache_hits, warm.requests) == (20, 20, 0)
    assert cold.price == Price(0.5, "CNY") and cold.cost == pytest.approx(cold.tokens / 1e6 * 0.5)
    assert warm.cost == 0 and warm.saved == 0  # nothing sent: no average to price the hits at
    both = Stats()
    both.add(cold)
    both.add(warm)
    assert both.saved == pytest.approx(cold.cost)  # 20 hits at the cold run's tokens per text


def test_adding_usage_of_two_prices_drops_the_price() -> None:
    usd, cny = Stats(tokens=10, price=Price(1.0)), Stats(tokens=10, price=Price(1.0, "CNY"))
    total = Stats()
    total.add(usd)
    assert (total.price, total.tokens) == (Price(1.0), 10)
    total.add(cny)
    assert (total.price, total.cost, total.tokens) == (None, None, 20)
    assert (Stats(tokens=30, requests=3) - Stats(tokens=10, requests=1)).tokens == 20


# -- track_usage ---------------------------------------------------------------------------------


def test_track_usage_counts_every_way_of_calling(simulated_provider: SimulatedProvider) -> None:
    texts = texts_for(40)
    with track_usage() as usage:
        embedsdk.get_batch_embeddings(texts, batch_size=10, **on(simulated_provider))
        embedsdk.get_batch_embeddings_concurrent(
            texts, max_workers=4, batch_size=10, **on(simulated_provider)
        )
        with Embedder(**on(simulated_provider, batch_size=10)) as emb:
            emb.embed(texts)
            for _ in emb.embed_stream(iter(texts), window=20):
                pass

        async def in_a_loop() -> None:
            await embedsdk.get_batch_embeddings_async(
                texts, batch_size=10, **on(simulated_provider)
            )
            async with AsyncEmbedder(**on(simulated_provider, batch_size=10)) as emb:
                async for _ in emb.embed_stream(iter(texts), window=20):
                    pass

        asyncio.run(in_a_loop())
    served = simulated_provider.stats()
    assert usage.requests == served["requests"] == 6 * 4
    assert usage.inputs_sent == 6 * 40 and usage.tokens == served["tokens"]


def test_track_usage_blocks_nest_and_see_only_their_own_calls(
    simulated_provider: SimulatedProvider,
) -> None:
    with Embedder(**on(simulated_provider, batch_size=10)) as emb:
        outside = threading.Event()

        def elsewhere() -> None:  # another thread, outside the blocks
            emb.embed(texts_for(30, "x"))
            outside.set()

        with track_usage() as outer:
            emb.embed(texts_for(10))
            with track_usage() as inner:
                emb.embed(texts_for(20, "y"))
            thread = threading.Thread(target=elsewhere)
            thread.start()
            thread.join()
        assert outside.is_set()
        assert (outer.requests, inner.requests, emb.stats.requests) == (3, 2, 6)


# -- event hooks ---------------------------------------------------------------------------------


def test_hooks_see_a_calls_events_in_order(simulated_provider: SimulatedProvider) -> None:
    seen: list[Event] = []
    hooks = {kind: seen.append for kind in EVENTS}
    with Embedder(
        **on(simulated_provider, batch_size=10, max_concurrent=1, event_hooks=hooks)
    ) as emb:
        emb.embed(texts_for(30))
    kinds = [e.kind for e in seen]
    assert kinds == ["call"] + ["request", "response"] * 3 + ["call_end"]
    call = seen[0].call
    assert all(e.call is call for e in seen) and call.inputs == 30
    requests = [e for e in seen if e.kind == "request"]
    responses = [e for e in seen if e.kind == "response"]
    assert [e.inputs for e in requests] == [10, 10, 10] and all(e.attempt == 1 for e in requests)
    assert all(e.status == 200 and e.seconds is not None and e.bytes > 0 for e in responses)
    assert sum(e.tokens or 0 for e in responses) == simulated_provider.stats()["tokens"]
    end = seen[-1]
    assert end.error is None and end.tokens == call.usage.tokens and end.seconds is not None


def test_a_retry_is_an_event_with_its_error_and_wait() -> None:
    seen: list[Event] = []
    answers = Answers(fail=1)
    hooks = {"request": seen.append, "response": seen.append, "retry": seen.append}
    with Embedder(**mock(answers, batch_size=8, event_hooks=hooks)) as emb:
        emb.embed(texts_for(8))
    assert [(e.kind, e.attempt) for e in seen] == [
        ("request", 1), ("response", 1), ("retry", 1), ("request", 2), ("response", 2)
    ]  # fmt: skip
    retry = seen[2]
    assert retry.reason == "InternalServerError" and retry.seconds is not None
    assert seen[1].status == 500 and seen[4].status == 200


def test_call_end_carries_the_error_that_ended_the_call() -> None:
    seen: list[Event] = []
    with (
        Embedder(
            **mock(Answers(fail=10), max_retries=1, event_hooks={"call_end": seen.append})
        ) as emb,
        pytest.raises(embedsdk.InternalServerError),
    ):
        emb.embed(texts_for(3))
    (end,) = seen
    assert isinstance(end.error, embedsdk.InternalServerError) and end.call.usage.requests == 2


def test_events_carry_no_text_and_no_key(simulated_provider: SimulatedProvider) -> None:
    seen: list[Event] = []
    key = "sk-secret-never-shown-0123456789"
    options = on(simulated_provider, api_key=key, event_hooks={k: seen.append for k in EVENTS})
    with Embedder(**options) as emb:
        emb.embed(["a text nobody should see in an event"])
    shown = " ".join(repr(e) + repr(vars(e.call)) for e in seen)
    assert seen and key not in shown and "nobody should see" not in shown


def test_a_failing_hook_is_logged_once_and_the_call_goes_on(
    simulated_provider: SimulatedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("hook bug")

    with caplog.at_level(logging.ERROR, logger="embedsdk"):
        vecs = embedsdk.get_batch_embeddings(
            texts_for(20), batch_size=5, **on(simulated_provider, event_hooks={"request": broken})
        )
    assert vecs.shape == (20, DIM) and not np.isnan(vecs).any()
    assert [r.getMessage().count("hook bug") for r in caplog.records] == [0]  # one record
    assert "failed on a 'request' event (said once)" in caplog.records[0].getMessage()


async def _async_hook(event: Event) -> None:  # hooks run on the loop: nothing would await it
    raise AssertionError("never called")


@pytest.mark.parametrize(
    ("hooks", "message"),
    [({"sent": print}, "unknown event 'sent'"), ({"request": [1]}, "not callable"),
     ([print], "must be a dict"), ({"call": [_async_hook]}, "coroutine function")],
)  # fmt: skip
def test_bad_hooks_are_a_configuration_error(hooks: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Embedder(base_url="http://127.0.0.1:9/v1", event_hooks=hooks)


def test_global_hooks_reach_every_client_until_removed(
    simulated_provider: SimulatedProvider,
) -> None:
    seen: list[str] = []
    remove = add_global_hooks({"call": [lambda e: seen.append(e.call.model)]})
    try:
        embedsdk.get_batch_embeddings(texts_for(3), **on(simulated_provider, model="m1"))
        embedsdk.get_batch_embeddings(texts_for(3), **on(simulated_provider, model="m2"))
    finally:
        remove()
    embedsdk.get_batch_embeddings(texts_for(3), **on(simulated_provider, model="m3"))
    assert seen == ["m1", "m2"]


def test_shared_clients_with_other_hooks_are_other_clients(
    simulated_provider: SimulatedProvider,
) -> None:
    first: list[Event] = []
    second: list[Event] = []
    for seen in (first, second):
        embedsdk.get_batch_embeddings(
            texts_for(2), **on(simulated_provider, event_hooks={"call": seen.append})
        )
    assert len(first) == len(second) == 1


# -- the caller's context ------------------------------------------------------------------------

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def test_sync_calls_run_in_the_callers_context(simulated_provider: SimulatedProvider) -> None:
    """A hook runs on the client's loop thread, yet sees the calling thread's context
    variables (an OpenTelemetry span, a request id for logs)."""
    seen: list[str] = []

    def hook(event: Event) -> None:
        seen.append(REQUEST_ID.get())

    with Embedder(**on(simulated_provider, event_hooks={"call": hook, "request": hook})) as emb:
        for request_id in ("req-1", "req-2"):
            token = REQUEST_ID.set(request_id)
            try:
                emb.embed(texts_for(2, request_id))
            finally:
                REQUEST_ID.reset(token)
    assert seen == ["req-1", "req-1", "req-2", "req-2"]


def test_cancelling_a_sync_call_still_ends_it(simulated_provider: SimulatedProvider) -> None:
    """The context wrapper passes cancellation through: a call cancelled from its thread
    (as Ctrl-C does) ends with call_end, and the client stays usable."""
    ended: list[Event] = []
    gate, over = threading.Event(), threading.Event()

    async def slow(request: Request) -> Response:
        gate.set()
        await asyncio.sleep(3600)
        raise AssertionError("not cancelled")

    def end(event: Event) -> None:
        ended.append(event)
        over.set()

    emb = Embedder(base_url="http://127.0.0.1:9/v1", transport=MockTransport(slow), cache=False,
                   event_hooks={"call_end": [end]})  # fmt: skip
    future = emb._portal.submit(emb._core.embed(texts_for(2)))
    assert gate.wait(timeout=60)
    future.cancel()
    assert over.wait(timeout=60)
    assert isinstance(ended[0].error, asyncio.CancelledError)
    emb.close()


# -- what held a run back ------------------------------------------------------------------------


WAITED: dict[str, Any] = {"requests": 9, "waited_seconds": 30, "busy_seconds": 40}


@pytest.mark.parametrize(
    ("usage", "verdict"),
    [(Stats(**WAITED, rate_limited=2), "the rate limit: requests waited to go 30%"),
     (Stats(**WAITED, retries=3), "retries: requests waited to go 30%"),
     (Stats(requests=9, waited_seconds=5, busy_seconds=90), "latency: all 4 slots in flight 90%"),
     (Stats(requests=9, waited_seconds=5, busy_seconds=20), "the client: the slots sat idle 75%"),
     (Stats(), "")],
)  # fmt: skip
def test_what_held_a_run_back(usage: Stats, verdict: str) -> None:
    said = held_back_by(usage, seconds=25.0, slots=4)  # 100 slot-seconds
    assert said.startswith(verdict) if verdict else said == ""


@pytest.mark.parametrize(
    "server",
    [{"base64": "refuse"},  # the first answer refuses base64: sent again as floats
     {"max_batch": 8},  # 413: the batches are split
     {"refuse_inputs": ("poison",)}],  # one refused text: its batch is bisected
)  # fmt: skip
def test_usage_matches_the_server_when_requests_go_again(
    server: dict[str, Any], simulated_provider_factory: Any
) -> None:
    sim = simulated_provider_factory(**server)
    texts = texts_for(40)
    texts[17] = "this one is poison"
    with track_usage() as tracked, Embedder(**on(sim, batch_size=20, max_concurrent=1)) as emb:
        result = emb.embed(texts, errors="return")
    served = sim.stats()
    assert result.usage.requests == tracked.requests == emb.stats.requests == served["requests"]
    # the tokens of the answers that carried vectors (the server counts those it refused too)
    embedded = [t for t, ok in zip(texts, result.ok) if ok]
    assert result.usage.tokens == sum(map(count_tokens, embedded)) < served["tokens"]
    refused = 1 if "refuse_inputs" in server else 0
    assert result.usage.inputs_sent == 40 - refused and result.usage.refused == refused
    assert (result.usage.splits > 0) == ("base64" not in server)


def test_a_call_stopped_by_an_account_error_still_reports_its_usage() -> None:
    def unauthorized(request: Request) -> Response:
        return Response(401, {}, b'{"code": 20010, "message": "bad key", "data": null}')

    seen: list[Event] = []
    options = mock(Answers(), batch_size=2, event_hooks={"call_end": [seen.append]})
    options["transport"] = MockTransport(unauthorized)
    with track_usage() as usage, Embedder(**options) as emb:
        result = emb.embed(texts_for(6), errors="return")
    assert not result.ok.any() and isinstance(result.errors[-1], embedsdk.AuthenticationError)
    assert result.usage.requests == usage.requests >= 1
    assert isinstance(seen[0].error, embedsdk.AuthenticationError)


# -- the ends of a call, whatever ends it ------------------------------------------------------


def test_a_call_whose_cache_fails_before_sending_still_ends(
    simulated_provider: SimulatedProvider, tmp_path: Any
) -> None:
    events: list[str] = []
    options = on(simulated_provider, cache=str(tmp_path),
                 event_hooks={"call": lambda e: events.append("call"),
                              "call_end": lambda e: events.append(f"end {e.error}")})  # fmt: skip

    async def broken(job: Any) -> None:
        raise OSError("disk I/O error")

    with track_usage() as usage, Embedder(**options) as emb:
        emb._core.runner._cache.lookup = broken  # type: ignore[method-assign]
        with pytest.raises(OSError, match="disk I/O"):
            emb.embed(texts_for(3))
    assert events == ["call", "end disk I/O error"]  # the span a hook opened is closed
    assert usage.requests == 0


def test_a_failed_batch_under_errors_return_is_the_calls_error() -> None:
    seen: list[Event] = []
    answers = Answers(fail=2)  # the first batch's two attempts
    options = mock(answers, batch_size=2, max_concurrent=1, max_retries=1,
                   event_hooks={"call_end": seen.append})  # fmt: skip
    with Embedder(**options) as emb:
        result = emb.embed(texts_for(6), errors="return")
    assert result.ok.tolist() == [False, False, True, True, True, True]
    assert isinstance(seen[0].error, embedsdk.InternalServerError)


def test_track_usage_counts_calls_ending_on_many_loop_threads_at_once(
    simulated_provider: SimulatedProvider,
) -> None:
    """One block, eight clients (eight loop threads) ending calls together: none is lost."""
    with track_usage() as usage:
        clients = [Embedder(**on(simulated_provider, batch_size=1)) for _ in range(8)]

        def work(emb: Embedder) -> None:
            for i in range(25):
                emb.embed([f"text {i}"])

        # Each thread runs in a copy of this context: the block is open in all of them.
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(work, emb))
            for emb in clients
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for emb in clients:
            emb.close()
    assert usage.requests == 8 * 25 and usage.inputs_sent == 8 * 25


def test_a_hook_added_twice_globally_stays_once_when_one_is_removed(
    simulated_provider: SimulatedProvider,
) -> None:
    seen: list[int] = []

    def hook(event: Event) -> None:
        seen.append(event.call.id)

    first = add_global_hooks({"call": [hook]})
    second = add_global_hooks({"call": hook})
    try:
        first()
        embedsdk.get_batch_embeddings(texts_for(2), **on(simulated_provider))
    finally:
        second()
    embedsdk.get_batch_embeddings(texts_for(2), **on(simulated_provider))
    assert len(seen) == 1


def test_a_hook_that_returns_an_awaitable_is_logged_and_not_left_unawaited(
    simulated_provider: SimulatedProvider, caplog: pytest.LogCaptureFixture, recwarn: Any
) -> None:
    async def later() -> None:
        raise AssertionError("never run")

    with caplog.at_level(logging.ERROR, logger="embedsdk"):
        embedsdk.get_batch_embeddings(
            texts_for(2), **on(simulated_provider, event_hooks={"call": lambda e: later()})
        )
    assert "which nothing awaits" in caplog.text
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_the_bar_shows_the_money_the_cache_saved() -> None:
    bar = Progress(10, Price(0.5, "CNY"), enabled=False)
    counted = bar.counted  # what a call's Job counts into, as it goes
    counted.requests, counted.inputs_sent, counted.tokens, counted.cache_hits = 1, 4, 4_000_000, 6
    counters = bar.counters()
    bar.close()
    assert counters["cost"] == Price(0.5, "CNY").money(2.0)
    assert counters["saved"] == Price(0.5, "CNY").money(3.0)  # 6 hits at 1M tokens each
    assert counters["tokens"] == "4,000,000"  # not tqdm's 4e+06


# -- every request's end, and the counts of what it waited ---------------------------------------


def test_every_request_event_is_followed_by_its_response_even_without_an_answer() -> None:
    seen: list[Event] = []
    calls = 0

    def server(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise embedsdk.APIConnectionError("the connection was reset", reason=None)
        # A quota that comes back in an hour, beyond max_wait: the call stops at once.
        return Response(429, {"Retry-After": "3600"}, b'{"message": "rate limited"}')

    hooks = {"request": seen.append, "response": seen.append}
    with (
        Embedder(**mock(server, max_wait=60, event_hooks=hooks)) as emb,  # type: ignore[arg-type]
        pytest.raises(embedsdk.WaitTooLongError),
    ):
        emb.embed(texts_for(2))
    assert [(e.kind, e.attempt, e.status) for e in seen] == [
        ("request", 1, None), ("response", 1, None), ("request", 2, None), ("response", 2, 429)
    ]  # fmt: skip
    assert isinstance(seen[1].error, embedsdk.APIConnectionError) and seen[1].bytes == 0
    assert isinstance(seen[3].error, embedsdk.WaitTooLongError)


def test_a_backoff_cut_short_counts_only_the_time_it_lasted() -> None:
    """A request retried after 30 s (the server's Retry-After) whose call is cancelled 0.05 s
    into the wait: it waited that, not the 30 s it was going to (the waits are real here:
    the fixture turns testing mode back on after the test)."""
    embedsdk.set_testing(False)

    def server(request: Request) -> Response:
        return Response(503, {"Retry-After": "30"}, b'{"message": "busy"}')

    async def main() -> Stats:
        hooks = {"retry": cancel}
        with track_usage() as usage:
            async with AsyncEmbedder(**mock(server, adaptive=False, event_hooks=hooks)) as emb:
                task = asyncio.ensure_future(emb.embed(texts_for(2)))
                with pytest.raises(asyncio.CancelledError):
                    await task
        return usage

    retries: list[float] = []

    def cancel(event: Event) -> None:
        retries.append(event.seconds or 0.0)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task() and "embed" in repr(task.get_coro()):
                asyncio.get_running_loop().call_later(0.05, task.cancel)  # 0.05 s in

    usage = asyncio.run(main())
    assert retries and retries[0] >= 30  # the wait it was going to sleep
    assert usage.retries == 1 and 0.05 <= usage.waited_seconds < 30


def test_a_backoff_slept_whole_is_counted_whole() -> None:
    """The server asks for 0.2 s (Retry-After) before the retry; the call's waited_seconds
    holds at least that (the waits are real here)."""
    embedsdk.set_testing(False)
    answers = iter([Response(503, {"Retry-After": "0.2"}, b'{"message": "busy"}')])

    def server(request: Request) -> Response:
        return next(answers, None) or Answers()(request)

    with Embedder(**mock(server, adaptive=False)) as emb:  # type: ignore[arg-type]
        usage = emb.embed(texts_for(2), errors="return").usage
    assert usage.retries == 1 and usage.waited_seconds >= 0.2


def test_base64_refused_and_sent_again_is_two_requests_each_answered() -> None:
    seen: list[Event] = []

    def server(request: Request) -> Response:
        if request.json().get("encoding_format") == "base64":
            return Response(400, {}, b'{"message": "encoding_format base64 is not supported"}')
        return Answers()(request)

    hooks = {"request": seen.append, "response": seen.append}
    with Embedder(**mock(server, event_hooks=hooks)) as emb:  # type: ignore[arg-type]
        emb.embed(texts_for(2))
    assert [(e.kind, e.status) for e in seen] == [
        ("request", None), ("response", 400), ("request", None), ("response", 200)
    ]  # fmt: skip


def test_adding_usage_keeps_a_price_read_elsewhere_and_ignores_empty_calls() -> None:
    read = Price(1.0, "USD", read="2026-01-01", source="a page")
    total = Stats()
    total.add(Stats(tokens=10, price=Price(1.0)))
    total.add(Stats(tokens=10, price=read))  # the same price, read elsewhere
    total.add(Stats())  # an empty call, of a client without a price
    assert total.cost == pytest.approx(20 / 1e6) and total.tokens == 20
    total.add(Stats(tokens=10))  # tokens of unknown price: the sum's cost is unknown
    assert total.price is None and total.cost is None


def test_a_progress_bar_counts_only_its_own_call(
    simulated_provider: SimulatedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Stats] = []
    close = Progress.close

    def closing(self: Progress) -> None:
        seen.append(self.usage())
        close(self)

    monkeypatch.setattr(Progress, "close", closing)

    async def main() -> tuple[Stats, Stats]:
        async with AsyncEmbedder(**on(simulated_provider, batch_size=5)) as emb:
            with_bar = emb.embed(texts_for(10, "a"), progress=True, errors="return")
            other = emb.embed(texts_for(30, "b"), errors="return")
            mine, theirs = await asyncio.gather(with_bar, other)
            return mine.usage, theirs.usage

    mine, theirs = asyncio.run(main())
    (bar,) = seen
    assert (bar.requests, bar.inputs_sent) == (mine.requests, 10) == (2, 10)
    assert theirs.requests == 6


def test_ctrl_c_on_a_sync_call_credits_its_usage_before_it_returns(
    simulated_provider: SimulatedProvider,
) -> None:
    """Ctrl-C lands in the calling thread while the call runs on the loop thread: by the time
    the KeyboardInterrupt reaches the caller, the cancelled call is counted."""
    gate = threading.Event()

    async def slow(request: Request) -> Response:
        gate.set()
        await asyncio.sleep(3600)
        raise AssertionError("not cancelled")

    emb = Embedder(base_url="http://127.0.0.1:9/v1", transport=MockTransport(slow), cache=False)
    submit = emb._portal.submit

    class Interrupted:  # the future, as Ctrl-C leaves it: result() raises in the caller
        def __init__(self, future: Any) -> None:
            self.future = future

        def result(self) -> Any:
            assert gate.wait(timeout=60)
            raise KeyboardInterrupt

        def done(self) -> bool:
            return bool(self.future.done())

        def cancel(self) -> bool:
            return bool(self.future.cancel())

    emb._portal.submit = lambda coro: Interrupted(submit(coro))  # type: ignore[method-assign]
    try:
        with track_usage() as usage, pytest.raises(KeyboardInterrupt):
            emb.embed(texts_for(2))
        assert usage.requests == 1  # credited already, not a moment later
    finally:
        del emb._portal.submit  # the real one again, to close
        emb.close()


def test_a_cancelled_async_call_of_a_sync_client_is_credited_when_it_returns() -> None:
    """``Embedder.embed_async`` runs on the client's loop thread: cancelling the caller waits
    for that call to unwind (here slowly: 0.2 s), so its usage is counted when CancelledError
    arrives."""
    gate = threading.Event()

    async def slow(request: Request) -> Response:
        gate.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # a connection closing slowly
            raise
        raise AssertionError("not cancelled")

    emb = Embedder(base_url="http://127.0.0.1:9/v1", transport=MockTransport(slow), cache=False)

    async def main() -> Stats:
        with track_usage() as usage:
            task = asyncio.ensure_future(emb.embed_async(texts_for(2)))
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert usage.requests == 1  # already, not a moment later
        return usage

    try:
        asyncio.run(main())
    finally:
        emb.close()


def test_one_slot_in_flight_is_said_in_the_singular() -> None:
    busy = Stats(requests=9, waited_seconds=1, busy_seconds=24)
    assert held_back_by(busy, seconds=25.0, slots=1).startswith("latency: the one slot in flight")
