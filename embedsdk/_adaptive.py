"""Adaptive rate control: find a provider's rate limit without being told, and run under it.

SiliconFlow limits requests and tokens per minute, per account and model, sends no
``x-ratelimit-*`` headers and no ``Retry-After``, and users rarely know their level. A
:class:`RateController` learns the limit from the 429s and paces every request of the clients
that share it. The controller does no I/O and never sleeps: the core asks it *when* a request
may go and sleeps in :func:`take_turn`, so the logic is tested with a fake clock.

How it decides (all times in seconds of :func:`time.monotonic`):

- **Free until the first 429.** Before any 429 (and with no rate-limit headers) a request
  costs one uncontended lock and a counter: every client runs flat out.
- **One shared pause.** A 429 starts a new *epoch*: every worker of every client sharing the
  controller waits until the same instant (``Retry-After`` / ``retry-after-ms`` when the
  server sent one, else 0.5 s doubling while the wall lasts, never past the moment the oldest
  success of the last minute leaves a per-minute window). Requests booked before the 429 go
  back in the queue. After the pause one *probe* goes alone; the rest follow when it succeeds.
  The 429s of requests already in flight are echoes of the same event and change nothing.
- **Multiplicative decrease.** A 429 that follows a success sets the pace to 0.9 times what
  the server accepted in the last ``window`` (60 s, as per-minute RPM/TPM limits count), or
  0.9 times the current pace if that is lower. The count of the last minute is exactly the
  limit of a per-minute window, however fast it was spent. The message or the headers tell
  whether requests (RPM) or tokens (TPM) ran out; when they don't, both are paced.
- **Additive increase.** Each second in which the pace held requests back, it grows by 0.2 %
  of the pace set at the last decrease, doubling every window without a 429, so it settles
  just under a per-minute limit and still finds a limit that was raised or underestimated.
- **Headers, when present.** ``x-ratelimit-remaining-*`` over ``x-ratelimit-reset-*`` caps
  the pace until the reset, and ``remaining == 0`` pauses until it: the wall is not hit.
- **Token estimates corrected.** The running ratio of ``usage.prompt_tokens`` to the
  client's estimate turns estimates into real tokens, for the pace and for a user ``tpm``.

The pace is a GCRA (virtual-scheduling token bucket) per dimension with one second of burst,
booked at most that far ahead so that a rising pace takes effect at once. The user's ``rpm`` /
``tpm`` stay hard ceilings, enforced by the client's own limiters on top: adaptation only ever
goes below them. A 429 under adaptive control adds no per-request backoff (the shared pause is
the wait) and draws first on its own allowance of ``3 * max_retries`` retries.

Limits counted per second rather than per minute look, at the first 429, like a small
per-minute limit; the accelerating increase finds them again in minutes. Pass
``RateController(window=1)`` for such a provider.

Sharing: every client with the same endpoint, API key and model gets the same controller
from :func:`shared_controller` (the key is hashed, never stored), so several ``Embedder``
objects of one account in a process pace together. Pass ``rate_controller=RateController()``
to choose the group yourself, or ``adaptive=False`` to turn it off.

>>> ctl = RateController(clock=lambda: 0.0)
>>> ticket = ctl.reserve(100)           # before any 429: go now
>>> ticket.at, ctl.admit(ticket)
(0.0, True)
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import re
import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, NamedTuple

from . import _retry
from ._responses import is_quota, parse_error_body, parse_retry_after

if TYPE_CHECKING:
    from ._config import ClientOptions

#: Seconds counted by a per-minute limit (RPM, TPM).
WINDOW = 60.0

#: How often a worker looks again while the probe is out, seconds.
PROBE_POLL = 0.05

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


class Ticket(NamedTuple):
    """A booking: the request may go at ``at`` if ``epoch`` is still current."""

    epoch: int
    at: float  # clock seconds
    tokens: float  # corrected token cost that was booked
    estimate: int  # the caller's own estimate, to correct the ratio
    booked: bool = False  # holds a place in the pace (False: fast path, or a probe poll)
    held: bool = False  # the pace made it wait: the pace is what limits the throughput


class RateLimitHeaders(NamedTuple):
    """``x-ratelimit-*`` values; ``None`` where absent. Reset times in seconds from now."""

    remaining_requests: float | None
    reset_requests: float | None
    remaining_tokens: float | None
    reset_tokens: float | None


def parse_duration(value: str) -> float | None:
    """Seconds from ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"`` or a bare number."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _duration(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    return None if raw is None else parse_duration(raw)


def parse_ratelimit_headers(headers: Mapping[str, str]) -> RateLimitHeaders | None:
    """The OpenAI-style rate-limit headers of an answer, or ``None`` when it has none."""
    requests = _number(headers, "x-ratelimit-remaining-requests")
    tokens = _number(headers, "x-ratelimit-remaining-tokens")
    if requests is None and tokens is None:
        return None
    return RateLimitHeaders(
        requests,
        _duration(headers, "x-ratelimit-reset-requests"),
        tokens,
        _duration(headers, "x-ratelimit-reset-tokens"),
    )


def exhausted(message: str, hint: RateLimitHeaders | None) -> tuple[bool, bool]:
    """Which limits a 429 says ran out: ``(requests, tokens)``; both when it does not say."""
    if hint is not None:
        requests = hint.remaining_requests is not None and hint.remaining_requests <= 0
        tokens = hint.remaining_tokens is not None and hint.remaining_tokens <= 0
        if requests or tokens:
            return requests, tokens
    text = message.upper()
    requests = "RPM" in text or "RPS" in text or "REQUESTS PER" in text
    tokens = "TPM" in text or "TOKENS PER" in text or "TOKEN LIMIT" in text
    if requests or tokens:
        return requests, tokens
    return True, True


class _Dimension:
    """The adaptive pace of one quantity (requests, or tokens), in units per second."""

    __slots__ = ("base", "hint_rate", "hint_until", "rate", "tat")

    def __init__(self) -> None:
        self.rate: float | None = None  # learned pace; None: not limited
        self.base = 0.0  # pace set at the last decrease (the additive step's scale)
        self.tat = -math.inf  # GCRA theoretical arrival time
        self.hint_rate: float | None = None  # from x-ratelimit headers, until hint_until
        self.hint_until = -math.inf

    def interval(self, now: float) -> float:
        """Seconds per unit at the current pace (0: unlimited)."""
        rate = self.rate
        if self.hint_rate is not None:
            if now < self.hint_until:
                rate = self.hint_rate if rate is None else min(rate, self.hint_rate)
            else:
                self.hint_rate = None
        return 0.0 if rate is None else 1.0 / rate

    def decrease(self, factor: float, accepted: float, floor: float) -> None:
        """Cut the pace to ``factor`` of the lower of the pace and ``accepted`` (per second)."""
        candidates = [r for r in (self.rate, accepted) if r is not None and r > 0]
        if not candidates:
            return  # nothing got through yet: the pause and the probe do the work
        self.rate = self.base = max(floor, factor * min(candidates))

    def increase(self, step: float, amount: float) -> None:
        """Grow by ``step`` units/s per second of use; ``amount`` units just succeeded."""
        if self.rate is not None:
            self.rate += step * self.base * amount / self.rate


class RateController:
    """Adaptive pacing shared by the clients of one account and model. Thread-safe.

    ``window`` is the period of the provider's limits in seconds (60 for RPM/TPM);
    ``decrease`` the factor applied on a 429; ``increase`` the additive step per second, as a
    fraction of the pace set at the last decrease; ``burst`` seconds of pace a request may run
    ahead (default ``window / 60``); ``pause`` the first pause without a ``Retry-After``, in
    seconds (default ``window / 120``, doubling up to ``window``); ``clock`` returns seconds
    (tests pass a fake one). Providers that count per second want ``window=1``.

    The core calls :meth:`reserve` then, once ``ticket.at`` has come, :meth:`admit` (book again
    when it says no; :func:`take_turn` is that loop), and reports the answer with
    :meth:`on_success` (then :meth:`on_usage` once the body is read), :meth:`on_rate_limited`
    or :meth:`on_error` (:func:`report` picks one from the status).
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_bin",
        "_bins",
        "_burst",
        "_clock",
        "_decrease",
        "_decreased_at",
        "_first_pause",
        "_increase",
        "_lock",
        "_probe_out",
        "_probing",
        "_ratio",
        "_real",
        "_requests",
        "_sum_requests",
        "_sum_tokens",
        "_tokens",
        "_window",
        "cooldown_until",
        "epoch",
        "pauses",
        "rate_limited",
        "strikes",
    )

    def __init__(
        self,
        *,
        window: float = WINDOW,
        decrease: float = 0.9,
        increase: float = 0.002,
        burst: float | None = None,
        pause: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        burst = window / 60 if burst is None else burst
        pause = window / 120 if pause is None else pause
        if not 0 < decrease < 1 or increase < 0 or window <= 0 or burst < 0 or pause <= 0:
            raise ValueError("need 0 < decrease < 1, increase >= 0, window, pause > 0, burst >= 0")
        self._window = window
        self._decrease = decrease
        self._increase = increase
        self._burst = burst
        self._first_pause = pause
        self._clock = clock
        self._lock = threading.Lock()
        self._active = False  # False: nothing to pace, reserve() takes the fast path
        self._requests = _Dimension()
        self._tokens = _Dimension()
        # Successes per bin over the last window: [bin number, requests, tokens].
        self._bin = window / 60  # seconds per bin
        self._bins: collections.deque[list[float]] = collections.deque()
        self._sum_requests = 0.0
        self._sum_tokens = 0.0
        self._real = self._ratio = 0.0  # decayed sums of real and estimated tokens
        self._probing = False  # after a pause: one request at a time until one succeeds
        self._probe_out = False
        self._decreased_at = 0.0
        self.epoch = 0
        self.strikes = 0  # pauses since the last success
        self.cooldown_until = -math.inf
        self.rate_limited = 0  # 429s reported
        self.pauses = 0  # shared pauses started

    def __repr__(self) -> str:
        s = self.snapshot()
        return f"<RateController rpm={s['rpm']} tpm={s['tpm']} 429s={self.rate_limited}>"

    # -- the estimate correction -------------------------------------------------------

    @property
    def token_ratio(self) -> float:
        """Real tokens per estimated token, from ``usage.prompt_tokens`` (1.0 until known)."""
        if self._ratio <= 0:
            return 1.0
        return min(4.0, max(0.05, self._real / self._ratio))

    def cost(self, estimate: int) -> float:
        """The corrected token cost of a request the client estimated at ``estimate``."""
        return estimate * self.token_ratio

    # -- before a request -------------------------------------------------------------

    def reserve(self, estimate: int) -> Ticket:
        """Book a request of ``estimate`` estimated tokens; it may go at ``ticket.at``.

        During a pause, while the probe is out, or when the pace has no room within the next
        ``burst`` seconds, the ticket is not booked: look again at ``ticket.at``.
        """
        now = self._clock()
        cost = self.cost(estimate)
        if not self._active:
            return Ticket(self.epoch, now, cost, estimate)
        with self._lock:
            if self.cooldown_until > now:  # a pause: look again when it ends
                return Ticket(self.epoch, self.cooldown_until, cost, estimate)
            if self._probing and self._probe_out:
                return Ticket(self.epoch, now + PROBE_POLL, cost, estimate)
            at = now
            req = self._requests.interval(now)
            tok = self._tokens.interval(now)
            if req:
                at = max(at, self._requests.tat - self._burst)
            if tok:
                at = max(at, self._tokens.tat - self._burst)
            if at > now + self._burst:
                # Book no further ahead than the burst: a booking made at a slow pace would
                # hold its worker after the pace has risen (headers, additive increase).
                return Ticket(self.epoch, now + self._burst, cost, estimate)
            if req:
                self._requests.tat = max(self._requests.tat, at) + req
            if tok:
                self._tokens.tat = max(self._tokens.tat, at) + cost * tok
            return Ticket(self.epoch, at, cost, estimate, True, at > now)

    def admit(self, ticket: Ticket) -> bool:
        """At ``ticket.at``: may the request go? ``False``: a pause began; book again."""
        if not self._active:
            return ticket.epoch == self.epoch
        with self._lock:
            if not ticket.booked or ticket.epoch != self.epoch:
                return False
            if ticket.at < self.cooldown_until:  # booked before an echo lengthened the pause
                return False
            if self._probing:
                if self._probe_out:
                    return False
                self._probe_out = True
            return True

    # -- after a request --------------------------------------------------------------

    def on_success(self, ticket: Ticket, headers: Mapping[str, str] | None = None) -> None:
        """A 2xx arrived (the server took the request, whatever its body turns out to be)."""
        hint = parse_ratelimit_headers(headers) if headers else None
        with self._lock:
            now = self._clock()
            self._count(now, ticket.tokens)
            if ticket.epoch == self.epoch:
                self.strikes = 0
                if self._probing:
                    self._probing = self._probe_out = False
            if hint is not None:
                self._apply_headers(now, hint)
            if ticket.held:
                self._grow(now, ticket.tokens)

    def on_usage(self, ticket: Ticket, used: int) -> None:
        """The answer counted ``used`` tokens (``usage.prompt_tokens``): learn the ratio."""
        if ticket.estimate <= 0 or used < 0:
            return
        with self._lock:
            # Decayed sums: the ratio follows a change of texts within a few hundred calls.
            self._real = self._real * 0.99 + used
            self._ratio = self._ratio * 0.99 + ticket.estimate
            if self._bins:  # count the real tokens, not the booked ones
                self._bins[-1][2] += used - ticket.tokens
                self._sum_tokens += used - ticket.tokens

    def on_rate_limited(
        self,
        ticket: Ticket,
        retry_after: float | None = None,
        message: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> float:
        """A 429 arrived. Returns the seconds until the shared pause ends."""
        hint = parse_ratelimit_headers(headers) if headers else None
        with self._lock:
            now = self._clock()
            self.rate_limited += 1
            if ticket.epoch != self.epoch:  # an echo: in flight when the pause began
                if retry_after is not None:
                    self.cooldown_until = max(self.cooldown_until, now + retry_after)
                return max(0.0, self.cooldown_until - now)
            requests, tokens = exhausted(message, hint)
            if self.strikes == 0:  # the pace was too fast; later strikes: the wall lasts
                self._cut(now, requests, tokens)
            self.strikes += 1
            pause = retry_after if retry_after is not None else self._pause(now, hint)
            self._start_pause(now, now + pause)
            return pause

    def on_error(self, ticket: Ticket) -> None:
        """Any other outcome (5xx, 413, no answer, cancelled): free the probe slot."""
        if self._probing and ticket.epoch == self.epoch:
            with self._lock:
                if ticket.epoch == self.epoch:
                    self._probe_out = False

    def now(self) -> float:
        """The controller's clock, seconds."""
        return self._clock()

    # -- for benchmarks and logs ------------------------------------------------------

    def snapshot(self) -> dict[str, float | int | None]:
        """Learned paces (per minute; ``None``: not limited) and counters."""
        with self._lock:
            req, tok = self._requests.rate, self._tokens.rate
            return {
                "rpm": None if req is None else round(req * 60, 1),
                "tpm": None if tok is None else round(tok * 60),
                "token_ratio": round(self.token_ratio, 3),
                "rate_limited": self.rate_limited,
                "pauses": self.pauses,
                "epoch": self.epoch,
            }

    # -- internals (called with the lock held) ----------------------------------------

    def _count(self, now: float, tokens: float) -> None:
        """Add one success to the per-second bins of the last window."""
        slot = math.floor(now / self._bin)
        bins = self._bins
        if bins and bins[-1][0] == slot:
            last = bins[-1]
            last[1] += 1
            last[2] += tokens
        else:
            bins.append([slot, 1.0, tokens])
        self._sum_requests += 1
        self._sum_tokens += tokens
        self._prune(now)

    def _prune(self, now: float) -> None:
        oldest = math.floor((now - self._window) / self._bin)
        bins = self._bins
        while bins and bins[0][0] <= oldest:
            _, requests, tokens = bins.popleft()
            self._sum_requests -= requests
            self._sum_tokens -= tokens

    def _cut(self, now: float, requests: bool, tokens: bool) -> None:
        """Multiplicative decrease of the exhausted dimension(s), from what got through."""
        self._prune(now)
        if requests:
            self._requests.decrease(self._decrease, self._sum_requests / self._window, 1 / 60)
        if tokens:
            self._tokens.decrease(self._decrease, self._sum_tokens / self._window, 1.0)
        self._decreased_at = now

    def _grow(self, now: float, tokens: float) -> None:
        """Additive increase; the step doubles for each window since the last decrease."""
        windows = min(6.0, (now - self._decreased_at) / self._window)
        step = self._increase * 2.0**windows
        self._requests.increase(step, 1.0)
        self._tokens.increase(step, tokens)

    def _pause(self, now: float, hint: RateLimitHeaders | None) -> float:
        """Seconds to pause when the server gave no ``Retry-After``."""
        if hint is not None:
            resets = [
                r
                for r, left in (
                    (hint.reset_requests, hint.remaining_requests),
                    (hint.reset_tokens, hint.remaining_tokens),
                )
                if r is not None and left is not None and left <= 0
            ]
            if resets:
                return min(max(resets), self._window)
        pause = min(self._first_pause * 2.0 ** (self.strikes - 1), self._window)
        self._prune(now)
        if self._bins:
            # A per-minute window frees room when its oldest success leaves it: no need to
            # wait past that, however long the doubling has grown.
            frees = (self._bins[0][0] + 1) * self._bin + self._window - now
            pause = min(pause, max(frees, self._first_pause))
        return pause

    def _start_pause(self, now: float, until: float) -> None:
        """Every worker waits until ``until``; bookings made before are void."""
        self.epoch += 1
        self.pauses += 1
        self.cooldown_until = max(self.cooldown_until, until)
        # No burst credit out of a pause: a window that just refused us has little room.
        self._requests.tat = self._tokens.tat = self.cooldown_until + self._burst
        self._probing, self._probe_out = True, False
        self._active = True

    def _apply_headers(self, now: float, hint: RateLimitHeaders) -> None:
        """Pace by what the server says is left, so that the wall is never hit."""
        for dim, left, reset in (
            (self._requests, hint.remaining_requests, hint.reset_requests),
            (self._tokens, hint.remaining_tokens, hint.reset_tokens),
        ):
            if left is None or reset is None or reset <= 0:
                continue
            if left <= 0:
                self.cooldown_until = max(self.cooldown_until, now + reset)
            dim.hint_rate = max(left, 1.0) / reset
            dim.hint_until = now + reset
            self._active = True


_registry: weakref.WeakValueDictionary[tuple[str, str, str], RateController] = (
    weakref.WeakValueDictionary()
)
_registry_lock = threading.Lock()


def shared_controller(endpoint: str, api_key: str | None, model: str) -> RateController:
    """The controller of one account: same endpoint, API key and model, same controller.

    Held weakly: it lives as long as a client uses it. The key is hashed, never kept.
    """
    digest = hashlib.sha256((api_key or "").encode("utf-8")).hexdigest()[:16]
    key = (endpoint, digest, model)
    with _registry_lock:
        controller = _registry.get(key)
        if controller is None:
            controller = RateController()
            _registry[key] = controller
        return controller


def controller_for(options: ClientOptions) -> RateController | None:
    """The controller a client uses: its ``rate_controller``, else its account's shared one,
    or ``None`` with ``adaptive=False``."""
    if not options.adaptive:
        return None
    if options.rate_controller is not None:
        controller: RateController = options.rate_controller
        return controller
    return shared_controller(options.endpoint, options.api_key, options.model)


async def take_turn(controller: RateController, estimate: int) -> Ticket:
    """Wait until ``controller`` lets a request of ``estimate`` estimated tokens go.

    Before any 429 this returns at once. In testing mode (:func:`embedsdk.set_testing`) it
    never sleeps.
    """
    while True:
        ticket = controller.reserve(estimate)
        if _retry.is_testing():
            return ticket
        delay = ticket.at - controller.now()
        if delay > 0:
            await asyncio.sleep(delay)
        if controller.admit(ticket):
            return ticket


def report(
    controller: RateController,
    ticket: Ticket,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """Tell ``controller`` how the server answered the request of ``ticket``."""
    if status < 400:
        controller.on_success(ticket, headers)
        return
    if status == 429:
        message, code = parse_error_body(body)
        if not is_quota(status, code):
            controller.on_rate_limited(ticket, parse_retry_after(headers), message, headers)
            return
    controller.on_error(ticket)
