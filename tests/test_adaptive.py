"""Adaptive rate control: the pure controller, driven by a fake clock.

Whole runs of the real client against every kind of limiter are in test_rate_limits.py.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import _adaptive, _retry, _turns
from embedsdk._adaptive import NARROWED, NOTED, PAUSED, RateController, Ticket
from embedsdk._config import resolve_options
from embedsdk._exceptions import ConfigurationError, InternalServerError, RateLimitError
from embedsdk._ratelimit_hints import (
    exhausted,
    parse_duration,
    parse_ratelimit_headers,
    says_concurrency,
)
from embedsdk._turns import controller_for, shared_controller

SF_TPM = "Request was rejected due to rate limiting. Details: TPM limit reached."
SF_RPM = "Request was rejected due to rate limiting. Details: RPM limit reached."
ZHIPU = "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctl(clock: FakeClock) -> RateController:
    return RateController(clock=clock)


def go(ctl: RateController, estimate: int = 10) -> Ticket:
    """A request that is admitted now (it must be free to go)."""
    ticket = ctl.reserve(estimate)
    assert ctl.admit(ticket), ticket
    return ticket


def succeed(ctl: RateController, n: int, estimate: int = 10) -> list[Ticket]:
    """``n`` requests that go now and succeed now, one after another."""
    tickets = []
    for _ in range(n):
        ticket = go(ctl, estimate)
        ctl.on_success(ticket)
        tickets.append(ticket)
    return tickets


def turn(ctl: RateController, clock: FakeClock, estimate: int = 10) -> Ticket:
    """What :func:`take_turn` does, on the fake clock: book, wait for the ticket, go."""
    for _ in range(10_000):
        ticket = ctl.reserve(estimate)
        clock.now = max(clock.now, ticket.at)
        if ticket.booked and ctl.admit(ticket):
            return ticket
    raise AssertionError("no turn came")


def steady(ctl: RateController, clock: FakeClock, per_second: float, seconds: float) -> None:
    """Successes at ``per_second`` for ``seconds``, each alone in flight."""
    for _ in range(round(per_second * seconds)):
        ctl.on_success(go(ctl))
        clock.now += 1 / per_second


def refuse(ctl: RateController, clock: FakeClock, message: str = SF_RPM) -> float:
    """A probe at the end of the current pause meets a 429; returns the new pause."""
    clock.now = max(clock.now, ctl.cooldown_until)
    ticket = turn(ctl, clock)
    assert ctl.on_rate_limited(ticket, message=message) == PAUSED
    return ctl.cooldown_until - clock.now


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5", 0.5),
        ("1.5s", 1.5),
        ("soon", None),
        ("5x", None),
        ("", None),
        ("inf", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == (None if seconds is None else pytest.approx(seconds))


def test_ratelimit_headers_parsed_in_any_case() -> None:
    assert parse_ratelimit_headers({"content-type": "application/json"}) is None
    hint = parse_ratelimit_headers(
        {
            "X-RateLimit-Remaining-Requests": "599",
            "x-ratelimit-reset-requests": "59.9s",
            "X-RATELIMIT-REMAINING-TOKENS": "1000",
            "x-ratelimit-reset-tokens": "1m0s",
        }
    )
    assert hint == (599.0, pytest.approx(59.9), 1000.0, 60.0)


@pytest.mark.parametrize(
    ("message", "headers", "want"),
    [
        (SF_TPM, None, (False, True)),
        (SF_RPM, None, (True, False)),
        ("Rate limit reached on tokens per min (TPM)", None, (False, True)),
        ("slow down", None, (True, True)),
        ("slow down", {"x-ratelimit-remaining-tokens": "0"}, (False, True)),
        ("slow down", {"x-ratelimit-remaining-requests": "0"}, (True, False)),
    ],
)
def test_which_limit_ran_out(
    message: str, headers: dict[str, str] | None, want: tuple[bool, bool]
) -> None:
    hint = parse_ratelimit_headers(headers) if headers else None
    assert exhausted(message, hint) == want


def test_concurrency_messages() -> None:
    assert says_concurrency(ZHIPU)
    assert says_concurrency("Too many concurrent requests for BAAI/bge-m3")
    assert not says_concurrency(SF_RPM)


# -- before any 429: free ---------------------------------------------------------------------


def test_no_pacing_before_the_first_429(ctl: RateController, clock: FakeClock) -> None:
    tickets = [go(ctl, 100) for _ in range(1000)]
    assert {t.at for t in tickets} == {clock.now}
    assert [t.in_flight for t in tickets[:3]] == [1, 2, 3]  # counted in flight
    for t in tickets:
        ctl.on_success(t)
    snap = ctl.snapshot()
    assert snap["rpm"] is None and snap["tpm"] is None and snap["window"] is None
    assert snap["in_flight"] == 0


def test_an_outcome_is_counted_once(ctl: RateController) -> None:
    ticket = go(ctl)
    ctl.on_success(ticket)
    ctl.on_error(ticket)  # a late second report (a cancellation after the answer)
    assert ctl.snapshot()["in_flight"] == 0


# -- rate limits: one shared pause --------------------------------------------------------------


def test_a_429_pauses_every_worker_until_one_instant(ctl: RateController, clock: FakeClock) -> None:
    succeed(ctl, 100)
    booked = [ctl.reserve(10) for _ in range(16)]  # booked before the 429
    refused = go(ctl)
    assert ctl.on_rate_limited(refused, message=SF_RPM) == PAUSED
    until = ctl.cooldown_until
    assert until > clock.now
    # Bookings made before the 429 are void: each worker books again, after the pause.
    assert not any(ctl.admit(t) for t in booked)
    later = [ctl.reserve(10) for _ in range(16)]
    assert min(t.at for t in later) >= until
    assert {t.why for t in later} == {"pause"}


def test_retry_after_sets_the_pause(ctl: RateController, clock: FakeClock) -> None:
    succeed(ctl, 10)
    ctl.on_rate_limited(go(ctl), retry_after=7.25, message=SF_RPM)
    assert ctl.cooldown_until == clock.now + 7.25
    assert ctl.reserve(10).at >= clock.now + 7.25


def test_echoes_of_one_429_change_nothing_but_may_lengthen_the_pause(
    ctl: RateController, clock: FakeClock
) -> None:
    succeed(ctl, 600)
    in_flight = [go(ctl) for _ in range(16)]
    ctl.on_rate_limited(in_flight[0], message=SF_RPM)
    epoch, rate, until = ctl.epoch, ctl.snapshot()["rpm"], ctl.cooldown_until
    for t in in_flight[1:-1]:  # the other 14 answers of that burst
        assert ctl.on_rate_limited(t, message=SF_RPM) == PAUSED
    assert (ctl.epoch, ctl.snapshot()["rpm"], ctl.cooldown_until) == (epoch, rate, until)
    ctl.on_rate_limited(in_flight[-1], retry_after=3.0, message=SF_RPM)
    assert ctl.cooldown_until == clock.now + 3.0  # a later hint is honoured
    assert ctl.epoch == epoch and ctl.rate_limited == 16


def test_pause_doubles_while_the_wall_lasts_and_keeps_within_a_quarter_of_its_age(
    ctl: RateController, clock: FakeClock
) -> None:
    succeed(ctl, 600)  # a burst that spends a window of a minute at once
    start = clock.now
    pauses = [refuse(ctl, clock) for _ in range(30)]
    assert pauses[0] == pytest.approx(_adaptive.PAUSE_MIN)
    ages = np.cumsum([0.0, *pauses[:-1]])
    assert all(p <= max(0.25 * age, pauses[0]) + 1e-9 for p, age in zip(pauses, ages))
    # Never shorter (but for the one that ends just after the minute: see the next test) ...
    cut = [i for i, (a, b) in enumerate(zip(pauses, pauses[1:])) if b < a - 1e-9]
    assert len(cut) <= 1
    assert pauses[-1] > 50 * pauses[0]  # ... and growing: the probes stay few
    assert clock.now - start > 25  # 30 probes cover most of a minute
    assert ctl.strikes == 30 and ctl.pauses == 30


def test_a_wall_of_seconds_is_probed_when_a_minute_window_from_its_first_request_opens(
    ctl: RateController, clock: FakeClock
) -> None:
    """A per-minute window spent at once (sliding, or counted from the first request) has
    room again a minute after the first request: a probe goes just then, not up to a quarter
    of the wall's age later."""
    first = clock.now
    succeed(ctl, 600)
    probes = [clock.now]
    while clock.now < first + 75:
        refuse(ctl, clock)
        probes.append(clock.now)
    opens = first + 60 + _adaptive.OPENS_LATE
    assert any(t == pytest.approx(opens) for t in probes), probes
    assert len(probes) < 40  # still few probes


