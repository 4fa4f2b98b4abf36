"""The rate controller: run just under a provider's limit without being told it.

A `RateController` learns from the answers and holds back the requests of every client that
shares it. It does no I/O and never sleeps: the core asks it *when* a request may go
(`take_turn` sleeps) and tells it how the server answered (`report`), so its logic is tested
with a fake clock. It steers a **pace** (requests and tokens per second, spaced evenly, no
burst) for rate limits and a **window** (requests in flight) for concurrency caps. Every
number it runs on is a field of `Tuning` (in `code` below). A *wall* is a run of refusals
with no success between; a *cycle* runs from the end of one long wall to the end of the next.

| State | What a request does | Left for |
|---|---|---|
| free | goes at once | paused, when a rate limit refuses (1) |
| paced | waits for its turn in the pace (2) | paused, when a rate limit refuses |
| paused | waits for the pause every worker shares (3) | paced or probing (4), at its end |
| probing | goes alone; the others wait | paced (5), opening (8), or paused again for longer |
| spending | goes as the last cycle's did, up to a window's allowance (6) | paused (7) |
| opening | goes as a short fixed window opens, up to its allowance (8) | paced (9) |

1. The first pace is guessed once the requests in flight have answered: a refusal comes back
   before a success.
2. At least `spacing` of an interval after the request before was really sent.
3. The pause voids every turn booked before it.
4. Probing once the wall lasts (a second refusal in a row), or before the first guess.
5. After a long wall, at the rate of the whole cycle, or spending its window.
6. What the window's last cycle took, no faster than its burst went as the server saw it;
   beyond it, probes, one more for each that got through (one while a wall lasts).
7. Until its next cycle once the allowance is out; before that (a sliding window freeing its
   room more slowly than the burst went), as any wall.
8. After the first wall, when it read as a fixed window's of a short period (`openings`):
   what the first burst got, sent as each period begins (`_openings`). One refusal in a
   period that looked for more room changes nothing.
9. When any other is refused: at the rate it gave, cut as any first refusal; before it was
   confirmed (as many through as the first burst got), the paces it had before.

What moves the pace:

- **The first guess**: what got through before the first refusal, spread over at least
  `assumed_burst` seconds (or the best second so far). When few requests got through
  (`discover_below`) or the refusal named no limit, the guess is rough and doubles every
  `discover` seconds of use until it is refused. Its wall's probes then go from
  `pause_min`, each further apart, and one that gets through within `room_within` seconds
  of the last success raises it to a request per that gap: room came back that soon.
  When the refusals named no limit but `cap_probes` of the wall's probes were refused with
  more requests in flight than had got through (those still out), the wall reads as a
  cap's (nginx's `limit_conn`): the window narrows to what got through, and the guess
  spreads it over the quickest round trip instead.
- **A cut**, at the first refusal of a wall: to `backoff` of the rate the server took, the
  best `measure` seconds since the last cut, never more than the pace. Once the requests
  then in flight have answered, it is seen again (`recut`): answers that take long had not
  come back, and no cut stays deeper than `backoff` of the best second measured with them.
- **Later refusals of the wall** change only the pause: it doubles, ending at most
  `wall_late` of the wall's age late and at most `pause_max`; once the wall is
  `window_probe` old, it ends when a window of one of `window_periods` opened by the
  cycle's first request would open again (a shorter period, while the wall is half to
  twice its age and began within it of the cycle's start: a sliding 1 s window spent by
  the first burst; a probe that finds it open ends the wall as a window's cycle). A
  `Retry-After` sets it; an announced `x-ratelimit-reset-*` caps it.
- **A short fixed window**: a first wall that lasted (two refused probes or more), began
  as the cycle's first burst was refused and ended before a sliding window spent by that
  burst could free any room (`pause_min` before one of the `window_periods` shorter than
  `spend_period`) was a fixed window's opening: from then on its allowance goes as it opens,
  each period (a paced run takes the windows at its two ends only in part, and meets the
  window's edge each time it grows). Until as many as the first burst got have got
  through, two more go for each that did (a bucket read as a window refuses the second);
  none goes just before a period begins, where the opening may fall. Once in
  `spend_period` (twice as long after each refused, at most `look_max`) one more goes half
  a period on, to look for room. A cluster's leader never does it.
- **A long wall** (`long_wall`, two refused probes or more) was a window's. When it ends,
  a window spent in the first half of a cycle of `spend_period` or more is spent at once in
  each cycle (what the last one took, its burst `opens_late` of the period after the request
  that found the window open, each request no sooner than its match in the last burst:
  `follow_burst`), and probed when the next should begin; otherwise the
  pace becomes `after_wall` of what the whole cycle got through. Beyond what the last cycle
  took, probes look for more room: one, and one more out at once for each that got through
  (a window partly spent by an earlier run is found whole within a few round trips, so
  the next cycle spent at once meets room that frees at once). A cycle counts from the
  success that began it. A probe planned for the opening that gets through at once says
  only that the window was open by then, so the period is taken `period_shrink` shorter
  (once a probe refused just before an opening gave it a floor, a quarter of the way down
  to it): a period learned too long would start every cycle later than the window opens.
- **Growth**, with the seconds the pace holds requests back: after a cut it climbs back to
  the rate it was refused at within `regain` seconds (or the longest wall seen), fast at
  first and slowly near it (TCP CUBIC), then `beyond` it.
- **Echoes**: refusals of requests booked before the pause (in flight when it began) change
  nothing, but for a `Retry-After` that lengthens it.

A 429 is read as a concurrency cap rather than a rate limit when it says so, or when it came
back on a request sent with more requests in flight than recent successes had shown
(`level_evidence`): the window narrows to just below that level and nobody pauses. A 503
that reads as a cap does the same; any other 503 changes nothing here. Before any level has
been shown, a 429 that names no limit reads as a rate limit (but see the first guess).

The user's `rpm` / `tpm` are hard ceilings in front (`_ceiling`): adaptation only ever goes
below them. Token estimates are corrected by the running ratio of `usage.prompt_tokens` to
the client's estimate.

>>> ctl = RateController(clock=lambda: 0.0)
>>> ticket = ctl.reserve(100)           # before any 429: go now
>>> ctl.admit(ticket), ticket.at
(True, 0.0)
"""

