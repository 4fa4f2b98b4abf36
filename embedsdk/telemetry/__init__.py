"""OpenTelemetry for embedsdk: a span per call and metrics, after the GenAI conventions.

>>> import embedsdk.telemetry                                # doctest: +SKIP
>>> embedsdk.telemetry.instrument()    # every client of the process, from now on
>>> embedsdk.telemetry.uninstrument()

Needs ``pip install "embedsdk[otel]"`` (``opentelemetry-api`` only): set up the SDK (a
``TracerProvider`` and a ``MeterProvider`` with your exporters) as for any instrumentation;
without it the API's no-op providers record nothing. ``import embedsdk`` never imports this
module, and a client with no hooks builds no event: not installed or not instrumented, it
costs nothing.

- **A span per call** (a stream: per window), ``embeddings {model}``, kind ``CLIENT``, a
  child of the span current where the call was made (sync clients too: they carry the
  caller's context to their loop thread). Attributes ``gen_ai.operation.name``
  (``embeddings``), ``gen_ai.provider.name`` (the provider profile: ``openai``,
  ``siliconflow``...), ``gen_ai.request.model``, ``server.address`` / ``server.port``,
  ``gen_ai.usage.input_tokens`` and ours (``embedsdk.inputs``, ``.requests``, ``.retries``,
  ``.rate_limited``, ``.cache_hits``, ``.cache_misses``, ``.tokens_estimated``);
  ``error.type`` and an error status when it failed (``embedsdk.cancelled`` when the caller
  stopped it).
- **A child span per failed request** (``request_spans="failed"``, the default; ``"all"``:
  every request; ``"none"``), ``POST``, from when the request went out to its answer:
  ``http.response.status_code`` (no answer, a connection error or a timeout: ``error.type``,
  the error's class), an error status, ``server.address``, ``server.port``, ``url.full`` (no
  credentials, no query), ``http.request.resend_count`` for a retry, ``embedsdk.inputs``. A
  cancelled call's last requests have none. Why not every request by default: a call of 10^5
  texts is thousands of requests, a trace few backends show whole, and a span per answer
  was most of what this module cost the client (docs/cost.en.md has the figures); every
  request is in the metrics either way.
  A retry and a pause are events on the call's span (``embedsdk.retry``,
  ``embedsdk.pause``). Histograms advise the GenAI conventions' bucket boundaries.
- **Metrics** (meter ``embedsdk``): ``gen_ai.client.token.usage`` (histogram of input tokens
  per call that sent something, ``gen_ai.token.type=input``) and
  ``gen_ai.client.operation.duration`` (seconds per call); ours:
  ``embedsdk.client.requests`` (counter, by status, or ``error.type`` when no answer came),
  ``embedsdk.client.request.duration`` (seconds per request, by the same),
  ``embedsdk.client.refusals`` (429s), ``embedsdk.client.retries`` (by ``error.type``),
  ``embedsdk.client.pauses`` (the long waits rate control announces, 3 s or more, by reason:
  not every wait; ``Stats.waited_seconds`` has them all), ``embedsdk.client.pace`` (a gauge:
  requests sent a second over the last :data:`PACE_WINDOW` seconds, by model and server;
  under a rate limit, the pace rate control holds), ``embedsdk.client.cache.hits`` /
  ``.misses`` and ``embedsdk.client.batch.size`` (inputs per request).

Never a text, never the key: attributes hold counts, the model and the host.

Exports :func:`instrument`, :func:`uninstrument` and :func:`hooks`. Imports the client's
event hooks (``embedsdk.client``) and ``opentelemetry-api``, when called.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from ..client import Event, add_global_hooks

#: Our instrumentation's name, for the tracer and the meter.
SCOPE = "embedsdk"
#: The GenAI conventions' advised bucket boundaries: seconds, and tokens.
SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216]

#: Seconds of sending the pace gauge averages over.
PACE_WINDOW = 10.0

#: Which requests get a child span: every one, the failed ones (the default), none.
REQUEST_SPANS = ("all", "failed", "none")

_remove: Callable[[], None] | None = None
_now = time.monotonic  # the pace gauge's clock (a test puts a fake one here)


def _api() -> Any:
    try:
        from opentelemetry import context, metrics, trace
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'embedsdk.telemetry needs OpenTelemetry\'s API: pip install "embedsdk[otel]"'
        ) from None
    return context, metrics, trace


class _Target:
    """The attributes of one model at one endpoint, built once: an event would otherwise
    parse the URL and build the same dicts again, on every request."""

    __slots__ = ("common", "outcomes", "pace_key", "url")

    def __init__(self, call: Any) -> None:
        url = urlsplit(call.endpoint)
        self.common: dict[str, Any] = {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.model,
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        self.pace_key = tuple(sorted(self.common.items()))
        self.url = _url(call.endpoint)
        self.outcomes: dict[tuple[str, Any], dict[str, Any]] = {}

    def with_(self, name: str, value: Any) -> dict[str, Any]:
        """The common attributes and ``name=value`` (a status, an error type), kept."""
        attributes = self.outcomes.get((name, value))
        if attributes is None:
            attributes = self.outcomes[name, value] = {**self.common, name: value}
        return attributes


class _Reporter:
    """The hooks that turn a call's events into spans and metrics."""

    def __init__(
        self, tracer_provider: Any = None, meter_provider: Any = None, request_spans: str = "failed"
    ) -> None:
        from .._version import __version__

        if request_spans not in REQUEST_SPANS:
            raise ValueError(f"request_spans must be one of {REQUEST_SPANS}, got {request_spans!r}")
        self._request_spans = request_spans
        # By (provider, model, endpoint): few in a process. Threads may race to fill it; the
        # loser's entry is an equal one.
        self._targets: dict[tuple[str, str, str], _Target] = {}
        self._context, metrics, self._trace = _api()
        # Where this reporter keeps a call's span, in its Call.data: its own key, so that two
        # reporters (instrument() and one client's hooks()) keep two spans.
        self._key = f"embedsdk.otel.span.{id(self)}"
        self._tracer = self._trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per call",
            explicit_bucket_boundaries_advisory=TOKENS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Seconds per call",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self._requests = meter.create_counter(
            "embedsdk.client.requests",
            unit="{request}",
            description="Requests, by status (error.type when no answer came)",
        )
        self._latency = meter.create_histogram(
            "embedsdk.client.request.duration",
            unit="s",
            description="Seconds per request, by status (error.type when no answer came)",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self._refusals = meter.create_counter(
            "embedsdk.client.refusals", unit="{request}", description="Answers with HTTP 429"
        )
        self._retries = meter.create_counter(
            "embedsdk.client.retries", unit="{request}", description="Attempts retried"
        )
        self._pauses = meter.create_histogram(
            "embedsdk.client.pauses",
            unit="s",
            description="Waits for rate control",
            explicit_bucket_boundaries_advisory=SECONDS,
        )
        self._hits = meter.create_counter(
            "embedsdk.client.cache.hits", unit="{text}", description="Texts the cache had"
        )
        self._misses = meter.create_counter(
            "embedsdk.client.cache.misses", unit="{text}", description="Texts the cache lacked"
        )
        self._batch = meter.create_histogram(
            "embedsdk.client.batch.size", unit="{text}", description="Inputs per request"
        )
        self._pace = _Pace.of(meter, metrics.Observation)

    def hooks(self) -> dict[str, list[Callable[[Event], None]]]:
        return {
            "call": [self.on_call],
            "request": [self.on_request],
            "response": [self.on_response],
            "retry": [self.on_retry],
            "pause": [self.on_pause],
            "call_end": [self.on_call_end],
        }

    def _target(self, event: Event) -> _Target:
        call = event.call
        key = (call.provider, call.model, call.endpoint)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Target(call)
        return target

    def _common(self, event: Event) -> dict[str, Any]:
        return self._target(event).common

    def on_call(self, event: Event) -> None:
        call = event.call
        parent = call.context.run(self._context.get_current)  # the caller's current span
        attributes = {**self._common(event), "embedsdk.inputs": call.inputs}  # a copy
        call.data[self._key] = self._tracer.start_span(
            f"embeddings {call.model}",
            context=parent,
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
        )

    def _span(self, event: Event) -> Any:
        return event.call.data.get(self._key)

    def on_request(self, event: Event) -> None:
        target = self._target(event)
        self._batch.record(event.inputs, target.common)
        self._pace.sent(target.pace_key)

    def on_response(self, event: Event) -> None:
        if event.status is None and isinstance(event.error, asyncio.CancelledError):
            return  # the call was cancelled: its span says so, the request has no outcome
        target = self._target(event)
        common = target.common
        status = event.status or 0
        # No answer (a connection error, a timeout): its error's type, as OTel's HTTP spans do.
        outcome: tuple[str, Any]
        if event.status is None:
            outcome = ("error.type", type(event.error).__name__)
        else:
            outcome = ("http.response.status_code", status)
        attributes = target.with_(*outcome)
        self._requests.add(1, attributes)
        if event.seconds is not None:  # by outcome: a timeout's wait is no answer's latency
            self._latency.record(event.seconds, attributes)
        if status == 429:
            self._refusals.add(1, common)
        failed = event.status is None or status >= 400
        if self._request_spans != "all" and (self._request_spans == "none" or not failed):
            return
        span = self._span(event)
        if span is None or event.seconds is None:
            return
        end = time.time_ns()
        attributes = {  # the child span's
            "http.request.method": "POST",
            outcome[0]: outcome[1],
            "server.address": common["server.address"],
            "server.port": common["server.port"],
            "url.full": target.url,
            "embedsdk.inputs": event.inputs,
        }
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        child = self._tracer.start_span(
            "POST",
            context=self._trace.set_span_in_context(span),
            kind=self._trace.SpanKind.CLIENT,
            start_time=end - int(event.seconds * 1e9),  # its latency, on the loop's clock
            attributes=attributes,
        )
        if event.tokens is not None:
            child.set_attribute("gen_ai.usage.input_tokens", event.tokens)
        if event.status is None:
            child.set_status(self._trace.StatusCode.ERROR, type(event.error).__name__)
        elif status >= 400:
            child.set_attribute("error.type", str(status))
            child.set_status(self._trace.StatusCode.ERROR)
        child.end(end_time=end)

    def on_retry(self, event: Event) -> None:
        self._retries.add(1, self._target(event).with_("error.type", event.reason))
        span = self._span(event)
        if span is not None:
            attributes = {"error.type": event.reason, "http.request.resend_count": event.attempt}
            if event.seconds is not None:
                attributes["embedsdk.wait_s"] = event.seconds
            span.add_event("embedsdk.retry", attributes)

    def on_pause(self, event: Event) -> None:
        seconds = event.seconds or 0.0
        self._pauses.record(seconds, {**self._common(event), "embedsdk.reason": event.reason})
        span = self._span(event)
        if span is not None:
            span.add_event(
                "embedsdk.pause", {"embedsdk.reason": event.reason, "embedsdk.wait_s": seconds}
            )

    def on_call_end(self, event: Event) -> None:
        call, usage = event.call, event.call.usage
        common = self._common(event)
        error = event.error
        cancelled = isinstance(error, (asyncio.CancelledError, KeyboardInterrupt))
        failed = {"error.type": type(error).__name__} if error is not None and not cancelled else {}
        if usage.requests:  # a call served whole from the cache used no tokens
            self._tokens.record(usage.tokens, {**common, "gen_ai.token.type": "input"})
        if event.seconds is not None:
            self._duration.record(event.seconds, {**common, **failed})
        if usage.cache_hits:
            self._hits.add(usage.cache_hits, common)
        if usage.cache_misses:
            self._misses.add(usage.cache_misses, common)
        span = call.data.pop(self._key, None)
        if span is None:
            return
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.tokens,
                "embedsdk.requests": usage.requests,
                "embedsdk.retries": usage.retries,
                "embedsdk.rate_limited": usage.rate_limited,
                "embedsdk.cache_hits": usage.cache_hits,
                "embedsdk.cache_misses": usage.cache_misses,
                "embedsdk.tokens_estimated": usage.tokens_estimated,
                **failed,
            }
        )
        if cancelled:  # the caller stopped it: not the server's failure
            span.set_attribute("embedsdk.cancelled", True)
        elif error is not None:
            span.set_status(self._trace.StatusCode.ERROR, type(error).__name__)
        span.end()


