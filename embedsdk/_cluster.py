"""One account's rate limit across many processes: a leader and its followers. No Ray here.

Alone, each worker's controller sees only its share of the 429s: together the workers of a
cluster overshoot, back off in waves, or leave the account idle. So one :class:`RateLeader`
per account (in ``embedsdk.ray``, a named actor) holds the account's
:class:`~embedsdk._adaptive.RateController`, and each worker's client paces with a
:class:`FollowerController`:

- The follower is a whole ``RateController``: it paces, pauses and keeps its window of
  requests in flight itself, so no request ever waits for a call to the leader.
- Every ``interval`` seconds, and at once after a 429, a :class:`Syncer` thread sends the
  leader, in one call, what the follower saw: successes, tokens, how many of them its pace
  held back, and the 429s it read as a rate limit, each with the leader's epoch it was
  booked in. It takes back the account's pace, pause and epoch.
- The leader feeds those outcomes to its controller in bulk (``on_successes``,
  ``on_refused``), so the controller learns from what the whole account got through, and
  divides its pace evenly between the workers busy lately: each follower paces at its
  share, and a pause is everybody's. 429s of requests booked before a worker heard of the
  last pause are echoes of it, as in one process.

The window of requests in flight stays each worker's: a cap on requests in flight is
answered at once, request by request, where a window kept by the leader would cost a call
per request. A cap smaller than the number of workers therefore cannot be kept (each worker
sends at least one request): run fewer workers for such a provider.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Callable

from ._adaptive import PAUSED, RateController, Ticket
from ._learning import BIN, RECENT, _PaceLearner
from ._ratelimit_hints import RateLimitHeaders, exhausted, parse_ratelimit_headers

logger = logging.getLogger("embedsdk")

#: Seconds between two reports of a busy follower, and of an idle one.
SYNC_INTERVAL = 0.1
IDLE_INTERVAL = 1.0
#: A worker that reported work this many seconds ago still counts for a share of the pace.
BUSY_FOR = 2.0
#: A worker not heard from for this long is forgotten.
FORGET_AFTER = 60.0
#: While another worker's probe is out, a follower holds its requests this long after each
#: answer of the leader (longer than the interval, so the hold lasts between two answers).
HOLD = 0.25
#: The leader's quiet spell (seconds without a 429 after which its pace grows twice as fast):
#: shorter than one process's 10 s, since a cluster's first estimate of the limit is rougher
#: (its walls last longer: every worker hears of them a report later).
QUIET = 3.0
#: A follower's own hold after a 429 until the leader answers (it is told at once), seconds.
LOCAL_HOLD = 0.05
#: A probe not answered within this many seconds goes to another worker.
PROBE_TIMEOUT = 5.0

#: A leader's epoch as followers know it: (the leader's incarnation, its epoch).
Tag = tuple[str, int]
#: Before the first answer from a leader.
UNKNOWN: Tag = ("", -1)

Report = dict[str, Any]
State = dict[str, Any]


#: The deepest single decrease of the leader's pace: what got through since the last one is a
#: poorer estimate of the limit in a cluster, whose walls and probes last a report longer.
DEEPEST_CUT = 0.5


class _LeaderLearner(_PaceLearner):
    """The account's pace, which falls by at most half at a time, from the best second the
    server gave lately rather than the average since the last decrease: in a cluster that
    average takes in the pauses, probes and resumptions, each a report longer than in one
    process, and would put the pace well under the limit."""

    def accepted(self, now: float) -> tuple[float, float] | None:
        average = super().accepted(now)
        if average is None or self.since is None:
            return average
        per = round(1.0 / BIN)  # bins in a second
        # At least the last second, even across the last decrease: a 429 soon after one
        # (the bucket was still empty) would otherwise measure the pause and the reports
        # still on their way, and cut a pace already cut far too deep.
        first = min(math.floor(max(self.since, now - RECENT) / BIN), math.floor(now / BIN) - per)
        bins = [b for b in self.recent if b[0] >= first]
        if len(bins) < per:
            return average
        best = [0.0, 0.0]
        for i in range(len(bins)):
            second = [b for b in bins[i:] if b[0] < bins[i][0] + per]
            for k in (0, 1):
                best[k] = max(best[k], sum(b[k + 1] for b in second))
        return max(average[0], best[0]), max(average[1], best[1])

    def cut(self, now: float, requests: bool, tokens: bool) -> None:
        before = (self.requests.rate, self.tokens.rate)
        super().cut(now, requests, tokens)
        for pace, old in zip((self.requests, self.tokens), before):
            if old is not None and pace.rate is not None and pace.rate < DEEPEST_CUT * old:
                pace.rate = pace.base = DEEPEST_CUT * old


class _LeaderController(RateController):
    """The account's controller: it learns the pace as :class:`_LeaderLearner` does."""

    _learner_type = _LeaderLearner


