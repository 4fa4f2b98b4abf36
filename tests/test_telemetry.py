"""OpenTelemetry (issue 24): ``embedsdk.telemetry`` reports each call as a span with a child per
failed request (or every one, or none, as asked), and metrics after the GenAI conventions,
read back through the SDK's in-memory span exporter and metric reader; against the simulated
provider over HTTP.

Skipped where OpenTelemetry's SDK is not installed (``requirements/otel.txt``; the oldest
dependencies' environment cannot take it).

Private access: the pace gauge's clock (``telemetry._now``) is replaced by a fake one, so that
what it averages over does not depend on how fast the machine runs the test; one test counts
the send times the gauge keeps (its reporter's ``_pace``), which no public name shows; one
parses the bench's ``--otel`` flag (``embedsdk._bench.cli``), the bench's own interface.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import embedsdk
from embedsdk import Embedder, MockTransport, Request, Response, telemetry
from embedsdk.testing import SimulatedProvider

KEY = "sk-telemetry-secret-0123456789"
TEXT = "a private text 你好"


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def metrics(self) -> dict[str, list[Any]]:
        """Every data point by metric name."""
        found: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                if scope.scope.name != "embedsdk":  # the SDK's own, on later collections
                    continue
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    reporting = Otel()
    # Every request a span here, so that each can be checked (the default: failed ones).
    telemetry.instrument(reporting.tracer_provider, reporting.meter_provider, request_spans="all")
    try:
        yield reporting
    finally:
        telemetry.uninstrument()


def options(sim: SimulatedProvider, **more: Any) -> dict[str, Any]:
    return {"base_url": sim.base_url, "dimensions": 8, "cache": False, "api_key": KEY, **more}


def test_a_call_is_a_span_with_a_child_per_answer(
    otel: Otel, simulated_provider: SimulatedProvider
) -> None:
    texts = [f"{TEXT} {i}" for i in range(30)]
    parent_tracer = otel.tracer_provider.get_tracer("app")
    client = Embedder(**options(simulated_provider, batch_size=10))  # a sync client
    with parent_tracer.start_as_current_span("handle request") as parent, client as emb:
        emb.embed(texts)
    spans = otel.spans.get_finished_spans()
    (call,) = [s for s in spans if s.name == "embeddings BAAI/bge-m3"]
    answers = [s for s in spans if s.name == "POST"]
    assert call.kind == SpanKind.CLIENT and call.parent is not None
    assert call.parent.span_id == parent.get_span_context().span_id  # the caller's span
    attributes = dict(call.attributes or {})
    served = simulated_provider.stats()
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.request.model"] == "BAAI/bge-m3"
    assert attributes["gen_ai.provider.name"] == "generic"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["gen_ai.usage.input_tokens"] == served["tokens"]
    assert (attributes["embedsdk.inputs"], attributes["embedsdk.requests"]) == (30, 3)
    assert len(answers) == 3 and all(
        a.parent and a.parent.span_id == call.context.span_id for a in answers
    )
    for answer in answers:
        shown_answer = dict(answer.attributes or {})
        assert shown_answer["http.response.status_code"] == 200
        assert shown_answer["url.full"] == simulated_provider.base_url + "/embeddings"
        assert shown_answer["server.port"] == int(simulated_provider.base_url.split(":")[2][:-3])
        assert "http.request.resend_count" not in shown_answer  # first attempts
    shown = json.dumps([json.loads(s.to_json()) for s in spans])
    assert KEY not in shown and TEXT not in shown


def test_metrics_follow_the_genai_conventions_and_ours(
    otel: Otel, simulated_provider: SimulatedProvider, tmp_path: Any
) -> None:
    texts = [f"t {i}" for i in range(20)]
    with Embedder(**options(simulated_provider, batch_size=5, cache=str(tmp_path))) as emb:
        emb.embed(texts)
        emb.embed(texts)  # from the cache
    metrics = otel.metrics()
    (tokens,) = [p for p in metrics["gen_ai.client.token.usage"] if p.sum]
    assert tokens.sum == simulated_provider.stats()["tokens"] and tokens.count == 1
    assert dict(tokens.attributes)["gen_ai.token.type"] == "input"
    assert dict(tokens.attributes)["gen_ai.operation.name"] == "embeddings"
    assert dict(tokens.attributes)["server.port"] > 0
    assert sum(p.count for p in metrics["gen_ai.client.operation.duration"]) == 2
    assert sum(p.value for p in metrics["embedsdk.client.requests"]) == 4
    assert {
        dict(p.attributes)["http.response.status_code"] for p in metrics["embedsdk.client.requests"]
    } == {200}
    assert sum(p.value for p in metrics["embedsdk.client.cache.hits"]) == 20
    assert sum(p.value for p in metrics["embedsdk.client.cache.misses"]) == 20
    (sizes,) = metrics["embedsdk.client.batch.size"]
    assert (sizes.count, sizes.sum) == (4, 20)


def test_the_pace_gauge_is_requests_a_second_over_the_last_window(
    otel: Otel, simulated_provider: SimulatedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(telemetry, "_now", lambda: now[0])

    def paces() -> list[float]:
        return [p.value for p in otel.metrics().get("embedsdk.client.pace", [])]

    with Embedder(**options(simulated_provider, batch_size=5)) as emb:
        emb.embed([f"t {i}" for i in range(20)])  # 4 requests, "now"
        now[0] += telemetry.PACE_WINDOW / 2
        emb.embed([f"u {i}" for i in range(10)])  # 2 more, half a window later
        (pace,) = otel.metrics()["embedsdk.client.pace"]
        assert pace.value == pytest.approx(6 / telemetry.PACE_WINDOW)
        assert dict(pace.attributes)["gen_ai.request.model"] == "BAAI/bge-m3"
        now[0] += telemetry.PACE_WINDOW / 2 + 0.1  # the first four are out of the window
        assert paces() == [pytest.approx(2 / telemetry.PACE_WINDOW)]
        now[0] += telemetry.PACE_WINDOW
        assert paces() == [0.0]  # said once when sending stops,
        assert paces() == []  # then not at all


def test_the_pace_gauge_survives_instrumenting_again_on_the_same_providers(
    otel: Otel, simulated_provider: SimulatedProvider
) -> None:
    """A meter keeps the first gauge of a name and drops later callbacks: the reporters of
    one meter share one pace, so a second instrument() still feeds the gauge."""
    telemetry.uninstrument()
    telemetry.instrument(otel.tracer_provider, otel.meter_provider)
    embedsdk.get_batch_embeddings(
        [f"t {i}" for i in range(10)], **options(simulated_provider, batch_size=5)
    )
    (pace,) = otel.metrics()["embedsdk.client.pace"]
    assert pace.value == pytest.approx(2 / telemetry.PACE_WINDOW)


def test_the_pace_keeps_only_its_window_when_nothing_reads_it(
    simulated_provider: SimulatedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    monkeypatch.setattr(telemetry, "_now", lambda: now[0])
    hooks = telemetry.hooks(meter_provider=MeterProvider())  # no reader: never read
    with Embedder(**options(simulated_provider, batch_size=1, event_hooks=hooks)) as emb:
        for i in range(30):
            now[0] += 1.0
            emb.embed([f"t {i}"])
    (times,) = hooks["request"][0].__self__._pace._times.values()
    assert len(times) == telemetry.PACE_WINDOW + 1  # the last 10 s (both ends), not all 30


def test_refusals_retries_and_a_failed_call(otel: Otel) -> None:
    answers = iter([429, 500, 500, 500])

    def handle(request: Request) -> Response:
        status = next(answers, 500)
        return Response(status, {}, b'{"code": 50000, "message": "no", "data": null}')

    transport = MockTransport(handle)
    client = Embedder(
        base_url="http://127.0.0.1:9/v1", transport=transport, cache=False, max_retries=2,
        adaptive=False,
    )  # fmt: skip
    with client as emb, pytest.raises(embedsdk.APIStatusError):
        emb.embed(["a", "b"])
    (call,) = [s for s in otel.spans.get_finished_spans() if s.name.startswith("embeddings")]
    assert call.status.status_code == StatusCode.ERROR
    assert dict(call.attributes or {})["error.type"] == "InternalServerError"
    assert [e.name for e in call.events] == ["embedsdk.retry", "embedsdk.retry"]
    answers = [s for s in otel.spans.get_finished_spans() if s.name == "POST"]
    resends = [dict(a.attributes or {}).get("http.request.resend_count") for a in answers]
    assert resends == [None, 1, 2] and all(
        a.status.status_code == StatusCode.ERROR for a in answers
    )
    metrics = otel.metrics()
    assert sum(p.value for p in metrics["embedsdk.client.refusals"]) == 1
    assert sum(p.value for p in metrics["embedsdk.client.retries"]) == 2
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert dict(duration.attributes)["error.type"] == "InternalServerError"


def test_a_request_without_an_answer_is_a_failed_child_span(otel: Otel) -> None:
    sent = 0

    def handle(request: Request) -> Response:
        nonlocal sent
        sent += 1
        if sent == 1:
            raise embedsdk.APIConnectionError("the connection was reset", reason=None)
        return Response(200, {}, json.dumps(
            {"data": [{"index": 0, "embedding": [0.5] * 8}],
             "usage": {"prompt_tokens": 2, "total_tokens": 2}}).encode())  # fmt: skip

    client = Embedder(
        base_url="http://127.0.0.1:9/v1", transport=MockTransport(handle), cache=False,
        max_retries=2, adaptive=False,
    )  # fmt: skip
    with client as emb:
        emb.embed(["a"])
    lost, answered = [s for s in otel.spans.get_finished_spans() if s.name == "POST"]
    assert dict(lost.attributes or {})["error.type"] == "APIConnectionError"
    assert "http.response.status_code" not in dict(lost.attributes or {})
    assert lost.status.status_code == StatusCode.ERROR
    assert dict(answered.attributes or {})["http.response.status_code"] == 200
    requests = otel.metrics()["embedsdk.client.requests"]
    outcomes = sorted(str(dict(p.attributes).get("error.type", "")) for p in requests)
    assert outcomes == ["", "APIConnectionError"]


@pytest.mark.parametrize(
    ("request_spans", "spans"), [("failed", [500, "APIConnectionError"]), ("none", [])]
)
def test_by_default_only_failed_requests_are_child_spans(
    request_spans: str, spans: list[int]
) -> None:
    reporting = Otel()
    if request_spans == "failed":  # the default
        telemetry.instrument(reporting.tracer_provider, reporting.meter_provider)
    else:
        telemetry.instrument(
            reporting.tracer_provider, reporting.meter_provider, request_spans=request_spans
        )
    answers = iter([500, 0, 200])

    def handle(request: Request) -> Response:
        status = next(answers)
        if status == 0:
            raise embedsdk.APIConnectionError("the connection was reset", reason=None)
        if status == 500:
            return Response(500, {}, b'{"code": 50000, "message": "no", "data": null}')
        return Response(200, {}, json.dumps(
            {"data": [{"index": 0, "embedding": [0.5] * 8}],
             "usage": {"prompt_tokens": 2, "total_tokens": 2}}).encode())  # fmt: skip

    client = Embedder(
        base_url="http://127.0.0.1:9/v1", transport=MockTransport(handle), cache=False,
        adaptive=False,
    )  # fmt: skip
    try:
        with client as emb:
            emb.embed(["a"])
    finally:
        telemetry.uninstrument()
    posts = [dict(s.attributes or {}) for s in reporting.spans.get_finished_spans()]
    outcomes = [a.get("http.response.status_code", a.get("error.type")) for a in posts
                if a.get("http.request.method") == "POST"]  # fmt: skip
    assert outcomes == spans
    requests = reporting.metrics()["embedsdk.client.requests"]
    assert sum(p.value for p in requests) == 3  # every request in the metrics still


def test_request_spans_takes_only_its_values() -> None:
    with pytest.raises(ValueError, match="request_spans must be one of"):
        telemetry.hooks(request_spans="some")


def test_hooks_for_one_client_and_nothing_after_uninstrument(
    simulated_provider: SimulatedProvider,
) -> None:
    mine, other = Otel(), Otel()
    hooks = telemetry.hooks(mine.tracer_provider, mine.meter_provider, request_spans="all")
    embedsdk.get_batch_embeddings(["x"], **options(simulated_provider, event_hooks=hooks))
    embedsdk.get_batch_embeddings(["y"], **options(simulated_provider))  # not this client
    assert len([s for s in mine.spans.get_finished_spans() if s.name.startswith("embeddings")]) == 1

    telemetry.instrument(other.tracer_provider, other.meter_provider)
    telemetry.uninstrument()
    embedsdk.get_batch_embeddings(["z"], **options(simulated_provider))
    assert other.spans.get_finished_spans() == ()


def test_without_a_provider_set_nothing_is_recorded(simulated_provider: SimulatedProvider) -> None:
    """The API's no-op providers: instrumenting costs a call its hooks, and records nothing."""
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    telemetry.instrument()
    try:
        vecs = embedsdk.get_batch_embeddings(["q"], **options(simulated_provider))
    finally:
        telemetry.uninstrument()
    assert vecs.shape == (1, 8)


