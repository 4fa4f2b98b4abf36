"""The simulator's settings: one dataclass, checked, convertible to and from JSON."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ._limits import LIMITER_KINDS

FAULT_KINDS = ("500", "503", "reset", "hang", "malformed", "wrong_count", "shuffle", "429")
ERROR_STYLES = ("siliconflow", "openai", "tei", "text")
BASE64_MODES = ("ok", "refuse", "ignore")
DIMENSIONS_MODES = ("ok", "refuse")


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """How the simulated provider behaves. Times are seconds; limits are per minute.

    See the field comments; every field has a default, so ``SimConfig(latency=0.1)`` is a
    provider that answers after 100 ms and otherwise never fails.
    """

    dim: int = 1024  # vector length when the request has no `dimensions`
    latency: float = 0.0  # seconds per request
    jitter: float = 0.0  # extra uniform [0, jitter] seconds per request
    per_input: float = 0.0  # extra seconds per input in the request
    max_batch: int | None = 64  # more inputs -> 413
    max_input_tokens: int | None = None  # a longer input -> 500 "input is too large..."
    rpm: float | None = None  # requests per minute -> 429 above (counted as `limiter` says)
    tpm: float | None = None  # tokens (the server's count) per minute -> 429 above
    # "sliding" | "fixed" window (its periods aligned to when the limit was set up), or
    # "token_bucket"
    limiter: str = "sliding"
    window: float = 60.0  # seconds a window counts over: it admits rpm * window / 60
    # seconds of a fixed window's first period already gone when the limit is set up (a real
    # server's periods follow its clock, not the client's first request)
    phase: float = 0.0
    burst: float = 1.0  # seconds of rpm / tpm a token bucket holds (at least one request)
    max_in_flight: int | None = None  # requests answered at once; more -> in_flight_status
    in_flight_status: int = 429  # 429, or 503 as an overloaded server says it
    retry_after: bool = False  # send Retry-After (s) and retry-after-ms with a 429
    # 429s as a gateway in front sends them (nginx's limit_req / limit_conn page): HTML that
    # names no limit, whatever limit refused
    gateway_429: bool = False
    ratelimit_headers: bool = False  # send x-ratelimit-* headers
    fault_rate: float = 0.0  # probability that a request gets a fault
    faults: tuple[str, ...] = (
        "500",
        "503",
        "reset",
        "hang",
        "malformed",
        "wrong_count",
        "shuffle",
    )
    hang: float = 30.0  # seconds a "hang" fault waits before answering
    seed: int = 0  # of the fault and jitter random generator
    api_key: str | None = dataclasses.field(default=None, repr=False)
    error_style: str = "siliconflow"  # "siliconflow" | "openai" | "tei" | "text"
    base64: str = "ok"  # "ok" | "refuse" | "ignore"
    dimensions: str = "ok"  # "ok" | "refuse"
    insufficient_quota: bool = False  # every request -> 429 code "insufficient_quota"
    models: tuple[str, ...] | None = None  # when set, other models -> 404
    # A request holding a text that contains any of these -> 400 in `error_style` ("input
    # contains content that cannot be processed"), as providers refuse content they won't take
    refuse_inputs: tuple[str, ...] = ()
    trace_ids: bool = True  # x-siliconcloud-trace-id on every answer
    track_texts: bool = True  # count each text served in stats()["texts"]
    timeline: bool = False  # note [seconds, status, inputs embedded] of every request
    # The Batch API (/files, /batches; embeddings only). Off: those routes answer 404.
    batch_api: bool = True
    batch_validation: float = 1.0  # seconds a batch stays "validating"
    batch_per_request: float = 0.05  # seconds per line of a batch "in_progress"
    batch_finalizing: float = 1.0  # seconds "finalizing" (and "cancelling")
    batch_expire_after: float = 86400.0  # seconds after creation an unfinished batch expires
    batch_line_failure_rate: float = 0.0  # probability that a line answers a 500
    batch_shuffle: bool = True  # output and error lines in a shuffled order
    batch_max_requests: int = 50_000  # lines per input file; more: the batch fails
    batch_max_bytes: int = 200_000_000  # bytes per uploaded file; more -> 400
    batch_max_inputs: int = 50_000  # inputs over a file's lines; more: the batch fails
    batch_fail_validation: str = ""  # non-empty: every batch fails validation, this message
    batch_poll_429: int = 0  # N > 0: every Nth GET of a batch -> 429 (Retry-After: 2)
    # N > 0: inputs that may be enqueued (in progress) at once; a batch past it fails with
    # token_limit_exceeded (OpenAI's enqueued-token limit per model, counted in inputs)
    batch_enqueued_inputs: int = 0

    def __post_init__(self) -> None:
        # Lists (from JSON) and comma-separated strings become tuples: hashable, immutable.
        object.__setattr__(self, "faults", _names(self.faults))
        if self.models is not None:
            object.__setattr__(self, "models", _names(self.models))
        object.__setattr__(self, "refuse_inputs", _names(self.refuse_inputs))
        _validate(self)

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON-ready values (the API key included: it is the child's config)."""
        data = dataclasses.asdict(self)
        data["faults"] = list(self.faults)
        data["models"] = None if self.models is None else list(self.models)
        data["refuse_inputs"] = list(self.refuse_inputs)
        return data

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any]) -> SimConfig:
        """A config from a mapping of field names (unknown names are a ``TypeError``)."""
        return cls().replace(**fields)

    def replace(self, **fields: Any) -> SimConfig:
        """A copy with ``fields`` changed; unknown names are a ``TypeError``."""
        unknown = sorted(set(fields) - FIELD_NAMES)
        if unknown:
            raise TypeError(f"unknown SimConfig field {unknown[0]!r}")
        return dataclasses.replace(self, **fields)


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SimConfig))