def test_headers_cap_the_pause_at_the_announced_reset(
    ctl: RateController, clock: FakeClock
) -> None:
    succeed(ctl, 600)
    for _ in range(12):
        refuse(ctl, clock)
    ticket = turn(ctl, clock)
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "80ms"}
    ctl.on_rate_limited(ticket, message="", headers=headers)
    assert ctl.cooldown_until - clock.now == pytest.approx(0.08)


def test_after_a_first_refusal_everybody_resumes_at_the_lower_pace(
    ctl: RateController, clock: FakeClock
) -> None:
    succeed(ctl, 100)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    clock.now = ctl.cooldown_until
    assert [turn(ctl, clock).in_flight for _ in range(3)] == [1, 2, 3]


def test_only_one_probe_once_the_wall_lasts(ctl: RateController, clock: FakeClock) -> None:
    succeed(ctl, 100)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    refuse(ctl, clock)  # the first request after the pause: the wall lasts
    clock.now = ctl.cooldown_until
    first, second = ctl.reserve(10), ctl.reserve(10)
    assert ctl.admit(first)
    assert not ctl.admit(second)  # the probe is out: wait for its answer
    poll = ctl.reserve(10)
    assert not poll.booked and poll.why == "probe" and poll.at > clock.now
    ctl.on_success(first)
    assert [turn(ctl, clock).in_flight for _ in range(3)] == [1, 2, 3]  # not one at a time


