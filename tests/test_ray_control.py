"""One rate limit for many processes, without Ray: the controller's bulk methods, the leader
and its followers on a fake clock, and whole runs of several real clients (each with its own
follower) against one simulated limit, in simulated time.

The Ray plumbing around them (the named actor, the workers) is tested in test_ray.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from typing import Any

import pytest
from embedsdk._adaptive import NARROWED, PAUSED, RateController, Ticket
from embedsdk._cluster import BUSY_FOR, FollowerController, RateLeader, Syncer

import embedsdk
from embedsdk.testing import SimulatedTransport, expected_matrix, run_in_virtual_time
from embedsdk.testing._vectors import count_tokens

SF_RPM = "Request was rejected due to rate limiting. Details: RPM limit reached."
SF_TPM = "Request was rejected due to rate limiting. Details: TPM limit reached."


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def go(ctl: RateController, clock: FakeClock, estimate: int = 10) -> Ticket:
    """Book a turn, move the clock to it, and go."""
    for _ in range(1000):
        ticket = ctl.reserve(estimate)
        clock.now = max(clock.now, ticket.at)
        if ticket.booked and ctl.admit(ticket):
            return ticket
    raise AssertionError("no turn came")


# -- the bulk methods ----------------------------------------------------------------------


def test_successes_in_bulk_teach_what_single_successes_do() -> None:
    """100 successes over 10 s, one by one or in ten reports: the same cut after a 429."""
    a_clock, b_clock = FakeClock(), FakeClock()
    one, bulk = RateController(clock=a_clock), RateController(clock=b_clock)
    for i in range(100):
        a_clock.now = 1000.0 + i * 0.1
        one.on_success(go(one, a_clock))
    for second in range(1, 11):
        b_clock.now = 1000.0 + second
        bulk.on_successes(0, 10, 100.0, age=1.0)
    a_clock.now = b_clock.now = 1010.0
    assert one.on_rate_limited(one.reserve(10), message=SF_RPM) == PAUSED
    assert bulk.on_refused(0, what=(True, False)) == PAUSED
    a, b = one.snapshot(), bulk.snapshot()
    assert a["rpm"] is not None and b["rpm"] is not None
    assert abs(a["rpm"] - b["rpm"]) / a["rpm"] < 0.02
    assert a["tpm"] is None and b["tpm"] is None  # only the requests ran out
    assert b["epoch"] == 1 and b["rate_limited"] == 1 and bulk.cooldown_until > 1010.0


def test_held_successes_grow_the_pace_alike_in_one_report_or_many() -> None:
    rates = []
    for bulk in (False, True):
        clock = FakeClock()
        ctl = RateController(clock=clock)
        ctl.on_successes(0, 50, 500.0, age=5.0)
        clock.now += 5
        ctl.on_refused(0, what=(True, False))
        clock.now = ctl.cooldown_until
        start = ctl.snapshot()["rpm"]
        assert start is not None
        for _ in range(200):
            clock.now += 0.1
            if bulk:
                ctl.on_successes(ctl.epoch, 8, 80.0, held=8, held_tokens=80.0, age=0.1)
            else:
                for _ in range(8):
                    ctl.on_successes(ctl.epoch, 1, 10.0, held=1, held_tokens=10.0)
        grown = ctl.snapshot()["rpm"]
        assert grown is not None and grown > start
        rates.append(grown)
    assert abs(rates[0] - rates[1]) / rates[0] < 0.01


def test_a_refusal_booked_before_the_pause_is_an_echo() -> None:
    clock = FakeClock()
    ctl = RateController(clock=clock)
    ctl.on_successes(0, 40, 400.0, age=4.0)
    ctl.on_refused(0)
    pause, epoch = ctl.cooldown_until, ctl.epoch
    rpm = ctl.snapshot()["rpm"]
    ctl.on_refused(0)  # in flight when the pause began
    assert (ctl.cooldown_until, ctl.epoch, ctl.snapshot()["rpm"]) == (pause, epoch, rpm)
    ctl.on_refused(0, retry_after=5.0)  # an echo still lengthens the pause it names
    assert ctl.cooldown_until == pytest.approx(clock.now + 5.0)
    clock.now = ctl.cooldown_until
    ctl.on_refused(ctl.epoch)  # booked after the pause: the wall lasts
    assert ctl.epoch == epoch + 1 and ctl.strikes == 2


def test_a_success_of_the_current_epoch_ends_the_wall() -> None:
    clock = FakeClock()
    ctl = RateController(clock=clock)
    ctl.on_successes(0, 40, 400.0, age=4.0)
    ctl.on_refused(0)
    clock.now = ctl.cooldown_until
    ctl.on_refused(ctl.epoch)
    assert ctl.shared_state()[4]  # probing: the wall lasts
    ctl.on_successes(ctl.epoch - 1, 1, 10.0)  # an older epoch's: says nothing of the wall
    assert ctl.strikes == 2
    ctl.on_successes(ctl.epoch, 1, 10.0)
    assert ctl.strikes == 0 and not ctl.shared_state()[4]


def test_follow_sets_the_pace_and_a_pause_voids_bookings() -> None:
    clock = FakeClock()
    ctl = RateController(clock=clock)
    ctl.follow(4.0, None)
    first, second = ctl.reserve(10), ctl.reserve(10)
    assert second.at - first.at == pytest.approx(0.25)
    ctl.follow(4.0, None, pause=2.0)
    clock.now = second.at
    assert not ctl.admit(second)  # booked before the pause
    again = ctl.reserve(10)
    assert again.why == "pause" and again.at == pytest.approx(1002.0)
    ctl.follow(None, None)
    clock.now = 1002.0
    assert ctl.reserve(10).at == 1002.0  # not limited any more


# -- the leader and its followers ------------------------------------------------------------


def test_the_leader_cuts_from_its_best_recent_second_and_at_most_by_half() -> None:
    """Successes at 10 a second for 4 s, then a 4 s wall with none: one process would cut
    to 0.9 times the average (5 a second, over 8 s); the leader cuts from the best second."""
    clock = FakeClock()
    leader = RateLeader(clock=clock)
    ctl = leader.controller
    for _ in range(16):
        clock.now += 0.25
        ctl.on_successes(0, 2, 20.0, age=0.25)  # 8 a second
    clock.now += 4.0
    ctl.on_refused(0, what=(True, False))
    rps = ctl.shared_state()[0]
    assert rps is not None and rps == pytest.approx(0.9 * 8 / 0.85, rel=0.02)
    clock.now = ctl.cooldown_until + 0.5
    ctl.follow(100.0, None)  # far over the 8 a second that get through: halved, no deeper
    for _ in range(8):
        clock.now += 0.25
        ctl.on_successes(ctl.epoch, 2, 20.0, age=0.25)
    ctl.on_refused(ctl.epoch, what=(True, False))
    assert ctl.shared_state()[0] == pytest.approx(50.0)


def test_a_429_soon_after_a_cut_measures_the_last_whole_second() -> None:
    """10 a second get through; a 429 cuts; another comes 0.7 s later, when only 2 of the
    reports since the cut are in: the second cut measures the last second (the cut in it),
    not the pause and the reports still on their way, and stays shallow."""
    clock = FakeClock()
    ctl = RateLeader(clock=clock).controller
    for _ in range(40):
        clock.now += 0.25
        ctl.on_successes(0, 2.5, 25.0, age=0.25)  # 10 a second for 10 s
    ctl.on_refused(0, what=(True, False))
    first = ctl.shared_state()[0]
    assert first is not None
    clock.now = ctl.cooldown_until
    for _ in range(2):
        clock.now += 0.25
        ctl.on_successes(ctl.epoch, 2.5, 25.0, age=0.25)  # still 10 a second
    clock.now += 0.1  # the next report is not in yet
    ctl.on_refused(ctl.epoch, what=(True, False))
    second = ctl.shared_state()[0]
    assert second is not None and second >= 0.9 * first


def test_the_leader_divides_its_pace_between_busy_workers() -> None:
    clock = FakeClock()
    leader = RateLeader(clock=clock)
    leader.controller.follow(10.0, 1000.0)
    a = leader.sync("a", {"busy": True})
    b = leader.sync("b", {"busy": True})
    assert (a["share"], b["share"]) == (1.0, 0.5)
    assert leader.sync("a", {"busy": True})["share"] == 0.5
    assert leader.sync("c", {"busy": False})["share"] == pytest.approx(1 / 3)
    clock.now += BUSY_FOR + 0.1
    assert leader.sync("a", {"busy": True})["share"] == 1.0  # b fell idle
    assert a["rps"] == 10.0 and a["tps"] == 1000.0


def test_a_follower_paces_at_its_share_and_takes_the_leaders_pause() -> None:
    clock = FakeClock()
    leader = RateLeader(clock=clock)
    follower = FollowerController(clock=clock)
    other = {"busy": True}
    leader.sync("other", other)
    leader.controller.follow(8.0, None)
    follower.apply(leader.sync("me", follower.report()))
    first, second = follower.reserve(10), follower.reserve(10)
    assert second.at - first.at == pytest.approx(0.25)  # half of 8 a second
    # The other worker's 429 reaches the leader; this follower hears of it at its next sync.
    leader.sync("other", {"refused": [[leader.incarnation, 0, None, True, False, None]]})
    follower.apply(leader.sync("me", follower.report()))
    assert not follower.admit(first)  # booked before the pause
    assert follower.reserve(10).why == "pause"
    assert follower.cooldown_until == pytest.approx(leader.controller.cooldown_until)


def test_followers_that_hear_of_a_pause_at_different_times_take_interleaved_turns() -> None:
    """Four followers learn of the leader's pause at different moments, three of them while
    another's probe is out (so each holds from its own moment): their turns still count from
    the account's pause, each in its own slot of the account's pace, not from their holds."""
    clock = FakeClock()
    leader = RateLeader(clock=clock)
    names = ["a", "b", "c", "d"]
    followers = {n: FollowerController(clock=clock) for n in names}
    for n in names:
        followers[n].apply(leader.sync(n, {"busy": True}))
    ctl = leader.controller
    ctl.on_successes(0, 80, 800.0, age=8.0)
    ctl.on_refused(0, what=(True, False))
    clock.now = ctl.cooldown_until
    ctl.on_refused(ctl.epoch, what=(True, False))  # the wall lasts: one request probes
    rate = ctl.shared_state()[0]
    assert rate is not None and ctl.shared_state()[4]
    for n in names:  # each hears of it 30 ms after the one before
        clock.now += 0.03
        followers[n].apply(leader.sync(n, {"busy": True}))
    resumed = ctl.cooldown_until
    clock.now = resumed
    probe = followers["a"].reserve(10)
    assert probe.at == resumed and followers["a"].admit(probe)
    clock.now += 0.1
    followers["a"].on_success(probe)  # the probe came back: the wall is over
    for n in names:
        followers[n].apply(leader.sync(n, followers[n].report()))
    assert not ctl.shared_state()[4]
    turns = []
    for n in names:  # each books its next turn when its hold ends
        clock.now = max(clock.now, followers[n].cooldown_until)
        turns.append(followers[n].reserve(10).at)
    # Each turn is a slot of the account's pace counted from its pause, one slot each.
    slots = [(at - resumed) * rate for at in turns]
    assert slots == pytest.approx([round(x) for x in slots], abs=0.01)
    assert len({round(x) for x in slots}) == 4 and min(slots) >= 0


@pytest.mark.usefixtures("real_waits")
def test_a_turn_waited_for_comes_sooner_when_a_new_pause_voids_it() -> None:
    """A follower waits for a turn far off; the leader's next pause ends sooner, and its
    new turn is there and then, not after the old one."""
    from embedsdk._turns import take_turn

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        follower = FollowerController(clock=loop.time)
        follower.follow(0.01, None)  # a turn every 100 s
        first = await take_turn(follower, 10)
        follower.on_success(first)
        waiting = asyncio.ensure_future(take_turn(follower, 10))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        follower.follow(2.0, None, pause=1.0)  # a new epoch: 1 s of pause, then 2 a second
        ticket = await waiting
        return ticket.sent - first.sent, follower.cooldown_until - first.sent

    took, pause_end = run_in_virtual_time(main())[0]
    assert took == pytest.approx(pause_end) and took < 3.0


def test_what_a_follower_reports() -> None:
    clock = FakeClock()
    leader = RateLeader(clock=clock)
    follower = FollowerController(clock=clock)
    follower.apply(leader.sync("me", follower.report()))
    tag = [leader.incarnation, 0]
    told = []
    follower.on_news = lambda: told.append(1)
    tickets = [go(follower, clock) for _ in range(3)]
    clock.now += 0.5
    for ticket in tickets[:2]:
        follower.on_success(ticket)
        follower.on_usage(ticket, 25)  # the server counted 25 tokens, not the 10 estimated
    verdict = follower.on_rate_limited(tickets[2], None, SF_TPM, {"x-ratelimit-reset-tokens": "1s"})
    assert verdict == PAUSED and told == [1]
    report = follower.report()
    assert report["ok"] == [[*tag, 2, pytest.approx(50.0), 0, 0.0, pytest.approx(0.5)]]
    assert report["refused"] == [[*tag, None, False, True, None]]
    assert report["busy"]
    assert "TPM" not in repr(report)  # the server's words stay in the worker
    again = follower.report()
    assert (again["ok"], again["refused"]) == ([], [])  # reported once


def test_a_concurrency_cap_stays_with_the_worker() -> None:
    clock = FakeClock()
    follower = FollowerController(clock=clock)
    tickets = [go(follower, clock) for _ in range(3)]
    verdict = follower.on_rate_limited(tickets[2], None, "too many concurrent requests")
    assert verdict == NARROWED
    assert follower.report()["refused"] == []


def test_a_restarted_leader_learns_from_the_next_429_only() -> None:
    clock = FakeClock()
    leader = RateLeader(clock=clock)
    leader.controller.on_successes(0, 20, 200.0, age=2.0)
    stale = [["an-old-leader", 7, None, True, True, None]]
    leader.sync("a", {"refused": stale})
    assert leader.controller.epoch == 1  # news: it knew no limit yet
    leader.sync("b", {"refused": stale})
    assert leader.controller.epoch == 1  # an echo of the same event


def test_the_syncer_reports_a_429_at_once() -> None:
    follower = FollowerController()
    leader = RateLeader()
    arrived = threading.Event()

    def send(report: dict[str, Any]) -> dict[str, Any]:
        if report["refused"]:
            arrived.set()
        return leader.sync("me", report)

    syncer = Syncer(follower, send, interval=60.0, idle=60.0).start()
    try:
        ticket = follower.reserve(10)
        assert follower.admit(ticket, force=True)
        follower.on_rate_limited(ticket, None, SF_RPM)
        assert arrived.wait(30)  # not after the 60 s interval
    finally:
        syncer.stop()


def test_the_syncer_goes_on_alone_when_the_leader_is_gone() -> None:
    follower = FollowerController()

    def send(report: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("gone")

    syncer = Syncer(follower, send)
    follower.reserve(10)
    assert syncer.sync_once()  # it had work, and failed quietly
    assert syncer.failures == 1


# -- several clients, one limit, in simulated time -------------------------------------------

BATCH = 8
LATENCY = 0.1


def texts(n: int, tag: str = "") -> list[str]:
    return [f"cluster text {tag}{i}: the quick brown fox jumps over the dog" for i in range(n)]


async def follow_leader(leader: RateLeader, name: str, follower: FollowerController) -> None:
    """What the Syncer thread does, on the simulated loop: every 0.1 s, or at once on news."""
    news = asyncio.Event()
    follower.on_news = news.set
    while True:
        report = follower.report()
        follower.apply(leader.sync(name, report))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(news.wait(), 0.1)
        news.clear()


def cluster_run(
    workers: int, seconds: float, limits: dict[str, Any], shared: bool = True, **options: Any
) -> list[tuple[float, int, int]]:
    """``workers`` clients, each with its own follower of one leader (or, ``shared=False``,
    its own controller), embedding more than ``seconds`` allow; the server's timeline."""

    async def main() -> list[tuple[float, int, int]]:
        loop = asyncio.get_running_loop()
        sim = SimulatedTransport(
            dim=4, latency=LATENCY, jitter=0.02, track_texts=False, timeline=True, **limits
        )
        leader = RateLeader(clock=loop.time)
        tasks, clients = [], []
        for w in range(workers):
            follower = FollowerController() if shared else RateController()
            if shared:
                assert isinstance(follower, FollowerController)
                tasks.append(asyncio.ensure_future(follow_leader(leader, f"w{w}", follower)))
            client = embedsdk.AsyncEmbedder(
                transport=sim,
                cache=False,
                batch_size=BATCH,
                api_key="sk-test",
                rate_controller=follower,
                **options,
            )
            clients.append(client)
            tasks.append(asyncio.ensure_future(client.embed(texts(6000, f"{w}-"))))
        await asyncio.sleep(seconds)
        for task in tasks:
            if task.done():
                task.result()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()
        return [(t, s, n) for t, s, n in sim.stats(texts=False)["timeline"]]

    log, _ = run_in_virtual_time(main())
    return log


