"""One account's rate limit across many processes: a leader and its followers. No Ray here.

Alone, each worker's controller sees only its share of the 429s: together the workers of a
cluster overshoot, back off in waves, or leave the account idle. So one :class:`RateLeader`
per account (in ``embedsdk.ray``, a named actor) holds the account's
:class:`~embedsdk.RateController`, and each worker has a :class:`Follower`:

- The follower's ``controller`` is a whole ``RateController`` that the worker's client uses:
  it paces, pauses and keeps its window of requests in flight itself, so no request ever
  waits for a call to the leader, but for its first answer: until then the follower sends
  nothing (``RateController.await_pace``; :data:`FIRST_ANSWER` seconds at most, and the
  syncer's first failure ends the wait), since requests sent blind by every worker at once
  would spend the account's burst before the leader knows of them. It does not learn the
  pace (``learns=False``): a 429 only holds its requests until the leader answers.
- The follower listens to its controller (its ``listener``) and tallies what it saw:
  successes, tokens, whether the pace held them back, and the 429s read as a rate limit,
  each with the leader's epoch it was booked in.
- Every ``interval`` seconds, and at once after a 429, a :class:`Syncer` thread sends the
  tally to the leader in one call and hands the answer to :meth:`Follower.apply`, which sets
  the controller's pace (its share of the account's), pause and turn through
  :meth:`RateController.follow`.
- The leader feeds the tallies to its controller in bulk (``on_successes``, ``on_refused``),
  so it learns from what the whole account got through, and divides the pace evenly between
  the workers busy lately. 429s of requests booked before a worker heard of the last pause
  are echoes of it, as in one process. After a pause, one worker's request probes alone.

The window of requests in flight stays each worker's: a cap on requests in flight is
answered at once, request by request, where a window kept by the leader would cost a call
per request. A cap smaller than the number of workers therefore cannot be kept (each worker
sends at least one request): run fewer workers for such a provider.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
import uuid
from typing import Any, Callable

from ..http import RateLimitHeaders
from ._controller import RateController, Ticket
from ._tuning import DEFAULT, Tuning

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
#: A probe not answered within this many seconds goes to another worker.
PROBE_TIMEOUT = 5.0
#: A follower sends nothing until its leader first answers, this many seconds at most (the
#: syncer's first failure ends the wait sooner: the worker then paces alone; with Ray, the
#: first call to the actor fails after its 10 s timeout).
FIRST_ANSWER = 30.0

#: A follower's tuning: it starts with one request in flight (once the leader first answers,
#: the workers' first requests all go at once, before any of them has heard of a limit).
FOLLOWER = dataclasses.replace(DEFAULT, start_window=1)
#: The leader's: its walls last a report or two longer than one process's (the probe goes
#: to a worker, its answer comes back with the worker's next report), so only one of
#: several seconds is read as a window's.
LEADER = dataclasses.replace(DEFAULT, long_wall=3.0)

#: A leader's epoch as followers know it: (the leader's incarnation, its epoch).
Tag = tuple[str, int]
#: Before the first answer from a leader.
UNKNOWN: Tag = ("", -1)

Report = dict[str, Any]
State = dict[str, Any]


class RateLeader:
    """The account's controller for many processes (the body of ``embedsdk.ray``'s actor).

    Each :meth:`sync` takes one follower's report and returns the state it paces by: the
    pace (requests and tokens per second, ``None``: not limited), the pause left, the
    epoch and the share of the pace that is this follower's. A restarted leader (a new
    ``incarnation``) knows nothing yet and learns again from the next 429s.
    """

    def __init__(self, clock: Callable[[], float] | None = None, tuning: Tuning = LEADER) -> None:
        self._clock = clock or time.monotonic
        # Never spends a short window as it opens: its followers go by a pace.
        tuning = dataclasses.replace(tuning, openings=0.0)
        self.controller = RateController(clock=self._clock, tuning=tuning)
        self.incarnation = uuid.uuid4().hex[:12]
        self._started = self._clock()
        self._busy_until: dict[str, float] = {}
        self._seen: dict[str, float] = {}
        self._probe: tuple[str, int, float] | None = None  # (worker, epoch, since)
        self._lock = threading.Lock()

    def sync(self, worker: str, report: Report) -> State:
        """Take ``worker``'s report (see :meth:`Follower.report`); its state."""
        now = self._clock()
        ctl = self.controller
        for inc, epoch, requests, tokens, held, age in report.get("ok", ()):
            ctl.on_successes(self._epoch(inc, epoch), requests, tokens, bool(held), age)
        for inc, epoch, retry_after, requests, tokens, hint in report.get("refused", ()):
            epoch = self._epoch(inc, epoch, refused=True)
            headers = None if hint is None else RateLimitHeaders(*hint)
            ctl.on_refused(epoch, retry_after, (requests, tokens), headers)
        busy = bool(report.get("busy"))
        rank, workers = self._place(worker, now, busy)
        requests, tokens, pause, epoch, probing = ctl.shared_state()
        resumed = ctl.resumed_at()
        return {
            "incarnation": self.incarnation,
            "epoch": epoch,
            "rps": requests,
            "tps": tokens,
            "pause": pause,
            "probing": probing,
            "probe": probing and self._prober(worker, epoch, now, busy),
            "share": 1.0 / workers,
            "workers": workers,
            # Its place among the busy workers: after a pause, each resumes in turn, one
            # interval of the account's pace after the other, not all at once.
            "rank": rank,
            # When the account's last pause ended, seconds from now (negative: ago): every
            # worker counts its turns from it, so theirs interleave (relative, since the
            # workers' clocks are not the leader's).
            "resumed": (self._started if resumed is None else resumed) - now,
        }

    def _place(self, worker: str, now: float, busy: bool) -> tuple[int, int]:
        """This worker's rank among the busy ones, and how many share the pace (itself
        counted, busy or not: what it would get if it were)."""
        with self._lock:
            self._seen[worker] = now
            if busy:
                self._busy_until[worker] = now + BUSY_FOR
            for gone in [w for w, seen in self._seen.items() if now - seen > FORGET_AFTER]:
                del self._seen[gone]
                self._busy_until.pop(gone, None)
            ones = sorted(w for w, until in self._busy_until.items() if until > now)
        if worker in ones:
            return ones.index(worker), len(ones)
        return len(ones), len(ones) + 1

    def _prober(self, worker: str, epoch: int, now: float, busy: bool) -> bool:
        """Whether ``worker`` sends the probe after the account's pause: as in one process,
        one request goes alone, and the others follow when it succeeds. The first busy
        worker to ask gets it, for this epoch, or when its holder went quiet."""
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

    def snapshot(self) -> dict[str, Any]:
        """The controller's snapshot, and how many workers were heard from lately."""
        with self._lock:
            workers = len(self._seen)
        return {**self.controller.snapshot(), "workers": workers}


