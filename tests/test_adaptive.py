"""Adaptive rate control: the controller on a fake clock, what a 429 says, and the options.

Every test here states a behaviour, not a formula: bounds that any sound controller meets
(a pace below what got through, a cut no deeper than half), not the numbers this one's
tunables happen to give. Whole runs of the real client against every kind of limiter are in
test_rate_limits.py; many processes sharing one limit in test_ray_control.py.

Private access: the controller's state machine (its pause, probes, window and cycle) is the
unit under test, on a fake clock, and has no public seam finer than a whole run.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

import embedsdk
from embedsdk import RateController, Tuning
from embedsdk._exceptions import ConfigurationError, RateLimitError
from embedsdk.client._config import resolve_options
from embedsdk.http._responses import parse_duration, parse_ratelimit_headers
from embedsdk.ratecontrol import (
    NARROWED,
    NOTED,
    PAUSED,
    Ticket,
    controller_for,
    forget_shared_controllers,
    shared_controller,
)
from embedsdk.ratecontrol._hints import exhausted, says_concurrency, says_per_minute
from embedsdk.ratecontrol._openings import Openings

SF_TPM = "Request was rejected due to rate limiting. Details: TPM limit reached."
SF_RPM = "Request was rejected due to rate limiting. Details: RPM limit reached."
ZHIPU = "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"
CONCURRENT = "Too many concurrent requests for BAAI/bge-m3"


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


# -- driving a controller on the fake clock -------------------------------------------------------


def go(ctl: RateController, estimate: int = 10) -> Ticket:
    """A request that is admitted now (it must be free to go)."""
    ticket = ctl.reserve(estimate)
    assert ctl.admit(ticket), ticket
    return ticket


def turn(ctl: RateController, clock: FakeClock, estimate: int = 10) -> Ticket:
    """What ``take_turn`` does, on the fake clock: book, wait for the turn, go (keeping a
    turn the controller put back a little, booking again when it voided one)."""
    for _ in range(10_000):
        ticket = ctl.reserve(estimate)
        while True:
            clock.now = max(clock.now, ticket.at)
            if not ticket.booked:
                break
            at = ticket.at
            if ctl.admit(ticket):
                return ticket
            if ticket.at == at or ticket.epoch != ctl.epoch:
                break
    raise AssertionError("no turn came")


def rate(ctl: RateController) -> float:
    """The pace of requests, per second (it must be pacing)."""
    rpm = ctl.snapshot()["rpm"]
    assert rpm is not None, ctl.snapshot()
    return rpm / 60


def steady(ctl: RateController, clock: FakeClock, per_second: float, seconds: float) -> None:
    """Requests at ``per_second`` for ``seconds``, each answered (a success) before the
    next: a client whose own demand sets the rate, not the pace."""
    for _ in range(round(per_second * seconds)):
        ctl.on_success(turn(ctl, clock))
        clock.now += 1 / per_second


def use(ctl: RateController, clock: FakeClock, seconds: float) -> None:
    """``seconds`` of requests that all succeed and all wait for the pace (workers always
    ready): the pace is what limits the throughput."""
    end = clock.now + seconds
    while clock.now < end:
        ctl.on_success(turn(ctl, clock))


def refuse(ctl: RateController, clock: FakeClock, message: str = SF_RPM) -> float:
    """The request that goes when the pause ends meets a 429; returns the new pause."""
    ticket = turn(ctl, clock)
    assert ctl.on_rate_limited(ticket, message=message) == PAUSED
    return ctl.cooldown_until - clock.now


def paced_at(ctl: RateController, clock: FakeClock, per_second: float) -> None:
    """A controller that learned its pace: ``per_second`` got through (5 s of it), then a
    429; the probe after the pause succeeded."""
    steady(ctl, clock, per_second, 5.0)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    ctl.on_success(turn(ctl, clock))  # the probe, as soon as the pause ends
    assert ctl.strikes == 0 and ctl.snapshot()["rpm"] is not None


Status = int
Server = Callable[[float, int], tuple[int, float]]


def serve(
    ctl: RateController,
    clock: FakeClock,
    server: Server,
    seconds: float,
    workers: int = 16,
    message: str = "slow down",
) -> list[tuple[float, Status]]:
    """``workers`` workers, each sending one request at a time as the controller lets it,
    for ``seconds``: the core's loop, on the fake clock. ``server(now, in_flight)`` gives
    each request's status and how long it takes to answer (``in_flight``: requests the
    server is answering). Returns (sent, status) of every request."""
    end = clock.now + seconds
    tickets: list[Ticket | None] = [None] * workers
    busy = [False] * workers
    flying: list[tuple[float, int, int, Ticket, Status]] = []
    log: list[tuple[float, Status]] = []
    while clock.now < end:
        now = clock.now
        for w in range(workers):
            if busy[w]:
                continue
            ticket = tickets[w]
            if ticket is None or (not ticket.booked and ticket.at <= now):
                ticket = tickets[w] = ctl.reserve(10)
            if not (ticket.booked and ticket.at <= now):
                continue
            at = ticket.at
            if ctl.admit(ticket):
                status, after = server(now, len(flying))
                heapq.heappush(flying, (now + after, len(log), w, ticket, status))
                log.append((now, status))
                busy[w], tickets[w] = True, None
            elif ticket.at == at or ticket.epoch != ctl.epoch:
                tickets[w] = None  # book again
        waits = [flying[0][0]] if flying else []
        waits += [t.at for w, t in enumerate(tickets) if t is not None and not busy[w]]
        clock.now = max(now, min(waits, default=now + 0.01))
        while flying and (flying[0][0] <= clock.now or clock.now >= end):
            done, _, w, ticket, status = heapq.heappop(flying)
            clock.now = max(clock.now, done)
            busy[w] = False
            answer(ctl, ticket, status, message)
    return log


def answer(ctl: RateController, ticket: Ticket, status: Status, message: str) -> None:
    if status == 200:
        ctl.on_success(ticket)
    elif status == 429:
        ctl.on_rate_limited(ticket, message=message)
    else:
        ctl.on_overloaded(ticket)


def cap(limit: int, status: Status = 429, latency: float = 0.05) -> Server:
    """A server that answers ``limit`` requests at once and refuses more at once."""
    return lambda now, flying: (status, 0.0) if flying >= limit else (200, latency)


def fixed_window(period: float, allowance: int, start: float, latency: float = 0.001) -> Server:
    """A server that takes ``allowance`` requests per window of ``period`` seconds, the
    windows counted from ``start``; its answers take ``latency`` seconds."""
    counts: dict[int, int] = {}

    def server(now: float, flying: int) -> tuple[Status, float]:
        window = math.floor((now - start) / period)
        if counts.get(window, 0) >= allowance:
            return 429, latency
        counts[window] = counts.get(window, 0) + 1
        return 200, latency

    return server


def sliding_window(period: float, allowance: int, latency: float = 0.001) -> Server:
    """A server that takes ``allowance`` requests in any ``period`` seconds."""
    taken: collections.deque[float] = collections.deque()

    def server(now: float, flying: int) -> tuple[Status, float]:
        while taken and taken[0] <= now - period:
            taken.popleft()
        if len(taken) >= allowance:
            return 429, latency
        taken.append(now)
        return 200, latency

    return server


def token_bucket(
    per_second: float, start: float, latency: float = 0.001, burst: float = 1.0
) -> Server:
    """A server that takes ``per_second`` requests a second, ``burst`` seconds' worth at
    once (at least one request: 0 is nginx's ``limit_req`` without ``burst``)."""
    room = max(1.0, per_second * burst)
    state = {"level": room, "at": start}

    def server(now: float, flying: int) -> tuple[Status, float]:
        state["level"] = min(room, state["level"] + (now - state["at"]) * per_second)
        state["at"] = now
        if state["level"] < 1:
            return 429, latency
        state["level"] -= 1
        return 200, latency

    return server


# -- parsing --------------------------------------------------------------------------------------


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


def test_what_the_message_says() -> None:
    assert says_concurrency(ZHIPU)
    assert says_concurrency(CONCURRENT)
    assert not says_concurrency(SF_RPM)
    assert says_per_minute(SF_TPM) and says_per_minute("Limit: 60 requests per minute")
    assert not says_per_minute("slow down")


# -- before the first 429: free -------------------------------------------------------------------


def test_no_pacing_before_the_first_429(ctl: RateController, clock: FakeClock) -> None:
    tickets = [go(ctl, 100) for _ in range(1000)]
    assert {t.at for t in tickets} == {clock.now}
    assert [t.in_flight for t in tickets[:3]] == [1, 2, 3]  # counted in flight
    for t in tickets:
        ctl.on_success(t)
    snap = ctl.snapshot()
    assert snap["rpm"] is None and snap["tpm"] is None and snap["window"] is None
    assert snap["in_flight"] == 0 and ctl.pauses == 0


def test_an_outcome_is_counted_once(ctl: RateController) -> None:
    ticket = go(ctl)
    ctl.on_success(ticket)
    ctl.on_error(ticket)  # a late second report (a cancellation after the answer)
    assert ctl.snapshot()["in_flight"] == 0


# -- the first pace -------------------------------------------------------------------------------


def test_the_first_pace_waits_for_the_first_wave_to_answer(
    ctl: RateController, clock: FakeClock
) -> None:
    """16 requests go at once; a refusal comes back before the successes (it is quicker to
    refuse than to embed). What got through is known only once they have all answered: the
    first pace is set then, at about what got through spread over a second."""
    wave = [go(ctl) for _ in range(16)]
    clock.now += 0.01
    assert ctl.on_rate_limited(wave[-1], message=SF_RPM) == PAUSED
    clock.now += 0.04
    for ticket in wave[:-1]:
        assert ctl.snapshot()["rpm"] is None  # some have not answered yet
        ctl.on_success(ticket)
    assert 0.8 * 15 <= rate(ctl) <= 15


@pytest.mark.parametrize("message", [SF_RPM, "Too Many Requests"])
def test_a_first_wave_where_few_got_through_doubles_until_refused(
    ctl: RateController, clock: FakeClock, message: str
) -> None:
    """Two of three got through: that says little of the limit (a bucket that holds a
    single request, or a cap), so the pace grows fast until refused, then no more."""
    wave = [go(ctl) for _ in range(3)]
    ctl.on_rate_limited(wave[-1], message=message)
    for ticket in wave[:-1]:
        ctl.on_success(ticket)
    first = rate(ctl)
    assert first <= 2
    use(ctl, clock, 3.0)
    assert rate(ctl) >= 4 * first  # at least doubled twice in three seconds of use
    refused_at = rate(ctl)
    for _ in range(2):  # refused twice (one alone could be noise)
        ctl.on_rate_limited(turn(ctl, clock), message=message)
    use(ctl, clock, 3.0)
    assert rate(ctl) <= refused_at  # found: it no longer doubles


def test_a_bucket_holding_one_request_is_found_from_when_its_room_came_back(
    ctl: RateController, clock: FakeClock
) -> None:
    """nginx's limit_req without burst, 10 a second: of 16 sent at once one gets through,
    and the guess from it (one a second) is far too low. The probes after the refusal go
    soon and further apart, and the first that gets through shows that room for a request
    came back within a fifth of a second: the pace starts from there, not from one a
    second doubling (which took 3 s at 1 a second)."""
    log = serve(ctl, clock, token_bucket(10, clock.now, 0.05, burst=0), 10.0)
    start = log[0][0]
    ok = [t - start for t, s in log if s == 200]
    assert sum(1 for t in ok if t < 3) >= 18  # was 3
    assert sum(1 for t in ok if 3 <= t < 10) >= 0.85 * 70
    assert sum(1 for _, s in log if s != 200) <= 16 + 4  # the first wave, and a few


GATEWAY = "<html><head><title>429 Too Many Requests</title></head></html>"  # nginx's page


@pytest.mark.parametrize("tuning", [Tuning(), Tuning().off("cap_probes")], ids=["on", "off"])
def test_a_cap_behind_a_gateway_is_told_by_the_probes_of_the_first_wall(
    clock: FakeClock, tuning: Tuning
) -> None:
    """nginx's limit_conn 4 in front of a server that answers in 0.2 s: of 16 sent at once
    4 get through, and the 429s name no limit. The probes that go while those 4 are out
    are refused too, with 5 in flight: a cap, which lets 4 through per round trip (20 a
    second), not a rate limit of 4 a second doubling from there (which took seconds)."""
    ctl = RateController(clock=clock, tuning=tuning)
    log = serve(ctl, clock, cap(4, latency=0.2), 10.0, message=GATEWAY)
    start = log[0][0]
    ok = [t - start for t, s in log if s == 200]
    early = sum(1 for t in ok if t < 3)  # of the 60 the cap allows in 3 s
    if tuning.cap_probes:
        assert early >= 0.85 * 60
        assert ctl.snapshot()["window"] == 4
    else:
        assert early < 0.85 * 60  # the mechanism earns its place
    assert sum(1 for _, s in log if s != 200) <= 2 * 16


def refusing_at_once(server: Server) -> Server:
    """``server``, but its refusals come back at once, as a gateway's do."""

    def answer(now: float, flying: int) -> tuple[Status, float]:
        status, after = server(now, flying)
        return status, after if status == 200 else 0.0

    return answer


def test_a_slow_bucket_read_as_a_cap_costs_a_few_refusals() -> None:
    """A bucket of 2 a second behind a gateway, whose server answers in half a second,
    looks like a cap from the first wall: its probes are refused while the first requests
    are out. The guess then sends what a cap would let through, meets refusals with fewer
    in flight, and comes down to the bucket's rate: the misreading costs a few refusals
    more than reading it as a rate limit at once, not the run."""
    refused = []
    for tuning in (Tuning(), Tuning().off("cap_probes")):
        clock = FakeClock()
        ctl = RateController(clock=clock, tuning=tuning)
        bucket = refusing_at_once(token_bucket(2, clock.now, 0.5, burst=1.0))
        log = serve(ctl, clock, bucket, 1.0, message=GATEWAY)
        if tuning.cap_probes:
            assert ctl.snapshot()["window"] == 2  # read as a cap of the 2 that got through
        log += serve(ctl, clock, bucket, 39.0, message=GATEWAY)
        start = log[0][0]
        ok = [t - start for t, s in log if s == 200]
        assert sum(1 for t in ok if 10 <= t < 40) >= 0.9 * 2 * 30
        refused.append(sum(1 for _, s in log if s != 200))
    assert refused[0] <= refused[1] + 4


@pytest.mark.parametrize("tuning", [Tuning(), Tuning().off("recut")], ids=["on", "off"])
def test_a_cut_is_seen_again_once_slow_answers_are_back(clock: FakeClock, tuning: Tuning) -> None:
    """A sliding window of 10 a second in front of a server that answers in a second. A
    refusal comes back at once, while the last second's requests are still out: a cut
    measured then sees the pause before them (one got through), not the 10 a second they
    went at. Seen again once they are back, the pace is cut from what they show."""
    ctl = RateController(clock=clock, tuning=tuning)
    log = serve(ctl, clock, refusing_at_once(sliding_window(1.0, 10, 1.0)), 40.0, message=SF_RPM)
    start = log[0][0]
    later = sum(1 for t, s in log if s == 200 and 10 <= t - start < 40)
    if tuning.recut:
        assert later >= 0.9 * 10 * 30
        assert sum(1 for _, s in log if s != 200) <= 2 * 16
    else:
        assert later < 0.5 * 10 * 30  # the mechanism earns its place


def test_a_turn_not_booked_is_looked_at_later_than_now(clock: FakeClock) -> None:
    """A turn beyond the pace's horizon says when to look again: always later than now (a
    sum that rounded gave "now", and a fake or paused clock then never moved on). This
    run met it."""
    ctl = RateController(clock=clock, tuning=Tuning().off("cap_probes"))
    reserve = ctl.reserve

    def checked(estimate: int) -> Ticket:
        ticket = reserve(estimate)
        assert ticket.booked or ticket.at > clock.now, ticket
        return ticket

    ctl.reserve = checked  # type: ignore[method-assign]
    serve(ctl, clock, refusing_at_once(token_bucket(4, clock.now, 0.2)), 40.0, message=GATEWAY)


def test_a_first_wave_that_got_through_and_named_its_limit_does_not_double(
    ctl: RateController, clock: FakeClock
) -> None:
    """40 got through and the 429 said "RPM": the first guess is sound; it grows back
    towards what got through, not past it within seconds."""
    wave = [go(ctl) for _ in range(41)]
    ctl.on_rate_limited(wave[-1], message=SF_RPM)
    for ticket in wave[:-1]:
        ctl.on_success(ticket)
    assert 0.8 * 40 <= rate(ctl) <= 40
    use(ctl, clock, 3.0)
    assert rate(ctl) <= 40


# -- the shared pause and the probe ---------------------------------------------------------------


def test_a_429_pauses_every_worker_until_one_instant(ctl: RateController, clock: FakeClock) -> None:
    paced_at(ctl, clock, 10)
    booked = [ctl.reserve(10) for _ in range(3)]  # booked before the 429
    ctl.on_rate_limited(turn(ctl, clock), retry_after=2.0, message=SF_RPM)
    until = ctl.cooldown_until
    assert until > clock.now
    # Bookings made before the 429 are void: each worker books again, after the pause.
    clock.now = max(t.at for t in booked)
    assert not any(ctl.admit(t) for t in booked)
    later = [ctl.reserve(10) for _ in range(16)]
    assert {t.at for t in later} == {until} and {t.why for t in later} == {"pause"}


def test_after_the_pause_one_request_probes_alone(ctl: RateController, clock: FakeClock) -> None:
    """When the pause ends one request goes; the others wait for its answer, then all go."""
    wave = [go(ctl) for _ in range(16)]
    ctl.on_rate_limited(wave[-1], message=SF_RPM)
    for ticket in wave[:-1]:
        ctl.on_success(ticket)
    clock.now = ctl.cooldown_until
    probe, other = ctl.reserve(10), ctl.reserve(10)  # two workers booked their turns
    assert probe.booked and other.booked
    assert ctl.admit(probe) and probe.probe
    clock.now = other.at
    assert not ctl.admit(other)  # the probe is out: it waits for its answer
    poll = ctl.reserve(10)
    assert not poll.booked and poll.why == "probe" and poll.at > clock.now
    ctl.on_success(probe)
    assert [turn(ctl, clock).in_flight for _ in range(3)] == [1, 2, 3]  # not one at a time


def test_after_a_first_refusal_everybody_resumes_at_the_lower_pace(
    ctl: RateController, clock: FakeClock
) -> None:
    """One refusal of a paced limit: a cut and a pause, then every worker at the lower
    pace (a lone probe would leave the limit idle for a round trip)."""
    paced_at(ctl, clock, 10)
    use(ctl, clock, 2.0)
    before = rate(ctl)
    ctl.on_rate_limited(turn(ctl, clock), message=SF_RPM)
    assert ctl.cooldown_until > clock.now and rate(ctl) < before
    tickets = [turn(ctl, clock) for _ in range(3)]
    assert [t.in_flight for t in tickets] == [1, 2, 3]
    assert not any(t.probe for t in tickets)


def test_once_a_wall_lasts_one_request_probes_alone(ctl: RateController, clock: FakeClock) -> None:
    paced_at(ctl, clock, 10)
    use(ctl, clock, 2.0)
    for _ in range(2):  # refused, and refused again when the pause ended: a wall
        ctl.on_rate_limited(turn(ctl, clock), message=SF_RPM)
    probe = turn(ctl, clock)
    assert probe.probe and ctl.reserve(10).why == "probe"
    ctl.on_success(probe)
    assert [turn(ctl, clock).in_flight for _ in range(3)] == [1, 2, 3]


def test_a_failed_probe_frees_its_slot(ctl: RateController, clock: FakeClock) -> None:
    paced_at(ctl, clock, 10)
    for _ in range(2):
        refuse(ctl, clock)
    probe = turn(ctl, clock)
    assert probe.probe
    ctl.on_error(probe)  # a 500, a reset, a cancellation: no answer about the rate
    assert turn(ctl, clock).probe  # the next one may probe


def test_echoes_of_one_429_change_nothing_but_a_retry_after_lengthens_the_pause(
    ctl: RateController, clock: FakeClock
) -> None:
    paced_at(ctl, clock, 10)
    in_flight = [turn(ctl, clock) for _ in range(8)]
    ctl.on_rate_limited(in_flight[0], message=SF_RPM)
    assert ctl.epoch == 2  # paused (a second refusal within a hundred answers)
    state = (ctl.epoch, ctl.snapshot()["rpm"], ctl.cooldown_until, ctl.strikes)
    for ticket in in_flight[1:-1]:  # booked before the pause: the same event, heard again
        assert ctl.on_rate_limited(ticket, message=SF_RPM) == PAUSED
    assert (ctl.epoch, ctl.snapshot()["rpm"], ctl.cooldown_until, ctl.strikes) == state
    ctl.on_rate_limited(in_flight[-1], retry_after=3.0, message=SF_RPM)
    assert ctl.cooldown_until == clock.now + 3.0  # a later hint is honoured
    assert (ctl.epoch, ctl.snapshot()["rpm"], ctl.strikes) == (state[0], state[1], state[3])
    assert ctl.rate_limited == 1 + 8


def test_retry_after_sets_the_pause(ctl: RateController, clock: FakeClock) -> None:
    steady(ctl, clock, 10, 1.0)
    ctl.on_rate_limited(go(ctl), retry_after=7.25, message=SF_RPM)
    assert ctl.cooldown_until == clock.now + 7.25
    assert ctl.reserve(10).at == clock.now + 7.25


def test_the_pause_grows_while_a_wall_lasts(ctl: RateController, clock: FakeClock) -> None:
    """A window of a minute spent in its first second: the probes keep meeting it. They
    come further and further apart (few refusals), and one goes just as a window opened by
    the first request would open again."""
    first = clock.now
    steady(ctl, clock, 600, 1.0)
    pauses, probes = [], []
    while clock.now < first + 75:
        pauses.append(refuse(ctl, clock))
        probes.append(clock.now)
    assert len(probes) < 40
    assert max(pauses[-5:]) > 20 * pauses[0]
    assert any(first + 60 <= t < first + 61 for t in probes), probes
    assert ctl.strikes == len(probes)


def test_a_long_wall_does_not_compound_the_cut(ctl: RateController, clock: FakeClock) -> None:
    steady(ctl, clock, 600, 1.0)
    for _ in range(2):
        refuse(ctl, clock)
    first = ctl.snapshot()["rpm"]
    for _ in range(6):  # the probes keep meeting the full window
        refuse(ctl, clock)
    assert ctl.snapshot()["rpm"] == first


def test_headers_cap_the_pause_at_the_announced_reset(
    ctl: RateController, clock: FakeClock
) -> None:
    steady(ctl, clock, 600, 1.0)
    for _ in range(12):  # a long wall: the next pause would be seconds
        refuse(ctl, clock)
    ticket = turn(ctl, clock)
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "80ms"}
    ctl.on_rate_limited(ticket, message="", headers=headers)
    assert ctl.cooldown_until - clock.now == pytest.approx(0.08)


