"""What the rate controller learns, tested on its own pure parts: the pace from what got
through (``_PaceLearner``) and which levels in flight the server takes (``_Levels``).

The controller that owns them is tested in test_adaptive.py, whole runs in test_rate_limits.py.
"""

from __future__ import annotations

import pytest

from embedsdk import _learning
from embedsdk._learning import _Levels, _PaceLearner
from embedsdk._pacing import LEVEL_EVIDENCE, _Pace
from embedsdk._ratelimit_hints import RateLimitHeaders

SF_RPM = "Request was rejected due to rate limiting. Details: RPM limit reached."


def learner(increase: float = 0.005) -> _PaceLearner:
    return _PaceLearner(_Pace(), _Pace(), decrease=0.9, increase=increase, quiet=10.0)


def steady(pl: _PaceLearner, start: float, seconds: float, per_second: int) -> None:
    """Successes of 10 tokens each, ``per_second`` a second from ``start`` on."""
    pl.begin(start)
    for i in range(round(seconds * per_second)):
        at = start + i / per_second
        pl.count(at, at, 1, 10.0)


def test_a_level_counts_after_a_few_successes_more_than_its_refusals() -> None:
    levels = _Levels()
    for _ in range(LEVEL_EVIDENCE - 1):
        levels.note(1000.0, 4)
    assert levels.reached() == 0 and levels.above(4)
    levels.note(1000.0, 4)
    assert levels.reached() == 4 and not levels.above(4) and levels.above(5)
    for _ in range(LEVEL_EVIDENCE):
        levels.note(1000.0, 4, refused=True)
    assert levels.reached() == 0  # refused as often as it passed: no evidence of room


def test_level_evidence_is_forgotten_after_two_turns() -> None:
    levels = _Levels()
    for _ in range(LEVEL_EVIDENCE):
        levels.note(1000.0, 6)
    levels.note(1011.0, 1)  # a new half: the old one still counts
    assert levels.reached() == 6
    levels.note(1022.0, 1)  # and another: the successes at 6 are 22 s old
    assert levels.reached() == 0


def test_what_a_429_says_decides_before_the_level() -> None:
    levels = _Levels()
    for _ in range(LEVEL_EVIDENCE):
        levels.note(1000.0, 2)
    assert levels.is_cap(3, "", None)  # silent, above every recent success
    assert not levels.is_cap(2, "", None)  # a level that passed: a rate limit
    assert not levels.is_cap(1, "", None)  # a lone request never shows a cap
    assert levels.is_cap(1, "too many concurrent requests", None)
    assert not levels.is_cap(8, SF_RPM, None)
    assert not levels.is_cap(8, "", RateLimitHeaders(0, 1.0, 500, None))
    assert not levels.is_cap(0, "too many concurrent requests", None)  # never admitted


def test_accepted_is_measured_over_the_recent_seconds_only() -> None:
    pl = learner()
    pl.begin(1000.0)
    pl.count(1000.0, 1000.0, 1, 10.0)
    assert pl.accepted(1001.0) is None  # one success says too little
    pl = learner()
    steady(pl, 1000.0, 20.0, 2)  # 2 a second for 20 s, then 1 a second (a slower limit)
    for i in range(10):
        pl.count(1020.0 + i, 1020.0 + i, 1, 10.0)
    pl.correct(5.0)  # the last answer counted 5 tokens more than booked
    assert pl.accepted(1030.0) == pytest.approx((1.0, 10.5))  # the last 10 s, not 30


def test_a_cut_lowers_only_what_ran_out_from_what_got_through() -> None:
    pl = learner()
    steady(pl, 1000.0, 10.0, 10)  # 10 requests, 100 tokens a second
    pl.refused(1010.0, True, (True, False))
    assert pl.requests.rate == pytest.approx(0.9 * 10 / 0.85)
    assert pl.tokens.rate is None
    assert pl.accepted(1010.5) is None  # counting starts again from the cut
    pl.refused(1011.0, False, (True, True))  # the wall lasts: no second cut
    assert pl.requests.rate == pytest.approx(0.9 * 10 / 0.85) and pl.tokens.rate is None


def test_the_end_of_a_long_wall_paces_at_what_the_whole_cycle_took() -> None:
    pl = learner()
    steady(pl, 1000.0, 10.0, 10)  # 100 requests in 10 s, then 4 s of refusals
    pl.refused(1010.0, True, (True, True))
    pl.refused(1012.0, False, (True, True))
    pl.wall_ended(1014.0)  # it ended between the last refusal and now: 13 s of cycle
    assert pl.timescale == 4.0
    # 0.97 of it (AFTER_WALL), not the 0.9 of a cut: it is a measure of what the window holds
    assert pl.requests.rate == pytest.approx(_learning.AFTER_WALL * 100 / 13)
    assert pl.tokens.rate == pytest.approx(_learning.AFTER_WALL * 1000 / 13)
    short = learner()
    steady(short, 1000.0, 10.0, 10)
    short.refused(1010.0, True, (True, True))
    short.wall_ended(1010.5)  # a bucket's short wall: the cut stands
    assert short.timescale == 0.0
    assert short.requests.rate == pytest.approx(0.9 * 10 / 0.85)


def step(pl: _PaceLearner, at: float) -> float:
    """The step of growth at ``at``: the share of the pace set at the cut it adds per second
    of use."""
    before = pl.requests.rate
    assert before is not None
    pl.grow(at, 0.0)
    after = pl.requests.rate
    assert after is not None
    return (after - before) * before / pl.requests.base  # undo the 1/rate of a request


def test_growth_doubles_per_quiet_spell_and_slows_for_a_long_timescale() -> None:
    pl = learner(increase=0.01)
    steady(pl, 1000.0, 10.0, 10)
    pl.refused(1010.0, True, (True, False))  # the cut, at 1010
    assert step(pl, 1011.0) == pytest.approx(0.01)
    assert step(pl, 1031.0) == pytest.approx(0.04)  # two quiet spells of 10 s
    assert step(pl, 1200.0) == pytest.approx(0.16)  # at most 16 times
    slow = learner(increase=0.01)
    steady(slow, 1000.0, 10.0, 10)
    slow.refused(1010.0, True, (True, False))
    slow.timescale = 50.0  # a minute's window: a tenth per 50 s, doubling every 50 s
    assert step(slow, 1011.0) == pytest.approx(0.1 / 50)
    assert step(slow, 1110.0) == pytest.approx(0.1 / 50 * 4)


def test_a_pace_never_cut_grows_without_doubling() -> None:
    """A pace set from outside (a follower's, a restarted leader's) grows by the plain step:
    no quiet spell is counted from a decrease that never was (it overflowed before)."""
    pl = learner(increase=0.01)
    pl.requests.rate = pl.requests.base = 10.0
    pl.grow(1000.0, 0.0)
    assert pl.requests.rate == pytest.approx(10.0 + 0.01 * 10.0 / 10.0)