def test_a_failed_probe_frees_its_slot(ctl: RateController, clock: FakeClock) -> None:
    succeed(ctl, 100)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    refuse(ctl, clock)
    clock.now = ctl.cooldown_until
    probe = turn(ctl, clock)
    ctl.on_error(probe)  # a 500, a reset, a cancellation: no answer about the rate
    assert turn(ctl, clock).in_flight == 1  # the next one may probe


# -- rate limits: the pace ---------------------------------------------------------------------


def test_first_decrease_is_from_what_recently_got_through(
    ctl: RateController, clock: FakeClock
) -> None:
    steady(ctl, clock, per_second=10, seconds=30)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    # 10 per second over the last 10 s (not over a fixed minute, of which it saw only 30 s),
    # allowing the limit to be a little above what went through, less 10 %.
    assert ctl.snapshot()["rpm"] == pytest.approx(0.9 * 600 / 0.85, rel=0.03)
    assert ctl.snapshot()["tpm"] is None  # the message said RPM


def test_later_decreases_are_from_the_pace(ctl: RateController, clock: FakeClock) -> None:
    steady(ctl, clock, per_second=10, seconds=5)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    clock.now = ctl.cooldown_until
    for _ in range(40):  # all that the pace lets through is taken
        ctl.on_success(turn(ctl, clock))
    pace = ctl.snapshot()["rpm"]
    assert pace is not None
    ctl.on_rate_limited(turn(ctl, clock), message=SF_RPM)
    # The pace was only just above the limit (all of it went through): a cut of a third as
    # much as from the estimate (0.9): about 3 %.
    assert ctl.snapshot()["rpm"] == pytest.approx((2 + 0.9) / 3 * pace, rel=0.01)