# -- the cut --------------------------------------------------------------------------------------


def test_a_cut_is_never_above_what_the_server_took(ctl: RateController, clock: FakeClock) -> None:
    """Pacing at 10 a second where the server takes 8 a second (the 9th and 10th of each
    second are refused): within two seconds the pace is at most the 8 that got through,
    and no lower than half of the 10."""
    ctl.follow(10.0, None)  # the seam that sets a known pace (a cluster's leader uses it)
    serve(ctl, clock, fixed_window(1.0, 8, clock.now), 2.0, workers=1, message=SF_RPM)
    assert ctl.pauses >= 2
    assert 10 * 0.5 <= rate(ctl) <= 8


def test_a_refusal_at_a_rate_below_the_pace_cuts_to_that_rate(clock: FakeClock) -> None:
    """A controller pacing at 20 a second whose client sent only 2 a second for 3 s (all
    taken), then met a refusal: the server refused at 2 a second, so the pace goes to about
    that, not to a share of the 20 it never reached."""
    ctl = RateController(clock=clock)
    ctl.follow(20.0, None)
    steady(ctl, clock, 2, 3.0)
    ctl.on_rate_limited(turn(ctl, clock), message=SF_RPM)
    assert ctl.pauses == 1
    assert 1 <= rate(ctl) <= 2