class _Pace:
    """The pace gauge of one meter: when requests went out, by their attributes, over the
    last :data:`PACE_WINDOW` seconds. One per meter, shared by its reporters: a meter keeps the
    first gauge of a name and drops the callbacks of later ones (a second ``instrument()``).
    The hooks add from the clients' loop threads, the gauge reads from the reader's."""

    def __init__(self, meter: Any, observation: Any) -> None:
        self._times: dict[tuple[Any, ...], collections.deque[float]] = {}
        self._lock = threading.Lock()
        self._observation = observation
        self._meter = meter  # kept alive while its id is the key
        meter.create_observable_gauge(
            "embedsdk.client.pace",
            callbacks=[self._observe],
            unit="{request}/s",
            description=f"Requests sent a second, over the last {PACE_WINDOW:g} s",
        )

    @classmethod
    def of(cls, meter: Any, observation: Any) -> _Pace:
        with _PACES_LOCK:
            pace = _PACES.get(id(meter))
            if pace is None:
                pace = _PACES[id(meter)] = cls(meter, observation)
            return pace

    def sent(self, key: tuple[Any, ...]) -> None:
        now = _now()
        with self._lock:
            times = self._times.setdefault(key, collections.deque())
            times.append(now)
            self._trim(times, now)  # no reader may ever come: keep only the window

    @staticmethod
    def _trim(times: collections.deque[float], now: float) -> None:
        while times and times[0] < now - PACE_WINDOW:
            times.popleft()

    def _observe(self, options: Any) -> Iterator[Any]:
        """For each model and server, requests sent over the last window, a second (0 once
        after sending stops; then nothing)."""
        now = _now()
        with self._lock:
            paces = []
            for key, times in list(self._times.items()):
                self._trim(times, now)
                if not times:
                    del self._times[key]
                paces.append((len(times) / PACE_WINDOW, dict(key)))
        for pace, attributes in paces:
            yield self._observation(pace, attributes)