def test_tpm_429_paces_tokens_only(ctl: RateController, clock: FakeClock) -> None:
    for _ in range(50):
        ctl.on_success(go(ctl, 300))
        clock.now += 0.1  # 3,000 tokens per second
    ctl.on_rate_limited(go(ctl, 300), message=SF_TPM)
    snap = ctl.snapshot()
    assert snap["rpm"] is None
    assert snap["tpm"] == pytest.approx(0.9 * 180_000 / 0.85, rel=0.03)


def test_a_long_wall_does_not_compound_the_decrease(ctl: RateController, clock: FakeClock) -> None:
    succeed(ctl, 600)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    first = ctl.snapshot()["rpm"]
    for _ in range(5):  # the probes keep meeting the full window
        refuse(ctl, clock)
    assert ctl.snapshot()["rpm"] == first
    assert ctl.strikes == 6


def test_after_a_long_wall_the_pace_is_what_the_whole_cycle_took(
    ctl: RateController, clock: FakeClock
) -> None:
    """A window of 600 a minute spent in the first second: the first decrease (from that
    burst) is far too high; when the wall ends a minute later, what got through over the
    whole minute sets the pace."""
    start = clock.now
    for _ in range(600):
        ctl.on_success(go(ctl))
        clock.now += 1 / 600
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    assert ctl.snapshot()["rpm"] > 10_000  # type: ignore[operator]
    while clock.now < start + 60:
        refuse(ctl, clock)
    clock.now = max(clock.now, ctl.cooldown_until)
    ctl.on_success(turn(ctl, clock))  # the window is open again
    # 600 over the minute and the wall's end, as far as the probes tell it (between the last
    # refusal and the success), less 10 %: under the limit, not far under.
    rpm = ctl.snapshot()["rpm"]
    assert 0.9 * 600 * 60 / (clock.now - start) <= rpm <= 540  # type: ignore[operator]


def test_paced_requests_are_evenly_spaced_without_burst(
    ctl: RateController, clock: FakeClock
) -> None:
    steady(ctl, clock, per_second=10, seconds=12)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    rate = ctl.snapshot()["rpm"] / 60  # type: ignore[operator]
    clock.now = ctl.cooldown_until
    ctl.on_success(turn(ctl, clock))  # the probe
    clock.now += 5.0  # idle: a bucket holding one request refuses a second one early
    ats = [turn(ctl, clock).at for _ in range(30)]
    assert np.diff(ats) == pytest.approx([1 / rate] * 29, rel=0.02)


def test_increase_only_when_the_pace_holds_requests_back(
    ctl: RateController, clock: FakeClock
) -> None:
    steady(ctl, clock, per_second=10, seconds=12)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    base = ctl._requests.rate
    assert base is not None
    clock.now = ctl.cooldown_until
    for _ in range(round(base * 8)):  # 8 s of workers waiting: each booking is held back
        ctl.on_success(turn(ctl, clock))
    grown = ctl._requests.rate
    assert grown is not None
    assert base * 1.025 < grown < base * 1.06  # 0.5 % of the base per second
    clock.now += 30.0  # nothing waiting: the next request was not held back
    idle = turn(ctl, clock)
    assert not idle.held
    ctl.on_success(idle)
    assert ctl._requests.rate == grown


def test_increase_doubles_after_quiet_spells(ctl: RateController, clock: FakeClock) -> None:
    steady(ctl, clock, per_second=10, seconds=12)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    clock.now = ctl.cooldown_until
    rates = []
    for _ in range(4):  # four quiet spells of 10 s, all held back
        end = clock.now + 10
        while clock.now < end:
            ctl.on_success(turn(ctl, clock))
        rates.append(ctl._requests.rate)
    steps = np.diff([r for r in rates if r is not None])
    assert steps[1] > 1.7 * steps[0] and steps[2] > 1.7 * steps[1]