@pytest.mark.parametrize(
    ("message", "headers", "cut"),
    [
        (SF_RPM, None, "rpm"),
        (SF_TPM, None, "tpm"),
        ("slow down", {"x-ratelimit-remaining-tokens": "0"}, "tpm"),
        ("slow down", {"x-ratelimit-remaining-requests": "0"}, "rpm"),
    ],
)
def test_the_429_says_which_pace_is_cut(
    ctl: RateController,
    clock: FakeClock,
    message: str,
    headers: dict[str, str] | None,
    cut: str,
) -> None:
    for _ in range(50):
        ctl.on_success(go(ctl, 300))
        clock.now += 0.1  # 10 requests and 3,000 tokens per second
    ctl.on_rate_limited(go(ctl, 300), message=message, headers=headers)
    snap = ctl.snapshot()
    other = "tpm" if cut == "rpm" else "rpm"
    assert snap[other] is None
    got = snap[cut]
    assert got is not None
    assert 0.8 * (600 if cut == "rpm" else 180_000) <= got <= (600 if cut == "rpm" else 180_000)


# -- growth ---------------------------------------------------------------------------------------


def test_the_pace_grows_only_while_it_holds_requests_back(
    ctl: RateController, clock: FakeClock
) -> None:
    paced_at(ctl, clock, 10)
    base = rate(ctl)
    for _ in range(20):  # a request every 2 s: the pace holds nothing back
        clock.now += 2.0
        ticket = turn(ctl, clock)
        assert not ticket.held
        ctl.on_success(ticket)
    assert rate(ctl) == base  # an idle spell is no evidence that the limit has room
    use(ctl, clock, 5.0)
    assert rate(ctl) > base