from __future__ import annotations

import asyncio
import copy
import math
import threading
import time
from collections.abc import Mapping
from typing import Callable, Protocol

from ..http import RateLimitHeaders, Verdict, parse_ratelimit_headers
from ._hints import exhausted, says_per_minute
from ._meter import Meter
from ._openings import Openings
from ._pace import DISCOVER, REGAIN, Pace
from ._tuning import DEFAULT, Tuning
from ._window import Levels, Window

#: Verdicts of :meth:`RateController.on_rate_limited` and ``_turns.report`` (``http.Verdict``,
#: which the retry loop reads): a rate limit, wait for the shared pause, then retry; a
#: concurrency cap, retry when a slot is free; nothing for the controller, the usual rules.
PAUSED, NARROWED, NOTED = Verdict.PAUSED, Verdict.NARROWED, Verdict.NOTED

#: A wait at least this long is worth an INFO line (and the bar's postfix), seconds.
VISIBLE_WAIT = 3.0
#: Bounds on real tokens per estimated token (``usage.prompt_tokens`` over the client's
#: estimate): a ratio outside them is a server's odd count (a usage of 0, a whole batch's
#: tokens on each input), not a reason to pace tokens 20 times slower or 4 times faster.
TOKEN_RATIO = (0.05, 4.0)
#: Refused probes after a wall's first refusal that make it a wall that lasted: one refused
#: probe is as long as the pace's interval made its pause, and says nothing of a window.
LASTING_PROBES = 2
#: A window's period learned longer than its floor comes down by this share of the gap each
#: cycle planned once (``Tuning.period_shrink`` is the step while no floor is known).
FLOOR_STEP = 0.25


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
        "opening",
        "probe",
        "sent",
        "tokens",
        "voids",
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
        self.probe = False  # it went alone, to see whether the limit has room again
        self.opening: int | None = None  # the cycle of a window's openings it went in
        self.sent = 0.0
        self.why = ""  # what it waits for: "pause", "probe", "slot", "pace" or "leader"
        self.voids = 0  # the controller's count of voided turns when it was booked

    def __repr__(self) -> str:
        return f"<Ticket epoch={self.epoch} at={self.at:.3f} in_flight={self.in_flight}>"


class Listener(Protocol):
    """Told of what a controller sees, outside its lock (a cluster's follower reports it to
    its leader: ``_cluster``). Each method is called once per event."""

    def reserved(self, ticket: Ticket) -> None: ...

    def succeeded(self, ticket: Ticket) -> None: ...

    def used(self, ticket: Ticket, extra: float) -> None: ...

    def refused(
        self,
        ticket: Ticket,
        retry_after: float | None,
        what: tuple[bool, bool],
        hint: RateLimitHeaders | None,
    ) -> None: ...