# -- concurrency caps: the window ---------------------------------------------------------------


def test_a_429_above_every_recent_success_narrows_the_window(
    ctl: RateController, clock: FakeClock
) -> None:
    tickets = [go(ctl) for _ in range(16)]  # 16 in flight at once
    for t in tickets[4:]:  # a cap of 4: the requests sent 5th to 16th are refused at once
        assert ctl.on_rate_limited(t, message="slow down") == NARROWED
    assert ctl.snapshot()["window"] == 4
    assert ctl.pauses == 0 and ctl.snapshot()["rpm"] is None  # nobody paused, no pace
    for t in tickets[:4]:
        ctl.on_success(t)
    more = [go(ctl) for _ in range(4)]
    full = ctl.reserve(10)
    assert not full.booked and full.why == "slot"
    assert not ctl.admit(full)
    ctl.on_success(more[0])
    assert turn(ctl, clock).in_flight == 4


def test_a_429_at_a_level_that_succeeded_is_a_rate_limit(
    ctl: RateController, clock: FakeClock
) -> None:
    for _ in range(3):  # 8 in flight succeeded, a few times: the server takes that many
        tickets = [go(ctl) for _ in range(8)]
        for t in tickets:
            ctl.on_success(t)
    again = [go(ctl) for _ in range(8)]
    assert ctl.on_rate_limited(again[-1], message="slow down") == PAUSED
    assert ctl.snapshot()["window"] is None


def test_what_the_429_says_wins_over_the_level(ctl: RateController, clock: FakeClock) -> None:
    tickets = [go(ctl) for _ in range(8)]
    assert ctl.on_rate_limited(tickets[7], message=SF_RPM) == PAUSED  # says RPM
    other = RateController(clock=clock)
    succeed(other, 20)
    mine = go(other)
    assert other.on_rate_limited(mine, message=ZHIPU) == NARROWED  # says concurrency


def test_a_lucky_success_or_two_above_a_cap_does_not_hide_it(ctl: RateController) -> None:
    """The client's count runs ahead of the server's (answers on their way back): a success
    at level 6 now and then over a cap of 4 must not make 503s at 6 look random."""
    first = [go(ctl) for _ in range(6)]
    ctl.on_overloaded(first[5])  # window 5
    ctl.on_overloaded(first[4])  # window 4
    for t in first[:4]:
        ctl.on_success(t)
    for _ in range(5):
        ctl.on_success(Ticket_at(ctl, 6))  # lucky: the server had one answer on its way
        assert ctl.on_overloaded(Ticket_at(ctl, 6)) == NARROWED


def Ticket_at(ctl: RateController, level: int) -> Ticket:
    """An admitted ticket that was sent with ``level`` requests in flight."""
    ticket = ctl.reserve(10)
    ticket.in_flight = level
    ctl._in_flight += 1
    return ticket


def test_503_narrows_only_above_every_recent_success(ctl: RateController) -> None:
    first = [go(ctl) for _ in range(6)]
    assert ctl.on_overloaded(first[5]) == NARROWED
    assert ctl.snapshot()["window"] == 5
    for t in first[:5]:
        ctl.on_success(t)
    for _ in range(2):
        succeed(ctl, 1)  # level 1 succeeded three times
    random_fault = go(ctl)
    assert ctl.on_overloaded(random_fault) == NOTED  # one in flight: not a cap
    assert ctl.snapshot()["window"] == 5


def run_against_a_cap(
    ctl: RateController, clock: FakeClock, cap: int, seconds: float
) -> tuple[int, int]:
    """Workers keep the window full against a server answering at most ``cap`` at once
    (one answer every 50 ms, oldest first); returns (successes, refusals)."""
    flying: list[Ticket] = []
    ok = refused = 0
    end = clock.now + seconds
    while clock.now < end:
        while len(flying) < 16:
            ticket = ctl.reserve(10)
            if not (ticket.booked and ticket.at <= clock.now and ctl.admit(ticket)):
                break
            if ticket.in_flight > cap:  # refused at once
                ctl.on_rate_limited(ticket, message="slow down")
                refused += 1
            else:
                flying.append(ticket)
        clock.now += 0.05
        if flying:
            ctl.on_success(flying.pop(0))
            ok += 1
    return ok, refused