@pytest.mark.parametrize("regain", [6.0, 12.0])
def test_after_a_cut_the_pace_is_back_within_regain_seconds_and_beyond_later(
    clock: FakeClock, regain: float
) -> None:
    """Refused at 10 a second, cut: the pace climbs back to 10 within ``regain`` seconds
    of use (not at once), then beyond it (a limit that was raised is found)."""
    ctl = RateController(clock=clock, tuning=Tuning(regain=regain))
    paced_at(ctl, clock, 10)
    assert rate(ctl) < 10
    use(ctl, clock, regain / 2 - 1)
    assert rate(ctl) < 10 * 0.995
    use(ctl, clock, regain / 2 + 1)
    assert rate(ctl) >= 10 * 0.995
    use(ctl, clock, 1.5 * regain)
    assert rate(ctl) > 10 * 1.1


def test_paced_requests_are_evenly_spaced_without_burst(
    ctl: RateController, clock: FakeClock
) -> None:
    paced_at(ctl, clock, 10)
    clock.now += 5.0  # idle: a bucket holding one request refuses a second one early
    ats = [turn(ctl, clock).at for _ in range(30)]
    gaps = [b - a for a, b in zip(ats, ats[1:])]
    assert gaps == pytest.approx([1 / rate(ctl)] * 29, rel=0.02)