def share(log: list[tuple[float, int, int]], per_second: float, start: float, end: float) -> float:
    """Requests accepted in [start, end) over what ``per_second`` allows."""
    done = sum(1 for t, s, _ in log if start <= t < end and s == 200)
    return done / (per_second * (end - start))


def refused(log: list[tuple[float, int, int]], start: float, end: float) -> float:
    statuses = [s for t, s, _ in log if start <= t < end]
    return sum(s == 429 for s in statuses) / max(1, len(statuses))


@pytest.fixture
def real_waits() -> Any:
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


LIMITS = {
    "token bucket, 1 s of burst": {"limiter": "token_bucket", "rpm": 600, "burst": 1.0},
    "sliding 1 s window": {"limiter": "sliding", "rpm": 600, "window": 1.0},
    "token bucket on tokens": {"limiter": "token_bucket", "tpm": 120_000, "burst": 1.0},
}


CASES = [(kind, workers) for kind in LIMITS for workers in (4, 16)]


@pytest.mark.usefixtures("real_waits")
@pytest.mark.parametrize(("kind", "workers"), CASES)
def test_workers_sharing_a_leader_reach_the_limit_with_few_429s(kind: str, workers: int) -> None:
    limits = LIMITS[kind]
    log = cluster_run(workers, 60.0, limits, max_concurrent=8)
    if "rpm" in limits:
        per_second = limits["rpm"] / 60
    else:  # requests of BATCH of these texts, by the server's count of their tokens
        per_second = limits["tpm"] / 60 / sum(map(count_tokens, texts(BATCH, "0-")))
    assert share(log, per_second, 10, 60) >= 0.9
    assert refused(log, 10, 60) < 0.05