def test_the_window_settles_at_a_cap_and_probes_above_it_rarely(
    ctl: RateController, clock: FakeClock
) -> None:
    ok, refused = run_against_a_cap(ctl, clock, cap=4, seconds=60)
    assert ctl.snapshot()["window"] == 4
    # The first burst meets the cap once (the 5th request; the window is then full), then a
    # probe above the cap after 2 s, 4 s more, 8, 16: five refusals in the minute.
    assert refused == 5
    assert ctl.pauses == 0 and ok > 1000


def test_a_cap_that_was_raised_is_found_again(ctl: RateController, clock: FakeClock) -> None:
    run_against_a_cap(ctl, clock, cap=4, seconds=10)
    assert ctl.snapshot()["window"] == 4
    run_against_a_cap(ctl, clock, cap=12, seconds=70)
    assert ctl.snapshot()["window"] >= 12  # type: ignore[operator]


def test_a_full_window_wakes_one_waiter_per_free_slot(ctl: RateController) -> None:
    tickets = [go(ctl) for _ in range(3)]
    ctl.on_rate_limited(tickets[2], message="slow down")  # window 2, both slots taken
    woken: list[str] = []
    assert ctl.wait_for_slot(lambda: woken.append("a"))
    assert ctl.wait_for_slot(lambda: woken.append("b"))
    ctl.on_success(tickets[0])
    assert woken == ["a"]
    ctl.on_error(tickets[1])
    assert woken == ["a", "b"]
    assert not ctl.wait_for_slot(lambda: woken.append("c"))  # free: no wait


# -- the token estimate ---------------------------------------------------------------------------


def test_usage_corrects_the_token_estimate(ctl: RateController) -> None:
    assert ctl.cost(100) == 100
    for ticket in succeed(ctl, 50, estimate=100):
        ctl.on_usage(ticket, 40)
    assert ctl.token_ratio == pytest.approx(0.4)
    assert ctl.cost(100) == pytest.approx(40)


def test_token_ratio_is_clamped(ctl: RateController) -> None:
    for ticket in succeed(ctl, 5, estimate=100):
        ctl.on_usage(ticket, 100_000)
    assert ctl.token_ratio == 4.0


def test_describe_says_what_holds_requests_back(ctl: RateController, clock: FakeClock) -> None:
    assert ctl.describe() == "pace no limit learned yet; 0 answered 429 so far"
    steady(ctl, clock, per_second=10, seconds=12)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    assert "requests/min" in ctl.describe() and "1 answered 429" in ctl.describe()
    assert "sk-" not in repr(ctl)


# -- sharing, options, retries --------------------------------------------------------------------


def test_one_controller_per_account_and_model() -> None:
    a = shared_controller("https://x/v1/embeddings", "sk-secret-1", "m")
    assert shared_controller("https://x/v1/embeddings", "sk-secret-1", "m") is a
    assert shared_controller("https://x/v1/embeddings", "sk-secret-2", "m") is not a
    assert shared_controller("https://x/v1/embeddings", "sk-secret-1", "n") is not a
    keys = list(_turns._registry.keys())
    assert not any("sk-secret" in str(k) for k in keys)  # only a hash of the key
    assert "sk-secret" not in repr(a)


