"""Adaptive rate control: run just under a provider's limit without being told it.

Providers enforce limits in many ways (see the shared provider facts): token buckets that
refill continuously, fixed or sliding windows of a second or a minute, caps on requests in
flight; SiliconFlow sends no ``Retry-After`` and no ``x-ratelimit-*`` headers, and users
rarely know their level. A :class:`RateController` learns from the answers and holds back
the requests of every client that shares it. It does no I/O and never sleeps: the core asks
it *when* a request may go, and ``_turns.take_turn`` sleeps, so the logic is tested with a
fake clock.

It steers two things, as TCP and Netflix's concurrency limiters do:

- **a pace** (requests and tokens per second, a GCRA with a small burst), for rate limits;
- **a window** (requests in flight at once), for concurrency caps.

A 429 is read as a concurrency cap when it says so, or when it came back on a request sent
with more requests in flight than any recent success had (a rate limit refuses at any level;
a cap only above it): the window drops to just below that level and nobody pauses. Any other
429 (and a 503 is read the same way as a cap's) is a rate limit:

- **Free until the first 429.** Until then a request costs one uncontended lock.
- **Multiplicative decrease from what got through.** The pace becomes 0.9 times what the
  server accepted since the previous decrease, over the time actually observed (at most the
  last ten seconds, not a fixed minute), so the first decreases land near the limit of a
  token bucket, a one-second window and a one-minute window alike; when the pace itself was
  lower (it had just crept above the limit) it is cut by a third as much, about 3 %.
- **One shared pause.** Every worker of every client waits until the same instant:
  ``Retry-After`` / ``retry-after-ms`` when sent, else a short pause that doubles while the
  wall lasts, never longer than a quarter of the wall's age (so the probes stay few and a
  minute's wall is not left much late) nor than the ``x-ratelimit-reset-*`` the server
  announced; a wall of 5 s or more is also probed just after each whole minute from the
  cycle's first request, when a window of a minute opened by it has room again.
  Everybody then resumes at the lowered pace; once the wall lasts (a second refusal in a
  row), one probe goes alone and the rest follow when it succeeds. 429s of requests
  already in flight are echoes of the same event and change nothing.
- **Additive increase, then faster.** While the pace holds requests back, it grows by 0.5 %
  of the decreased pace per second; after each quiet spell (``quiet`` seconds without a
  429) the step doubles, up to 16 % per second, so a raised limit is found again quickly.
- The window grows by one for each request that filled it, slowly near the level a cap
  refused last (one probe, then twice as long to wait after each refusal there).

The user's ``rpm`` / ``tpm`` stay hard ceilings, enforced by the client's own limiters in
front: adaptation only ever goes below them. Token estimates are corrected by the running
ratio of ``usage.prompt_tokens`` to the client's estimate.

Sharing: every client with the same endpoint, API key and model gets the same controller
from ``_turns.shared_controller`` (the key is hashed, never stored). Pass
``rate_controller=RateController()`` to choose the group yourself, or ``adaptive=False`` to
turn it off.

Here the controller books turns and reads the answers. What it steers is in ``_pacing`` (the
pace and the window), what it learns in ``_learning`` (the pace from what got through, and
which levels in flight the server takes), what a 429 says in ``_ratelimit_hints``;
``_turns`` does the waiting, and ``_cluster`` the sharing between processes.

>>> ctl = RateController(clock=lambda: 0.0)
>>> ticket = ctl.reserve(100)           # before any 429: go now
>>> ctl.admit(ticket), ticket.at
(True, 0.0)
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Mapping
from typing import Callable, ClassVar

from ._learning import BIN as BIN
from ._learning import LONG_WALL as LONG_WALL
from ._learning import OPENS_LATE as OPENS_LATE
from ._learning import RECENT as RECENT
from ._learning import _Levels, _PaceLearner
from ._pacing import _Pace, _Window
from ._ratelimit_hints import RateLimitHeaders, exhausted, parse_ratelimit_headers

#: How often a worker looks again while the probe is out, seconds.
PROBE_POLL = 0.02
#: Longest a worker waits for a free slot before it looks again, seconds.
SLOT_POLL = 1.0
#: Shortest and longest shared pause without a Retry-After, seconds.
PAUSE_MIN = 0.05
PAUSE_MAX = 30.0
#: A pause without a Retry-After ends at most this share of the wall's age late.
WALL_LATE = 0.25
#: Share of the pace's interval kept between two requests really sent (a little slack: a
#: request sent early by a rounding error is no reason to wait again).
SPACING = 0.98
#: A wait at least this long is worth an INFO line (and the bar's postfix), seconds.
VISIBLE_WAIT = 3.0


#: Verdicts of :meth:`RateController.on_rate_limited` and ``_turns.report``.
PAUSED = "paused"  # a rate limit: wait for the shared pause, then retry
NARROWED = "narrowed"  # a concurrency cap: retry when a slot is free
NOTED = "noted"  # nothing for the controller: the usual retry rules apply


class Ticket:
    """One request's turn. ``at``: when it may go (clock seconds); ``epoch``: the pause
    it was booked in; ``in_flight``: requests in flight, itself included, when it went."""

    __slots__ = (
        "at",
        "booked",
        "epoch",
        "estimate",
        "held",
        "in_flight",
        "sent",
        "tokens",
        "why",
    )

    def __init__(self, epoch: int, at: float, tokens: float, estimate: int) -> None:
        self.epoch = epoch
        self.at = at
        self.tokens = tokens  # corrected token cost
        self.estimate = estimate  # the caller's own estimate, to correct the ratio
        self.booked = False  # holds a place in the pace
        self.held = False  # the pace made it wait: the pace is what limits the throughput
        self.in_flight = 0  # > 0 once admitted; 0 again once its outcome was reported
        self.sent = 0.0
        self.why = ""  # what it waits for when not booked: "pause", "probe", "slot", "pace"

    def __repr__(self) -> str:
        return f"<Ticket epoch={self.epoch} at={self.at:.3f} in_flight={self.in_flight}>"


class RateController:
    """Adaptive pacing shared by the clients of one account and model. Thread-safe.

    ``decrease``: the factor applied to the pace on a 429; ``increase``: the pace's growth
    per second, as a fraction of the pace set at the last decrease, doubling every
    ``quiet`` seconds without a 429 (up to 16 times); ``horizon``: how far ahead, in
    seconds, a request may book its place in the pace; ``clock`` returns seconds (default:
    the running event loop's clock, else :func:`time.monotonic`; tests pass a fake one).

    The core calls :meth:`reserve` then, once ``ticket.at`` has come, :meth:`admit` (book
    again when it says no; ``_turns.take_turn`` is that loop), and reports the answer with
    :meth:`on_success` (then :meth:`on_usage`), :meth:`on_rate_limited`,
    :meth:`on_overloaded` or :meth:`on_error` (``_turns.report`` picks one from the status).
    """

    #: What learns the pace from the answers (a cluster's controllers learn it their own way).
    _learner_type: ClassVar[type[_PaceLearner]] = _PaceLearner

    def __init__(
        self,
        *,
        decrease: float = 0.9,
        increase: float = 0.005,
        quiet: float = 10.0,
        horizon: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not 0 < decrease < 1 or increase < 0 or quiet <= 0 or horizon < 0:
            raise ValueError("need 0 < decrease < 1, increase >= 0, quiet > 0, horizon >= 0")
        self._horizon = horizon
        self._clock = clock or _loop_time
        self._lock = threading.Lock()
        self._requests = _Pace()
        self._tokens = _Pace()
        self._window = _Window()
        self._in_flight = 0
        self._next_free = -math.inf  # the pace between requests really sent (see admit)
        self._slot_waiters: list[Callable[[], None]] = []
        self._turn_waiters: set[Callable[[], None]] = set()
        # The pace learned from what got through, and which levels in flight the server takes.
        self._learner = self._learner_type(self._requests, self._tokens, decrease, increase, quiet)
        self._levels = _Levels()
        self._probing = False  # after a pause: one request at a time until one succeeds
        self._probe_out = False
        self._real = self._estimated = 0.0  # decayed sums for the token ratio
        self.epoch = 0
        self.strikes = 0  # refusals since the last success (the wall's length)
        self.cooldown_until = -math.inf
        self.rate_limited = 0  # 429s reported
        self.pauses = 0  # shared pauses started
        self.narrowed = 0  # concurrency refusals that narrowed the window

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"<RateController rpm={s['rpm']} tpm={s['tpm']} in_flight<={s['window']} "
            f"429s={self.rate_limited}>"
        )

    # -- the estimate correction -------------------------------------------------------

    @property
    def token_ratio(self) -> float:
        """Real tokens per estimated token, from ``usage.prompt_tokens`` (1.0 until known)."""
        if self._estimated <= 0:
            return 1.0
        return min(4.0, max(0.05, self._real / self._estimated))

    def cost(self, estimate: int) -> float:
        """The corrected token cost of a request the client estimated at ``estimate``."""
        return estimate * self.token_ratio

    def now(self) -> float:
        """The controller's clock, seconds."""
        return self._clock()

    # -- before a request -------------------------------------------------------------

    def reserve(self, estimate: int) -> Ticket:
        """Book a request of ``estimate`` estimated tokens; it may go at ``ticket.at``.

        During a pause, while the probe is out, while the window is full, or when the pace
        has no room within the next ``burst`` seconds, the ticket is not booked: look
        again at ``ticket.at``.
        """
        now = self._clock()
        ticket = Ticket(self.epoch, now, self.cost(estimate), estimate)
        with self._lock:
            ticket.epoch = self.epoch
            if self.cooldown_until > now:  # a pause: look again when it ends
                ticket.at, ticket.why = self.cooldown_until, "pause"
            elif self._probing and self._probe_out:
                ticket.at, ticket.why = now + PROBE_POLL, "probe"
            elif self._full():
                ticket.at, ticket.why = now + SLOT_POLL, "slot"
            else:
                self._book(ticket, now)
        return ticket

    def _book(self, ticket: Ticket, now: float) -> None:
        """Take the next place in the pace (GCRA without burst: a bucket holding a single
        request, as some gateways have, refuses two that come closer than the pace), at
        most ``horizon`` seconds ahead."""
        req, tok = self._requests.rate, self._tokens.rate
        at = max(now, self._requests.tat if req else now, self._tokens.tat if tok else now)
        if at > now + self._horizon:
            # Book no further ahead: a booking made at a slow pace would hold its worker
            # after the pace has risen.
            ticket.at, ticket.why = at - self._horizon, "pace"
            return
        if req:
            self._requests.tat = at + 1 / req
        if tok:
            self._tokens.tat = at + ticket.tokens / tok
        ticket.at, ticket.booked, ticket.held = at, True, at > now
        ticket.why = "pace"

    def admit(self, ticket: Ticket, force: bool = False) -> bool:
        """At ``ticket.at``: may the request go? ``False``: book again. ``force``: go
        whatever the pace and pauses say, if the window has room (testing mode, where
        nothing sleeps). An admitted ticket must be reported once."""
        with self._lock:
            if self._full():
                return False
            now = self._clock()
            if not force:
                if not ticket.booked or ticket.epoch != self.epoch:
                    return False
                if ticket.at < self.cooldown_until:
                    return False
                if now < self._next_free:
                    # The request before went late (a busy loop): keep the pace between the
                    # requests really sent, as a bucket holding one request counts it.
                    ticket.at = self._next_free
                    return False
                if self._probing:
                    if self._probe_out:
                        return False
                    self._probe_out = True
            self._in_flight += 1
            ticket.in_flight = self._in_flight
            ticket.sent = now
            self._learner.begin(now)
            self._space_after(now, ticket.tokens)
            return True

    def _space_after(self, now: float, tokens: float) -> None:
        """The earliest the next request may go after one sent ``now``."""
        req, tok = self._requests.rate, self._tokens.rate
        gap = max(1 / req if req else 0.0, tokens / tok if tok else 0.0)
        self._next_free = now + gap * SPACING

    def wait_for_slot(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` (once, from any thread) when a request in flight ends; ``False``
        (and no call) when a slot is free already."""
        with self._lock:
            if not self._full():
                return False
            self._slot_waiters.append(wake)
            return True

    def wait_for_turn(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (once, from any thread) if the turns booked so far are voided by a
        pace taken from elsewhere (:meth:`follow` with a pause), whose turns may come
        sooner than the one waited for; :meth:`forget_turn` when the turn came."""
        with self._lock:
            self._turn_waiters.add(wake)

    def forget_turn(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._turn_waiters.discard(wake)

    def _full(self) -> bool:
        limit = self._window.limit
        return limit is not None and self._in_flight >= limit

    # -- after a request --------------------------------------------------------------

    def on_success(self, ticket: Ticket, headers: Mapping[str, str] | None = None) -> None:
        """A 2xx arrived (the server took the request, whatever its body turns out to be)."""
        with self._lock:
            level = self._release(ticket)
            if not level:
                return
            now = self._clock()
            self._succeeded(now, ticket.epoch, ticket.sent, 1, ticket.tokens)
            self._levels.note(now, level)
            self._window.widen(now, level)
            if ticket.held:
                self._learner.grow(now, ticket.tokens)
        self._wake()

    def _succeeded(
        self, now: float, epoch: int, sent: float, requests: float, tokens: float
    ) -> None:
        """Count ``requests`` successes of ``tokens`` tokens booked in ``epoch``, the first
        sent at ``sent``; one of the current epoch ends the wall."""
        self._learner.count(now, sent, requests, tokens)
        if epoch == self.epoch:
            if self.strikes:
                self._learner.wall_ended(now)
            self.strikes = 0
            if self._probing:
                self._probing = self._probe_out = False

    def on_usage(self, ticket: Ticket, used: int) -> None:
        """The answer counted ``used`` tokens (``usage.prompt_tokens``): learn the ratio."""
        if ticket.estimate <= 0 or used < 0:
            return
        with self._lock:
            # Decayed sums: the ratio follows a change of texts within a few hundred calls.
            self._real = self._real * 0.99 + used
            self._estimated = self._estimated * 0.99 + ticket.estimate
            self._learner.correct(used - ticket.tokens)  # count the real tokens, not the booked

    def on_rate_limited(
        self,
        ticket: Ticket,
        retry_after: float | None = None,
        message: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """A 429 arrived: :data:`NARROWED` (a concurrency cap) or :data:`PAUSED`."""
        hint = parse_ratelimit_headers(headers) if headers else None
        with self._lock:
            self.rate_limited += 1
            level = self._release(ticket)
            now = self._clock()
            cap = self._levels.is_cap(level, message, hint)
            if level:
                self._levels.note(now, level, refused=True)
            if cap:
                self._window.narrow(now, level)
                self.narrowed += 1
                verdict = NARROWED
            else:
                self._rate_limited(ticket, now, retry_after, exhausted(message, hint), hint)
                verdict = PAUSED
        self._wake()
        return verdict

    def _rate_limited(
        self,
        ticket: Ticket,
        now: float,
        retry_after: float | None,
        what: tuple[bool, bool],
        hint: RateLimitHeaders | None,
    ) -> None:
        """A rate limit refused the request of ``ticket``; ``what``: whether it was the
        requests and/or the tokens that ran out."""
        if ticket.epoch != self.epoch:  # an echo: in flight when the pause began
            if retry_after is not None:
                self.cooldown_until = max(self.cooldown_until, now + retry_after)
            return
        self._learner.refused(now, self.strikes == 0, what)  # the first of a wall cuts the pace
        self.strikes += 1
        pause = retry_after if retry_after is not None else self._pause(now, hint)
        self._start_pause(now + pause)

    def on_overloaded(self, ticket: Ticket) -> str:
        """A 503: :data:`NARROWED` when it reads as a concurrency cap, else :data:`NOTED`."""
        with self._lock:
            level = self._release(ticket)
            verdict = NOTED
            if level:
                self._levels.note(self._clock(), level, refused=True)
            if self._levels.above(level):
                self._window.narrow(self._clock(), level)
                self.narrowed += 1
                verdict = NARROWED
            elif level and self._probing and ticket.epoch == self.epoch:
                self._probe_out = False
        self._wake()
        return verdict

    def on_error(self, ticket: Ticket) -> None:
        """Any other outcome (5xx, 413, no answer, cancelled): free its slot and the probe."""
        with self._lock:
            if self._release(ticket) and self._probing and ticket.epoch == self.epoch:
                self._probe_out = False
        self._wake()

    # -- one controller for many processes (see _cluster) -------------------------------

    def on_successes(
        self,
        epoch: int,
        requests: int,
        tokens: float,
        held: int = 0,
        held_tokens: float = 0.0,
        age: float = 0.0,
    ) -> None:
        """``requests`` answers (2xx) of ``tokens`` real tokens in all, booked in ``epoch``
        and reported together by a process that paced them itself: ``held`` of them
        (``held_tokens`` tokens) were held back by its pace, the first went ``age`` seconds
        ago. As many :meth:`on_success` and :meth:`on_usage` calls would count them, except
        that their requests in flight (the window) are that process's own business."""
        if requests <= 0:
            return
        with self._lock:
            now = self._clock()
            self._learner.begin(now - age)
            self._succeeded(now, epoch, now - age, requests, tokens)
            if held:
                self._learner.grow(now, held_tokens, held)

    def on_refused(
        self,
        epoch: int,
        retry_after: float | None = None,
        what: tuple[bool, bool] = (True, True),
        hint: RateLimitHeaders | None = None,
    ) -> str:
        """A 429 that another process read as a rate limit (not a concurrency cap), for a
        request booked in ``epoch``; ``what``: whether the requests and/or the tokens ran
        out (``_ratelimit_hints.exhausted``). As :meth:`on_rate_limited`; returns PAUSED."""
        with self._lock:
            self.rate_limited += 1
            now = self._clock()
            self._rate_limited(Ticket(epoch, now, 0.0, 0), now, retry_after, what, hint)
        return PAUSED

    def shared_state(self) -> tuple[float | None, float | None, float, int, bool]:
        """What followers take (see :meth:`follow`): the pace (requests and tokens per
        second, ``None``: not limited), the pause left (seconds), the epoch, and whether one
        request probes alone after the pause."""
        with self._lock:
            left = max(0.0, self.cooldown_until - self._clock())
            return self._requests.rate, self._tokens.rate, left, self.epoch, self._probing

    def follow(
        self,
        requests: float | None,
        tokens: float | None,
        pause: float | None = None,
        probing: bool = False,
        stagger: float = 0.0,
    ) -> None:
        """Take a pace decided elsewhere: ``requests`` and ``tokens`` per second (``None``:
        not limited). ``pause`` (seconds from now, 0 when none is left) starts a new epoch:
        bookings made before are void, the first request after it goes ``stagger`` seconds
        after its end (so that the processes sharing a pace do not all resume at once), and
        one request goes alone until one succeeds if ``probing``. The window and the token
        ratio stay this controller's."""
        with self._lock:
            for pace, rate in ((self._requests, requests), (self._tokens, tokens)):
                pace.rate = rate
                pace.base = rate or 0.0
            if pause is not None:
                self._start_pause(self._clock() + max(0.0, pause))
                self._probing, self._probe_out = probing, False
                self._requests.tat = self._tokens.tat = self.cooldown_until + stagger
                self._next_free = -math.inf  # the new turn, not the last request, sets it
                voided, self._turn_waiters = self._turn_waiters, set()
            else:
                voided = set()
        for wake in voided:  # turns booked on the old pace: book again now, not at them
            wake()
        self._wake()

    # -- for logs, progress bars and benchmarks ----------------------------------------

    def snapshot(self) -> dict[str, float | int | None]:
        """Learned limits (per minute, in flight; ``None``: not limited) and counters."""
        with self._lock:
            req, tok = self._requests.rate, self._tokens.rate
            return {
                "rpm": None if req is None else round(req * 60, 1),
                "tpm": None if tok is None else round(tok * 60),
                "window": self._window.limit,
                "in_flight": self._in_flight,
                "token_ratio": round(self.token_ratio, 3),
                "rate_limited": self.rate_limited,
                "pauses": self.pauses,
                "narrowed": self.narrowed,
                "epoch": self.epoch,
            }

    def describe(self) -> str:
        """What holds requests back now, in words (for logs and the progress bar)."""
        s = self.snapshot()
        parts = []
        if s["rpm"] is not None:
            parts.append(f"{s['rpm']:,.0f} requests/min")
        if s["tpm"] is not None:
            parts.append(f"{s['tpm']:,.0f} tokens/min")
        if s["window"] is not None:
            parts.append(f"{s['window']} in flight")
        pace = ", ".join(parts) or "no limit learned yet"
        return f"pace {pace}; {self.rate_limited} answered 429 so far"

    # -- internals (called with the lock held) ----------------------------------------

    def _release(self, ticket: Ticket) -> int:
        """Free the slot of an admitted ticket, once; returns its level (0: not admitted)."""
        level = ticket.in_flight
        if level:
            ticket.in_flight = 0
            self._in_flight -= 1
        return level

    def _wake(self) -> None:
        """Tell one worker waiting for a slot that one is free (outside the lock)."""
        if not self._slot_waiters:
            return
        with self._lock:
            wake = self._slot_waiters.pop(0) if self._slot_waiters else None
        if wake is not None:
            wake()

    def _pause(self, now: float, hint: RateLimitHeaders | None) -> float:
        """Seconds to pause when the server gave no ``Retry-After``."""
        rate = self._requests.rate
        first = max(PAUSE_MIN, 1 / rate if rate else 0.0)
        pause = first * 2.0 ** (self.strikes - 1)
        # A wall of unknown length (a minute's window) is left at most a quarter of its age
        # late; the doubling keeps the probes few.
        pause = min(pause, max(first, WALL_LATE * (now - self._learner.wall_since)), PAUSE_MAX)
        opens = self._learner.window_opens(now)
        if opens is not None:  # and a probe when a window of a minute may have room again
            pause = min(pause, max(opens - now, PAUSE_MIN))
        if hint is not None:
            resets = [
                reset
                for reset, left in (
                    (hint.reset_requests, hint.remaining_requests),
                    (hint.reset_tokens, hint.remaining_tokens),
                )
                if reset is not None and left is not None and left <= 0
            ]
            if resets:  # everything is back by then, whatever the kind of limit
                pause = min(pause, max(max(resets), PAUSE_MIN))
        return pause

    def _start_pause(self, until: float) -> None:
        """Every worker waits until ``until``; bookings made before are void."""
        self.epoch += 1
        self.pauses += 1
        self.cooldown_until = max(self.cooldown_until, until)
        # No burst credit out of a pause: a limit that just refused us has little room.
        self._requests.tat = self._tokens.tat = self.cooldown_until
        # After a first refusal everybody resumes at the lowered pace (a lone probe would
        # leave the limit idle for a round trip); once a wall lasts, one probe goes first.
        self._probing, self._probe_out = self.strikes >= 2, False


def _loop_time() -> float:
    """The running event loop's clock (simulated time follows it), else the monotonic one."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
