"""``--scenario ray``: N Ray workers against one account limit they are not told.

One simulated provider (a 1 s token bucket of ``RPM`` requests a minute, in this process)
serves, in turn:

- ``embedsdk.ray``: ``embed_dataset`` with N workers pacing under the account's one leader;
- ``independent``: the same workers, each learning the limit alone (``shared_limit=False``);
- ``Ray HttpRequestProcessor``: ``ray.data.llm``'s processor, ``qps`` = the limit / N
  (whole requests a second: it takes an int), ``max_retries`` 3, one request a row.

Each row of the table: the share of what the limit allows that was accepted and the share
of requests answered 429, over the whole run (from the first request the server saw to the
last, the bucket's burst included) and, beside it, from the 10th second on. Needs
``pip install "embedsdk[ray]"``.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import runner

RPM = 600  # 10 requests a second
BATCH = 8  # texts per request
LATENCY = 0.05
SECONDS = 60  # of work at the limit, per run (--quick: 40)
DIM = 16


def _texts(n: int, tag: str) -> list[str]:
    return [f"bench ray {tag} {i}: the quick brown fox jumps over the dog" for i in range(n)]


def _figures(
    log: list[list[float]], per_second: float, warm_up: float = 0.0
) -> tuple[float, float]:
    """Accepted requests as a share of what a 1 s bucket of ``per_second`` allows, and the
    share refused, from ``warm_up`` seconds after the first request to the last one."""
    if len(log) < 2:
        return 0.0, 1.0
    first, last = min(t for t, _, _ in log), max(t for t, _, _ in log)
    start, end = first + warm_up, last
    if end <= start:
        start = first
    inside = [s for t, s, _ in log if start <= t <= end]
    burst = per_second if start == first else 0.0  # the bucket starts full
    accepted = inside.count(200) / (per_second * (end - start) + burst)
    return accepted, inside.count(429) / max(1, len(inside))


def _embedsdk(sim: Any, workers: int, shared: bool, n: int) -> None:
    import ray

    import embedsdk.ray as er

    rows = [{"id": i, "text": t} for i, t in enumerate(_texts(n, f"{workers}{shared}"))]
    ds = er.embed_dataset(
        ray.data.from_items(rows),
        base_url=sim.base_url,
        api_key="sk-bench",
        cache=False,
        concurrency=workers,
        batch_size=BATCH,
        max_concurrent=4,
        shared_limit=shared,
        rows_per_batch=64,  # small batches: every worker has work until the end
    )
    ds.materialize()


def _http_processor(sim: Any, workers: int, n: int) -> None:
    import ray
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    config = HttpRequestProcessorConfig(
        url=sim.base_url + "/embeddings",
        headers={"Authorization": "Bearer sk-bench"},
        qps=max(1, int(RPM / 60 / workers)),
        max_retries=3,
        concurrency=workers,
        batch_size=16,
    )
    texts = _texts(n, f"http{workers}")
    requests = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    processor = build_processor(
        config,
        preprocess=lambda row: {"payload": {"model": "BAAI/bge-m3", "input": list(row["texts"])}},
        postprocess=lambda row: {"ok": row.get("http_response") is not None},
    )
    ds = ray.data.from_items([{"texts": r} for r in requests]).repartition(workers * 8)
    processor(ds).materialize()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The table's rows, as JSON-able figures."""
    import ray

    from ..testing import SimulatedProvider

    counts = [4, 8] if args.quick else [4, 8, 16]
    n = int(RPM / 60 * BATCH * (40 if args.quick else SECONDS))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rows: list[dict[str, Any]] = []
    try:
        for workers in counts:
            contenders = {
                "embedsdk.ray (one leader)": lambda s, w=workers: _embedsdk(s, w, True, n),
                "independent clients": lambda s, w=workers: _embedsdk(s, w, False, n),
                "Ray HttpRequestProcessor": lambda s, w=workers: _http_processor(s, w, n),
            }
            for name, go in contenders.items():
                rows.append(_one(name, workers, go, SimulatedProvider, args.quiet))
    finally:
        ray.shutdown()
    return {"rpm": RPM, "batch": BATCH, "rows": rows}


def _one(name: str, workers: int, go: Any, provider: Any, quiet: bool) -> dict[str, Any]:
    runner.log(f"ray: {name}, {workers} workers", quiet)
    sim = provider(dim=DIM, latency=LATENCY, limiter="token_bucket", rpm=RPM, timeline=True)
    error = ""
    with sim:
        try:
            go(sim)
        except Exception as exc:  # a contender that fails is reported, not fatal
            error = f"{type(exc).__name__}: {str(exc)[:120]}"
        log = sim.stats(texts=False)["timeline"]
    share, refused = _figures(log, RPM / 60)
    after, after_refused = _figures(log, RPM / 60, warm_up=10.0)
    return {
        "client": name,
        "workers": workers,
        "share": round(share, 3),
        "refused": round(refused, 4),
        "share_after_10s": round(after, 3),
        "refused_after_10s": round(after_refused, 4),
        "requests": len(log),
        "error": error,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"ray: N workers, one account limit of {result['rpm']} requests/min they are not "
        "told (1 s token bucket); whole run, start included, and after its first 10 s",
        f"{'client':<28} {'workers':>7} {'whole run':>10} {'429s':>6} {'after 10 s':>10} "
        f"{'429s':>6}  note",
    ]
    for row in result["rows"]:
        after = row.get("share_after_10s", row["share"])
        after_refused = row.get("refused_after_10s", row["refused"])
        lines.append(
            f"{row['client']:<28} {row['workers']:>7} {row['share']:>10.0%} "
            f"{row['refused']:>6.1%} {after:>10.0%} {after_refused:>6.1%}  {row['error']}"
        )
    return "\n".join(lines)