class _FollowerLearner(_PaceLearner):
    """A follower's learner counts what got through, but never grows the pace: the leader
    does (from the held successes reported to it), and a follower takes the leader's."""

    def grow(self, now: float, tokens: float, requests: float = 1.0) -> None:
        """The leader grows the pace (from the held successes reported to it)."""


class RateLeader:
    """The account's controller for many processes (the body of ``embedsdk.ray``'s actor).

    Each :meth:`sync` takes one follower's report and returns the state it paces by: the
    pace (requests and tokens per second, ``None``: not limited), the pause left, the
    epoch and the share of the pace that is this follower's. A restarted leader (a new
    ``incarnation``) knows nothing yet and learns again from the next 429s.
    """

    def __init__(self, clock: Callable[[], float] | None = None, **controller: Any) -> None:
        self._clock = clock or time.monotonic
        self.controller: RateController = _LeaderController(
            clock=self._clock, **{"quiet": QUIET, **controller}
        )
        self.incarnation = uuid.uuid4().hex[:12]
        self._started = self._clock()
        self._busy_until: dict[str, float] = {}
        self._seen: dict[str, float] = {}
        self._probe: tuple[str, int, float] | None = None  # (worker, epoch, since)
        self._lock = threading.Lock()

    def sync(self, worker: str, report: Report) -> State:
        """Take ``worker``'s report (see :meth:`FollowerController.report`); its state."""
        now = self._clock()
        ctl = self.controller
        for inc, epoch, requests, tokens, held, held_tokens, age in report.get("ok", ()):
            ctl.on_successes(self._epoch(inc, epoch), requests, tokens, held, held_tokens, age)
        for inc, epoch, retry_after, requests, tokens, hint in report.get("refused", ()):
            epoch = self._epoch(inc, epoch, refused=True)
            headers = None if hint is None else RateLimitHeaders(*hint)
            ctl.on_refused(epoch, retry_after, (requests, tokens), headers)
        with self._lock:
            self._seen[worker] = now
            if report.get("busy"):
                self._busy_until[worker] = now + BUSY_FOR
            self._forget(now)
            busy_ones = sorted(w for w, until in self._busy_until.items() if until > now)
            busy = len(busy_ones)
            rank = busy_ones.index(worker) if worker in busy_ones else busy
            if worker not in busy_ones:
                busy += 1  # not busy itself: what it would get if it were
        requests, tokens, pause, epoch, probing = ctl.shared_state()
        resumed = ctl.cooldown_until if ctl.cooldown_until > -math.inf else self._started
        return {
            "incarnation": self.incarnation,
            "epoch": epoch,
            "rps": requests,
            "tps": tokens,
            "pause": pause,
            "probing": probing,
            "probe": probing and self._prober(worker, epoch, now, bool(report.get("busy"))),
            "share": 1.0 / max(1, busy),
            "workers": busy,
            # Its place among the busy workers: after a pause, each resumes in turn, one
            # interval of the account's pace after the other, not all at once.
            "rank": rank,
            # When the account's last pause ended, seconds from now (negative: ago): every
            # worker counts its turns from it, so theirs interleave (relative, since the
            # workers' clocks are not the leader's).
            "resumed": resumed - now,
        }

    def _prober(self, worker: str, epoch: int, now: float, busy: bool) -> bool:
        """Whether ``worker`` sends the one probe of a lasting wall: as in one process, one
        request goes alone after the pause, and the others follow when it succeeds. The
        first busy worker to ask gets it, for this epoch, or when its holder went quiet."""
        with self._lock:
            probe = self._probe
            if probe is not None and probe[0] == worker and probe[1] == epoch:
                return True
            if busy and (probe is None or probe[1] != epoch or now - probe[2] > PROBE_TIMEOUT):
                self._probe = (worker, epoch, now)
                return True
            return False

    def _epoch(self, incarnation: str, epoch: int, refused: bool = False) -> int:
        """The controller's epoch a follower's outcome belongs to. A follower that has not
        heard from this leader yet (it just started, or the leader was restarted) booked in
        no epoch the leader knows: its 429 is news before the first pause, an echo after."""
        if incarnation == self.incarnation:
            return epoch
        current = self.controller.epoch
        return current if refused and current == 0 else -1

    def _forget(self, now: float) -> None:
        gone = [w for w, seen in self._seen.items() if now - seen > FORGET_AFTER]
        for worker in gone:
            del self._seen[worker]
            self._busy_until.pop(worker, None)

    def snapshot(self) -> dict[str, Any]:
        """The controller's snapshot, and how many workers were heard from lately."""
        with self._lock:
            workers = len(self._seen)
        return {**self.controller.snapshot(), "workers": workers}