class _Tally:
    """What a follower saw since its last report (guarded by the follower's lock)."""

    __slots__ = ("busy", "ok", "oldest", "refused")

    def __init__(self) -> None:
        self.ok: dict[Tag, list[float]] = {}  # tag -> [requests, tokens, held]
        self.refused: list[list[Any]] = []
        self.oldest: float | None = None  # when the first success counted here was sent
        self.busy = False


class Follower:
    """A worker's side of a cluster: ``controller`` paces by its share of a leader's pace
    (pass it as the client's ``rate_controller``), and what it sees is tallied for the
    leader (see the module's docstring). ``on_news`` (set by the :class:`Syncer`) is called
    after a 429 read as a rate limit, and when work comes after an idle spell, so that the
    leader hears of it promptly."""

    def __init__(self, clock: Callable[[], float] | None = None, tuning: Tuning = FOLLOWER) -> None:
        self.controller = RateController(clock=clock, tuning=tuning, learns=False, listener=self)
        self.controller.await_pace(FIRST_ANSWER)  # until the leader's first answer
        self._lock = threading.Lock()
        self._tally = _Tally()
        self._known: Tag = UNKNOWN
        # Local epochs at which the leader's epoch (as known here) changed, and to what.
        self._epoch_starts: list[int] = [0]
        self._epoch_tags: list[Tag] = [UNKNOWN]
        self.share = 1.0
        self.on_news: Callable[[], None] | None = None
        self.dozing = False  # set by the syncer while it waits long (nothing to report)
        self._stagger = 0.0  # seconds after the account's pause this worker resumes
        self._last_cost = 0.0  # tokens of the last request booked
        self._resumed: float | None = None  # when the leader's last pause ended, here

    def _tag(self, local_epoch: int) -> Tag:
        """The leader's epoch known when a request of ``local_epoch`` was booked."""
        i = bisect.bisect_right(self._epoch_starts, local_epoch) - 1
        return self._epoch_tags[max(0, i)]

    def _count(self, ticket: Ticket, requests: float, tokens: float) -> None:
        with self._lock:
            counts = self._tally.ok.setdefault(self._tag(ticket.epoch), [0.0, 0.0, 0.0])
            counts[0] += requests
            counts[1] += tokens
            counts[2] += requests if ticket.held else 0.0
            if requests:
                oldest = self._tally.oldest
                self._tally.oldest = ticket.sent if oldest is None else min(oldest, ticket.sent)

    def _tell(self) -> None:
        news = self.on_news
        if news is not None:
            news()

    # -- what its controller tells it (the Listener protocol) ----------------------------

    def reserved(self, ticket: Ticket) -> None:
        self._tally.busy = True  # a plain store: no lock needed for a flag
        self._last_cost = ticket.tokens
        if self.dozing:  # the syncer waits long while idle: work came, hear the leader now
            self.dozing = False
            self._tell()

    def succeeded(self, ticket: Ticket) -> None:
        self._count(ticket, 1.0, ticket.tokens)

    def used(self, ticket: Ticket, extra: float) -> None:
        self._count(ticket, 0.0, extra)  # the real tokens, not the booked

    def refused(
        self,
        ticket: Ticket,
        retry_after: float | None,
        what: tuple[bool, bool],
        hint: RateLimitHeaders | None,
    ) -> None:
        inc, epoch = self._tag(ticket.epoch)
        # Only what the leader's controller reads: never the message (a gateway may echo
        # the key in it) nor the headers themselves.
        entry = [inc, epoch, retry_after, *what, None if hint is None else [*hint]]
        with self._lock:
            self._tally.refused.append(entry)
        self._tell()

    # -- what the syncer calls ----------------------------------------------------------

    def report(self) -> Report:
        """What was counted since the last report (then forgotten here), JSON-able."""
        ctl = self.controller
        now = ctl.now()
        with self._lock:
            tally, self._tally = self._tally, _Tally()
        if ctl.snapshot()["in_flight"] or ctl.next_turn() > now:
            tally.busy = True  # requests in flight, or booked and waiting for their turn
        age = 0.0 if tally.oldest is None else max(0.0, now - tally.oldest)
        ok = [
            [inc, epoch, int(c[0]), c[1], int(c[2]), age]
            for (inc, epoch), c in tally.ok.items()
            if c[0] or c[1]
        ]
        return {"ok": ok, "refused": tally.refused, "busy": tally.busy}

    def apply(self, state: State) -> None:
        """Pace by this worker's share of the leader's pace; a new leader epoch brings its
        pause (the rest of it) and voids the bookings made before."""
        ctl = self.controller
        share = float(state["share"])
        rps, tps = state["rps"], state["tps"]
        requests = None if rps is None else rps * share
        tokens = None if tps is None else tps * share
        tag: Tag = (state["incarnation"], state["epoch"])
        probing, mine = bool(state["probing"]), bool(state.get("probe"))
        with self._lock:
            self.share = share
            self._resumed = ctl.now() + float(state["resumed"])
            self._stagger = self._gap(requests, tokens) * state.get("rank", 0) / state["workers"]
            phase = self._resumed + self._stagger
            if tag == self._known and not (probing and not mine):
                ctl.follow(requests, tokens, phase=phase)
                return
            self._known = tag
            pause = float(state["pause"])
            if probing and not mine:  # another worker's probe is out: hold until it is back
                pause = max(pause, HOLD)
            # The probe goes as the pause ends; the others at their turns after it.
            ctl.follow(requests, tokens, pause, probing and mine, None if mine else phase)
            self._epoch_starts.append(ctl.epoch)
            self._epoch_tags.append(tag)
            del self._epoch_starts[:-16], self._epoch_tags[:-16]

    def _gap(self, requests: float | None, tokens: float | None) -> float:
        """Seconds between two of this worker's requests at its own pace."""
        return max(1 / requests if requests else 0.0, self._last_cost / tokens if tokens else 0.0)


class Syncer:
    """A daemon thread that reports a follower's outcomes to its leader and applies the
    answer: every ``interval`` seconds while busy, every ``idle`` seconds otherwise, and at
    once after a 429. ``send(report)`` returns the leader's state; when it fails, the
    follower's controller learns the limit alone (``learns=True``) until the leader answers
    again."""

    def __init__(
        self,
        follower: Follower,
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
        follower = self._follower
        report = follower.report()
        try:
            state = self._send(report)
        except Exception as exc:
            self.failures += 1
            follower.controller.learns = True
            follower.controller.await_pace(None)  # no leader to wait for: pace alone
            if self.failures == 1 or self.failures % 100 == 0:
                logger.warning("rate leader not reachable (%s); pacing alone meanwhile", exc)
        else:
            follower.controller.learns = False
            follower.apply(state)
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