_PACES: dict[int, _Pace] = {}  # by id() of their meter, which each keeps alive
_PACES_LOCK = threading.Lock()


def _url(endpoint: str) -> str:
    """``url.full`` without credentials or query (a key may hide in either)."""
    parts = urlsplit(endpoint)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def hooks(
    tracer_provider: Any = None, meter_provider: Any = None, *, request_spans: str = "failed"
) -> dict[str, Any]:
    """Event hooks for one client: ``Embedder(..., event_hooks=telemetry.hooks())``.
    ``tracer_provider`` / ``meter_provider``: yours (default: the global ones);
    ``request_spans``: which requests get a child span (:data:`REQUEST_SPANS`: ``"all"``,
    ``"failed"``, ``"none"``)."""
    return _Reporter(tracer_provider, meter_provider, request_spans).hooks()


def instrument(
    tracer_provider: Any = None, meter_provider: Any = None, *, request_spans: str = "failed"
) -> None:
    """Report every client's calls of this process to OpenTelemetry, from now on (a second
    call replaces the first's providers). ``request_spans`` as for :func:`hooks`."""
    global _remove
    reporting = hooks(tracer_provider, meter_provider, request_spans=request_spans)
    uninstrument()
    _remove = add_global_hooks(reporting)


def uninstrument() -> None:
    """Stop reporting (calls under way end their spans unreported)."""
    global _remove
    if _remove is not None:
        _remove()
        _remove = None


__all__ = ["PACE_WINDOW", "REQUEST_SPANS", "SCOPE", "hooks", "instrument", "uninstrument"]