def _names(value: Any) -> tuple[str, ...]:
    """A tuple of names from a tuple, a list or a comma-separated string."""
    if isinstance(value, str):
        return tuple(name.strip() for name in value.split(",") if name.strip())
    return tuple(value)


def _number(name: str, value: Any, *, optional: bool = False, positive: bool = False) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} number{' or None' if optional else ''}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _validate(config: SimConfig) -> None:
    for name in ("latency", "jitter", "per_input", "hang"):
        _number(name, getattr(config, name))
    for name in ("rpm", "tpm"):
        _number(name, getattr(config, name), optional=True, positive=True)
    _number("window", config.window, positive=True)
    _number("burst", config.burst, positive=True)
    _number("phase", config.phase)
    _choice("limiter", config.limiter, LIMITER_KINDS)
    if config.in_flight_status not in (429, 503):
        raise ValueError(f"in_flight_status must be 429 or 503, got {config.in_flight_status!r}")
    for name in ("max_batch", "max_input_tokens", "max_in_flight"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer or None, got {value!r}")
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value!r}")
    if isinstance(config.dim, bool) or not isinstance(config.dim, int) or config.dim < 1:
        raise ValueError(f"dim must be a positive integer, got {config.dim!r}")
    _number("fault_rate", config.fault_rate)
    if config.fault_rate > 1:
        raise ValueError("fault_rate must be a probability between 0 and 1")
    for kind in config.faults:
        _choice("each fault", kind, FAULT_KINDS)
    if config.fault_rate > 0 and not config.faults:
        raise ValueError("fault_rate > 0 needs at least one fault kind")
    _choice("error_style", config.error_style, ERROR_STYLES)
    _choice("base64", config.base64, BASE64_MODES)
    _choice("dimensions", config.dimensions, DIMENSIONS_MODES)
    if not all(isinstance(marker, str) and marker for marker in config.refuse_inputs):
        raise ValueError(
            "refuse_inputs must be non-empty strings (texts containing one are refused)"
        )
    _validate_batch(config)


def _validate_batch(config: SimConfig) -> None:
    for name in ("batch_api", "batch_shuffle"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(config, name)!r}")
    for name in ("batch_validation", "batch_per_request", "batch_finalizing"):
        _number(name, getattr(config, name))
    _number("batch_expire_after", config.batch_expire_after, positive=True)
    _number("batch_line_failure_rate", config.batch_line_failure_rate)
    if config.batch_line_failure_rate > 1:
        raise ValueError("batch_line_failure_rate must be a probability between 0 and 1")
    for name in (
        "batch_max_requests",
        "batch_max_bytes",
        "batch_max_inputs",
        "batch_poll_429",
        "batch_enqueued_inputs",
    ):
        value = getattr(config, name)
        least = 0 if name in ("batch_poll_429", "batch_enqueued_inputs") else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
    if not isinstance(config.batch_fail_validation, str):
        raise ValueError("batch_fail_validation must be a string (empty: no failure)")
