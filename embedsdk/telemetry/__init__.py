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
  ``error.type`` and an error status when it failed.
- **A child span per answer**, ``POST``, from when the request went out to its answer:
  ``http.response.status_code``, ``embedsdk.inputs``, ``embedsdk.attempt``. A retry and a
  pause are events on the call's span (``embedsdk.retry``, ``embedsdk.pause``).
- **Metrics** (meter ``embedsdk``): ``gen_ai.client.token.usage`` (histogram of input tokens
  per call that sent something, ``gen_ai.token.type=input``) and
  ``gen_ai.client.operation.duration`` (seconds per call); ours:
  ``embedsdk.client.requests`` (counter, by status), ``embedsdk.client.request.duration``
  (seconds per answer), ``embedsdk.client.refusals`` (429s), ``embedsdk.client.retries``
  (by ``error.type``), ``embedsdk.client.pauses`` (seconds held back by rate control, by
  reason), ``embedsdk.client.cache.hits`` / ``.misses`` and ``embedsdk.client.batch.size``
  (inputs per request).

Never a text, never the key: attributes hold counts, the model and the host.

Exports :func:`instrument`, :func:`uninstrument` and :func:`hooks`. Imports the client's
event hooks (``embedsdk.client``) and ``opentelemetry-api``, when called.
"""

from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import urlsplit

from ..client import Event, add_global_hooks

#: Our instrumentation's name, for the tracer and the meter.
SCOPE = "embedsdk"
_SPAN = "embedsdk.otel.span"  # where a call's span is kept, in its Call.data

_remove: Callable[[], None] | None = None


def _api() -> Any:
    try:
        from opentelemetry import context, metrics, trace
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'embedsdk.telemetry needs OpenTelemetry\'s API: pip install "embedsdk[otel]"'
        ) from None
    return context, metrics, trace


class _Reporter:
    """The hooks that turn a call's events into spans and metrics."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        from .._version import __version__

        self._context, metrics, self._trace = _api()
        self._tracer = self._trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per call"
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Seconds per call"
        )
        self._requests = meter.create_counter(
            "embedsdk.client.requests", unit="{request}", description="Answers, by status"
        )
        self._latency = meter.create_histogram(
            "embedsdk.client.request.duration", unit="s", description="Seconds per answer"
        )
        self._refusals = meter.create_counter(
            "embedsdk.client.refusals", unit="{request}", description="Answers with HTTP 429"
        )
        self._retries = meter.create_counter(
            "embedsdk.client.retries", unit="{request}", description="Attempts retried"
        )
        self._pauses = meter.create_histogram(
            "embedsdk.client.pauses", unit="s", description="Waits for rate control"
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

    def hooks(self) -> dict[str, list[Callable[[Event], None]]]:
        return {
            "call": [self.on_call],
            "request": [self.on_request],
            "response": [self.on_response],
            "retry": [self.on_retry],
            "pause": [self.on_pause],
            "call_end": [self.on_call_end],
        }

    @staticmethod
    def _common(event: Event) -> dict[str, Any]:
        call = event.call
        return {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.model,
            "server.address": urlsplit(call.endpoint).hostname or "",
        }

    def on_call(self, event: Event) -> None:
        call = event.call
        parent = call.context.run(self._context.get_current)  # the caller's current span
        url = urlsplit(call.endpoint)
        attributes = {
            **self._common(event),
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            "embedsdk.inputs": call.inputs,
        }
        call.data[_SPAN] = self._tracer.start_span(
            f"embeddings {call.model}",
            context=parent,
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
        )

    def _span(self, event: Event) -> Any:
        return event.call.data.get(_SPAN)

    def on_request(self, event: Event) -> None:
        self._batch.record(event.inputs, self._common(event))

    def on_response(self, event: Event) -> None:
        common = self._common(event)
        status = event.status or 0
        self._requests.add(1, {**common, "http.response.status_code": status})
        if event.seconds is not None:
            self._latency.record(event.seconds, common)
        if status == 429:
            self._refusals.add(1, common)
        span = self._span(event)
        if span is None or event.seconds is None:
            return
        end = time.time_ns()
        child = self._tracer.start_span(
            "POST",
            context=self._trace.set_span_in_context(span),
            kind=self._trace.SpanKind.CLIENT,
            start_time=end - int(event.seconds * 1e9),
            attributes={
                "http.request.method": "POST",
                "http.response.status_code": status,
                "embedsdk.inputs": event.inputs,
                "embedsdk.attempt": event.attempt,
            },
        )
        if event.tokens is not None:
            child.set_attribute("gen_ai.usage.input_tokens", event.tokens)
        if status >= 400:
            child.set_attribute("error.type", str(status))
            child.set_status(self._trace.StatusCode.ERROR)
        child.end(end_time=end)

    def on_retry(self, event: Event) -> None:
        self._retries.add(1, {**self._common(event), "error.type": event.reason})
        span = self._span(event)
        if span is not None:
            attributes = {"error.type": event.reason, "embedsdk.attempt": event.attempt}
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
        failed = {"error.type": type(event.error).__name__} if event.error is not None else {}
        if usage.requests:  # a call served whole from the cache used no tokens
            self._tokens.record(usage.tokens, {**common, "gen_ai.token.type": "input"})
        if event.seconds is not None:
            self._duration.record(event.seconds, {**common, **failed})
        if usage.cache_hits:
            self._hits.add(usage.cache_hits, common)
        if usage.cache_misses:
            self._misses.add(usage.cache_misses, common)
        span = call.data.pop(_SPAN, None)
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
        if event.error is not None:
            span.set_status(self._trace.StatusCode.ERROR, type(event.error).__name__)
        span.end()


def hooks(tracer_provider: Any = None, meter_provider: Any = None) -> dict[str, Any]:
    """Event hooks for one client: ``Embedder(..., event_hooks=telemetry.hooks())``.
    ``tracer_provider`` / ``meter_provider``: yours (default: the global ones)."""
    return _Reporter(tracer_provider, meter_provider).hooks()


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> None:
    """Report every client's calls of this process to OpenTelemetry, from now on (a second
    call replaces the first's providers)."""
    global _remove
    uninstrument()
    _remove = add_global_hooks(hooks(tracer_provider, meter_provider))


def uninstrument() -> None:
    """Stop reporting (calls under way end their spans unreported)."""
    global _remove
    if _remove is not None:
        _remove()
        _remove = None


__all__ = ["SCOPE", "hooks", "instrument", "uninstrument"]
