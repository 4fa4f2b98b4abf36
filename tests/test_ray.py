"""embedsdk.ray on real Ray (``ray.init(num_cpus=2)`` on this machine), against one
simulated provider on 127.0.0.1 in this process whose limit all the workers share.

Nothing here measures wall-clock time: shares of what the server's limit allows, shares of
429s, counts and exact vectors, read off the server's own timeline. Skipped without Ray
(``pip install "embedsdk[ray]"``; the tox env ``ray`` runs them).

Private access: the leader's actor name, the key's wrapper and a worker's client
(``_leader_name``, ``_Secret``, ``EmbedBatches._client`` of ``embedsdk.integrations.ray``) are
read to see one leader per account, the key hidden and the options a worker's client got,
which no public name shows; ``_actor_id`` is Ray's handle's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import embedsdk.ray  # noqa: E402
from embedsdk import MockTransport, Response  # noqa: E402
from embedsdk.integrations import ray as ray_module  # noqa: E402  (its private helpers)
from embedsdk.testing import SimulatedProvider, expected_matrix  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # Ray's own deprecations (of its settings, not ours) are not this suite's to fail on.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
    pytest.mark.filterwarnings("ignore::FutureWarning:ray"),
]
DIM = 8


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # A Ray of its own, whatever else runs on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture
def real_waits() -> Iterator[None]:
    """The workers sleep for real: pacing is what is under test (they run in other
    processes, where the tests' no-sleep switch does not reach anyway)."""
    embedsdk.set_testing(False)
    yield
    embedsdk.set_testing(True)


def rows(n: int, tag: str = "") -> list[dict[str, Any]]:
    return [
        {"id": i, "text": f"ray row {tag}{i}: the quick brown fox", "score": i * 0.5}
        for i in range(n)
    ]


def embed(sim: SimulatedProvider, data: list[dict[str, Any]], **options: Any) -> Any:
    ds = ray.data.from_items(data)
    return embedsdk.ray.embed_dataset(
        ds, base_url=sim.base_url, api_key="sk-ray", cache=False, **options
    )


def by_id(frame: Any) -> Any:
    return frame.sort_values("id").reset_index(drop=True)


def test_vectors_arrive_exactly_with_every_other_column(tmp_path: Path) -> None:
    data = rows(300)
    with SimulatedProvider(dim=DIM, latency=0.01) as sim:
        out = embed(sim, data, concurrency=2)  # batch_size="auto", the default
        out.write_parquet(str(tmp_path / "vectors"))
        frame = by_id(out.to_pandas())
    assert list(frame.columns) == ["id", "text", "score", "embedding"]
    assert frame["score"].tolist() == [r["score"] for r in data]
    vectors = np.stack(frame["embedding"].to_numpy())
    assert vectors.dtype == np.float32
    assert (vectors == expected_matrix([r["text"] for r in data], dim=DIM)).all()
    table = pq.read_table(str(tmp_path / "vectors"))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert table.num_rows == 300


def test_map_batches_with_the_class_in_numpy_batches() -> None:
    data = rows(64)
    with SimulatedProvider(dim=DIM, latency=0.0) as sim:
        ds = ray.data.from_items(data).map_batches(
            embedsdk.ray.EmbedBatches,
            fn_constructor_kwargs={"base_url": sim.base_url, "api_key": "sk-ray", "cache": False},
            compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=0.25,
            batch_size=16,
        )
        frame = by_id(ds.to_pandas())
    vectors = np.stack(frame["embedding"].to_numpy())
    assert (vectors == expected_matrix([r["text"] for r in data], dim=DIM)).all()


def test_a_row_that_cannot_be_embedded_is_named() -> None:
    data = rows(40)
    data[7]["text"] = ""
    data[23]["text"] = "long " * 400  # the server takes at most 100 tokens
    with SimulatedProvider(dim=DIM, max_input_tokens=100) as sim:
        frame = by_id(embed(sim, data, errors="return", id_column="id").to_pandas())
        assert frame["embedding"].isna().tolist() == [i in (7, 23) for i in range(40)]
        assert "empty" in frame["embedding_error"][7]
        assert "too large" in frame["embedding_error"][23]
        assert frame["embedding_error"].isna().sum() == 38
        good = [i for i in range(40) if i not in (7, 23)]
        vectors = np.stack(frame["embedding"][good].to_numpy())
        assert (vectors == expected_matrix([data[i]["text"] for i in good], dim=DIM)).all()
        with pytest.raises(Exception, match="row 23 was not embedded"):
            embed(sim, [data[23]], id_column="id", concurrency=1).materialize()


@pytest.mark.parametrize("status", [401, 404])
def test_an_error_of_the_whole_run_is_raised_even_when_rows_keep_their_errors(
    status: int,
) -> None:
    """What the client's errors="return" still stops a call for (CALL_WIDE_ERRORS) stops the
    batch too, rather than becoming every row's error. In this process: no Ray needed."""
    refused = MockTransport(lambda _: Response(status, {}, b'{"message": "no"}'))
    batches = embedsdk.ray.EmbedBatches(
        errors="return", shared_limit=False, base_url="http://127.0.0.1:9/v1",
        api_key="sk-ray", cache=False, transport=refused,
    )  # fmt: skip
    with pytest.raises((embedsdk.AuthenticationError, embedsdk.NotFoundError)):
        batches({"text": np.array(["a", "b"], dtype=object)})


def test_a_row_the_server_refuses_fails_alone_at_a_few_requests_cost() -> None:
    data = rows(64)
    for i in (9, 40):
        data[i]["text"] += " <refused>"
    with SimulatedProvider(dim=DIM, refuse_inputs=("<refused>",), error_style="openai") as sim:
        frame = by_id(embed(sim, data, errors="return", concurrency=1).to_pandas())
        requests = sim.stats()["requests"]
    assert frame["embedding"].isna().tolist() == [i in (9, 40) for i in range(64)]
    assert "cannot be processed" in frame["embedding_error"][9]
    assert "HTTP 400" in frame["embedding_error"][40]
    good = [i for i in range(64) if i not in (9, 40)]
    vectors = np.stack(frame["embedding"][good].to_numpy())
    assert (vectors == expected_matrix([data[i]["text"] for i in good], dim=DIM)).all()
    # Split until the two refused rows stand alone: far fewer requests than one per row.
    assert requests <= 4 + 2 * 2 * 6


def test_a_told_limit_is_divided_between_the_workers(real_waits: None) -> None:
    """rpm=300 told to 4 workers: the server, enforcing 300 as a 1 s token bucket, refuses
    nothing."""
    data = rows(480)
    with SimulatedProvider(
        dim=DIM, latency=0.02, limiter="token_bucket", rpm=300, timeline=True
    ) as sim:
        frame = embed(sim, data, concurrency=4, batch_size=8, rpm=300).to_pandas()
        statuses = [s for _, s, _ in sim.stats(texts=False)["timeline"]]
    assert len(frame) == 480
    assert statuses.count(429) == 0 and statuses.count(200) == 60


def test_workers_share_one_limit_they_are_not_told(real_waits: None) -> None:
    """4 workers, one 10 requests/s bucket they are not told: every row exact, and the 429s
    of all four reached the one leader, which learned the account's pace from them. How
    close to the limit they get is measured in simulated time (tests/test_ray_control.py)
    and by ``embedsdk bench --scenario ray``, not here: four processes on two loaded cores
    make any real-time share a measure of the machine."""
    data = rows(2400)
    with SimulatedProvider(
        dim=DIM, latency=0.05, limiter="token_bucket", rpm=600, timeline=True, track_texts=False
    ) as sim:
        frame = embed(
            sim, data, concurrency=4, batch_size=8, max_concurrent=8, rows_per_batch=64
        ).to_pandas()
        log = sim.stats(texts=False)["timeline"]
        name = ray_module._leader_name(sim.base_url + "/embeddings", "sk-ray", "BAAI/bge-m3")
        leader = ray.get_actor(name, namespace=ray_module.NAMESPACE)
        learned = ray.get(leader.snapshot.remote())
    frame = by_id(frame)
    vectors = np.stack(frame["embedding"].to_numpy())
    assert (vectors == expected_matrix([r["text"] for r in data], dim=DIM)).all()
    assert any(s == 429 for _, s, _ in log)  # the limit was met...
    assert learned["workers"] == 4  # ... by workers that all reported to the one leader
    assert learned["rpm"] is not None  # which paces the account from what they saw


class _DiesOnce(embedsdk.ray.EmbedBatches):
    """A worker whose process dies in its first batch (once in the whole run)."""

    def __init__(self, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker

    def __call__(self, batch: Any) -> Any:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return super().__call__(batch)
        os.close(fd)
        os._exit(1)


def test_a_worker_killed_mid_run_loses_and_misplaces_nothing(tmp_path: Path) -> None:
    ray.cloudpickle.register_pickle_by_value(__import__(__name__))
    data = rows(400)
    marker = str(tmp_path / "died")
    with SimulatedProvider(dim=DIM, latency=0.01) as sim:
        ds = ray.data.from_items(data).map_batches(
            _DiesOnce,
            fn_constructor_kwargs={
                "marker": marker,
                "base_url": sim.base_url,
                "api_key": "sk-ray",
                "cache": False,
            },
            compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=0.25,
            batch_size=50,
            batch_format="pyarrow",
        )
        frame = by_id(ds.to_pandas())
    assert os.path.exists(marker)  # a worker did die
    assert frame["id"].tolist() == list(range(400))
    vectors = np.stack(frame["embedding"].to_numpy())
    assert (vectors == expected_matrix([r["text"] for r in data], dim=DIM)).all()


def test_one_leader_per_account() -> None:
    a = embedsdk.ray.rate_leader("http://127.0.0.1:1/v1/embeddings", "sk-a", "m")
    b = embedsdk.ray.rate_leader("http://127.0.0.1:1/v1/embeddings", "sk-a", "m")
    c = embedsdk.ray.rate_leader("http://127.0.0.1:1/v1/embeddings", "sk-b", "m")
    assert a._actor_id == b._actor_id != c._actor_id
    name = ray_module._leader_name("http://127.0.0.1:1/v1/embeddings", "sk-a", "m")
    assert "sk-a" not in name
    assert "sk-a" not in repr(ray.get(a.snapshot.remote()))


def test_the_key_is_not_shown() -> None:
    batches = embedsdk.ray.EmbedBatches(
        base_url="http://127.0.0.1:1/v1", api_key="sk-secret-1", cache=False, shared_limit=False
    )
    assert "sk-secret-1" not in repr(batches)
    assert "sk-secret" not in repr(ray_module._Secret("sk-secret-1"))


def test_a_told_limit_needs_the_number_of_workers() -> None:
    with pytest.raises(embedsdk.ConfigurationError, match="workers=N"):
        embedsdk.ray.EmbedBatches(base_url="http://127.0.0.1:1/v1", api_key="", rpm=100)


def test_not_given_options_are_left_to_the_client() -> None:
    """NOT_GIVEN for rpm is no told limit (nothing to divide between workers), and for the
    model the default model, as for embedsdk.Embedder."""
    batches = embedsdk.ray.EmbedBatches(
        base_url="http://127.0.0.1:1/v1",
        api_key="",
        rpm=embedsdk.NOT_GIVEN,
        model=embedsdk.NOT_GIVEN,
        cache=False,
        shared_limit=False,
    )
    assert batches._client.options.rpm is None
    assert batches._client.options.model == embedsdk.Embedder(api_key="", cache=False).options.model


def test_a_missing_column_is_named_before_anything_runs() -> None:
    ds = ray.data.from_items([{"body": "x"}])
    with pytest.raises(embedsdk.ConfigurationError, match=r"'text'.*body"):
        embedsdk.ray.embed_dataset(ds, base_url="http://127.0.0.1:1/v1", api_key="")


def test_the_command_line_on_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``embedsdk embed "*.jsonl" -o FILE.parquet --ray``: ids kept, text dropped, vectors
    exact (the Ray this module started is the one used)."""
    from embedsdk.cli import main

    texts = {}
    for part in range(3):
        lines = []
        for j in range(20):
            i = part * 100 + j
            texts[i] = f"command line {i}"
            lines.append(f'{{"id": {i}, "text": "{texts[i]}"}}')
        (tmp_path / f"part{part}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "vectors.parquet"
    with SimulatedProvider(dim=DIM) as sim:
        argv = ["embed", str(tmp_path / "*.jsonl"), "-o", str(out), "--ray", "--workers", "2"]
        argv += ["--base-url", sim.base_url, "--no-cache", "--id-field", "id"]
        monkeypatch.setenv("EMBEDSDK_API_KEY", "sk-cli")
        assert main(argv) == 0
    assert "embedded 60 rows on Ray" in capsys.readouterr().err
    frame = by_id(pq.read_table(str(out)).to_pandas())
    assert list(frame.columns) == ["id", "embedding"]
    ids = frame["id"].tolist()
    assert ids == sorted(texts)
    expected = expected_matrix([texts[i] for i in ids], dim=DIM)
    assert (np.stack(frame["embedding"].to_numpy()) == expected).all()
    assert not (tmp_path / "vectors.parquet.partial").exists()