# -- windows spent at once ------------------------------------------------------------------------


def cycles(log: list[tuple[float, Status]], start: float, period: float, n: int) -> list[Any]:
    """Per cycle of a window: (successes, refusals, seconds from its start to the last
    success)."""
    out = []
    for k in range(n):
        lo, hi = start + k * period, start + (k + 1) * period
        sent = [(t, s) for t, s in log if lo <= t < hi]
        ok = [t for t, s in sent if s == 200]
        out.append((len(ok), len(sent) - len(ok), (max(ok) - lo) if ok else None))
    return out


def test_a_long_window_spent_early_is_spent_at_once_in_later_cycles(
    ctl: RateController, clock: FakeClock
) -> None:
    """A window of 600 a minute: the first burst spends it in well under a second, then a
    wall until it opens. In the next cycles the 600 go at once again (no pace), and when
    they are sent one request probes for more, alone: one refusal per cycle, but for the
    one cycle whose probe goes a little early to check the period (a few more)."""
    start = clock.now
    log = serve(ctl, clock, fixed_window(60.0, 600, start), 240.0, workers=1)
    first, *later = cycles(log, start, 60.0, 4)
    assert first[0] == 600
    assert ctl.snapshot()["rpm"] is None
    for ok, refused, last in later:
        assert ok == 600 and refused >= 1
        assert last < 5.0  # spent at once, not paced over the minute
    assert sum(refused for _, refused, _ in later) <= len(later) + 6


def test_a_limit_that_changes_kind_never_stops_the_client(
    ctl: RateController, clock: FakeClock
) -> None:
    """A window of 10 s for a minute, then a token bucket of 5 a second for two (another
    gateway, or the account's plan), then the window again: the client keeps sending
    throughout and meets the window's allowance every cycle once it is back. (Measured: a
    probe refused by what read as a concurrency cap kept its place, and every request waited
    for it: no request at all in the last two minutes.)"""
    serve(ctl, clock, fixed_window(10.0, 100, clock.now, 0.1), 60.0)
    bucket = serve(ctl, clock, token_bucket(5.0, clock.now, 0.1), 120.0)
    assert sum(s == 200 for t, s in bucket if t >= bucket[0][0] + 60) > 0
    start = clock.now
    log = serve(ctl, clock, fixed_window(10.0, 100, start, 0.1), 120.0)
    assert [ok for ok, _, _ in cycles(log, start, 10.0, 12)] == [100] * 12


def test_a_long_window_is_met_every_cycle_for_twenty_minutes(
    ctl: RateController, clock: FakeClock
) -> None:
    start = clock.now
    log = serve(ctl, clock, fixed_window(60.0, 600, start), 20 * 60.0, workers=1)
    assert [ok for ok, _, _ in cycles(log, start, 60.0, 20)] == [600] * 20


@pytest.mark.parametrize(
    ("kind", "period", "phase"),
    [("fixed", 11.0, 0.37), ("fixed", 8.0, 6.6), ("sliding", 8.0, 0.0), ("sliding", 13.0, 0.0)],
)
def test_a_window_of_any_length_is_met_every_cycle(
    ctl: RateController, clock: FakeClock, kind: str, period: float, phase: float
) -> None:
    """Windows of lengths other than the usual ones, 10 requests a second: every cycle gets
    its allowance (a period learned too long would start each cycle later than the window
    opens: a sliding 13 s window got 78 %, a sliding 8 s one 85 %)."""
    allowance = int(10 * period)
    start = clock.now
    server = (
        fixed_window(period, allowance, start - phase, 0.1)
        if kind == "fixed"
        else sliding_window(period, allowance, 0.1)
    )
    log = serve(ctl, clock, server, 30 * period)
    ok = sum(s == 200 for _, s in log)
    assert ok >= 0.95 * 30 * allowance
    assert len(log) - ok <= 0.05 * len(log)


