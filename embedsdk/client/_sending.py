"""One request of a batch: paced, sent, decoded, retried with backoff.

A client owns one :class:`Sender`. It holds the client's connections (the transport), the
user's ``rpm``/``tpm`` ceilings and the shared rate controller's turn, its one retry loop,
and what the client learned about the server as it answered: the wire format it takes
(base64 or floats) and the length of its vectors. The runner (``_runner``) decides which
texts go together; the sender gets them there and back, and turns every answer into vectors
or a :class:`~embedsdk.http.Failure` whose error never carries the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import weakref
from typing import Any, Union

import backoff

from .. import ratecontrol
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    ClientClosedError,
    EmbedSDKError,
    InsufficientQuotaError,
    ResponseValidationError,
    WaitTooLongError,
)
from .._text import append_note, excerpt, plural
from .._version import __version__
from ..http import (
    DNS_RETRIES,
    MAX_RETRY_AFTER,
    AiohttpTransport,
    Failure,
    Request,
    Response,
    RetryBudget,
    Transport,
    Verdict,
    content_type_of,
    decode_embeddings,
    is_testing,
    not_found_hint,
    refuses_base64,
    status_error,
    trace_id_of,
    wait_beyond,
    wait_gen,
)
from ._autobatch import BatchSizer
from ._config import ClientOptions
from ._events import Hooks, collectors, credit, new_call
from ._job import Job, Stats, Vectors, stops_the_call
from ._progress import Progress

logger = logging.getLogger("embedsdk")

_FORKED_LEFTOVERS: list[Transport] = []  # the parent's sessions, inherited by a forked child


def _tell_unreachable(job: Job, exc: BaseException | None, max_retries: int) -> None:
    """Say at INFO, once a call, that the server is out of reach (refused, DNS...): the
    retries that follow take a while, and a user should not wait for them in silence."""
    if not isinstance(exc, APIConnectionError) or not stops_the_call(exc):
        return
    if not job.told_unreachable:
        job.told_unreachable = True
        retries = min(DNS_RETRIES, max_retries) if exc.reason == "dns" else max_retries
        logger.info("%s; retrying up to %s", exc, plural(retries, "time"))


def _span(seconds: float) -> str:
    """``86,400 s (24 h)``, ``300 s (5 min)``, ``45 s``: a wait, readable at any length."""
    if seconds >= 3600:
        return f"{seconds:,.0f} s ({seconds / 3600:.3g} h)"
    if seconds >= 60:
        return f"{seconds:,.0f} s ({seconds / 60:.3g} min)"
    return f"{seconds:.3g} s"


#: What an attempt (or the whole request) comes to: the answer's vectors, or a failure.
Outcome = Union[Vectors, Failure]


@dataclasses.dataclass
class _RequestState:
    """One request's own state across its attempts, passed to each: the client's retry loop
    is shared by all its requests and holds none of it."""

    texts: list[str]
    tokens: int  # estimated
    job: Job  # the call it is part of
    budget: RetryBudget  # its retries left, and how many attempts it made
    backoff_from: float | None = None  # the loop's clock when its last backoff began


def _retry_wanted(outcome: Outcome) -> bool:
    """backoff's predicate: retry after a failed attempt the request's budget allows."""
    return isinstance(outcome, Failure) and outcome.retry


class Sender:
    """Sends the requests of one client (see the module's docstring).

    ``transport`` is the caller's (``None``: an aiohttp session of our own, made on first
    use, inside the loop that uses it). ``rate`` is the shared rate controller (``None``
    with ``adaptive=False``); ``sizer`` learns from each answer how latency grows with the
    batch.
    """

    def __init__(
        self,
        options: ClientOptions,
        stats: Stats,
        transport: Transport | None,
        rate: ratecontrol.RateController | None,
        sizer: BatchSizer,
    ) -> None:
        self.options = options
        self.stats = stats
        self.transport = transport
        self.owns_transport = transport is None
        self.closed = False  # set by aclose(): nothing is sent from then on
        self.rate = rate
        self.sizer = sizer
        self.encoding = options.encoding_format
        self.ceilings = ratecontrol.Ceilings(options.rpm, options.tpm)  # the user's own limits
        self.hooks = Hooks(options.event_hooks)  # the event hooks, the client's and global
        self.bars: weakref.WeakSet[Progress] = weakref.WeakSet()  # of the calls under way
        self._last_told: dict[str, float] = {}  # when each kind of slow-down was last logged
        # The length of the first vectors that arrived: later answers of another length are
        # untrustworthy (retried) rather than a failure of the whole call.
        self.dim_seen: int | None = options.dimensions
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"embedsdk/{__version__}",
        }
        if options.api_key:
            self._headers["Authorization"] = f"Bearer {options.api_key}"
        # The client's one retry loop, built here rather than for every request: backoff's
        # decorator is a closure over the policy (the waits, when to retry, what to log), the
        # same for every request. What belongs to one request is passed to each attempt (a
        # _RequestState: its texts, its call, its RetryBudget), and each attempt returns its
        # outcome: the vectors, or a Failure (the error, the rate controller's Verdict, the
        # budget's decision). backoff gives that Failure to the predicate, to the wait
        # generator (wait_gen) and to on_backoff, and returns the last outcome: nothing
        # travels as an attribute of the exception.
        self._retrying = backoff.on_predicate(
            wait_gen,
            _retry_wanted,
            max_tries=None,
            jitter=None,  # wait_gen jitters itself (and keeps a Retry-After hint as asked)
            on_backoff=self._on_backoff,
            logger=None,
        )(self._attempt)

    # -- the connections -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Refuse further requests and close the connections (when they are ours)."""
        self.closed = True
        if self.transport is not None and self.owns_transport:
            await self.transport.aclose()

    def holds_session(self) -> bool:
        """Whether it has an aiohttp session of its own, to be closed."""
        return self.owns_transport and isinstance(self.transport, AiohttpTransport)

    def close_unawaited(self) -> None:
        """Close its own session without a loop (the client was never closed)."""
        if self.owns_transport and isinstance(self.transport, AiohttpTransport):
            self.transport.close_unawaited()

    def forget_loop(self) -> None:
        """Drop what belongs to the parent's loop. Its session cannot be closed from here: it
        is kept referenced, so that collecting it does not warn about an unclosed session."""
        if self.owns_transport and self.transport is not None:
            _FORKED_LEFTOVERS.append(self.transport)
            self.transport = None
        self.ceilings.forget()

    # -- a call's start and end, for its hooks and usage collectors -------------------------

    def begin(self, job: Job, offset: int = 0) -> None:
        """A call (a stream's window) starts: note the usage collectors open here, and tell
        the ``"call"`` hooks."""
        job.usage.price = self.options.price
        job.counters = (job.usage, self.stats)
        job.collectors = collectors()
        job.started = asyncio.get_running_loop().time()
        options = self.options
        job.call = new_call(
            options.model, options.endpoint, options.provider, job.n_inputs, offset, job.usage
        )
        self.hooks.emit("call", job.call, inputs=job.n_inputs)

    def end(self, job: Job, error: BaseException | None = None) -> None:
        """A call is over: its usage goes to the collectors open at its start, and the
        ``"call_end"`` hooks hear of it (once, however many paths end it)."""
        if job.ended or job.call is None:
            return
        job.ended = True
        credit(job.collectors, job.usage)
        seconds = asyncio.get_running_loop().time() - job.started
        self.hooks.emit(
            "call_end",
            job.call,
            inputs=job.n_inputs,
            tokens=job.usage.tokens,
            seconds=seconds,
            error=error,
        )

    # -- one request, with pacing and retries ----------------------------------------------

    async def send(self, texts: list[str], tokens: int, job: Job) -> Outcome:
        """The vectors of ``texts`` (about ``tokens`` tokens), retried as ``_retry`` says; or
        the request's last :class:`Failure`, when it gave up (its ``attempt``: how many
        attempts it made)."""
        paced = self.rate is not None  # a 429 waits in the controller's shared pause
        # How long a request refused by a rate limit keeps trying is measured in time (no
        # sleeping in testing mode: a count of refusals stands for it).
        clock = None if self.rate is None or is_testing() else self.rate.now
        budget = RetryBudget(self.options.max_retries, paced, clock)
        state = _RequestState(texts, tokens, job, budget)
        try:
            outcome: Outcome = await self._retrying(state)
        finally:
            # Cancelled in a backoff: what it lasted (no loop: closed by the collector).
            if state.backoff_from is not None:
                with contextlib.suppress(RuntimeError):
                    lasted = asyncio.get_running_loop().time() - state.backoff_from
                    job.count(waited_seconds=lasted)
        return outcome

    async def _attempt(self, state: _RequestState) -> Outcome:
        """One attempt of a request: its vectors, or its failure judged by its budget."""
        if state.backoff_from is not None:  # the backoff before it, as long as it lasted
            state.job.count(waited_seconds=asyncio.get_running_loop().time() - state.backoff_from)
            state.backoff_from = None
        try:
            outcome = await self._send_once(state.texts, state.tokens, state)
        except EmbedSDKError as exc:  # no answer, an untrustworthy one, a closed client...
            outcome = Failure(exc)  # no answer is no signal for the rate controller
        if isinstance(outcome, Failure):
            return state.budget.judge(outcome)
        return outcome

    def _on_backoff(self, details: Any) -> None:
        """backoff's ``on_backoff``: a failed attempt is about to be retried after a wait."""
        failure: Failure = details["value"]
        state: _RequestState = details["args"][0]
        exc, wait = failure.error, details["wait"]
        state.job.count(retries=1)
        state.backoff_from = asyncio.get_running_loop().time()  # counted when it is over
        if self.hooks.wants("retry"):
            self.hooks.emit(
                "retry",
                state.job.call,
                inputs=len(state.texts),
                seconds=wait,
                attempt=details["tries"],
                error=exc,
                reason=type(exc).__name__,
            )
        if wait >= ratecontrol.VISIBLE_WAIT:
            self._waits(exc, wait)
        if failure.verdict is Verdict.PAUSED:
            when = "after the shared pause"
        elif failure.verdict is Verdict.NARROWED and wait == 0:
            when = "when a slot is free (fewer requests in flight)"
        else:
            when = f"in {wait:.2f} s"
        # A server's message can be a page long: the log line quotes its start.
        logger.debug("retry %d %s, after %s", details["tries"], when, excerpt(str(exc)))
        _tell_unreachable(state.job, exc, self.options.max_retries)

    def _waits(self, exc: BaseException | None, seconds: float) -> None:
        """A request is about to back off for long (a server's ``Retry-After``, or the
        backoff after many failures): say so, as :meth:`_held_back` says the controller's
        waits (INFO at most every 10 s per client, and on the progress bars)."""
        if isinstance(exc, APIStatusError):
            what = f"HTTP {exc.status_code}"
        else:
            what = "no answer" if isinstance(exc, APIConnectionError) else "an untrustworthy answer"
        hint = getattr(exc, "retry_after", None)
        if hint is None:
            why = "backing off"
        elif hint >= MAX_RETRY_AFTER:
            why = f"as the server asked (Retry-After), at most {MAX_RETRY_AFTER:g} s at a time"
        else:
            why = "as the server asked (Retry-After)"
        self._tell("backoff", f"{what}: retrying in {seconds:.1f} s, {why}")

    def _tell(self, kind: str, text: str) -> None:
        """``text`` on the progress bars of the calls under way, and at INFO at most every
        10 s per client and ``kind`` of wait (the loop's clock: simulated time follows it)."""
        for bar in list(self.bars):
            bar.note(text)
        now = asyncio.get_running_loop().time()
        if now - self._last_told.get(kind, -math.inf) >= 10.0:
            self._last_told[kind] = now
            logger.info("%s", text)

    async def _pace(self, tokens: int, job: Job) -> ratecontrol.Ticket | None:
        """Wait for the user's ``rpm``/``tpm`` ceilings, then for the adaptive controller."""
        # Estimates corrected by usage.prompt_tokens when the controller has seen some.
        await self.ceilings.wait(tokens if self.rate is None else self.rate.cost(tokens))
        if self.rate is None:
            return None
        held_back = self._held_back
        if self.hooks.wants("pause"):

            def held_back(why: str, seconds: float) -> None:
                self._held_back(why, seconds)
                self.hooks.emit("pause", job.call, seconds=seconds, reason=why)

        return await ratecontrol.take_turn(self.rate, tokens, held_back)

    def _held_back(self, why: str, seconds: float) -> None:
        """A request is about to wait long for the rate controller: say so (INFO at most every
        10 s per client and kind of wait, and on the progress bars of the calls under way)."""
        assert self.rate is not None
        state = self.rate.describe()
        wait = {
            "pause": f"every request paused {seconds:.1f} s after HTTP 429",
            "slot": "waiting for a request in flight to end",
            "probe": "one request probes the limit",
            "leader": "waiting for the cluster's rate leader to answer",
        }.get(why, "requests held back by the learned pace")
        for bar in list(self.bars):
            bar.note(f"{wait}; {state}")
        now = asyncio.get_running_loop().time()  # the loop's clock: simulated time follows it
        if now - self._last_told.get(why, -math.inf) >= 10.0:
            self._last_told[why] = now
            logger.info("rate limited: %s; %s", wait, state)

    async def _exchange(
        self, request: Request, ticket: ratecontrol.Ticket | None
    ) -> tuple[Response, Verdict]:
        """Send ``request``; tell the rate controller, if any, how the server took it, and
        return its verdict with the answer."""
        assert self.transport is not None
        if self.rate is None or ticket is None:
            return await self.transport.send(request), Verdict.NOTED
        try:
            response = await self.transport.send(request)
        except BaseException:
            self.rate.on_error(ticket)  # frees the slot: no answer is no signal
            raise
        if self._beyond_max_wait(response) is not None:
            # The call fails now (WaitTooLongError): no shared pause, which would hold the
            # account's next call for minutes in silence before it is told the same.
            self.rate.on_error(ticket)
            return response, Verdict.NOTED
        verdict = ratecontrol.report(
            self.rate, ticket, response.status, response.headers, response.body
        )
        return response, Verdict(verdict)

    def _beyond_max_wait(self, response: Response) -> tuple[float, str] | None:
        """The wait a 429 asks for and its header, when longer than ``max_wait``."""
        if response.status != 429:
            return None
        return wait_beyond(response.headers, self.options.max_wait)

    def _check_open(self, ticket: ratecontrol.Ticket | None = None) -> None:
        """Refuse to send on a closed client (also after waiting for a turn: ``aclose`` may
        have run meanwhile, and a request sent now would open a session nobody closes)."""
        if not self.closed:
            return
        if ticket is not None and self.rate is not None:
            self.rate.on_error(ticket)  # free the probe slot the ticket may hold
        raise ClientClosedError("this client is closed; create a new one")

    async def _send_once(self, texts: list[str], tokens: int, state: _RequestState) -> Outcome:
        """One attempt: the vectors, or the :class:`Failure` of an error answer (with the
        rate controller's verdict on it). No answer raises (``APIConnectionError``...)."""
        self._check_open()
        job = state.job
        clock = asyncio.get_running_loop().time
        asked = clock()
        ticket = await self._pace(tokens, job)
        sent = clock()
        self._check_open(ticket)  # no await between here and the send
        if self.transport is None:
            self.transport = AiohttpTransport()
        payload: dict[str, Any] = {"model": self.options.model, "input": texts}
        encoding = payload["encoding_format"] = self.encoding
        if self.options.dimensions is not None:
            payload["dimensions"] = self.options.dimensions
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        request = Request(self.options.endpoint, self._headers, body, self.options.timeout)
        job.count(waited_seconds=sent - asked, requests=1, bytes_sent=len(body))
        attempt = state.budget.attempts + 1
        if self.hooks.wants("request"):
            self.hooks.emit(
                "request",
                job.call,
                inputs=len(texts),
                tokens=tokens,
                attempt=attempt,
                bytes=len(body),
            )
        try:
            response, verdict = await self._exchange(request, ticket)
        except BaseException as lost:  # no answer: a connection error, a timeout, cancelled
            took = clock() - sent
            job.count(busy_seconds=took)
            self._responded(state, None, took, None, lost)
            raise
        took = clock() - sent
        job.count(
            busy_seconds=took,
            bytes_received=len(response.body),
            rate_limited=int(response.status == 429),
        )
        if response.status >= 400:
            exc = self._error_for(response)
            beyond = self._beyond_max_wait(response)
            if beyond is not None and not isinstance(exc, InsufficientQuotaError):
                failure = self._wait_too_long(exc, *beyond)
                self._responded(state, response, took, None, failure)
                return Failure(failure, verdict)
            # Judge by what this request asked for: batches in flight when another one
            # switched the client to floats still carry base64 and are re-sent too.
            if encoding == "base64" and refuses_base64(exc):
                self._use_floats(exc)
                self._responded(state, response, took, None, exc)
                return await self._send_once(texts, tokens, state)  # this attempt, no retry
            self._responded(state, response, took, None, exc)
            return Failure(exc, verdict)
        try:
            vectors, used = self._decode(response, len(texts))
        except EmbedSDKError as bad:
            self._responded(state, response, took, None, bad)
            raise
        self._responded(state, response, took, used)
        self.dim_seen = vectors.shape[1]
        self.sizer.observe(len(texts), took)  # how latency grows with the batch
        if used is None:  # the server said nothing: our estimate, marked as one
            job.count(inputs_sent=len(texts), tokens=tokens, tokens_estimated=tokens)
        else:
            job.count(inputs_sent=len(texts), tokens=used)
        if ticket is not None and used is not None and self.rate is not None:
            self.rate.on_usage(ticket, used)
        return vectors

    def _responded(
        self,
        state: _RequestState,
        response: Response | None,
        took: float,
        used: int | None,
        error: BaseException | None = None,
    ) -> None:
        """Tell the ``"response"`` hooks how a request ended: its answer (status, latency,
        size), or no answer (``response`` ``None``: the ``error`` says why)."""
        if self.hooks.wants("response"):
            self.hooks.emit(
                "response",
                state.job.call,
                inputs=len(state.texts),
                tokens=used,
                status=None if response is None else response.status,
                seconds=took,
                attempt=state.budget.attempts + 1,
                bytes=0 if response is None else len(response.body),
                error=error,
            )

    # -- the answer ------------------------------------------------------------------------

    def _use_floats(self, exc: APIStatusError) -> None:
        """The server refused base64 (:func:`refuses_base64`): floats from now on."""
        if self.encoding == "base64":
            logger.info(
                "server refuses base64 (%s); using float lists from now on", excerpt(exc.message)
            )
            self.encoding = "float"

    def _decode(self, response: Response, count: int) -> tuple[Vectors, int | None]:
        """The vectors of a 2xx answer. When it cannot be decoded, the error quotes the body
        with the key scrubbed: a gateway answering 200 with an error body may echo the key.
        (Scrubbing a good body would corrupt it: a short key can occur inside base64.)"""
        headers = response.headers
        asked = self.options.dimensions is not None  # else dim_seen: earlier answers' width
        args = (count, self.dim_seen, trace_id_of(headers), content_type_of(headers), asked)
        try:
            return decode_embeddings(response.body, *args)
        except EmbedSDKError:
            redacted = self._redact(response.body)
            if redacted == response.body:
                raise
        try:
            decode_embeddings(redacted, *args)
        except EmbedSDKError as scrubbed:
            raise scrubbed from None  # the same complaint, quoting the scrubbed body
        raise ResponseValidationError(
            "the answer could not be decoded, and its body holds the API key"
        ) from None

    def _redact(self, body: bytes) -> bytes:
        """``body`` without the API key: some servers and gateways echo the key they got."""
        key = self.options.api_key
        if key and key.encode() in body:
            body = body.replace(key.encode(), b"***")
        return body

    def _wait_too_long(self, exc: APIStatusError, seconds: float, header: str) -> WaitTooLongError:
        """The error of a 429 asking for a wait beyond ``max_wait``: what was asked, and how
        to allow it."""
        error = WaitTooLongError(
            exc.message,
            status_code=exc.status_code,
            code=exc.code,
            trace_id=exc.trace_id,
            retry_after=exc.retry_after,
            body=exc.body,
        )
        error.requested_wait, error.max_wait = seconds, self.options.max_wait
        error.args = (
            f"{error.args[0]}; the server asks to wait {_span(seconds)} ({header}), longer than "
            f"max_wait={self.options.max_wait:g} s, so the call stops now instead of sleeping: "
            "try again later, or raise max_wait (--max-wait on the command line; None, or "
            "none, for no bound)",
        )
        return error

    def _error_for(self, response: Response) -> APIStatusError:
        """The exception for an error answer, never carrying the key; a 401/403 says where
        the key came from (the argument or which variable), never its value."""
        key = self.options.api_key
        exc = status_error(response.status, response.headers, self._redact(response.body))
        if exc.status_code in (401, 403):
            source = self.options.api_key_source
            note = (
                f"the API key came from the {source}"
                if key
                else "no API key was sent (pass api_key= or set EMBEDSDK_API_KEY)"
            )
            exc.args = (f"{exc.args[0]}; {note}",)
        elif exc.status_code == 404:
            append_note(exc, not_found_hint(self.options.endpoint, self.options.model, exc))
        return exc