class _Tally:
    """What a follower saw since its last report (guarded by the follower's lock)."""

    __slots__ = ("busy", "ok", "oldest", "refused")

    def __init__(self) -> None:
        self.ok: dict[Tag, list[float]] = {}  # tag -> [requests, tokens, held, held tokens]
        self.refused: list[list[Any]] = []
        self.oldest: float | None = None  # when the first success counted here was sent
        self.busy = False


class FollowerController(RateController):
    """A worker's controller that paces by its share of a leader's pace (see module doc).

    Every answer is counted here first (the window, the local pace and pause react at
    once); :meth:`report` hands what was counted to the :class:`Syncer`, and :meth:`apply`
    takes the leader's answer. ``on_news`` (set by the syncer) is called after a 429 read
    as a rate limit, so that it reaches the leader promptly.
    """

    _learner_type = _FollowerLearner

    def __init__(self, **controller: Any) -> None:
        super().__init__(**controller)
        self._follow_lock = threading.Lock()
        self._tally = _Tally()
        self._known: Tag = UNKNOWN
        # Local epochs at which the leader's epoch (as known here) changed, and to what.
        self._epoch_starts: list[int] = [0]
        self._epoch_tags: list[Tag] = [UNKNOWN]
        self.share = 1.0
        self.on_news: Callable[[], None] | None = None
        self.dozing = False  # set by the syncer while it waits long (nothing to report)
        self._stagger = 0.0  # seconds after a pause's end this worker resumes (its turn)
        self._last_cost = 0.0  # tokens of the last request booked
        self._resumed: float | None = None  # when the leader's last pause ended, here

    def _tag(self, local_epoch: int) -> Tag:
        """The leader's epoch known when a request of ``local_epoch`` was booked."""
        i = bisect.bisect_right(self._epoch_starts, local_epoch) - 1
        return self._epoch_tags[max(0, i)]

    # -- what the core calls ----------------------------------------------------------

    def reserve(self, estimate: int) -> Ticket:
        ticket = super().reserve(estimate)
        self._tally.busy = True  # a plain store: no lock needed for a flag
        self._last_cost = ticket.tokens
        if self.dozing:  # the syncer waits long while idle: work came, hear the leader now
            self.dozing = False
            news = self.on_news
            if news is not None:
                news()
        return ticket

    def on_success(self, ticket: Ticket, headers: Mapping[str, str] | None = None) -> None:
        admitted, sent = ticket.in_flight > 0, ticket.sent
        super().on_success(ticket, headers)
        if not admitted:
            return
        held = 1.0 if ticket.held else 0.0
        with self._follow_lock:
            self._count(self._tag(ticket.epoch), 1.0, ticket.tokens, held, held * ticket.tokens)
            tally = self._tally
            tally.oldest = sent if tally.oldest is None else min(tally.oldest, sent)

    def on_usage(self, ticket: Ticket, used: int) -> None:
        super().on_usage(ticket, used)
        if ticket.estimate > 0 and used >= 0:
            with self._follow_lock:  # the real tokens, not the booked
                extra = used - ticket.tokens
                self._count(self._tag(ticket.epoch), 0.0, extra, 0.0, extra * ticket.held)

    def on_rate_limited(
        self,
        ticket: Ticket,
        retry_after: float | None = None,
        message: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> str:
        verdict = super().on_rate_limited(ticket, retry_after, message, headers)
        if verdict == PAUSED:
            hint = parse_ratelimit_headers(headers) if headers else None
            requests, tokens = exhausted(message, hint)
            inc, epoch = self._tag(ticket.epoch)
            # Only what the leader's controller reads: never the message (a gateway may
            # echo the key in it) nor the headers themselves.
            entry = [inc, epoch, retry_after, requests, tokens, None if hint is None else [*hint]]
            with self._follow_lock:
                self._tally.refused.append(entry)
            news = self.on_news
            if news is not None:
                news()
        return verdict

    def _rate_limited(
        self,
        ticket: Ticket,
        now: float,
        retry_after: float | None,
        what: tuple[bool, bool],
        hint: RateLimitHeaders | None,
    ) -> None:
        """The leader decides the pace and the pause from every worker's 429s: here, only
        hold the requests (``Retry-After`` when sent) until its answer comes."""
        if ticket.epoch != self.epoch:  # an echo of a hold or a pause already under way
            if retry_after is not None:
                self.cooldown_until = max(self.cooldown_until, now + retry_after)
            return
        turns = self._requests.tat, self._tokens.tat
        self._start_pause(now + (retry_after if retry_after is not None else LOCAL_HOLD))
        # Keep this worker's turn in the account's pace (its phase among the workers) when
        # it is later than the hold: only the leader's pauses set new turns.
        self._requests.tat = max(turns[0], self.cooldown_until)
        self._tokens.tat = max(turns[1], self.cooldown_until)

    def _count(self, tag: Tag, requests: float, tokens: float, held: float, held_t: float) -> None:
        counts = self._tally.ok.setdefault(tag, [0.0, 0.0, 0.0, 0.0])
        counts[0] += requests
        counts[1] += tokens
        counts[2] += held
        counts[3] += held_t

    # -- what the syncer calls ----------------------------------------------------------

    def _turn(self, requests: float | None, tokens: float | None, rank: int, workers: int) -> float:
        """Seconds after a pause this worker resumes: ``rank`` of ``workers`` through one
        interval of its own pace (requests, or tokens of a request like its last)."""
        gap = max(
            1 / requests if requests else 0.0,
            self._last_cost / tokens if tokens else 0.0,
        )
        return gap * rank / max(1, workers)

    def report(self) -> Report:
        """What was counted since the last report (then forgotten here), JSON-able."""
        now = self.now()
        with self._follow_lock:
            tally, self._tally = self._tally, _Tally()
        with self._lock:  # requests in flight, or booked and waiting for their turn
            if self._in_flight or max(self._requests.tat, self._tokens.tat) > now:
                tally.busy = True
        age = 0.0 if tally.oldest is None else max(0.0, now - tally.oldest)
        ok = [
            [inc, epoch, int(c[0]), c[1], int(c[2]), c[3], age]
            for (inc, epoch), c in tally.ok.items()
            if c[0] or c[1]
        ]
        return {"ok": ok, "refused": tally.refused, "busy": tally.busy}

    def apply(self, state: State) -> None:
        """Pace by this worker's share of the leader's pace; a new leader epoch brings its
        pause (the rest of it) and voids the bookings made before."""
        share = float(state["share"])
        rps, tps = state["rps"], state["tps"]
        requests = None if rps is None else rps * share
        tokens = None if tps is None else tps * share
        tag: Tag = (state["incarnation"], state["epoch"])
        probing, mine = bool(state["probing"]), bool(state.get("probe"))
        with self._follow_lock:
            self.share = share
            self._resumed = self.now() + float(state["resumed"])
            self._stagger = self._turn(requests, tokens, state.get("rank", 0), state["workers"])
            if tag == self._known and not (probing and not mine):
                self.follow(requests, tokens)
                self._keep_turn()
                return
            self._known = tag
            pause = float(state["pause"])
            if probing and not mine:  # another worker's probe is out: hold until it is back
                pause = max(pause, HOLD)
            self.follow(requests, tokens, pause, probing and mine, self._stagger)
            self._keep_turn()
            self._epoch_starts.append(self.epoch)
            self._epoch_tags.append(tag)
            del self._epoch_starts[:-16], self._epoch_tags[:-16]

    def _keep_turn(self) -> None:
        """Put the next booking back on this worker's turn: the workers' turns, set apart at
        the last pause, would otherwise drift (a late send, a change of share) and bunch,
        which a limit counted over a short window refuses."""
        with self._lock:
            gap = self._turn(self._requests.rate, self._tokens.rate, 1, 1)
            if not gap or self._resumed is None:
                return
            start = self._resumed + self._stagger
            tat = max(self._requests.tat, self._tokens.tat)
            turn = start + gap * max(0, round((tat - start) / gap))
            if turn < self.cooldown_until:  # a hold of this worker's: its first turn after
                turn += gap * math.ceil((self.cooldown_until - turn) / gap)
            self._requests.tat = self._tokens.tat = turn


class Syncer:
    """A daemon thread that reports a follower's outcomes to its leader and applies the
    answer: every ``interval`` seconds while busy, every ``idle`` seconds otherwise, and at
    once after a 429. ``send(report)`` returns the leader's state; when it fails, the
    follower goes on alone (a whole controller) and the next round tries again."""

    def __init__(
        self,
        follower: FollowerController,
        send: Callable[[Report], State],
        interval: float = SYNC_INTERVAL,
        idle: float = IDLE_INTERVAL,
    ) -> None:
        self._follower = follower
        self._send = send
        self._interval = interval
        self._idle = idle
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0
        follower.on_news = self._wake.set

    def start(self) -> Syncer:
        self._thread = threading.Thread(target=self._run, name="embedsdk-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (after one last report)."""
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def sync_once(self) -> bool:
        """One report and one answer; ``True`` when the follower had work to report."""
        report = self._follower.report()
        try:
            state = self._send(report)
        except Exception as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                logger.warning("rate leader not reachable (%s); pacing alone meanwhile", exc)
        else:
            self._follower.apply(state)
        return bool(report["busy"] or report["ok"] or report["refused"])

    def _run(self) -> None:
        while True:
            stopping = self._stopped.is_set()
            busy = self.sync_once()
            if stopping:
                return
            self._follower.dozing = not busy
            self._wake.wait(self._interval if busy else self._idle)
            self._wake.clear()
