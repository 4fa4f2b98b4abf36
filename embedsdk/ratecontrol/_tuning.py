"""Every number rate control runs on, in one place.

Each field says what it trades off and which rows of ``embedsdk bench --scenario adaptive``
move when it changes (the rows are named by the server's limiter: ``b1`` a token bucket of
600 RPM with 1 s of burst, ``b01`` / ``b10`` / ``b60`` with 0.1 s / 10 s / 60 s, ``tok`` a
bucket of tokens, ``f1`` / ``f10`` / ``f60`` fixed windows and ``s1`` / ``s10`` / ``s60``
sliding ones of 1 s, 10 s, 60 s, ``c429`` a cap of 4 requests in flight, ``ray`` the
cluster). Nothing else in the package holds an unnamed number that steers the controller.
:meth:`Tuning.table` renders the fields for the docs (docs/architecture.md carries it, and
a test checks that the two agree).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def _knob(default: Any, doc: str, off: Any = None) -> Any:
    """A field with its one-line trade-off; ``off``: the value that turns it off."""
    return dataclasses.field(default=default, metadata={"doc": doc, "off": off})


@dataclasses.dataclass(frozen=True)
class Tuning:
    """The tunables of one :class:`~embedsdk.RateController` (seconds, shares of a rate).

    >>> Tuning().backoff
    0.95
    >>> Tuning(regain=20.0).regain       # climbs back more slowly after a cut
    20.0
    """

    backoff: float = _knob(
        0.95,
        "The pace after a cut, as a share of the rate the server took. Higher meets the "
        "limit again sooner (more refusals on b1, f1); lower leaves more of it unused.",
    )
    assumed_burst: float = _knob(
        1.0,
        "Seconds of its rate a limit is assumed to let through at once, for the first pace "
        "of a run: right for b1, f1, s1; too high for b10, b60 (one more cut); too low for "
        "b01 (growth finds it).",
    )
    bin: float = _knob(0.05, "Seconds per bin in which answers are counted.")
    measure: float = _knob(
        1.0,
        "A cut starts from the best run of this many seconds the server took since the last "
        "cut. Longer averages out jitter (b01, f1); shorter reacts sooner.",
    )
    recent: float = _knob(10.0, "Seconds of answers kept for measure.")
    discover_below: int = _knob(
        4,
        "Fewer requests than this through before the first refusal (b01), or a refusal that "
        "names no limit (nginx, maybe a cap): the first pace doubles until refused. 0: never.",
        off=0,
    )
    discover: float = _knob(1.0, "Seconds of use per doubling while the pace discovers.")
    room_within: float = _knob(
        1.0,
        "While the first pace is a rough guess, its wall's probes go from pause_min, further "
        "apart each, and one through within this many seconds of the last success raises "
        "the pace to a request per that gap (b01, c429; nginx without burst: a burst of one "
        "guessed 1/s of 10/s). 0: never.",
        off=0.0,
    )
    regain: float = _knob(
        12.0,
        "After a cut the pace climbs back to the rate it was refused at within this many "
        "seconds of use (or the longest wall seen), fast at first, slowly near it (TCP "
        "CUBIC). Shorter meets the limit more often (b1, f1, s1 refusals).",
    )
    beyond: float = _knob(
        0.15,
        "Past that rate it grows by this share after another regain, eight times that after "
        "two: a rate refused by chance below the limit (b01, ray, f8) is left behind. Higher "
        "overshoots a bucket sooner (tok: 0.25 gave 5.0 % refused, 0.15 4.8 %). 0: never.",
        off=0.0,
    )
    long_wall: float = _knob(
        1.0,
        "A wall (refusals, no success between) this long, through two refused probes or "
        "more, was a window's: after it the pace is after_wall of what the whole cycle got "
        "through (s1, f10, s10). inf: never.",
        off=math.inf,
    )
    after_wall: float = _knob(0.97, "See long_wall.")
    spend_period: float = _knob(
        5.0,
        "A window whose cycle is this long or longer, spent in its first half, is spent at "
        "once each cycle (what it took then), and probed when the next should begin: a run "
        "gets every window it touches (f60, s10). inf: always paced.",
        off=math.inf,
    )
    openings: float = _knob(
        1.0,
        "1: a window of one of window_periods shorter than spend_period, whose first wall "
        "ended before a sliding window could have freed room (pause_min before a period "
        "after the first burst), is a fixed window's: spent at each opening, not paced "
        "(f1: a paced run takes the two windows at its ends in part). 0: never (a "
        "cluster's leader always: its followers go by a pace).",
        off=0.0,
    )
    look_max: float = _knob(
        60.0,
        "Such a window looks for more room once in spend_period seconds, twice as long "
        "after each look refused, at most this many: fewer refusals (f1), a raised limit "
        "found later.",
    )
    pause_min: float = _knob(0.05, "The shortest pause after a refusal, seconds.")
    wall_late: float = _knob(
        0.5,
        "While a wall lasts each pause doubles, ending at most this share of the wall's age "
        "late (fewer probes on s60, a later resumption on f60)...",
    )
    pause_max: float = _knob(5.0, "...and at most this many seconds.")
    window_probe: float = _knob(
        2.0,
        "A wall this old is probed when a window opened by the cycle's first request, of "
        "one of window_periods, would open again (s10, s60).",
    )
    opens_late: float = _knob(
        0.01,
        "That probe goes this share of the period late: a burst that starts early catches "
        "up with a sliding window that frees its room as fast as it was spent (s10).",
    )
    follow_burst: float = _knob(
        1.0,
        "A window's burst follows the last cycle's as the server saw it, each request no "
        "sooner than this share of its match's offset: a sliding window frees its room as "
        "unevenly as the last burst spent it (s10 on a busy machine, TimingNoise.harsh, "
        "eight seeds: 3.7-5.1 % refused; without, up to 19 %). 0: the burst goes at once.",
        off=0.0,
    )
    period_shrink: float = _knob(
        0.05,
        "After a planned probe that got through at once, a window's period is taken this "
        "share shorter (the window may have opened earlier): too long a period starts each "
        "cycle late (f10, sliding windows of other lengths); too short costs refused probes "
        "(s10). 0: never.",
        off=0.0,
    )
    window_periods: tuple[float, ...] = _knob(
        (1.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 3600.0),
        "The window periods probed for, seconds; one shorter than window_probe only while "
        "the wall is half to twice its age and began within it of the cycle's start: the "
        "first burst spent it (s1: a first wall ended by its opening, not guessed from "
        "the probes around it). (): none.",
        off=(),
    )
    spacing: float = _knob(
        0.98,
        "Requests go at least this share of the pace's interval apart, between the requests "
        "really sent: a timer that fired late does not bunch the next two (b01, f1).",
    )
    horizon: float = _knob(
        0.1,
        "A turn is booked at most this many seconds (or horizon_turns turns) ahead: a turn "
        "booked at a slow pace holds its worker once the pace has risen (b01, ray).",
    )
    horizon_turns: int = _knob(2, "See horizon.")
    horizon_max: float = _knob(1.0, "...never more than this, and a waiting worker looks again.")
    start_window: int | None = _knob(
        None,
        "Requests in flight before the first success, one more per success (TCP's slow "
        "start); None: no limit. A cluster's workers start with 1 (ray: when the leader "
        "first answers, their first requests all go at once).",
    )
    recut: float = _knob(
        1.0,
        "1: a cut is seen again once the requests in flight at it have answered, and raised "
        "to backoff of the best second measured with them (answers that take 0.5-1 s: s1 at "
        "1 s a request got a twentieth of its limit on the fake clock). 0: never.",
        off=0.0,
    )
    cap_probes: int = _knob(
        2,
        "Probes of the first wall refused, each with more requests in flight than had got "
        "through, that make refusals naming no limit read as a cap: the first pace is then "
        "what got through per round trip, not per second (nginx limit_conn, c429+gw). "
        "Fewer misreads a slow bucket (tok+gw with 1: a round trip of refusals). 0: never.",
        off=0,
    )
    level_evidence: int = _knob(
        3,
        "Successes at a number of requests in flight that show the server takes that many: "
        "a 429 above the levels shown reads as a cap (c429, c503).",
    )
    level_memory: float = _knob(
        10.0, "Seconds a span of that evidence covers; the last one or two spans count."
    )
    cap_probe: float = _knob(
        2.0,
        "After a cap refused a level, it is tried again after this many seconds, twice as "
        "long after each refused try (c429: fewer refusals)...",
    )
    cap_probe_max: float = _knob(60.0, "...at most this many.")
    token_memory: float = _knob(
        0.99,
        "The weight of the past in the ratio of the server's token counts to the client's "
        "estimates (tok).",
    )
    probe_poll: float = _knob(0.02, "Seconds a waiting worker sleeps while a probe is out.")
    slot_poll: float = _knob(1.0, "The longest a worker waits for a free slot, seconds.")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            low = 0 if field.metadata.get("off") is not None else math.nextafter(0, 1)
            if not value >= low:
                raise ValueError(f"Tuning.{field.name} must be {'>= 0' if low == 0 else '> 0'}")
        for name in ("backoff", "after_wall", "spacing", "token_memory", "wall_late"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"Tuning.{name} must be in (0, 1]")

    def off(self, name: str) -> Tuning:
        """This tuning with the mechanism ``name`` turned off (for the bench's ablations)."""
        off = {f.name: f.metadata["off"] for f in dataclasses.fields(self)}[name]
        if off is None:
            raise ValueError(f"Tuning.{name} has no value that turns it off")
        return dataclasses.replace(self, **{name: off})

    @classmethod
    def table(cls) -> str:
        """The fields as a Markdown table: name, default, what it trades off."""
        rows = ["| Tunable | Default | What it trades off |", "|---|---|---|"]
        for field in dataclasses.fields(cls):
            rows.append(f"| `{field.name}` | `{field.default!r}` | {field.metadata['doc']} |")
        return "\n".join(rows)


#: The tuning every controller uses unless given another.
DEFAULT = Tuning()