def test_a_short_window_is_paced(ctl: RateController, clock: FakeClock) -> None:
    """A window of 20 per 2 s spent at once: too short to wait for; paced just under it
    (growth may look a little past it: its refusals are bounded below)."""
    start = clock.now
    log = serve(ctl, clock, fixed_window(2.0, 20, start), 20.0, workers=1)
    assert 0.7 * 10 <= rate(ctl) <= 1.05 * 10
    later = cycles(log, start + 6.0, 2.0, 7)
    assert sum(ok for ok, _, _ in later) >= 0.8 * 7 * 20
    assert sum(refused for _, refused, _ in later) <= 2


@pytest.mark.parametrize("latency", [0.001, 0.05])
def test_a_one_second_windows_first_wall_ends_when_it_opens_again(
    ctl: RateController, clock: FakeClock, latency: float
) -> None:
    """A sliding window of 10 a second, spent by the first burst: its wall is probed when
    the window the burst opened would open again, and the pace after it is what the whole
    second got through, not a guess from the refused probes around the opening (it read
    8.7 or 10.6 a second, by the answers' latency)."""
    server = sliding_window(1.0, 10, latency)
    serve(ctl, clock, server, 1.25, message=SF_RPM)
    assert 0.95 * 10 <= rate(ctl) <= 10
    later = serve(ctl, clock, server, 10.0, message=SF_RPM)
    assert sum(s == 200 for _, s in later) >= 0.9 * 10 * 10
    assert sum(s != 200 for _, s in later) <= 2


@pytest.mark.parametrize("left", [0.3, 0.63])
def test_a_fixed_one_second_window_is_spent_as_each_second_begins(
    ctl: RateController, clock: FakeClock, left: float
) -> None:
    """A fixed window of 10 a second, ``left`` seconds of its first second left when the
    first burst spent it: after that wall, every second gives all 10, sent as it begins,
    and the only refusals are the rare looks for more room. (Paced, some seconds gave 9:
    the pace met the window's edge whenever it grew; 596-599 of the 610 here.)"""
    start = clock.now
    log = serve(ctl, clock, fixed_window(1.0, 10, start + left - 1.0, 0.05), 60.0, message=SF_RPM)
    later = cycles(log, start + left, 1.0, 58)
    assert [ok for ok, _, _ in later] == [10] * 58
    assert all(last is not None and last < 0.5 for _, _, last in later)  # at once
    assert sum(refused for _, refused, _ in later) <= 4
    assert rate(ctl) == pytest.approx(10)


def tried(tuning: Tuning, server: Callable[[float], Server], seconds: float) -> tuple[Any, ...]:
    """Successes and refusals of a controller of ``tuning`` serving ``server(start)`` for
    ``seconds``, and whether it tried spending a window as it opens."""
    clock = FakeClock()
    ctl = RateController(clock=clock, tuning=tuning)
    log = serve(ctl, clock, server(clock.now), seconds, message=SF_RPM)
    ok = sum(status == 200 for _, status in log)
    return ok, len(log) - ok, ctl._openings_tried


@pytest.mark.parametrize(
    ("per_second", "burst", "latency", "gateway"),
    [(3.0, 2.0, 0.05, False), (10.0, 0.5, 0.6, True), (3.0, 2.0, 0.6, True)],
)
def test_a_bucket_whose_first_wall_reads_as_a_fixed_windows_costs_no_more_than_a_pace(
    per_second: float, burst: float, latency: float, gateway: bool
) -> None:
    """A bucket whose first wall lasts, with room back within a second, as a fixed
    window's would be (also behind a gateway that refuses at once while successes take
    0.6 s): until as many as the first burst got have got through, two requests go for
    each that did, so the bucket refuses the second, and the paces go on as if no window
    had been tried: what a controller that never tries gets, within two requests and
    three refusals. (Slow answers once let the whole allowance go each second: 5 a second
    of a bucket of 10, never refused.)"""

    def server(start: float) -> Server:
        bucket = token_bucket(per_second, start, latency, burst=burst)
        return refusing_at_once(bucket) if gateway else bucket

    ok, refused, was_tried = tried(Tuning(), server, 30.0)
    paced_ok, paced_refused, _ = tried(Tuning(openings=0.0), server, 30.0)
    assert was_tried
    assert ok >= paced_ok - 2 and refused <= paced_refused + 3


def test_a_fixed_window_shorter_than_a_second_costs_no_more_than_a_pace() -> None:
    """A fixed window of 5 per half second reads as one of a second (5 a second, half of
    it): the looks for room grow it until a period's burst is refused, and the pace takes
    over from the rate it gave: what a controller that never tries gets, or more."""

    def server(start: float) -> Server:
        return fixed_window(0.5, 5, start - 0.1, 0.05)

    ok, refused, was_tried = tried(Tuning(), server, 60.0)
    paced_ok, paced_refused, _ = tried(Tuning(openings=0.0), server, 60.0)
    assert was_tried
    assert ok >= paced_ok and refused <= paced_refused + 3


def test_a_window_raised_later_is_found_by_the_looks() -> None:
    """A fixed window of 10 a second spent as it opens, then raised to 15: the looks for
    room (once in five seconds) grow the allowance a request a second once one gets
    through; in the last 20 s of a minute, nearly all of the 15 a second. (A look whose
    answer came after the next period began once stopped the looks for good.)"""
    clock = FakeClock()
    ctl = RateController(clock=clock)
    start = clock.now
    serve(ctl, clock, fixed_window(1.0, 10, start - 0.5, 0.05), 10.0, message=SF_RPM)
    assert ctl.snapshot()["rpm"] == pytest.approx(600)  # spent as it opens, 10 a second
    log = serve(ctl, clock, fixed_window(1.0, 15, start - 0.5, 0.7), 60.0, message=SF_RPM)
    last = [status for sent, status in log if sent >= clock.now - 20.0]
    assert sum(status == 200 for status in last) >= 0.9 * 15 * 20


def test_a_pace_from_a_leader_ends_spending_a_window_as_it_opens(
    ctl: RateController, clock: FakeClock
) -> None:
    """A cluster's follower that learned alone while its leader was away, and read a fixed
    window: the leader's pace, when it comes, is what it goes by."""
    start = clock.now
    serve(ctl, clock, fixed_window(1.0, 10, start - 0.5, 0.05), 5.0, message=SF_RPM)
    assert ctl.snapshot()["rpm"] == pytest.approx(600)
    ctl.follow(4.0, None)
    assert rate(ctl) == pytest.approx(4.0)
    ats = [turn(ctl, clock).at for _ in range(10)]
    assert max(b - a for a, b in zip(ats, ats[1:])) == pytest.approx(0.25, rel=0.05)


