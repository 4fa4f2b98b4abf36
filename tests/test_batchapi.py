"""Big jobs through the Batch API (issue 23): the same vectors as /embeddings, rows in order,
nothing paid twice, and a job that survives being killed at any stage.

Everything runs against the simulated provider's Batch API over 127.0.0.1, in simulated
time (``run_in_virtual_time``): a batch that takes hours there takes milliseconds here, and
nothing depends on the wall clock. "Killed" is an exception raised from inside the job at
the stage named (a BaseException, as Ctrl-C is), after which the same call runs again.

Private access: the kill points are the Batch API client's calls (``_http.BatchAPI``), and the
poll's waits (``_job``) are checked against the module's own constants; neither has a public
seam, and a test must stop the job between two of its steps.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import embedsdk
from embedsdk import ConfigurationError, InvalidInputError
from embedsdk.batchapi import (
    BatchJobError,
    BatchLimits,
    NoBatchAPI,
    StoreFailed,
    _http,
    _job,
    _results,
    aembed_via_batch,
    embed_via_batch,
)
from embedsdk.testing import SimulatedProvider, expected_matrix, run_in_virtual_time

DIM = 8
MODEL = "BAAI/bge-m3"
KEY = "sk-batch-secret-0123456789"


class Killed(BaseException):
    """The process dying at a chosen point (not an error anything may catch)."""


def corpus(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} {i}: 向量 the quick brown fox" for i in range(n)]


def sim_options(sim: SimulatedProvider, **more: Any) -> dict[str, Any]:
    return {"base_url": sim.base_url, "model": MODEL, "api_key": KEY, **more}


def run(scenario: Callable[..., Awaitable[Any]], **sim: Any) -> Any:
    """``scenario(sim)`` with a simulated provider (Batch API on), in simulated time."""
    config = {"dim": DIM, "api_key": KEY, "batch_per_request": 60.0, **sim}

    async def main() -> Any:
        async with SimulatedProvider(**config) as provider:
            return await scenario(provider)

    return run_in_virtual_time(main())[0]


def paid(sim: SimulatedProvider) -> Counter[str]:
    """How many times each text was embedded through a batch."""
    return Counter(sim.stats()["batch"]["texts"])


# -- the result ------------------------------------------------------------------------------


def test_the_vectors_are_the_same_as_from_embeddings_in_input_order(tmp_path: Path) -> None:
    texts = corpus(300)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(texts, job_dir=tmp_path / "job", **sim_options(sim))
        assert vectors.dtype == np.float32
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        stats = sim.stats()
        assert stats["requests"] == 0  # nothing through /embeddings
        assert paid(sim) == Counter(texts)  # each text once
        assert stats["batch"]["created"] == 1

    run(scenario)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_float_and_base64_answers_give_the_same_bits(tmp_path: Path, encoding: str) -> None:
    texts = corpus(70)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", encoding_format=encoding, **sim_options(sim)
        )
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))

    run(scenario)


def test_cached_and_repeated_texts_are_not_sent(tmp_path: Path) -> None:
    texts = corpus(100)
    repeated = texts + texts[:30] + corpus(20, "new") + corpus(20, "new")

    async def scenario(sim: SimulatedProvider) -> None:
        async with embedsdk.AsyncEmbedder(**sim_options(sim)) as embedder:
            await embedder.embed(texts[:50])  # in the cache now
        vectors = await aembed_via_batch(repeated, job_dir=tmp_path / "job", **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(repeated, dim=DIM))
        assert paid(sim) == Counter(texts[50:] + corpus(20, "new"))

    run(scenario)


def test_a_second_run_costs_nothing(tmp_path: Path) -> None:
    texts = corpus(120)

    async def scenario(sim: SimulatedProvider) -> None:
        for _ in range(2):
            vectors = await aembed_via_batch(texts, job_dir=tmp_path / "job", **sim_options(sim))
            assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)
        assert sim.stats()["batch"]["uploads"] == 1
        assert sim.stats()["requests"] == 0

    run(scenario)


def test_without_the_cache_the_job_keeps_its_own_store(tmp_path: Path) -> None:
    texts = corpus(90)

    async def scenario(sim: SimulatedProvider) -> None:
        job = tmp_path / "job"
        vectors = await aembed_via_batch(texts, job_dir=job, cache=False, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert (job / "vectors").is_dir()
        assert sim.stats()["requests"] == 0

    run(scenario)


def test_jobs_are_cut_to_the_limits_of_the_batch_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(500)
    limits = BatchLimits(requests_per_file=3, bytes_per_file=10_000, inputs_per_batch=100)
    monkeypatch.setattr("embedsdk.batchapi.limits_for", lambda provider: limits)

    async def scenario(sim: SimulatedProvider) -> None:
        job = tmp_path / "job"
        vectors = await aembed_via_batch(texts, job_dir=job, batch_size=40, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        state = json.loads((job / "job.json").read_text())
        for part in state["parts"]:
            assert part["requests"] <= 3
            assert part["bytes"] <= 10_000
            assert part["inputs"] <= 100
        assert len(state["parts"]) == sim.stats()["batch"]["created"] >= 5
        assert paid(sim) == Counter(texts)

    run(scenario)


# -- resuming after a kill -------------------------------------------------------------------


def _kill(
    patch: pytest.MonkeyPatch, owner: Any, name: str, *, nth: int = 1, after: bool = False
) -> None:
    """The process "dies" at the ``nth`` call of ``owner.name``, once: before the call, or
    ``after`` it ran for real."""
    real = getattr(owner, name)
    calls = {"n": 0}

    async def dying(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth and not after:
            raise Killed(name)
        result = await real(*args, **kwargs)
        if calls["n"] == nth:
            raise Killed(name)
        return result

    patch.setattr(owner, name, dying)


def _kill_after(patch: pytest.MonkeyPatch, owner: Any, name: str, nth: int = 1) -> None:
    _kill(patch, owner, name, nth=nth, after=True)


def _kill_before(patch: pytest.MonkeyPatch, owner: Any, name: str, nth: int = 1) -> None:
    _kill(patch, owner, name, nth=nth)


async def die_in(kill: Callable[[pytest.MonkeyPatch], Any], texts: list[str], job: Path,
                 sim: SimulatedProvider, **options: Any) -> None:  # fmt: skip
    """One run of the job that "dies" where ``kill`` (given a monkeypatch) makes it."""
    with pytest.MonkeyPatch.context() as patch:
        kill(patch)
        with pytest.raises(Killed):
            await aembed_via_batch(texts, job_dir=job, **options, **sim_options(sim))


async def resume(texts: list[str], job: Path, sim: SimulatedProvider, **options: Any) -> None:
    """The same job run again, to the end: every vector right, in order."""
    vectors = await aembed_via_batch(texts, job_dir=job, **options, **sim_options(sim))
    assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))


STAGES = {
    "before upload": lambda mp: _kill_before(mp, _http.BatchAPI, "upload"),
    "after upload": lambda mp: _kill_after(mp, _http.BatchAPI, "upload"),
    "after create": lambda mp: _kill_after(mp, _http.BatchAPI, "create"),
    "in progress": lambda mp: _kill_after(mp, _http.BatchAPI, "retrieve", nth=3),
    "after completion, before download": lambda mp: _kill_before(mp, _http.BatchAPI, "download"),
    "after download, before store": lambda mp: _kill_after(mp, _http.BatchAPI, "download"),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_job_killed_at_any_stage_resumes_without_paying_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    texts = corpus(400)
    limits = BatchLimits(requests_per_file=4)
    monkeypatch.setattr("embedsdk.batchapi.limits_for", lambda provider: limits)

    async def scenario(sim: SimulatedProvider) -> None:
        job = tmp_path / "job"
        await die_in(STAGES[stage], texts, job, sim, batch_size=32)
        await resume(texts, job, sim, batch_size=32)
        parts = len(json.loads((job / "job.json").read_text())["parts"])
        batch = sim.stats()["batch"]
        assert batch["uploads"] == parts == 4  # 13 requests of 32, 4 a file
        assert batch["created"] == parts
        assert paid(sim) == Counter(texts)
        assert sim.stats()["requests"] == 0

    run(scenario)


def test_a_kill_while_planning_plans_again_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(300)

    def dying() -> Any:
        for i, text in enumerate(texts):
            if i == 250:
                raise Killed("planning")
            yield text

    async def scenario(sim: SimulatedProvider) -> None:
        job = tmp_path / "job"
        options = resolve(sim)
        with pytest.raises(Killed), embedsdk.batchapi.job_store(options, job) as store:
            await embedsdk.batchapi.run_job(dying(), job, options, store)
        assert sim.stats()["batch"]["uploads"] == 0
        vectors = await aembed_via_batch(texts, job_dir=job, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)

    run(scenario)


def resolve(sim: SimulatedProvider) -> Any:
    return embedsdk.client.resolve_options(**sim_options(sim))


# -- outcomes --------------------------------------------------------------------------------


def test_lines_that_fail_go_again_in_a_new_batch(tmp_path: Path) -> None:
    texts = corpus(640)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", batch_size=16, **sim_options(sim)
        )
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)  # a failed line is not paid for
        assert sim.stats()["batch"]["created"] >= 2
        assert sim.stats()["requests"] == 0

    run(scenario, batch_line_failure_rate=0.3, seed=3)


def test_failures_left_after_the_rounds_are_an_error_that_spends_nothing_more(
    tmp_path: Path,
) -> None:
    texts = corpus(64)

    async def scenario(sim: SimulatedProvider) -> None:
        with pytest.raises(
            BatchJobError, match=r"64 texts still failed in the batches after 3 rounds"
        ):
            await aembed_via_batch(texts, job_dir=tmp_path / "job", **sim_options(sim))
        assert sim.stats()["batch"]["created"] == 4
        assert sim.stats()["requests"] == 0  # not sent to /embeddings behind the user's back

    run(scenario, batch_line_failure_rate=1.0)


def test_failed_embeddings_sends_what_failed_to_embeddings(tmp_path: Path) -> None:
    texts = corpus(64)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", failed="embeddings", **sim_options(sim)
        )
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert sim.stats()["batch"]["created"] == 1
        assert sim.stats()["requests"] >= 1

    run(scenario, batch_line_failure_rate=1.0)


@pytest.mark.parametrize("style", ["siliconflow", "openai", "tei", "text"])
def test_one_refused_text_costs_only_itself(tmp_path: Path, style: str) -> None:
    """Whatever shape the provider's error body has (the line's body is /embeddings')."""
    texts = corpus(200)
    texts[137] = "text 137 <refused>"

    async def scenario(sim: SimulatedProvider) -> None:
        result = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", errors="return", **sim_options(sim)
        )
        assert result.ok.sum() == 199 and not result.ok[137]
        good = np.arange(200) != 137
        want = expected_matrix([t for i, t in enumerate(texts) if i != 137], dim=DIM)
        assert np.array_equal(result.vectors[good], want)
        # the others of the refused request came back through a batch, one input a line
        assert paid(sim) == Counter(t for i, t in enumerate(texts) if i != 137)

    run(scenario, refuse_inputs=("<refused>",), error_style=style)