class RateController:
    """Adaptive pacing shared by the clients of one account and model. Thread-safe.

    ``tuning``: the numbers it runs on (:class:`~embedsdk.ratecontrol.Tuning`); ``learns``:
    ``False`` for a worker of a cluster, whose pace a leader sets (:meth:`follow`): a refusal
    then only holds its requests for ``tuning.pause_min`` until the leader answers; ``clock``
    returns seconds (default: the running event loop's clock, else :func:`time.monotonic`).

    The core calls :meth:`reserve` then, once ``ticket.at`` has come, :meth:`admit` (book
    again when it says no; ``_turns.take_turn`` is that loop), and reports the answer with
    :meth:`on_success` (then :meth:`on_usage`), :meth:`on_rate_limited`,
    :meth:`on_overloaded` or :meth:`on_error` (``_turns.report`` picks one from the status).
    """

    def __init__(
        self,
        *,
        tuning: Tuning = DEFAULT,
        learns: bool = True,
        clock: Callable[[], float] | None = None,
        listener: Listener | None = None,
    ) -> None:
        if not isinstance(tuning, Tuning):
            raise TypeError(f"tuning must be a Tuning, got {tuning!r}")
        self.tuning = tuning
        self.learns = learns
        self.listener = listener
        self._clock = clock or loop_time
        self._lock = threading.Lock()
        self._paces = (Pace(tuning), Pace(tuning))  # requests, tokens
        self._window = Window(tuning)
        self._levels = Levels(tuning)
        self._meter = Meter(tuning)
        self._in_flight = 0
        self._probes_refused: list[int] = []  # in flight as each probe of a first wall went
        self._next_free = -math.inf  # the spacing between requests really sent (see admit)
        self._slot_waiters: list[Callable[[], None]] = []
        self._turn_waiters: set[Callable[[], None]] = set()
        self._voided: set[Callable[[], None]] = set()  # to wake: their turns were voided
        # Times the turns booked were voided (follow(), await_pace()): a turn booked before
        # the last one waits for nothing (see wait_for_turn).
        self._voids = 0
        self._probing = False  # after a pause: one request at a time until one succeeds
        self._probes_out = 0
        # Probes that may be out at once: one after a pause; while a window's allowance is
        # out and its room is looked for, one more for each that got through in this cycle
        # (the window's room found within a few round trips, not one request at a time).
        self._probe_room = 1
        self._real = self._estimated = 0.0  # decayed sums for the token ratio
        self._last_cut = -math.inf
        self._cut_what = (True, True)  # which paces the wall's cut was for
        self._wall_since = -math.inf  # the first refusal of the current wall
        self._refused_at = -math.inf  # its last refusal
        self._cycle: tuple[float, float, float] | None = None  # (since, requests, tokens)
        self._timescale = 0.0  # the longest wall seen, seconds: the limit's own period
        self._period: float | None = None  # a window's cycle, when it is spent at once
        self._planned = False  # the pause ends when the window should open again
        self._allowance = (math.inf, math.inf)  # what its last cycle took: requests, tokens
        self._period_floor = 0.0  # the period is at least this (see _next_period)
        self._openings: Openings | None = None  # a short fixed window, spent as it opens
        self._openings_tried = False  # the first wall read as one (it is tried once)
        # The paces and the cycle when it was found: until it is confirmed, a refusal
        # takes them back, as if it had not been tried.
        self._before_openings: (
            tuple[tuple[Pace, Pace], tuple[float, float, float] | None] | None
        ) = None
        self._refused_sent = -math.inf  # when the last refused request went
        self._sent = [0.0, 0.0]  # requests and tokens sent in this cycle
        # A window spent at once: when this cycle's first request went (the one that found
        # it open), when its burst (the rest) began, when the burst's requests that got
        # through went, and the last cycle's burst, from its start (see _replay).
        self._opened = -math.inf
        self._burst_from = math.inf
        self._spread_now: list[float] = []
        self._spread: list[float] = []
        self._quickest = math.inf  # the quickest round trip of a request that got through
        self._grown_at = -math.inf
        self._before_pause = 0  # requests in flight booked before the current epoch
        # The last cut's time and the paces before it, until what was in flight answered
        self._recut: tuple[float, tuple[tuple[float | None, str], ...]] | None = None
        self._guess_after: int | None = None  # guess the first pace once they answered
        self._guessed_at = math.nan  # when it was guessed (while no cut came after)
        self._named = False  # the last refusal said which limit ran out (RPM, TPM, ...)
        self._last_ok = -math.inf  # when the last request that succeeded was sent
        self.epoch = 0
        self.strikes = 0  # refusals since the last success (the wall's length)
        self.cooldown_until = -math.inf
        # Until then, every request waits for a pace told from elsewhere (a cluster's
        # follower, before its leader's first answer): see await_pace().
        self.awaiting_until = -math.inf
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
        low, high = TOKEN_RATIO
        return min(high, max(low, self._real / self._estimated))

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
        has no room within the next ``tuning.horizon`` seconds, the ticket is not booked:
        look again at ``ticket.at``.
        """
        now = self._clock()
        ticket = Ticket(self.epoch, now, self.cost(estimate), estimate)
        with self._lock:
            ticket.epoch, ticket.voids = self.epoch, self._voids
            if self.awaiting_until > now:
                ticket.at, ticket.why = self.awaiting_until, "leader"
            elif self.cooldown_until > now:
                ticket.at, ticket.why = self.cooldown_until, "pause"
            elif self._probing and self._probes_full():
                ticket.at, ticket.why = now + self.tuning.probe_poll, "probe"
            elif self._full():
                ticket.at, ticket.why = now + self.tuning.slot_poll, "slot"
            else:
                self._book(ticket, now)
        if self.listener is not None:
            self.listener.reserved(ticket)
        return ticket

    def _book(self, ticket: Ticket, now: float) -> None:
        """Take the next place in the pace (a GCRA without burst: a bucket holding a single
        request, as some gateways have, refuses two that come closer than the pace)."""
        requests, tokens = self._paces
        at = max(now, requests.next(), tokens.next())
        ticket.why = "pace"
        t = self.tuning
        gap = max(requests.interval(), tokens.interval(ticket.tokens))
        horizon = min(max(t.horizon, t.horizon_turns * gap), t.horizon_max)
        if at - horizon > now:  # (not at > now + horizon: that may round to a look again now)
            # Look again then, or sooner: the pace may rise meanwhile.
            ticket.at = min(at - horizon, now + t.horizon_max)
            return
        requests.book(at, 1.0)
        tokens.book(at, ticket.tokens)
        ticket.at, ticket.booked, ticket.held = at, True, at > now

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
                at = self._replay()
                if now < at:
                    ticket.at = at
                    return False
                opens = None if self._openings is None else self._openings.turn(now)
                if opens is not None:
                    ticket.at = opens
                    return False
                if self._period is not None and not self._probing and self._spent():
                    self._probing = True  # the window's allowance is out: one request looks
                if self._probing:
                    if self._probes_full():
                        return False
                    self._probes_out += 1
                    ticket.probe = True
            if self._openings is not None:
                ticket.opening = self._openings.go()
            self._in_flight += 1
            if self._sent[0] == 1 and self._period is not None:
                self._burst_from = now
            self._sent[0] += 1
            self._sent[1] += ticket.tokens
            ticket.in_flight = self._in_flight
            ticket.sent = now
            self._meter.sent(now)
            gap = max(self._paces[0].interval(), self._paces[1].interval(ticket.tokens))
            self._next_free = now + gap * self.tuning.spacing
            return True

    def wait_for_slot(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` (once, from any thread) when a request in flight ends; ``False``
        (and no call) when a slot is free already."""
        with self._lock:
            if not self._full():
                return False
            self._slot_waiters.append(wake)
            return True

    def wait_for_turn(self, wake: Callable[[], None], ticket: Ticket | None = None) -> bool:
        """Call ``wake`` (once, from any thread) if the turns booked so far are voided by a
        pace taken from elsewhere (:meth:`follow` with a pause or after :meth:`await_pace`),
        whose turns may come sooner than the one waited for; :meth:`forget_turn` when the
        turn came. ``False`` (and no call): ``ticket``'s turn was voided already, between
        its booking and now (another thread's :meth:`follow`): book again at once."""
        with self._lock:
            if ticket is not None and ticket.voids != self._voids:
                return False
            self._turn_waiters.add(wake)
            return True

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
            if self._openings is not None and ticket.opening is not None:
                self._openings.through(now, ticket.opening)
            self._succeeded(
                now, ticket.epoch, 1, ticket.tokens, ticket.held, ticket.probe, ticket.sent
            )
            self._levels.note(now, level)
            self._window.widen(now, level)
            self._settle(now)
        if self.listener is not None:
            self.listener.succeeded(ticket)
        self._wake()

    def on_usage(self, ticket: Ticket, used: int) -> None:
        """The answer counted ``used`` tokens (``usage.prompt_tokens``): learn the ratio."""
        if ticket.estimate <= 0 or used < 0:
            return
        memory = self.tuning.token_memory
        with self._lock:
            # Decayed sums: the ratio follows a change of texts within a few hundred calls.
            self._real = self._real * memory + used
            self._estimated = self._estimated * memory + ticket.estimate
            self._meter.correct(used - ticket.tokens)  # count the real tokens, not the booked
        if self.listener is not None:
            self.listener.used(ticket, used - ticket.tokens)

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
                if ticket.probe and self._guess_after is not None:
                    self._probes_refused.append(level)
            if cap:
                self._narrow(now, level, ticket)
                verdict = NARROWED
            else:
                what = exhausted(message, hint)
                self._named = what != (True, True) or says_per_minute(message)
                if ticket.epoch == self.epoch:
                    self._refused_sent = ticket.sent
                if not self._openings_hold(now, ticket, retry_after, what):
                    self._refused(now, ticket.epoch, retry_after, what, hint)
                verdict = PAUSED
            self._settle(now)
        if self.listener is not None and verdict == PAUSED:
            self.listener.refused(ticket, retry_after, what, hint)
        self._wake()
        return verdict

    def on_overloaded(self, ticket: Ticket) -> str:
        """A 503: :data:`NARROWED` when it reads as a concurrency cap, else :data:`NOTED`."""
        with self._lock:
            level = self._release(ticket)
            now = self._clock()
            verdict = NOTED
            if level:
                self._levels.note(now, level, refused=True)
            if self._levels.above(level):
                self._narrow(now, level, ticket)
                verdict = NARROWED
            elif level and ticket.probe:
                self._probes_out = max(0, self._probes_out - 1)
            self._settle(now)
        self._wake()
        return verdict

    def _narrow(self, now: float, level: int, ticket: Ticket) -> None:
        """A concurrency cap refused ``ticket``, sent at ``level``: narrow the window. A
        probe's answer came back, whatever it says: its place is free (one held would stop
        every request while probing)."""
        self._window.narrow(now, level)
        self.narrowed += 1
        if ticket.probe:
            self._probes_out = max(0, self._probes_out - 1)

    def on_error(self, ticket: Ticket) -> None:
        """Any other outcome (5xx, 413, no answer, cancelled): free its slot and the probe."""
        with self._lock:
            if self._release(ticket) and ticket.probe:
                self._probes_out = max(0, self._probes_out - 1)
            self._settle(self._clock())
        self._wake()

    # -- one controller for many processes (see _cluster) -------------------------------

    def on_successes(
        self, epoch: int, requests: int, tokens: float, held: bool = False, age: float = 0.0
    ) -> None:
        """``requests`` answers (2xx) of ``tokens`` real tokens in all, booked in ``epoch``,
        reported together by a process that paced them itself (the first went ``age``
        seconds ago; ``held``: its pace held some of them back). As many :meth:`on_success`
        and :meth:`on_usage` calls would count them, but for the window, which stays that
        process's own."""
        if requests <= 0:
            return
        with self._lock:
            now = self._clock()
            self._meter.sent(now - age)
            self._succeeded(now, epoch, requests, tokens, held, epoch == self.epoch, now - age)
            self._settle(now)

    def on_refused(
        self,
        epoch: int,
        retry_after: float | None = None,
        what: tuple[bool, bool] = (True, True),
        hint: RateLimitHeaders | None = None,
    ) -> str:
        """A 429 that another process read as a rate limit, for a request booked in
        ``epoch``; ``what``: whether the requests and/or the tokens ran out
        (``_hints.exhausted``). As :meth:`on_rate_limited`; returns :data:`PAUSED`."""
        with self._lock:
            self.rate_limited += 1
            now = self._clock()
            self._named = what != (True, True)
            self._refused(now, epoch, retry_after, what, hint)
            self._settle(now)
        return PAUSED

    def shared_state(self) -> tuple[float | None, float | None, float, int, bool]:
        """What followers take (see :meth:`follow`): the pace (requests and tokens per
        second, ``None``: not limited), the pause left (seconds), the epoch, and whether one
        request probes alone after the pause."""
        with self._lock:
            left = max(0.0, self.cooldown_until - self._clock())
            requests, tokens = self._paces
            return requests.rate, tokens.rate, left, self.epoch, self._probing

    def next_turn(self) -> float:
        """The earliest the pace lets the next request go (clock seconds)."""
        with self._lock:
            return max(pace.next() for pace in self._paces)

    def resumed_at(self) -> float | None:
        """When the last pause ended (or ends), on this controller's clock; ``None``: never."""
        with self._lock:
            return None if self.cooldown_until == -math.inf else self.cooldown_until

    def follow(
        self,
        requests: float | None,
        tokens: float | None,
        pause: float | None = None,
        probing: bool = False,
        phase: float | None = None,
    ) -> None:
        """Take a pace decided elsewhere: ``requests`` and ``tokens`` per second (``None``:
        not limited). ``pause`` (seconds from now, 0 when none is left) starts a new epoch:
        bookings made before are void, and one request goes alone until one succeeds if
        ``probing``. ``phase`` (clock seconds): turns fall on a grid from it, one interval of
        the pace apart (a cluster's workers take interleaved turns). The window and the
        token ratio stay this controller's."""
        with self._lock:
            self._openings = None  # the pace decided elsewhere, not a window seen here
            for pace, rate in zip(self._paces, (requests, tokens)):
                pace.follow(rate)
            if self.awaiting_until > -math.inf:  # the pace awaited has come: go by it
                self.awaiting_until = -math.inf
                self._void_turns()
            if pause is not None:
                self._start_pause(self._clock() + max(0.0, pause))
                self._probing = probing
                self._next_free = -math.inf  # the new turn, not the last request, sets it
                self._void_turns()
            for pace in self._paces:
                pace.phase = phase
        self._wake()

    def await_pace(self, seconds: float | None) -> None:
        """Hold every request until :meth:`follow` brings a pace, ``seconds`` at most
        (``None``: stop holding now). A cluster's follower starts so: requests sent before
        the leader's first answer go blind, and a cluster of them, each learning nothing,
        would spend the account's burst and meet 429s that teach the leader late."""
        with self._lock:
            if seconds is not None:
                self.awaiting_until = self._clock() + seconds
                return
            self.awaiting_until = -math.inf
            self._void_turns()
        self._wake()

    # -- for logs, progress bars and benchmarks ----------------------------------------

    def snapshot(self) -> dict[str, float | int | None]:
        """Learned limits (per minute, in flight; ``None``: not limited) and counters."""
        with self._lock:
            req, tok = (pace.rate for pace in self._paces)
            if self._openings is not None:
                req = self._openings.rate()
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
            if ticket.epoch < self.epoch:
                self._before_pause -= 1
        return level

    def _void_turns(self) -> None:
        """The turns booked so far are void (a new pace may give sooner ones): their
        waiters book again, woken by the next :meth:`_wake`."""
        self._voided |= self._turn_waiters
        self._turn_waiters = set()
        self._voids += 1

    def _wake(self) -> None:
        """Outside the lock: wake the waiters of voided turns (they book again now, not at
        them), and tell one worker waiting for a slot that one is free."""
        if self._voided:
            with self._lock:
                voided, self._voided = self._voided, set()
            for woken in voided:
                woken()
        if not self._slot_waiters:
            return
        with self._lock:
            wake = self._slot_waiters.pop(0) if self._slot_waiters else None
        if wake is not None:
            wake()

    def _succeeded(
        self,
        now: float,
        epoch: int,
        requests: float,
        tokens: float,
        held: bool,
        probe: bool,
        sent: float,
    ) -> None:
        """Count successes; one booked in the current epoch ends the wall (it is the first of
        the next cycle), and the probe's ends the probing."""
        if self._cycle is None and self._meter.first is not None:
            self._cycle = (self._meter.first, 0.0, 0.0)
        if epoch == self.epoch and self.strikes:
            self._wall_ended(min(sent, now), requests, tokens)
            self._room_came_back(now, min(sent, now), requests, tokens)
        self._last_ok = max(self._last_ok, min(sent, now))
        if requests == 1:
            self._quickest = min(self._quickest, now - sent)
            if sent >= self._burst_from:
                # When the server saw it, as far as the client can tell: a loop that stalled
                # between the turn and the sending sent it later (then the answer came later
                # than the quickest round trip allows).
                self._spread_now.append(max(sent, now - self._quickest) - self._burst_from)
        self._meter.add(now, requests, tokens)
        if epoch < self.epoch and self._guessed_at == self._last_cut:
            self._guess(now)  # a success of the first wave, late (a cluster's report)
        if epoch == self.epoch:
            self.strikes = 0
        if probe and self._guess_after is None:
            self._probes_out = max(0, self._probes_out - 1)
            if self._period is not None and self._spent():
                self._probe_room += 1  # a window's room looked for, and some found: look wider
            else:
                self._probing = False
        if held:
            # Growth counts the time the pace held requests back, at most ``measure``
            # seconds at a time: an idle spell is no evidence that the limit has room.
            used = min(now - self._grown_at, self.tuning.measure)
            self._grown_at = now
            for pace in self._paces:
                pace.grow(max(0.0, used))

    def _refused(
        self,
        now: float,
        epoch: int,
        retry_after: float | None,
        what: tuple[bool, bool],
        hint: RateLimitHeaders | None,
    ) -> None:
        """A rate limit refused a request booked in ``epoch``; ``what``: whether the
        requests and/or the tokens ran out."""
        if epoch != self.epoch:  # an echo: in flight when the pause began
            if retry_after is not None:
                self.cooldown_until = max(self.cooldown_until, now + retry_after)
            return
        if not self.learns:  # a follower: hold until the leader's answer brings the pace
            self._start_pause(now + (self.tuning.pause_min if retry_after is None else retry_after))
            return
        if not self.strikes:
            self._wall_since = now
            if self._period is not None:
                pass  # a window spent at once, as expected: wait for its next cycle
            elif self._unpaced():
                # Nothing was paced yet: the requests in flight may have got through (a
                # refusal comes back sooner than an answer). Guess once they have answered.
                self._guess_after = self.epoch + 1
                self._cut_what = what
            else:
                self._cut(now, what)
        self.strikes += 1
        self._refused_at = now
        pause = retry_after if retry_after is not None else self._pause(now, hint)
        self._start_pause(now + pause)
        if self._rough():  # the probe goes as the pause ends, not a guessed interval later
            self._next_free = -math.inf

    def _openings_hold(
        self, now: float, ticket: Ticket, retry_after: float | None, what: tuple[bool, bool]
    ) -> bool:
        """A rate limit refused ``ticket`` while a short fixed window is spent as it opens:
        whether nothing more is to be done. It was a look for room (the requests' limit,
        no wait past the next period's start): the window holds, and the request waits for
        that start. Any other refusal says it is no such window: it is left (see
        _leave_openings), and the refusal is taken as any (``False``) unless the window
        was not confirmed yet."""
        openings = self._openings
        if openings is None:
            return False
        fits = retry_after is None or now + retry_after <= openings.opens()
        looked = ticket.opening is not None and what[0] and fits
        if looked and openings.refused(now, ticket.opening):  # type: ignore[arg-type]
            return True
        return self._leave_openings(now)

    def _leave_openings(self, now: float) -> bool:
        """Stop spending a short window as it opens. Before it was confirmed (a bucket that
        refused the first period's second request): the paces and the cycle it had before,
        as if it had not been tried (``True``: the refusal changes nothing more). Once
        confirmed: paced at the rate it gave, which the refusal then cuts."""
        openings, self._openings = self._openings, None
        if openings is None:
            return False
        if not openings.confirmed and self._before_openings is not None:
            self._paces, self._cycle = self._before_openings
            self._grown_at = now  # the time it was tried held nothing back
            self._recut = None  # nor does what got through then see the last cut again
            return True
        self._paces[0].set(openings.rate(), openings.rate(), REGAIN, self._timescale)
        return False

    def _settle(self, now: float) -> None:
        """Once the requests sent before the pause have answered: guess the first pace, or
        see the last cut again."""
        if self._before_pause > 0:
            return
        if self._guess_after is not None:
            self._guess(now)
            if not self.strikes:
                self._probing, self._probes_out = False, 0
        if self._recut is not None:
            at, before = self._recut
            self._recut = None
            self._cut_again(now, at, before)

    def _cut_again(
        self, now: float, at: float, before: tuple[tuple[float | None, str], ...]
    ) -> None:
        """A cut measured what the server took from the answers back by then. When answers
        take long, those of the last second were not: it measured the pause before them,
        and cut far too deep (a sliding 1 s window answering in 1 s: from 10 a second to
        one). Once they are back: no deeper than ``backoff`` of the best second of it (the
        cut at ``at``, from the paces and modes ``before`` it)."""
        t = self.tuning
        best = self._meter.best_rate(now, at - t.measure) if t.recut else None
        if best is None:
            return
        for pace, (old, mode), took in zip(self._paces, before, best):
            if pace.rate is None or old is None or not took or pace.mode != REGAIN:
                continue
            if mode == DISCOVER:
                took /= _ramp(t)  # as the cut did: the best second of a pace that doubled
            rate = t.backoff * min(old, took)
            if rate > pace.rate:
                pace.set(rate, max(pace.ceiling, min(old, took)), REGAIN, self._timescale)

    def _probes_full(self) -> bool:
        """Whether no more probes may go out: one while a wall lasts, more while a window's
        room is looked for (see _succeeded)."""
        return self._probes_out >= (1 if self.strikes else self._probe_room)

    def _replay(self) -> float:
        """When the next request of a window's cycle may go. Its burst begins
        ``opens_late`` of the period after the request that found the window open, and each
        of its requests goes no sooner after the burst began than its match in the last
        cycle's burst (``follow_burst``), as the server saw it: a sliding window frees its
        room as the last burst spent it (on a busy loop, more slowly and unevenly than the
        requests in flight allow), and a fixed one was spent that fast too."""
        index = int(self._sent[0]) - 1  # in the burst
        if self._period is None or index < 0:
            return -math.inf
        if index == 0:
            return self._opened + self.tuning.opens_late * self._period
        if index >= len(self._spread) or not self.tuning.follow_burst:
            return -math.inf
        return self._burst_from + self.tuning.follow_burst * self._spread[index]

    def _spent(self) -> bool:
        """Whether this cycle sent what the window's last cycle took."""
        return any(sent >= allowed for sent, allowed in zip(self._sent, self._allowance))

    def _unpaced(self) -> bool:
        return all(pace.rate is None for pace in self._paces)

    def _guess(self, now: float) -> None:
        """The first pace of all, once every request sent before the first refusal has
        answered: what got through so far, as if the limit had let it through over at least
        ``assumed_burst`` seconds, or the best second so far if higher; per round trip when
        the wall reads as a concurrency cap's."""
        self._guess_after = None
        meter, t = self._meter, self.tuning
        first = meter.first if meter.first is not None else now
        over = max(now - first, t.assumed_burst)
        probes, self._probes_refused = self._probes_refused, []
        if self._reads_as_cap(probes):
            # That many in flight, each round trip (nginx's limit_conn).
            self._window.narrow(now, int(meter.requests) + 1)
            over = max(self._quickest, t.bin)
        spread = [total / over for total in meter.totals()]
        best = meter.best_rate(now, first) if now - first >= t.measure else None
        # A burst of a few requests says little of the rate, and a refusal that does not
        # say it was a rate limit may have been a cap on requests in flight (they answer
        # later than a second's worth): double until refused.
        rough = t.discover_below > 0 and (meter.requests < t.discover_below or not self._named)
        mode = DISCOVER if rough else REGAIN
        for index, (pace, flag) in enumerate(zip(self._paces, self._cut_what)):
            rate = max(spread[index], best[index] if best else 0.0)
            if flag and rate > 0 and t.backoff * rate > (pace.rate or 0.0):
                pace.set(t.backoff * rate, rate, mode)
        self._last_cut = self._guessed_at = now

    def _reads_as_cap(self, probes: list[int]) -> bool:
        """Whether the first wall reads as a concurrency cap's, though its refusals named no
        limit: two requests or more got through, and ``cap_probes`` of its probes were
        refused (``probes``: the requests in flight as each went), each sent with more
        requests in flight than that (the ones that got through were still out). A rate
        limit refuses by time, not by how many are in flight, but a slow one refuses such
        probes too: then the guess costs a round trip of refusals, and the pace is cut as
        any."""
        through = self._meter.requests
        return (
            0 < self.tuning.cap_probes <= len(probes)
            and not self._named
            and 2 <= through < min(probes)
        )

    def _rough(self) -> bool:
        """Whether the pace is still the first guess, a rough one (it doubles until
        refused: no cut came since), whose wall's probes measure when room comes back
        (``tuning.room_within``)."""
        return (
            self.tuning.room_within > 0
            and self._guessed_at == self._last_cut
            and any(p.mode == DISCOVER and p.rate for p in self._paces)
        )

    def _room_came_back(self, now: float, sent: float, requests: float, tokens: float) -> None:
        """A request sent at ``sent`` (of ``tokens``) got through after the first guess's
        wall: the limit gave its room back within ``sent`` less when the last success went,
        so the rate is at least one such request over that gap. A rough guess (a burst of
        one or two let through) is raised to it and goes on doubling from there (b01, nginx
        without burst: the limit refills a request in a tenth of a second where the guess
        said one a second)."""
        gap = sent - self._last_ok
        if requests != 1 or not self._rough() or not 0.0 < gap < self.tuning.room_within:
            return
        raised = False
        for pace, flag, amount in zip(self._paces, self._cut_what, (1.0, tokens)):
            rate = self.tuning.backoff * amount / gap
            if flag and pace.mode == DISCOVER and pace.rate and rate > pace.rate:
                pace.set(rate, rate, DISCOVER)
                pace.last = sent  # its next turn: one new interval after this request
                raised = True
        if raised:
            gap = max(self._paces[0].interval(), self._paces[1].interval(tokens))
            self._next_free = sent + gap * self.tuning.spacing
            self._grown_at = now  # it doubles from now on
            self._void_turns()

    def _cut(self, now: float, what: tuple[bool, bool]) -> None:
        """Multiplicative decrease of the exhausted pace(s), from what the server took."""
        t = self.tuning
        # At least the last whole ``measure`` seconds, across the last cut: a refusal soon
        # after one would otherwise measure the pause, and cut a pace just cut far too deep.
        best = self._meter.best_rate(now, min(self._last_cut, now - t.measure))
        soon = now - self._last_cut < t.measure
        before = tuple((p.rate, p.mode) for p in self._paces)
        for index, (pace, flag) in enumerate(zip(self._paces, what)):
            took = None if best is None else best[index]
            if not flag or (pace.rate is None and not took):
                continue
            if pace.rate is None:
                rate = ceiling = took or 0.0
            else:
                if took and pace.mode == DISCOVER:
                    took /= _ramp(t)  # the best second of a pace that was doubling
                rate = pace.rate if not took else min(pace.rate, took)
                # A pace never refused before was refused at about the limit (or by chance,
                # below it), and a refusal soon after a cut measured the pause with it: climb
                # back to where it was refused, not only to what got through.
                ceiling = pace.rate if pace.mode == DISCOVER or soon else rate
            pace.set(t.backoff * rate, ceiling, REGAIN, self._timescale)
        self._cut_what = what
        self._last_cut = now
        self._recut = (now, before)  # seen again once what is in flight has answered

    def _wall_ended(self, sent: float, requests: float, tokens: float) -> None:
        """A success, sent at ``sent``, ends the wall. One that lasted was a window's, spent
        early and open again: what got through over the whole cycle (to about when the wall
        ended: between its last refusal and the success's sending) is what the window
        sustains. A window spent in the first half of its cycle gives its allowance at once:
        spend it at once (free) and probe when the next cycle should begin. Otherwise pace
        just under what it sustains."""
        # A wall of one refused probe is as long as the pace's interval made its pause, and
        # says nothing of a window (unless its pause ended when a window should open); nor
        # does the time a client sent nothing after it (the wall ended by then).
        lasted = self.strikes > LASTING_PROBES or self._planned or self._period is not None
        # The probe could have gone when the pause ended: a client idle after it (a call
        # cancelled, the next one later) does not make the wall longer.
        ended = max(self._refused_at, min(sent, self.cooldown_until))
        # A probe planned for a window's opening with no period learned yet (a short window
        # spent by the cycle's first burst) measures the wall from the cycle's start: the
        # window was shut since the burst, whose room it gives again.
        began = self._wall_since
        if self._planned and self._period is None and self._cycle is not None:
            began = min(began, self._cycle[0])
        period = self._short_window(ended)
        if period is not None:
            # A fixed window's opening: spend it as each period begins (see _openings).
            self._openings_tried = True
            took = self._meter.requests - self._cycle[1]  # type: ignore[index]
            band = sent - self._refused_sent  # it opened after the last refused request went
            self._openings = Openings(self.tuning, period, sent, band, int(took))
            self._before_openings = ((copy.copy(self._paces[0]), self._paces[1]), self._cycle)
            self._cycle = (ended, *self._meter.totals())
            self._paces[0].rate = None
            return
        long = ended - began >= self.tuning.long_wall and lasted
        if not long or self._cycle is None:
            return
        self._timescale = max(self._timescale, ended - self._wall_since)
        # It ended between its last refusal and then; when the probe went as a window was
        # planned to open, by then. A planned probe that got through at once says no more.
        planned_once = self._planned and self.strikes == 1
        end = ended if self._planned else (self._refused_at + ended) / 2
        since, before = self._cycle[0], self._cycle[1:]
        totals = self._meter.totals()
        self._cycle = (end, *totals)
        self._sent = [requests, tokens]  # the probe, the next cycle's first
        self._last_cut = sent
        if end <= since:
            return
        spent_early = end - self._wall_since > (end - since) / 2
        if end - since >= self.tuning.spend_period and spent_early:
            self._period = self._next_period(since, end, planned_once)
            # The next cycle counts from when the success went: a sliding window frees its
            # room a period after the burst that spent it, and a fixed one opens a period
            # after it last opened, which was by then.
            self._cycle = (ended, *totals)
            self._spread, self._spread_now = sorted(self._spread_now), []
            self._opened, self._burst_from = sent, math.inf
            took = (totals[0] - before[0], totals[1] - before[1])
            # Spend what the last cycle took, then probes look for more (see admit).
            self._allowance = tuple(  # type: ignore[assignment]
                t if flag else math.inf for t, flag in zip(took, self._cut_what)
            )
            for pace in self._paces:
                pace.rate = None
                pace.floor = max(pace.floor, ended)
            return
        self._period, self._period_floor = None, 0.0
        self._spread, self._spread_now, self._burst_from = [], [], math.inf  # no burst to follow
        span = end - since
        rates = ((totals[0] - before[0]) / span, (totals[1] - before[1]) / span)
        for pace, flag, rate in zip(self._paces, self._cut_what, rates):
            if flag and rate > 0:
                pace.set(self.tuning.after_wall * rate, rate, REGAIN, self._timescale)

    def _short_window(self, ended: float) -> float | None:
        """The period of a fixed window the cycle's first burst spent, when its wall, which
        ended at ``ended`` (the success's sending), reads as one: it lasted (probes
        refused), its 429s named the requests' limit (not tokens, not none), a burst got
        through first (a slow bucket's one or two say nothing of a window), and room came
        back before a sliding window spent by the burst would have freed any
        (``tuning.pause_min`` before a period after the burst: more than the answers'
        jitter). ``None``: not such a window; or this controller does not learn (a
        cluster's follower), or tried it once already, or does not spend windows so."""
        t = self.tuning
        if not t.openings or not self.learns or self._openings_tried or self._period is not None:
            return None
        if self._cycle is None or self._guess_after is not None or self._rough():
            return None
        if self._cut_what != (True, False):
            return None
        if self.strikes <= LASTING_PROBES or self._planned:
            return None
        since, through = self._cycle[0], self._meter.requests - self._cycle[1]
        if through < max(t.discover_below, 2):
            return None
        for period in t.window_periods:
            short = period < t.spend_period and self._wall_since - since < period
            if short and ended - since < period - t.pause_min:
                return period
        return None

    def _next_period(self, since: float, end: float, planned_once: bool) -> float:
        """A window's period, after a cycle from ``since`` (when the last one's success
        went) to ``end`` (when this one's opened, about). Once it is known, a planned probe
        that got through at once says only that the window was open by then: it may have
        opened sooner, so the period is taken shorter (``tuning.period_shrink``, or a
        quarter of the way to the floor), and a probe that goes too early finds the opening
        again. Found so (a probe refused first), it is the cycle's length, and at least the
        time to the wall's last refusal: the floor. A period never brought down would make
        every cycle start later than the window opens (f10: 10.9 s learned for 10 s; a
        sliding 13 s window: 16.9 s). The first cycle ran from the first request, which a
        fixed window's opening preceded: it sets no floor."""
        period, floor = self._period, self._period_floor
        if period is None:
            return end - since
        if planned_once:
            if not self.tuning.period_shrink:
                return period
            shrink = self.tuning.period_shrink
            step = (period - floor) * FLOOR_STEP if floor > 0 else period * shrink
            return max(floor, period - step)
        self._period_floor = floor = self._refused_at - since
        return max(floor, end - since)

    def _pause(self, now: float, hint: RateLimitHeaders | None) -> float:
        """Seconds to pause when the server gave no ``Retry-After``."""
        t = self.tuning
        # A rough first guess's interval says nothing of when room comes back: the probes
        # start soon and go further apart, and the first that gets through measures it
        # (see _room_came_back).
        first = t.pause_min if self._rough() else max(t.pause_min, self._paces[0].interval())
        age = now - self._wall_since
        pause = min(first * 2.0 ** (self.strikes - 1), max(first, t.wall_late * age), t.pause_max)
        opens = self._window_opens(now, age)
        mid_burst = self._period is not None and self._sent[0] > 1 and not self._spent()
        self._planned = opens is not None and (
            (self.strikes == 1 and not mid_burst) or opens - now <= pause
        )
        if opens is not None and self._planned:
            pause = opens - now
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
                pause = min(pause, max(resets))
        return max(pause, t.pause_min)

    def _window_opens(self, now: float, age: float) -> float | None:
        """When the window should have room again: the next cycle of the period learned,
        or when a window of one of the usual periods opened by the cycle's first request
        would open again, for the periods the wall's age and start allow (_looked_for);
        ``None`` when neither applies."""
        t = self.tuning
        if self._cycle is None:
            return None
        since = self._cycle[0]
        began = self._wall_since - since
        periods = [p for p in t.window_periods if self._looked_for(p, age, began)]
        if self._period is not None:
            periods.append(self._period)
        # Probed a little after it: a sliding window frees its room as fast as it was spent,
        # and a burst that starts early catches up with it.
        found = []
        for period in periods:
            late = t.opens_late * period
            if period < t.window_probe:
                # A short window's opening comes round soon: probed as soon as a pause
                # allows, not skipped for the next one.
                at = since + period * math.ceil((now - since - late) / period) + late
                found.append(max(at, now + t.pause_min))
                continue
            at = since + period * math.ceil((now - since) / period) + late
            if at > now + t.pause_min:
                found.append(at)
        return min(found, default=None)

    def _looked_for(self, period: float, age: float, began: float) -> bool:
        """Whether a wall ``age`` seconds old, which began ``began`` seconds into its cycle,
        may be a window of ``period`` that the cycle's first request opened. A period of
        ``tuning.window_probe`` or more: once the wall is that old. A shorter one (a
        sliding 1 s window spent by the first burst, s1): when the wall began within a
        period of the cycle's start, from half a period of its age to two; before, the
        pauses' own probes find a bucket's room, and after, it was no such window."""
        t = self.tuning
        if period >= t.window_probe:
            return age >= t.window_probe
        return 0.0 <= began < period and period / 2 <= age <= 2 * period

    def _start_pause(self, until: float) -> None:
        """Every worker waits until ``until``; bookings made before are void. After a first
        refusal everybody resumes at the lowered pace (a lone probe would leave the limit
        idle for a round trip, and a cluster's for several reports); once a wall lasts (a
        second refusal in a row), or before the first pace is guessed, one probes alone."""
        self.epoch += 1
        self.pauses += 1
        self._before_pause = self._in_flight
        self.cooldown_until = max(self.cooldown_until, until)
        for pace in self._paces:  # bookings before are void; no credit out of a pause
            pace.floor, pace.last = self.cooldown_until, -math.inf
        self._probing = self.strikes >= 2 or self._guess_after is not None
        self._probes_out, self._probe_room = 0, 1


def _ramp(t: Tuning) -> float:
    """The mean of a pace that doubles every ``t.discover`` seconds over the last
    ``t.measure`` seconds, as a share of where it ends."""
    doublings = t.measure / t.discover
    return float((1 - 2.0**-doublings) / (doublings * math.log(2)))


def loop_time() -> float:
    """The running event loop's clock (simulated time follows it), else the monotonic one."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