def test_clients_of_one_account_share_state() -> None:
    options: dict[str, Any] = {
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-a",
        "cache": False,
    }
    one = embedsdk.AsyncEmbedder(**options)
    two = embedsdk.AsyncEmbedder(max_concurrent=3, **options)
    assert one._rate is not None and one._rate is two._rate
    mine = RateController()
    three = embedsdk.AsyncEmbedder(rate_controller=mine, **options)
    assert three._rate is mine
    assert embedsdk.AsyncEmbedder(adaptive=False, **options)._rate is None


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="adaptive"):
        resolve_options(base_url="http://127.0.0.1:9/v1", adaptive="yes")
    with pytest.raises(ConfigurationError, match="rate_controller"):
        resolve_options(base_url="http://127.0.0.1:9/v1", rate_controller=object())
    options = resolve_options(base_url="http://127.0.0.1:9/v1", adaptive=False)
    assert controller_for(options) is None
    with pytest.raises(ValueError):
        RateController(decrease=1.5)


def _verdict(exc: Exception, verdict: str | None) -> Exception:
    exc.rate_verdict = verdict  # type: ignore[attr-defined]
    return exc


def test_controlled_refusals_draw_on_their_own_retry_allowance() -> None:
    limited = _verdict(RateLimitError("slow", status_code=429), PAUSED)
    capped = _verdict(InternalServerError("busy", status_code=503), NARROWED)
    failed = _verdict(InternalServerError("busy", status_code=503), NOTED)
    budget = _retry.RetryBudget(2, paced=True)  # 20 controlled refusals, then 2 failures
    assert [budget.give_up(limited) for _ in range(12)] == [False] * 12
    assert [budget.give_up(capped) for _ in range(11)] == [False] * 10 + [True]
    budget = _retry.RetryBudget(2, paced=True)
    assert [budget.give_up(failed) for _ in range(3)] == [False, False, True]
    budget = _retry.RetryBudget(2, paced=False)
    assert [budget.give_up(limited) for _ in range(3)] == [False, False, True]


def test_a_rate_limit_is_waited_for_in_time_not_in_refusals() -> None:
    """With a clock, refusals of a rate limit do not count for 30 s per retry from the first
    (a window of a minute refuses every probe until it opens), then they count."""
    clock = FakeClock()
    limited = _verdict(RateLimitError("slow", status_code=429), PAUSED)
    budget = _retry.RetryBudget(2, paced=True, clock=clock)
    for _ in range(100):  # a hundred probes in the first minute: none counts
        clock.now += 0.6
        assert not budget.give_up(limited)
    clock.now += 1.0  # 61 s: the patience (2 x 30 s) is over
    assert [budget.give_up(limited) for _ in range(3)] == [False, False, True]


def test_a_controlled_refusal_adds_no_wait_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_retry, "_testing", False)
    waits = _retry.wait_gen()
    next(waits)
    paused = _verdict(RateLimitError("slow", status_code=429, retry_after=5.0), PAUSED)
    assert waits.send(paused) == 0.0  # it waits in the shared pause instead
    capped = _verdict(RateLimitError("slow", status_code=429), NARROWED)
    assert waits.send(capped) == 0.0  # it waits for a free slot instead
    capped_hint = _verdict(RateLimitError("slow", status_code=429, retry_after=2.0), NARROWED)
    assert waits.send(capped_hint) >= 2.0
    assert waits.send(_verdict(InternalServerError("x", status_code=503), NOTED)) > 0


def test_the_error_counts_the_attempts_really_made(
    simulated_provider_factory: Any,
) -> None:
    """Under adaptive control a 429 draws on its own allowance first (in testing mode, where
    nothing sleeps, 10 x max_retries refusals); the message must say how many attempts were
    made, not max_retries + 1."""
    sim = simulated_provider_factory(dim=8, fault_rate=1.0, faults=("429",))
    with pytest.raises(RateLimitError, match="gave up after 23 attempts") as info:
        embedsdk.get_batch_embeddings(["a", "b"], base_url=sim.base_url, cache=False, max_retries=2)
    assert sim.stats()["requests"] == 23
    assert info.value.failed_indices == [0, 1]
    assert json.dumps(info.value.failed_indices) == "[0, 1]"