@pytest.mark.usefixtures("real_waits")
def test_independent_controllers_overshoot_where_a_leader_does_not() -> None:
    """The reason for the leader: 16 clients, each learning alone, are refused far more."""
    limits = LIMITS["token bucket, 1 s of burst"]
    alone = cluster_run(16, 60.0, limits, shared=False, max_concurrent=8)
    together = cluster_run(16, 60.0, limits, max_concurrent=8)
    assert refused(together, 10, 60) < refused(alone, 10, 60) / 2


@pytest.mark.usefixtures("real_waits")
def test_a_told_limit_divided_between_workers_is_never_exceeded() -> None:
    """rpm=600 told to 4 workers as 150 each: the server, enforcing 600, refuses nothing,
    and no 60 s span carries more than 600 requests."""
    limits = {"limiter": "sliding", "rpm": 600, "window": 60.0}
    log = cluster_run(4, 130.0, limits, max_concurrent=8, rpm=150)
    assert refused(log, 0, 130) == 0
    sent = sorted(t for t, _, _ in log)
    assert max(sum(1 for u in sent if t <= u < t + 60) for t in sent) <= 600
    assert share(log, 10, 0, 130) >= 0.9


def test_every_vector_of_every_worker_arrives() -> None:
    async def main() -> list[Any]:
        sim = SimulatedTransport(dim=4, latency=0.01)
        leader = RateLeader()
        out = []
        for w in range(3):
            follower = FollowerController()
            follower.apply(leader.sync(f"w{w}", follower.report()))
            async with embedsdk.AsyncEmbedder(
                transport=sim, cache=False, api_key="sk", rate_controller=follower
            ) as emb:
                out.append(await emb.embed(texts(50, f"{w}-")))
        return out

    got, _ = run_in_virtual_time(main())
    for w, vectors in enumerate(got):
        assert (vectors == expected_matrix(texts(50, f"{w}-"), dim=4)).all()


