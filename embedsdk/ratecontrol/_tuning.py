"""Every number rate control runs on, in one place.

Each field says what it trades off and which row of ``embedsdk bench --scenario adaptive``
moves when it changes (the rows are named by the server's limiter: ``b1`` a token bucket of
600 RPM with 1 s of burst, ``b01`` / ``b60`` with 0.1 s / 60 s, ``tok`` a bucket of tokens,
``f1`` / ``s60`` a fixed 1 s / sliding 60 s window, ``c429`` a cap of 4 requests in flight).
Nothing else in the package holds an unnamed number that steers the controller.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The tunables of one :class:`~embedsdk.RateController` (seconds, shares of a rate)."""

    #: The pace after a cut, as a share of the rate the server was measured to take. Higher
    #: runs closer to the limit and meets it sooner again (more refusals per minute on b1,
    #: f1); lower leaves more of the limit unused on every row.
    backoff: float = 0.95
    #: A refusal of a paced limit cuts the pace only when more than ``tolerance`` of the
    #: last ``tolerance_window`` answers (and more than one) were refusals, echoes aside: a
    #: limit that holds a single request (b01) refuses now and then whatever the pace, when
    #: the network or a busy loop brings two requests closer; cutting (or pausing) for each
    #: of those costs more than they do.
    tolerance: float = 0.01
    tolerance_window: int = 100
    #: When at most ``took_all`` of the answers since the last cut (or one) were refusals,
    #: the server took nearly all that was sent: the cut is from the pace, not from what got
    #: through, which then measures the client (a cluster's workers not yet at their pace).
    took_all: float = 0.05
    #: The deepest a single cut goes, as a share of the pace it cuts: a measurement spoiled by
    #: a pause cannot throw the pace far down (the "30 s at 70 %" of f1 in real time).
    deepest_cut: float = 0.5
    #: A limit is assumed to let this many seconds of its rate through at once when nothing
    #: else is known (the first refusal of a run): right for 1 s buckets and windows, too high
    #: for b10 / b60 (one more cut fixes it), too low for b01 (growth finds it).
    assumed_burst: float = 1.0
    #: Successes are counted in bins of this many seconds...
    bin: float = 0.05
    #: ...and the rate a cut starts from is the best run of ``measure`` seconds among those of
    #: the last ``recent`` seconds since the previous cut (or their mean, when fewer). Longer
    #: ``measure`` averages out arrival jitter (b01, f1), shorter reacts sooner.
    measure: float = 1.0
    recent: float = 10.0
    #: When fewer than ``discover_below`` requests got through before the first refusal,
    #: the first guess is rough: until refused, the pace doubles every ``discover`` seconds
    #: of use (b01: a limit that holds one request; a guess of 10 a second would double past
    #: f1's and b1's limit at once, and cost refusals).
    discover_below: int = 4
    discover: float = 1.0
    #: After a cut, the pace climbs back to the rate it was refused at within ``regain``
    #: seconds of use, slowly near it, then faster beyond it (TCP CUBIC's curve). Shorter
    #: meets the limit more often (refusals on b1, f1, s1); longer finds a raised limit later.
    regain: float = 12.0
    #: Beyond that rate the pace grows by ``beyond`` of it after another ``regain`` seconds
    #: (and eight times that after two): a rate refused by chance, below the limit (b01 in
    #: real time), is left behind within half a minute.
    beyond: float = 0.25
    #: A wall (refusals with no success between) that lasted this long, through two refused
    #: probes or more, was a window's: when it ends, the pace is ``after_wall`` of what got
    #: through over the whole cycle (f10, s10, f60, s60).
    long_wall: float = 1.0
    after_wall: float = 0.97
    #: A window of this period or longer, spent in the first half of its cycle, is spent at
    #: once in every cycle and probed when the next should begin (f60: a whole run gets both
    #: windows it touches, not one and a third); a shorter one is paced (s1).
    spend_period: float = 5.0
    #: The shortest pause after a refusal; a probe (one request alone) ends every pause.
    pause_min: float = 0.05
    #: While a wall lasts, each pause doubles, but ends at most ``wall_late`` of the wall's age
    #: after it (fewer probes on s60, a later resumption on f60), and at most ``pause_max``.
    wall_late: float = 0.5
    pause_max: float = 5.0
    #: A wall that old is probed again just when a window opened by the cycle's first request
    #: would open again (a sliding window of 10 s, a minute...), ``opens_late`` of the
    #: window's period after it (a burst that starts early catches up with the room a sliding
    #: window frees as fast as it was spent: s10).
    window_probe: float = 2.0
    opens_late: float = 0.01
    window_periods: tuple[float, ...] = (10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 3600.0)
    #: Requests are spaced at least this share of the pace's interval apart, counted between
    #: the requests really sent (a timer that fired late does not bunch the next two).
    spacing: float = 0.98
    #: How far ahead a request may book its turn: ``horizon`` seconds or ``horizon_turns``
    #: turns of the pace, whichever is longer, but never more than ``horizon_max`` seconds
    #: (also the longest a worker waits before it looks again). A turn booked at a slow pace
    #: holds its worker after the pace has risen (b01: the sends lag a growing pace and
    #: bunch; a cluster's worker at a small share); a shorter horizon wakes waiting workers
    #: more often to book again.
    horizon: float = 0.1
    horizon_turns: int = 2
    horizon_max: float = 1.0
    #: Requests in flight before the first success, doubling with each round of successes
    #: (TCP's slow start); ``None``: as many as are sent. A cluster's workers start with one
    #: each: their first requests all go at once, before anyone has heard of a limit.
    start_window: int | None = None
    #: Successes at a level of requests in flight that show the server takes that many, and
    #: how long, seconds, the evidence lasts (c429, c503).
    level_evidence: int = 3
    level_memory: float = 10.0
    #: After a cap refused a level, the first probe at it comes after ``cap_probe`` seconds,
    #: doubling after each refused probe up to ``cap_probe_max`` (c429: fewer refusals).
    cap_probe: float = 2.0
    cap_probe_max: float = 60.0
    #: The weight of the past in the running ratio of real to estimated tokens (tok).
    token_memory: float = 0.99
    #: How often a waiting worker looks again while a probe is out, or for a free slot.
    probe_poll: float = 0.02
    slot_poll: float = 1.0

    def __post_init__(self) -> None:
        shares = ("backoff", "deepest_cut", "after_wall", "spacing", "token_memory", "wall_late")
        for name in shares:
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"Tuning.{name} must be in (0, 1]")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"Tuning.{field.name} must be positive")


#: The tuning every controller uses unless given another.
DEFAULT = Tuning()