def test_a_leader_never_spends_a_window_as_it_opens_whatever_its_tuning() -> None:
    """Its followers go by its pace: a leader spending a window as it opens would have
    none to give them (every follower unpaced)."""
    from embedsdk.ratecontrol import RateLeader

    assert RateLeader(tuning=Tuning(regain=20.0)).controller.tuning.openings == 0


def test_only_one_refusal_of_a_period_that_looked_for_room_leaves_the_window_as_it_is() -> None:
    """The server counts a period's requests as they reach it, so the one refused in a
    period that looked for more room may be any of them: one is the look's, a second says
    the window is not what was learned; so does any in a period that did not look, and any
    before the window was confirmed."""
    tuning = Tuning(spend_period=5.0)

    def confirmed() -> Openings:
        openings = Openings(tuning, 1.0, 100.0, 0.1, 2)
        assert openings.turn(100.0) is None
        openings.through(100.1, openings.go())
        assert openings.confirmed
        return openings

    trial = Openings(tuning, 1.0, 100.0, 0.1, 10)
    assert trial.turn(100.0) is None
    assert not trial.refused(100.1, trial.go())  # before it was confirmed
    quiet = confirmed()
    assert quiet.turn(101.01) is None
    assert not quiet.refused(101.1, quiet.go())  # a period that did not look
    looked = confirmed()
    assert looked.turn(105.01) is None  # five seconds on, a period looks
    cycle = looked.go()
    assert looked.refused(105.1, cycle)  # the look's
    assert not looked.refused(105.1, cycle)  # one more: not this window
    assert looked.allowance == 2


def test_a_period_sends_its_allowance_as_it_begins_and_a_look_half_way() -> None:
    """Nothing in the band before a period begins (the opening fell in it); the look half
    a period on; the allowance grows by one when the period that looked all got through."""
    openings = Openings(Tuning(spend_period=5.0), 1.0, 100.0, 0.2, 1)
    assert openings.confirmed
    assert openings.turn(100.5) == pytest.approx(101.01)  # its one went; the next period
    assert openings.turn(104.85) == pytest.approx(105.01)  # in the band before 105
    assert openings.turn(104.5) is None  # before it
    openings.go()
    assert openings.turn(105.01) is None  # five seconds on: a period that looks
    cycle = openings.go()
    assert openings.turn(105.01) == pytest.approx(105.5)  # the look, half a period on
    assert openings.turn(105.5) is None
    openings.go()
    assert openings.turn(105.5) == pytest.approx(106.01)
    openings.through(105.6, cycle)
    assert openings.allowance == 1  # one of two through: no more room yet
    openings.through(105.6, cycle)
    assert openings.allowance == 2
    assert openings.turn(106.01) is None and openings.go() == 6
    assert openings.turn(106.01) is None  # it looks again at once: two more
    assert openings.go() == 6 and openings.turn(106.01) == pytest.approx(106.5)


def test_an_idle_spell_after_a_wall_does_not_read_as_a_window(
    ctl: RateController, clock: FakeClock
) -> None:
    steady(ctl, clock, 10, 5.0)
    ctl.on_rate_limited(go(ctl), message=SF_RPM)
    for _ in range(2):  # two probes refused: a wall
        refuse(ctl, clock)
    clock.now = ctl.cooldown_until + 20.0  # nothing to send meanwhile
    log = serve(ctl, clock, token_bucket(10.0, clock.now), 30.0)
    assert sum(s == 200 for _, s in log) >= 0.8 * 10 * 30


def test_a_cut_soon_after_another_climbs_back_to_the_rate_refused_within_regain(
    ctl: RateController, clock: FakeClock
) -> None:
    paced_at(ctl, clock, 10)
    use(ctl, clock, 20.0)
    for _ in range(2):
        ctl.on_rate_limited(turn(ctl, clock), message=SF_RPM)
    ctl.on_success(turn(ctl, clock))
    use(ctl, clock, 0.5)
    refused_at = rate(ctl)
    for _ in range(2):  # refused again half a second after the cut
        ctl.on_rate_limited(turn(ctl, clock), message=SF_RPM)
    ctl.on_success(turn(ctl, clock))
    use(ctl, clock, ctl.tuning.regain)
    assert rate(ctl) >= 0.99 * refused_at


# -- concurrency caps: the window -----------------------------------------------------------------


def levels_succeed(ctl: RateController, level: int, times: int = 3) -> None:
    """``level`` requests in flight at once succeed ``times`` times: the server takes that
    many."""
    for _ in range(times):
        for ticket in [go(ctl) for _ in range(level)]:
            ctl.on_success(ticket)


@pytest.mark.parametrize("status", [429, 503])
def test_a_refusal_above_every_recent_success_narrows_the_window(
    ctl: RateController, clock: FakeClock, status: int
) -> None:
    levels_succeed(ctl, 4)
    tickets = [go(ctl) for _ in range(16)]
    for t in reversed(tickets[4:]):  # a cap of 4: the 5th to the 16th are refused at once
        verdict = (
            ctl.on_rate_limited(t, message="slow down") if status == 429 else ctl.on_overloaded(t)
        )
        assert verdict == NARROWED
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


def test_a_429_at_a_level_that_succeeded_is_a_rate_limit(ctl: RateController) -> None:
    levels_succeed(ctl, 8)
    again = [go(ctl) for _ in range(8)]
    assert ctl.on_rate_limited(again[-1], message="slow down") == PAUSED
    assert ctl.snapshot()["window"] is None


def test_what_the_429_says_wins_over_the_level(ctl: RateController, clock: FakeClock) -> None:
    levels_succeed(ctl, 2)
    tickets = [go(ctl) for _ in range(8)]
    assert ctl.on_rate_limited(tickets[7], message=SF_RPM) == PAUSED  # says RPM
    other = RateController(clock=clock)
    levels_succeed(other, 1, times=20)
    assert other.on_rate_limited(go(other), message=ZHIPU) == NARROWED  # says concurrency
    third = RateController(clock=clock)
    assert third.on_rate_limited(go(third), message=CONCURRENT) == NARROWED