def test_importing_embedsdk_never_imports_ray() -> None:
    code = (
        "import sys, embedsdk, embedsdk.cli, embedsdk._cluster; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the command line's inputs (no Ray needed to find them) ----------------------------------


def test_ray_inputs_are_a_file_a_folder_or_a_glob(tmp_path: Any) -> None:
    from embedsdk.cli._ray import _paths, _reader
    from embedsdk.files._inputs import InputFileError

    for name in ("a.jsonl", "b.jsonl", "_SUCCESS", ".hidden"):
        (tmp_path / name).write_text('{"text": "x"}\n')
    jsonl = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert _paths(str(tmp_path)) == jsonl  # a folder: its files, not its markers
    assert _paths(str(tmp_path / "*.jsonl")) == jsonl
    assert _paths(jsonl[0]) == jsonl[:1]
    assert _reader(jsonl, None) == "read_json"
    assert _reader([str(tmp_path / "c.csv")], None) == "read_csv"
    assert _reader([str(tmp_path / "c.parquet")], "jsonl") == "read_json"
    with pytest.raises(InputFileError, match="mixes formats"):
        _reader([*jsonl, str(tmp_path / "c.csv")], None)
    with pytest.raises(InputFileError, match="no input file"):
        _paths(str(tmp_path / "*.csv"))
