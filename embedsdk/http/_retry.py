"""When to retry, how long to wait, when to split a batch, when to stop a call. Pure.

A request's attempts report to the retry loop in typed values, never in attributes set on
the exception: an attempt that failed is a :class:`Failure` (its error, the rate
controller's :class:`Verdict` on the answer, and what the request's :class:`RetryBudget`
decided), which backoff hands to :func:`wait_gen` and to the loop's handlers.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import random
import re
from collections.abc import Callable, Generator, Mapping
from typing import Any

import backoff

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    BadRequestError,
    EmbedSDKError,
    InsufficientQuotaError,
    ResponseValidationError,
    WaitTooLongError,
)
from ._responses import header, parse_ratelimit_headers, parse_retry_after

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524})

# llama.cpp answers an input longer than its batch with a 500 that no retry can fix.
_PERMANENT_500_MARKERS = ("input is too large", "too large to process", "exceeds the maximum")

_testing = False


def set_testing(enabled: bool) -> None:
    """For users' own tests: retry without sleeping (stamina's ``set_testing``)."""
    global _testing
    _testing = enabled


def is_testing() -> bool:
    return _testing


def should_split(exc: BaseException) -> bool:
    """A 413, or a 400 that complains about the batch size: send the batch in halves.

    Not a 413 that says one input is too long (TEI: "must have less than 512 tokens"): a
    smaller batch cap would not help, the input is what :func:`blames_input` looks for.
    """
    if not isinstance(exc, APIStatusError):
        return False
    if exc.status_code == 413:
        return not is_input_too_large(exc)
    return exc.status_code in (400, 422) and "batch size" in exc.message.lower()


#: How servers say one input is longer than they take (llama.cpp 500, TEI 413/422 "must
#: have less than 512 tokens", OpenAI 400 "maximum context length").
_TOO_LONG_MARKERS = (*_PERMANENT_500_MARKERS, "must have less than", "maximum context length")


def is_input_too_large(exc: BaseException) -> bool:
    """The server refused an input for its length: no retry or split of the batch helps."""
    if not isinstance(exc, APIStatusError):
        return False
    message = exc.message.lower()
    if exc.status_code < 500 and "batch size" in message:  # the batch, not one input
        return False
    return any(marker in message for marker in _TOO_LONG_MARKERS)


#: How servers name the largest batch they take: SiliconFlow "input batch size 83 > maximum
#: allowed batch size 64", TEI "batch size 77 > maximum allowed batch size 32".
_BATCH_LIMIT_RE = re.compile(r"(?:maximum|max)[^0-9]{0,40}?batch size[^0-9]{0,10}(\d+)", re.I)


def lowered_batch_cap(exc: APIStatusError, sent: int, cap: int) -> int:
    """The batch cap after the server refused a batch of ``sent`` inputs.

    The limit the server names, else half of what was sent; never above ``cap`` or
    ``sent - 1`` (a retry of the same size would only be refused again), never below 1.
    """
    match = _BATCH_LIMIT_RE.search(exc.message)
    limit = int(match.group(1)) if match else sent // 2
    return max(1, min(cap, limit, sent - 1))


def refuses_base64(exc: BaseException) -> bool:
    """Some servers (older vLLM, TEI) refuse base64: the client switches to float lists.

    They answer 400, or 422 from a validating framework (FastAPI, axum), naming base64 or
    the ``encoding_format`` field.
    """
    if not isinstance(exc, APIStatusError):
        return False
    if not isinstance(exc, BadRequestError) and exc.status_code != 422:
        return False
    message = exc.message.lower()
    return any(word in message for word in ("base64", "encoding_format", "encoding format"))


#: Statuses a server refuses a request with when it will not take it as it is.
_REFUSALS = frozenset({400, 413, 422})

#: Words of a refusal about what a text holds: too long, empty, unreadable, or content the
#: provider will not take (SiliconFlow "input contains content that cannot be processed",
#: DashScope "Input data may contain inappropriate content", Zhipu "敏感内容").
_CONTENT_WORDS = (
    *_TOO_LONG_MARKERS,
    "too long",
    "context length",
    "empty",
    "cannot be processed",
    "can not be processed",
    "could not be processed",
    "inappropriate",
    "sensitive",
    "unsafe",
    "moderation",
    "content polic",
    "content filter",
    "content management",
    "utf-8",
    "utf8",
    "unicode",
    "tokeniz",
    "敏感",
    "不安全",
    "内容",
    "输入",
    "过长",
)

#: Words of a refusal about the request itself: the model, the options, the key, the body.
_REQUEST_WORDS = (
    "model",
    "dimension",
    "encoding_format",
    "encoding format",
    "api key",
    "api_key",
    "apikey",
    "authoriz",
    "unknown parameter",
    "unrecognized",
    "extra inputs are not permitted",  # pydantic, about a field we sent
    "json",
    "not supported",
    "模型",
    "参数",
)

#: Provider codes of such refusals. Content: DashScope ``DataInspectionFailed``, Zhipu
#: ``1301`` (unsafe content), OpenAI / Azure ``content_filter`` and
#: ``content_policy_violation``, TEI's ``Tokenizer`` error type. Request: SiliconFlow
#: ``20012`` (no such model), OpenAI ``model_not_found`` / ``invalid_api_key``, Zhipu ``1211``
#: (no such model). SiliconFlow's ``20015`` ("invalid parameter") says neither.
_CONTENT_CODES = frozenset(
    {"datainspectionfailed", "1301", "content_filter", "content_policy_violation", "tokenizer"}
)
_REQUEST_CODES = frozenset({"20012", "model_not_found", "invalid_api_key", "1211"})

#: The name of a field at the start of a location: ``input``, ``input[3]``, ``$.input``.
_FIELD_RE = re.compile(r"^[$.]*([a-z_]+)")


def blames_input(exc: BaseException) -> bool | None:
    """Whether a refusal is about what some input holds (``True``), about the request
    (``False``), or cannot be told (``None``). Anything but a refusal is ``False``.

    A refusal is a 400, 413 or 422 (not a batch size nor base64: they have their own
    remedies), or a 5xx saying an input is too large (llama.cpp). It is about the inputs
    when the provider names the ``input`` field (OpenAI's ``param``, FastAPI's ``loc``), a
    content code, or words about a text's length, emptiness or content; about the request
    when it names another field, a request code, or the model, an option or the key. The
    core splits a refused batch to find the inputs unless this is ``False``.
    """
    if not isinstance(exc, APIStatusError):
        return False
    if exc.status_code >= 500:
        return is_input_too_large(exc)
    if exc.status_code not in _REFUSALS or should_split(exc) or refuses_base64(exc):
        return False
    fields = _fields_named(exc.body)
    if fields:
        if fields == {"input"}:
            return True
        if "input" not in fields:
            return False
    code = str(exc.code).lower()
    if code in _CONTENT_CODES:
        return True
    if code in _REQUEST_CODES:
        return False
    return _judged_by_words(exc.message.lower())


#: Rounds of halving a refused batch with nothing going through, every part refused as the
#: whole was, after which the request is taken to be the problem (see ``_core._isolate``).
#: One round (both halves refused) would also be what two refused inputs, one in each half,
#: look like, and would fail the whole batch for them; after two rounds (all four quarters
#: refused the same way), it takes four refused inputs, one in each quarter. A request
#: refused whatever it holds thus costs 6 extra requests, once per call.
WHOLE_AFTER = 2


def refusal_key(exc: APIStatusError) -> tuple[Any, ...]:
    """What tells one refusal from another: the status, the code, the words less their
    numbers (OpenAI's "you requested 9000 tokens" changes with the part sent)."""
    return (exc.status_code, str(exc.code), re.sub(r"\d+", "#", exc.message))


def same_refusal(exc: APIStatusError, other: APIStatusError) -> bool:
    return refusal_key(exc) == refusal_key(other)


def refused_alone(exc: BaseException) -> bool:
    """The server refused one input by itself: a refusal :func:`blames_input` does not pin on
    the request, of a request that carried that input alone (``batch_indices``, set by the
    core: a refused batch is split until its refused inputs stand alone)."""
    indices = getattr(exc, "batch_indices", None) or ()
    return len(indices) == 1 and blames_input(exc) is not False


def _judged_by_words(message: str) -> bool | None:
    """A refusal's words: content first (OpenAI's "This model's maximum context length"
    names the model too), then the request, then any mention of the input or a text."""
    if any(word in message for word in _CONTENT_WORDS):
        return True
    if any(word in message for word in _REQUEST_WORDS):
        return False
    if any(word in message for word in ("input", "text", "string")):
        return True
    return None


def _fields_named(body: str) -> set[str]:
    """The request fields an error body blames: OpenAI's ``error.param``, the first part of
    each FastAPI ``detail[].loc`` after ``body``. Empty when it names none."""
    try:
        data = json.loads(body)
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    error = data.get("error")
    places: list[Any] = []
    if isinstance(error, dict) and isinstance(error.get("param"), str):
        places.append(error["param"])
    if isinstance(data.get("param"), str):
        places.append(data["param"])
    detail = data.get("detail")
    for item in detail if isinstance(detail, list) else ():
        loc = item.get("loc") if isinstance(item, dict) else None
        if isinstance(loc, list):
            parts = [part for part in loc if part != "body"]
            places.extend(parts[:1])
    found = (_FIELD_RE.match(str(place).strip().lower()) for place in places)
    return {match.group(1) for match in found if match}


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: 408/409/429/5xx, no answer, timeouts, untrustworthy bodies.

    Never: other 4xx (400, 401, 403, 404, 422), ``insufficient_quota``, a 429 asking for a
    wait beyond ``max_wait``, a 5xx that says the input is too large, and a TLS certificate
    that could not be verified.
    """
    if isinstance(exc, APIConnectionError):
        return exc.reason != "certificate"
    if isinstance(exc, ResponseValidationError):
        return exc.retryable  # not vectors of another width: they would come again
    if not isinstance(exc, APIStatusError) or isinstance(
        exc, (InsufficientQuotaError, WaitTooLongError)
    ):
        return False
    if exc.status_code >= 500:
        message = exc.message.lower()
        return not any(marker in message for marker in _PERMANENT_500_MARKERS)
    return exc.status_code in RETRY_STATUSES


def announced_wait(headers: Mapping[str, str]) -> tuple[float, str] | None:
    """How long an answer asks the client to wait, as asked (uncapped), and the header that
    says so (``"Retry-After: 86400"``); ``None`` when it says nothing.

    ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) when sent: the server's
    own word on when to come back. Else the longest ``x-ratelimit-reset-requests`` /
    ``-tokens`` of a limit whose ``x-ratelimit-remaining-*`` is spent (a limit with some
    left says nothing about when the request may go).
    """
    for name, shown in (("retry-after-ms", "retry-after-ms"), ("retry-after", "Retry-After")):
        raw = header(headers, name)
        seconds = parse_retry_after({name: raw}, limit=None) if raw else None
        if raw and seconds is not None:
            return seconds, f"{shown}: {raw}"
    hint = parse_ratelimit_headers(headers)
    if hint is None:
        return None
    spent = [
        (reset, kind)
        for reset, left, kind in (
            (hint.reset_requests, hint.remaining_requests, "requests"),
            (hint.reset_tokens, hint.remaining_tokens, "tokens"),
        )
        if reset is not None and left is not None and left <= 0
    ]
    if not spent:
        return None
    seconds, kind = max(spent)
    name = f"x-ratelimit-reset-{kind}"
    return seconds, f"{name}: {header(headers, name)}"


def wait_beyond(headers: Mapping[str, str], max_wait: float | None) -> tuple[float, str] | None:
    """The wait a 429 asks for and its header, when it is longer than ``max_wait`` seconds
    (``None``: no bound): the call then fails at once rather than sleeps."""
    asked = announced_wait(headers)
    if asked is None or max_wait is None or asked[0] <= max_wait:
        return None
    return asked


class Verdict(str, enum.Enum):
    """What the rate controller made of an answer, which decides how its retry waits.

    ``ratecontrol`` gives it (its ``report``), the retry loop reads it (:func:`wait_gen`,
    :class:`RetryBudget`): it is defined here, below both. A ``str`` whose value is its
    name in lower case, as it reads in logs.
    """

    PAUSED = "paused"  # a rate limit: every request waits for the shared pause, then retries
    NARROWED = "narrowed"  # a concurrency cap: the retry goes when a slot is free
    NOTED = "noted"  # nothing for the controller (or no controller): the usual backoff

    def __str__(self) -> str:
        return str(self.value)

    @property
    def controlled(self) -> bool:
        """The controller acted on the refusal: its waits, not the backoff's, space the
        retries, and the request's :class:`RetryBudget` counts them apart."""
        return self is not Verdict.NOTED


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed attempt of a request: its ``error``, and what the rate controller made of
    the answer (``verdict``: :attr:`Verdict.NOTED` when there was no answer, or no
    controller). Once the request's :class:`RetryBudget` judged it (:meth:`RetryBudget.judge`):
    ``attempt``, its number (1 for the first: on the last failure, how many attempts the
    request made), and ``retry``, whether another attempt may follow."""

    error: EmbedSDKError
    verdict: Verdict = Verdict.NOTED
    attempt: int = 0
    retry: bool = False


def wait_gen(base: float = 0.5, cap: float = 30.0) -> Generator[float, Failure | None, None]:
    """A ``backoff`` wait generator that honours the server's ``Retry-After`` hint.

    Without a hint, backoff's own ``expo`` and ``full_jitter``: uniform in [0, ceiling] with
    the ceiling ``base`` seconds doubling to ``cap``. ``backoff`` sends each failed attempt
    (a :class:`Failure`) into the generator before asking for the next wait, so a hint wins
    over the exponential guess; a small jitter keeps many workers from returning at the same
    instant. The hint comes capped by the parser at ``_responses.MAX_RETRY_AFTER`` (120 s):
    a longer one is waited for that long, and the retry asks the server again. A 429 asking
    for more than the client's ``max_wait`` never gets here: the sender fails the call at
    once (:func:`wait_beyond`, ``WaitTooLongError``). A 429 the rate controller paused for
    (:attr:`Verdict.PAUSED`) waits in that shared pause, and a refusal of a concurrency cap
    (:attr:`Verdict.NARROWED`, without a hint) for a free slot: no wait of their own.
    """
    ceilings = backoff.expo(base=2, factor=base, max_value=cap)
    next(ceilings)  # backoff's wait generators start with a bare yield
    failure = yield 0.0
    while True:
        ceiling = next(ceilings)
        hint = None if failure is None else getattr(failure.error, "retry_after", None)
        verdict = Verdict.NOTED if failure is None else failure.verdict
        if _testing or verdict is Verdict.PAUSED or (verdict is Verdict.NARROWED and hint is None):
            delay = 0.0
        elif hint is not None:
            delay = hint + random.uniform(0, 0.1 * hint + 0.05)
        else:
            delay = backoff.full_jitter(ceiling)
        failure = yield delay


class RetryBudget:
    """The retries one request has left; it judges each failed attempt (:meth:`judge`).

    ``max_retries`` failures of any retryable kind, of which at most two host names that did
    not resolve (a typo in the host stays one, retrying cannot fix it; a resolver's hiccup
    passes). When ``paced`` (adaptive rate control), a refusal the controller acted on (a
    429, or a 503 read as a concurrency cap) does not count as a failure for
    :data:`PATIENCE` seconds per retry from the request's first one (3 minutes by default):
    the controller spaces the attempts, and a window of a minute spent at once refuses every
    probe until it opens again. ``clock`` gives seconds (the rate controller's); without
    one, ten refusals per retry stand for that time.
    """

    __slots__ = ("attempts", "clock", "failures", "lookups", "patience", "rate_limits", "since")

    def __init__(
        self,
        max_retries: int,
        paced: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.failures = max_retries
        self.lookups = min(DNS_RETRIES, max_retries)
        self.rate_limits = PATIENT_REFUSALS * max_retries if paced else 0
        self.patience = PATIENCE * max_retries
        self.clock = clock
        self.since: float | None = None  # the first controlled refusal
        self.attempts = 0  # judged so far

    def judge(self, failure: Failure) -> Failure:
        """``failure`` numbered (the request's n-th attempt) and told whether to retry."""
        self.attempts += 1
        retry = not self.give_up(failure.error, failure.verdict)
        return dataclasses.replace(failure, attempt=self.attempts, retry=retry)

    def give_up(self, exc: BaseException, verdict: Verdict = Verdict.NOTED) -> bool:
        """Whether a request whose attempt failed with ``exc`` stops here (the budget spent,
        or an error no retry fixes); ``verdict``: the rate controller's on the answer."""
        if not is_retryable(exc):
            return True
        if self.rate_limits > 0 and verdict.controlled:
            if self.clock is None:
                self.rate_limits -= 1
                return False
            now = self.clock()
            if self.since is None:
                self.since = now
            if now - self.since <= self.patience:
                return False
            self.rate_limits = 0  # refused for too long: a daily quota, say
        self.failures -= 1
        if isinstance(exc, APIConnectionError) and exc.reason == "dns":
            self.lookups -= 1
            return self.lookups < 0 or self.failures < 0
        return self.failures < 0


#: Seconds per retry a request refused by a rate limit keeps waiting (adaptive control).
PATIENCE = 30.0
#: Without a clock, refusals per retry that stand for :data:`PATIENCE` (about one every 3 s).
PATIENT_REFUSALS = 10


#: Retries of a request whose host name did not resolve.
DNS_RETRIES = 2


def cause_of(exc: BaseException) -> tuple[Any, ...]:
    """What went wrong, for telling one kind of failure from another (not the message)."""
    return (type(exc).__name__, getattr(exc, "status_code", None), getattr(exc, "reason", None))


class CallBreaker:
    """Stops a call that keeps going (``errors="return"``) when its requests fail one way.

    A request that used all its retries on a retryable failure has *given up*. After
    :meth:`needed` give-ups in a row with one cause, with nothing arriving in between, the
    server is in a storm: the call's other batches would each go through the same retries
    for the same answer, so they are not sent. Random faults do not trip it: it takes at
    least 8 failed attempts in a row of one kind (two requests with their retries, more when
    ``max_retries`` is under 3), which at a 20 % fault rate is a chance of 0.2**8 per run.
    """

    __slots__ = ("cause", "count")

    def __init__(self) -> None:
        self.cause: tuple[Any, ...] | None = None
        self.count = 0

    @staticmethod
    def needed(max_retries: int) -> int:
        """Give-ups in a row that trip it: 2, or enough to make 8 attempts."""
        return max(2, -(-8 // (max_retries + 1)))

    def success(self) -> None:
        """A request's vectors arrived: the server works, whatever failed before."""
        self.cause, self.count = None, 0

    def gave_up(self, exc: BaseException, max_retries: int) -> bool:
        """Note a request that failed for good; ``True`` when the call should stop sending.

        A failure that is not retried (a 400, an input too long) concerns that batch only:
        it neither counts nor breaks the run.
        """
        if not is_retryable(exc):
            return False
        cause = cause_of(exc)
        self.count = self.count + 1 if cause == self.cause else 1
        self.cause = cause
        return self.count >= self.needed(max_retries)

    def note(self) -> str:
        """What the error that stopped the call says about it."""
        return (
            f"{self.count} requests in a row failed this way after all their retries, so the "
            "call stopped sending: its other batches were not sent"
        )