def test_a_lucky_success_above_a_cap_does_not_hide_it(ctl: RateController) -> None:
    """The client's count runs ahead of the server's (answers on their way back): a success
    at level 6 now and then over a cap of 4 must not make a refusal at 5 look random."""
    levels_succeed(ctl, 4)
    tickets = [go(ctl) for _ in range(6)]
    ctl.on_success(tickets[5])  # lucky: the server had one answer on its way
    assert ctl.on_overloaded(tickets[4]) == NARROWED


def test_a_503_narrows_only_above_every_recent_success(ctl: RateController) -> None:
    first = [go(ctl) for _ in range(6)]
    assert ctl.on_overloaded(first[5]) == NARROWED
    assert ctl.snapshot()["window"] == 5
    for t in first[:5]:
        ctl.on_success(t)
    levels_succeed(ctl, 1, times=2)  # one in flight succeeded three times
    assert ctl.on_overloaded(go(ctl)) == NOTED  # one in flight: not a cap
    assert ctl.snapshot()["window"] == 5


@pytest.mark.parametrize("status", [429, 503])
def test_the_window_settles_at_a_cap_and_probes_above_it_rarely(
    ctl: RateController, clock: FakeClock, status: int
) -> None:
    start = clock.now
    log = serve(ctl, clock, cap(4, status), 60.0)
    assert ctl.snapshot()["window"] == 4
    late = [t for t, s in log if s != 200 and t >= start + 1]
    assert 1 <= len(late) <= 6, late  # a probe above the cap now and then, further apart
    ok = sum(s == 200 for _, s in log)
    assert ok >= 0.95 * 4 * 60 / 0.05  # four in flight, each answered in 50 ms


def test_a_cap_that_was_raised_is_found_again(ctl: RateController, clock: FakeClock) -> None:
    serve(ctl, clock, cap(4), 10.0)
    assert ctl.snapshot()["window"] == 4
    serve(ctl, clock, cap(12), 70.0)
    window = ctl.snapshot()["window"]
    assert window is not None and window >= 12


def test_a_full_window_wakes_one_waiter_per_free_slot(ctl: RateController) -> None:
    tickets = [go(ctl) for _ in range(3)]
    ctl.on_rate_limited(tickets[2], message=CONCURRENT)  # window 2, both slots taken
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
    for _ in range(50):
        ticket = go(ctl, 100)
        ctl.on_success(ticket)
        ctl.on_usage(ticket, 40)
    assert ctl.token_ratio == pytest.approx(0.4)
    assert ctl.cost(100) == pytest.approx(40)


def test_an_absurd_usage_is_not_believed_in_full(ctl: RateController) -> None:
    for _ in range(5):
        ticket = go(ctl, 100)
        ctl.on_success(ticket)
        ctl.on_usage(ticket, 100_000)  # a gateway that counts something else
    assert 1 < ctl.token_ratio <= 10


# -- tuning, and what can be seen -----------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"backoff": 1.5},
        {"backoff": 0},
        {"spacing": -0.1},
        {"regain": 0},
        {"pause_max": -1.0},
        {"after_wall": 1.5},
        {"horizon_turns": 0},
    ],
)
def test_tuning_is_validated(fields: dict[str, float]) -> None:
    name = next(iter(fields))
    with pytest.raises(ValueError, match=f"Tuning.{name}"):
        Tuning(**fields)


def test_tuning_is_frozen_and_checked_by_the_controller() -> None:
    tuning = Tuning(regain=6.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tuning.regain = 1.0  # type: ignore[misc]
    assert dataclasses.replace(tuning, backoff=0.9).regain == 6.0
    assert RateController(tuning=tuning).tuning is tuning
    assert tuning.off("beyond").beyond == 0.0 and tuning.off("beyond").regain == 6.0
    with pytest.raises(ValueError, match="regain"):
        tuning.off("regain")  # a number every controller needs: no value turns it off
    with pytest.raises(TypeError, match="Tuning"):
        RateController(tuning={"regain": 6.0})  # type: ignore[arg-type]


def test_describe_says_what_holds_requests_back(ctl: RateController, clock: FakeClock) -> None:
    assert ctl.describe() == "pace no limit learned yet; 0 answered 429 so far"
    paced_at(ctl, clock, 10)
    assert "requests/min" in ctl.describe() and "1 answered 429" in ctl.describe()


def test_the_key_is_never_shown() -> None:
    key = "sk-secret-never-shown"
    ctl = shared_controller("https://x/v1/embeddings", key, "m")
    ctl.on_successes(0, 50, 500.0, age=5.0)  # what a worker saw, in bulk: no clock needed
    ctl.on_refused(0)
    assert ctl.snapshot()["rpm"] is not None
    for text in (repr(ctl), ctl.describe(), str(ctl.snapshot()), json.dumps(ctl.snapshot())):
        assert key not in text and "sk-" not in text


# -- sharing and options --------------------------------------------------------------------------


def test_one_controller_per_account_and_model() -> None:
    a = shared_controller("https://x/v1/embeddings", "sk-secret-1", "m")
    assert shared_controller("https://x/v1/embeddings", "sk-secret-1", "m") is a
    assert shared_controller("https://x/v1/embeddings", "sk-secret-2", "m") is not a
    assert shared_controller("https://x/v1/embeddings", "sk-secret-1", "n") is not a
    assert shared_controller("https://y/v1/embeddings", "sk-secret-1", "m") is not a
    forget_shared_controllers()  # the next client of the account starts afresh
    assert shared_controller("https://x/v1/embeddings", "sk-secret-1", "m") is not a


def test_clients_of_one_account_share_state() -> None:
    options: dict[str, Any] = {
        "base_url": "http://127.0.0.1:9/v1",
        "api_key": "sk-a",
        "cache": False,
    }
    # The client's controller is private (``_rate``): what it is given by controller_for().
    one = embedsdk.AsyncEmbedder(**options)
    two = embedsdk.AsyncEmbedder(max_concurrent=3, **options)
    assert one._rate is not None and one._rate is two._rate
    assert one._rate is controller_for(resolve_options(**options))
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
    mine = RateController()
    options = resolve_options(base_url="http://127.0.0.1:9/v1", rate_controller=mine)
    assert controller_for(options) is mine


# -- retries under rate control -------------------------------------------------------------------


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