def test_an_expired_batch_keeps_what_it_did_and_sends_the_rest(tmp_path: Path) -> None:
    texts = corpus(640)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", batch_size=16, **sim_options(sim)
        )
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)
        assert sim.stats()["batch"]["created"] >= 2

    # 40 requests of 60 s each, a window of 30 minutes: the first batch does 30 and expires
    run(scenario, batch_expire_after=1800.0)


def _cancelling_when_started(patch: pytest.MonkeyPatch) -> None:
    """Someone cancels the batch (``embedsdk batch cancel``) once it has done two requests."""
    real = _http.BatchAPI.retrieve

    async def cancelling(api: Any, batch_id: str) -> Any:
        batch = await real(api, batch_id)
        if batch["status"] == "in_progress" and batch["request_counts"]["completed"] >= 2:
            await api.cancel(batch_id)
        return batch

    patch.setattr(_http.BatchAPI, "retrieve", cancelling)


def test_a_batch_cancelled_during_a_run_stops_it_and_the_next_run_sends_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(320)
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        with monkeypatch.context() as patch:
            _cancelling_when_started(patch)
            with pytest.raises(BatchJobError, match=r"texts came back .*was cancelled"):
                await aembed_via_batch(texts, job_dir=job, batch_size=16, **sim_options(sim))
        done = sim.stats()["batch"]["inputs"]
        assert 0 < done < len(texts)  # what it finished is kept, the rest not sent again
        assert sim.stats()["batch"]["created"] == 1
        vectors = await aembed_via_batch(texts, job_dir=job, batch_size=16, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert sim.stats()["batch"]["cancelled"] == 1
        assert paid(sim) == Counter(texts)

    run(scenario)


def test_a_run_that_finds_its_batch_cancelled_sends_the_rest_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(320)
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        def cancelled_then_killed(patch: pytest.MonkeyPatch) -> None:
            _cancelling_when_started(patch)
            _kill_after(patch, _http.BatchAPI, "cancel")  # killed right after the cancel

        await die_in(cancelled_then_killed, texts, job, sim, batch_size=16)
        await resume(texts, job, sim, batch_size=16)
        assert paid(sim) == Counter(texts)

    run(scenario)


def test_a_batch_refused_at_validation_is_an_error_before_anything_else_is_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(400)
    monkeypatch.setattr(
        "embedsdk.batchapi.limits_for", lambda provider: BatchLimits(requests_per_file=2)
    )

    async def scenario(sim: SimulatedProvider) -> None:
        with pytest.raises(BatchJobError, match=r"at validation: .*model not allowed in batches"):
            await aembed_via_batch(texts, job_dir=tmp_path / "job", **sim_options(sim))
        assert sim.stats()["batch"]["uploads"] == 1  # the other files are not sent

    run(scenario, batch_fail_validation="model not allowed in batches")


def test_a_server_without_a_batch_api_says_to_use_the_default_route(tmp_path: Path) -> None:
    async def scenario(sim: SimulatedProvider) -> None:
        with pytest.raises(NoBatchAPI, match=r"has no Batch API.*leave out --via batch"):
            await aembed_via_batch(corpus(10), job_dir=tmp_path / "job", **sim_options(sim))
        assert sim.stats()["requests"] == 0

    run(scenario, batch_api=False)


def test_polling_honours_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real = _http.BatchAPI.__init__

    def noting(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        inner = self._sleep

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            await inner(seconds)

        self._sleep = sleep

    monkeypatch.setattr(_http.BatchAPI, "__init__", noting)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(corpus(50), job_dir=tmp_path / "job", **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(corpus(50), dim=DIM))

    run(scenario, batch_poll_429=2)
    assert 2.0 in waits


def test_poll_waits_grow_from_seconds_to_minutes() -> None:
    seen = [_job._poll_wait(elapsed) for elapsed in (0, 10, 60, 600, 3600, 86400)]
    assert seen[0] == seen[1] == _job.POLL_FIRST
    assert seen == sorted(seen)
    assert seen[3] == 60.0  # a tenth of the time the batches have run
    assert seen[-1] == _job.POLL_MAX


# -- refused before anything is sent ---------------------------------------------------------


def test_a_bad_text_is_named_before_anything_is_uploaded(tmp_path: Path) -> None:
    texts = corpus(5000)
    texts[4321] = "   "

    async def scenario(sim: SimulatedProvider) -> None:
        with pytest.raises(InvalidInputError, match=r"texts\[4321\] is empty"):
            await aembed_via_batch(texts, job_dir=tmp_path / "job", **sim_options(sim))
        assert sim.stats()["batch"]["uploads"] == 0
        assert not (tmp_path / "job").exists()  # nothing planned: nothing left behind

    run(scenario)


def test_a_job_directory_of_other_settings_is_refused(tmp_path: Path) -> None:
    async def scenario(sim: SimulatedProvider) -> None:
        await aembed_via_batch(corpus(10), job_dir=tmp_path / "job", **sim_options(sim))
        with pytest.raises(ConfigurationError, match="holds a job with other settings: model"):
            await aembed_via_batch(
                corpus(10), job_dir=tmp_path / "job", **sim_options(sim, model="other")
            )

    run(scenario)


def test_job_dir_and_failed_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="job_dir is required"):
        embed_via_batch(["a"], job_dir="")
    with pytest.raises(ConfigurationError, match="failed must be 'batch' or 'embeddings'"):
        embed_via_batch(["a"], job_dir=tmp_path, failed="never")  # type: ignore[arg-type]


def test_the_key_is_in_no_file_of_the_job(tmp_path: Path) -> None:
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        await aembed_via_batch(corpus(30), job_dir=job, cache=False, **sim_options(sim))

    run(scenario)
    for path in job.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in repr(_http.BatchAPI("http://127.0.0.1:1/v1", KEY))


def test_the_store_failing_keeps_the_results_for_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(100)

    async def scenario(sim: SimulatedProvider) -> None:
        job = tmp_path / "job"
        with monkeypatch.context() as patch:
            patch.setattr(embedsdk.VectorCache, "set_many", lambda *a, **k: None)
            with pytest.raises(StoreFailed, match="did not keep the batch's vectors"):
                await aembed_via_batch(texts, job_dir=job, **sim_options(sim))
        vectors = await aembed_via_batch(texts, job_dir=job, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)

    run(scenario)


def test_the_sync_call_works_inside_a_running_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notebook runs a loop in the main thread: the sync call runs on a thread of its own."""
    monkeypatch.setattr(_job, "POLL_FIRST", 0.01)
    fast = {"batch_validation": 0.01, "batch_per_request": 0.001, "batch_finalizing": 0.01}
    with SimulatedProvider(dim=DIM, **fast) as sim:

        async def inside() -> Any:
            return embed_via_batch(corpus(10), job_dir=tmp_path / "job", **sim_options(sim))

        vectors = asyncio.run(inside())
    assert np.array_equal(vectors, expected_matrix(corpus(10), dim=DIM))


def test_a_server_that_is_down_fails_at_once_and_keeps_the_plan(tmp_path: Path) -> None:
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # nothing listens there once closed
    job = tmp_path / "job"

    async def scenario() -> None:
        with pytest.raises(embedsdk.APIConnectionError, match="connection refused"):
            await aembed_via_batch(
                corpus(10), job_dir=job, base_url=f"http://127.0.0.1:{port}/v1", model=MODEL
            )

    run_in_virtual_time(scenario())
    parts = json.loads((job / "job.json").read_text())["parts"]
    assert [p["stage"] for p in parts] == ["uploading"]  # the next run looks it up, then sends


def test_a_full_queue_holds_a_batch_until_another_has_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(400)
    limits = BatchLimits(inputs_per_batch=100)
    monkeypatch.setattr("embedsdk.batchapi.limits_for", lambda provider: limits)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", batch_size=25, **sim_options(sim)
        )
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        batch = sim.stats()["batch"]
        assert batch["created"] > 4  # some were refused for the full queue, then made again
        assert batch["uploads"] == 4  # each file once
        assert paid(sim) == Counter(texts)

    run(scenario, batch_enqueued_inputs=150)


def test_a_batch_larger_than_the_queue_is_an_error(tmp_path: Path) -> None:
    async def scenario(sim: SimulatedProvider) -> None:
        with pytest.raises(BatchJobError, match="no other batch of this job in progress"):
            await aembed_via_batch(corpus(100), job_dir=tmp_path / "job", **sim_options(sim))

    run(scenario, batch_enqueued_inputs=50)


# -- what review found (issue 23): two runs, lost answers, eviction, other settings ---------


def test_a_second_run_of_one_job_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        options = resolve(sim)
        held = embedsdk.batchapi.job_store(options, job)  # the first run holds it
        with held, pytest.raises(BatchJobError, match="another embedsdk batch job"):
            await aembed_via_batch(corpus(10), job_dir=job, **sim_options(sim))
        assert sim.stats()["batch"]["uploads"] == 0

    run(scenario)


@pytest.mark.parametrize("call", ["upload", "create"])
def test_an_answer_lost_on_the_way_back_does_not_send_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """The server did it, the answer never came (a reset, a proxy's 502): the retry looks
    the file or batch up first, instead of making a second batch that would be paid again."""
    real = getattr(_http.BatchAPI, call)
    lost = {"n": 0}

    async def answer_lost(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)
        lost["n"] += 1
        if lost["n"] == 1:
            raise embedsdk.APIConnectionError("the connection was reset", reason=None)
        return await real(*args, **kwargs)

    monkeypatch.setattr(_http.BatchAPI, call, answer_lost)
    texts = corpus(100)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(texts, job_dir=tmp_path / "job", **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert sim.stats()["batch"]["uploads"] == 1
        assert sim.stats()["batch"]["created"] == 1
        assert paid(sim) == Counter(texts)

    run(scenario)


def test_a_cache_that_evicts_never_makes_the_result_pay_again(tmp_path: Path) -> None:
    texts = corpus(2000)
    small = embedsdk.VectorCache(tmp_path / "small-cache", size_limit=20_000)

    async def scenario(sim: SimulatedProvider) -> None:
        vectors = await aembed_via_batch(
            texts, job_dir=tmp_path / "job", cache=small, **sim_options(sim)
        )
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert sim.stats()["requests"] == 0  # read from the job's own store
        assert paid(sim) == Counter(texts)

    run(scenario)
    small.close()


@pytest.mark.parametrize("first,second", [(True, False), (False, True)])
def test_resuming_with_the_cache_switched_pays_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: bool, second: bool
) -> None:
    texts = corpus(400)
    job = tmp_path / "job"
    limits = BatchLimits(requests_per_file=4)
    monkeypatch.setattr("embedsdk.batchapi.limits_for", lambda provider: limits)
    options = {"batch_size": 32, **({} if first else {"cache": False})}

    async def scenario(sim: SimulatedProvider) -> None:
        one_part_stored = partial(_kill_before, owner=_http.BatchAPI, name="download", nth=2)
        await die_in(one_part_stored, texts, job, sim, **options)
        await resume(texts, job, sim, batch_size=32, cache=second)
        assert sim.stats()["requests"] == 0
        assert paid(sim) == Counter(texts)

    run(scenario)


def test_an_input_changed_before_anything_was_sent_is_planned_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "job"
    old, new = corpus(400, "old"), corpus(100, "new")

    async def scenario(sim: SimulatedProvider) -> None:
        await die_in(partial(_kill_before, owner=_http.BatchAPI, name="upload"), old, job, sim)
        await resume(new, job, sim)
        assert paid(sim) == Counter(new)  # nothing of the old input

    run(scenario)


def test_an_input_changed_after_batches_were_paid_for_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        after_create = partial(_kill_after, owner=_http.BatchAPI, name="create")
        await die_in(after_create, corpus(400, "old"), job, sim)
        with pytest.raises(ConfigurationError, match="started for another input"):
            await aembed_via_batch(corpus(100, "new"), job_dir=job, **sim_options(sim))
        assert sim.stats()["batch"]["uploads"] == 1

    run(scenario)


@pytest.mark.parametrize("style", ["siliconflow", "openai", "tei", "text"])
def test_a_refusal_for_the_account_is_sent_again_by_the_next_run(
    tmp_path: Path, style: str
) -> None:
    texts = corpus(100)
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        sim.configure(models=("another-model",))  # every line: 404 model not found
        with pytest.raises(BatchJobError, match="100 texts came back without vectors: HTTP 404"):
            await aembed_via_batch(texts, job_dir=job, **sim_options(sim))
        assert sim.stats()["requests"] == 0
        sim.configure(models=None)  # mended (access granted)
        vectors = await aembed_via_batch(texts, job_dir=job, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)

    run(scenario, error_style=style)


def test_a_held_part_resumed_is_held_again_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(400)
    job = tmp_path / "job"
    limits = BatchLimits(inputs_per_batch=100)
    monkeypatch.setattr("embedsdk.batchapi.limits_for", lambda provider: limits)

    async def scenario(sim: SimulatedProvider) -> None:
        with monkeypatch.context() as patch:
            real = _job.BatchJob._hold

            def held_then_killed(self: Any, *args: Any) -> None:
                real(self, *args)
                raise Killed("after a hold")

            patch.setattr(_job.BatchJob, "_hold", held_then_killed)
            with pytest.raises(Killed):
                await aembed_via_batch(texts, job_dir=job, batch_size=25, **sim_options(sim))
        vectors = await aembed_via_batch(texts, job_dir=job, batch_size=25, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert paid(sim) == Counter(texts)

    run(scenario, batch_enqueued_inputs=150)


def test_an_echoed_key_is_not_in_the_error(tmp_path: Path) -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        said = request.headers.get("Authorization", "")
        return web.json_response({"error": {"message": f"Invalid token: {said}"}}, status=401)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            with pytest.raises(embedsdk.AuthenticationError) as info:
                await aembed_via_batch(
                    corpus(5),
                    job_dir=tmp_path / "job",
                    base_url=f"http://127.0.0.1:{port}/v1",
                    api_key=KEY,
                )
            assert KEY not in str(info.value) and KEY not in repr(info.value)
            assert "Invalid token: Bearer ***" in str(info.value)
        finally:
            await runner.cleanup()

    run_in_virtual_time(scenario())


def test_an_answer_of_another_width_is_sent_again(tmp_path: Path) -> None:
    """The job's first answer sets the width; a line of another (one bad backend of
    several) is not stored, and goes again."""
    state = embedsdk.batchapi.JobState.open(tmp_path / "job", {"model": MODEL})
    part = state.add_part(1, 2, 2, 10, 100)
    lines = [
        {"custom_id": "1-0", "body": {"input": ["a"]}},
        {"custom_id": "1-1", "body": {"input": ["b"]}},
    ]
    state.path(part["file"]).write_text("\n".join(json.dumps(x) for x in lines) + "\n")

    def answer(i: int, width: int) -> str:
        body = {"data": [{"index": 0, "embedding": [0.5] * width}], "usage": {"prompt_tokens": 1}}
        line = {"custom_id": f"1-{i}", "response": {"status_code": 200, "body": body}}
        return json.dumps(line)

    output = state.path("part-0001.output.jsonl")
    output.write_text(answer(0, 4) + "\nnot json\n" + answer(1, 3) + "\n")
    stores = embedsdk.batchapi.Stores(embedsdk.VectorCache(tmp_path / "store"), None)
    sorter = _results.Sorter(state, part, [["a"], ["b"]], None)
    assert sorter.store(stores, b"n" * 16) == 1
    sorter.sort_errors()
    assert sorter.retry == [1] and state.data["dim"] == 4
    stores.job.close()


# -- what the second review found -------------------------------------------------------------


def test_a_plan_made_afresh_never_takes_the_old_plans_file_for_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = tmp_path / "job"
    old, new = corpus(100, "old_"), corpus(100, "new_")  # files of the same size

    async def scenario(sim: SimulatedProvider) -> None:
        # up, but its stage not saved; then the new input, killed before its upload
        await die_in(partial(_kill_after, owner=_http.BatchAPI, name="upload"), old, job, sim)
        await die_in(partial(_kill_before, owner=_http.BatchAPI, name="upload"), new, job, sim)
        await resume(new, job, sim)
        assert paid(sim) == Counter(new)

    run(scenario)


def test_a_batch_cancelled_before_the_run_first_polls_it_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _http.BatchAPI.create

    async def cancelled_at_once(api: Any, *args: Any, **kwargs: Any) -> Any:
        batch = await real(api, *args, **kwargs)
        await api.cancel(batch["id"])  # someone's `embedsdk batch cancel`, meanwhile
        return batch

    monkeypatch.setattr(_http.BatchAPI, "create", cancelled_at_once)

    async def scenario(sim: SimulatedProvider) -> None:
        with pytest.raises(BatchJobError, match="was cancelled"):
            await aembed_via_batch(corpus(64), job_dir=tmp_path / "job", **sim_options(sim))
        assert sim.stats()["batch"]["created"] == 1  # not made again behind the cancel

    run(scenario)


def test_the_same_texts_in_another_order_resume_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = corpus(200)
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        await die_in(partial(_kill_after, owner=_http.BatchAPI, name="create"), texts, job, sim)
        await resume(texts[::-1], job, sim)
        assert paid(sim) == Counter(texts)

    run(scenario)


def test_what_embeddings_filled_is_not_batched_again(tmp_path: Path) -> None:
    texts = corpus(64)
    job = tmp_path / "job"

    async def scenario(sim: SimulatedProvider) -> None:
        await aembed_via_batch(texts, job_dir=job, failed="embeddings", **sim_options(sim))
        sim.configure(batch_line_failure_rate=0.0)
        vectors = await aembed_via_batch(texts, job_dir=job, **sim_options(sim))
        assert np.array_equal(vectors, expected_matrix(texts, dim=DIM))
        assert sim.stats()["batch"]["created"] == 1  # nothing batched again

    run(scenario, batch_line_failure_rate=1.0)


def test_a_store_checkpoint_makes_its_writes_durable(tmp_path: Path) -> None:
    store = embedsdk.VectorCache(tmp_path / "store")
    namespace = store.namespace("http://127.0.0.1:1/v1/embeddings", MODEL, None)
    store.set_many(namespace, ["a", "b"], np.ones((2, 4), np.float32))
    assert store.checkpoint() is True
    store.close()
    with embedsdk.VectorCache(tmp_path / "elsewhere", size_limit=1) as empty:
        assert empty.checkpoint() is True
