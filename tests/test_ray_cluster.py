"""embedsdk.ray on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``):
the workers of both nodes pace under one leader, against one simulated provider.

Private access: the leader's actor name (``integrations.ray._leader_name``) is how the test
finds the one leader, to read what it learned; no public name gives it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

import embedsdk  # noqa: E402
import embedsdk.ray  # noqa: E402
from embedsdk.integrations import ray as ray_module  # noqa: E402  (its private helpers)
from embedsdk.testing import SimulatedProvider, expected_matrix  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
    pytest.mark.filterwarnings("ignore::FutureWarning:ray"),
]


@pytest.fixture(scope="module", autouse=True)
def two_nodes() -> Iterator[None]:
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    cluster.shutdown()


def test_two_nodes_share_one_leader_and_one_limit() -> None:
    """Eight workers of a quarter CPU each fill both nodes; the server's 600 requests a
    minute (a 1 s token bucket) are shared: every vector arrives, in place, and fewer than
    5 % of the requests after the start are refused."""
    embedsdk.set_testing(False)
    texts = [f"two nodes {i}: the quick brown fox" for i in range(1600)]
    try:
        with SimulatedProvider(
            dim=8, latency=0.05, limiter="token_bucket", rpm=600, timeline=True
        ) as sim:
            ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
            out = embedsdk.ray.embed_dataset(
                ds,
                base_url=sim.base_url,
                api_key="sk-two",
                cache=False,
                concurrency=8,
                batch_size=8,
                max_concurrent=4,
                rows_per_batch=64,
            )
            frame = out.to_pandas().sort_values("id")
            log = sim.stats(texts=False)["timeline"]
            name = ray_module._leader_name(sim.base_url + "/embeddings", "sk-two", "BAAI/bge-m3")
            leader = ray.get_actor(name, namespace=ray_module.NAMESPACE)
            seen = ray.get(leader.snapshot.remote())["workers"]
    finally:
        embedsdk.set_testing(True)
    assert (np.stack(frame["embedding"].to_numpy()) == expected_matrix(texts, dim=8)).all()
    assert seen > 4  # a node holds 4 workers: workers of both nodes reported to the one leader
    first = min(t for t, s, _ in log if s == 200)
    late = [s for t, s, _ in log if t >= first + 10]
    assert late.count(429) / max(1, len(late)) < 0.05