def test_two_reporters_on_one_call_each_keep_their_span(
    otel: Otel, simulated_provider: SimulatedProvider
) -> None:
    """instrument() for the process and hooks() for one client: both see the whole call."""
    mine = Otel()
    hooks = telemetry.hooks(mine.tracer_provider, mine.meter_provider, request_spans="all")
    embedsdk.get_batch_embeddings(["x", "y"], **options(simulated_provider, event_hooks=hooks))
    for reporting in (otel, mine):
        names = sorted(s.name for s in reporting.spans.get_finished_spans())
        assert names == ["POST", "embeddings BAAI/bge-m3"]


def test_a_cancelled_call_ends_its_span_without_an_error(otel: Otel) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def slow(request: Request) -> Response:
            started.set()
            await asyncio.sleep(3600)
            raise AssertionError("not cancelled")

        async with embedsdk.AsyncEmbedder(
            base_url="http://127.0.0.1:9/v1", transport=MockTransport(slow), cache=False
        ) as emb:
            task = asyncio.ensure_future(emb.embed(["a"]))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    (call,) = otel.spans.get_finished_spans()
    assert call.status.status_code == StatusCode.UNSET
    assert dict(call.attributes or {})["embedsdk.cancelled"] is True


def test_the_bench_reports_with_the_spans_asked_for() -> None:
    import argparse

    from embedsdk._bench.cli import add_bench_arguments

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    assert parser.parse_args([]).otel is None
    assert parser.parse_args(["--otel"]).otel == "failed"  # as instrument() does
    assert parser.parse_args(["--otel", "all"]).otel == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["--otel", "some"])
