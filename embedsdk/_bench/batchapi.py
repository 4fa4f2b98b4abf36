"""``--scenario batch-api``: the same corpus through ``/embeddings`` under an account's limits,
and through the provider's Batch API (``embedsdk.batchapi``), as wall time and as cost.

- **/embeddings**: the whole client (``AsyncEmbedder``, the limits told as a user who knows
  their account would tell them: ``rpm``, ``tpm``) against the simulator's server code
  in-process, under a SiliconFlow-sized account (2,000 RPM, 500,000 TPM, token buckets),
  50 ms + 0.5 ms per input a request, 16 in flight.
- **Batch API**: ``aembed_via_batch`` against the simulator over HTTP on 127.0.0.1: upload,
  batch, polls, download, the store, and the result read back from it.

Both run in **simulated time** (``run_in_virtual_time``), so that an hour-long case takes
seconds and the figures do not depend on how loaded the machine is; then both again in **real
time** over HTTP (a provider that runs a batch in seconds), whole calls from the first
request. What is measured: the time ``/embeddings`` needs under the limit, the requests each
route sends, the tokens the server counted, whether the two give the same vectors bit for bit,
and in real time the Batch API route's own time beside the provider's. What is *modelled*, not
measured: how long the provider takes to run a batch (here ``BATCH_PER_REQUEST`` seconds a
request, after ``VALIDATION`` s; OpenAI promises only "within 24 hours"). The cost is the
tokens at a published price (OpenAI's text-embedding-3-small, :data:`PRICE`) and the Batch
API's discount.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from embedsdk import AsyncEmbedder, price_for
from embedsdk.batchapi import aembed_via_batch, limits_for
from embedsdk.testing import SimulatedProvider, SimulatedTransport, run_in_virtual_time

from . import report, runner
from .texts import mixed_texts

RPM = 2_000
TPM = 500_000
LATENCY = 0.05
PER_INPUT = 0.0005
IN_FLIGHT = 16
BATCH = 64
DIM = 64
#: The provider's pace on a batch (modelled): seconds per request after validation.
BATCH_PER_REQUEST = 0.05
VALIDATION = 30.0
FINALIZING = 1.0
#: USD per million tokens on /embeddings: OpenAI's text-embedding-3-small (embedsdk.price_for).
_PUBLISHED = price_for("openai", "text-embedding-3-small")
PRICE = _PUBLISHED.per_million if _PUBLISHED is not None else 0.02
DISCOUNT = limits_for("openai").discount
TEXTS = (20_000, 2_000)  # full run, --quick


def _sim_fields() -> dict[str, Any]:
    return {"dim": DIM, "latency": LATENCY, "per_input": PER_INPUT, "max_batch": BATCH}


#: The provider's pace in the real-time run (modelled): validation, per request, finalizing.
REAL_BATCH = (1.0, 0.005, 0.5)
_LIMITS: dict[str, Any] = {"limiter": "token_bucket", "rpm": RPM, "tpm": TPM}
_CLIENT: dict[str, Any] = {
    "batch_size": BATCH,
    "max_concurrent": IN_FLIGHT,
    "rpm": RPM,
    "tpm": TPM,
    "api_key": "",
}


async def _via_embeddings(texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Simulated time: the client against the simulator's server in-process."""
    sim = SimulatedTransport(**_sim_fields(), **_LIMITS)
    async with AsyncEmbedder(transport=sim, cache=False, **_CLIENT) as embedder:
        vectors = await embedder.embed(texts)
    return vectors, sim.stats(texts=False)


async def _via_batch(
    texts: list[str], job_dir: Any, model: tuple[float, float, float]
) -> tuple[np.ndarray, dict[str, Any]]:
    validation, per_request, finalizing = model
    async with SimulatedProvider(
        **_sim_fields(),
        batch_validation=validation,
        batch_per_request=per_request,
        batch_finalizing=finalizing,
    ) as sim:
        vectors = await aembed_via_batch(
            texts, job_dir=job_dir, base_url=sim.base_url, api_key="", batch_size=BATCH, cache=False
        )
        return vectors, sim.stats(texts=False)


async def _real_time(texts: list[str], job_dir: Any) -> dict[str, Any]:
    """Real time, over HTTP on 127.0.0.1, from the first request to the last vector: the
    /embeddings route under the same limits, and the Batch API route's whole call against a
    provider modelled as :data:`REAL_BATCH` (faster than any real one: what is left of the
    wall time is the client's own)."""
    loop = asyncio.get_running_loop()
    async with SimulatedProvider(**_sim_fields(), **_LIMITS) as sim:
        async with AsyncEmbedder(base_url=sim.base_url, cache=False, **_CLIENT) as embedder:
            started = loop.time()
            await embedder.embed(texts)
            seconds = loop.time() - started
        served = sim.stats(texts=False)
    started = loop.time()
    _, batch = await _via_batch(texts, job_dir, REAL_BATCH)
    wall = loop.time() - started
    validation, per_request, finalizing = REAL_BATCH
    provider = validation + per_request * served["requests"] + finalizing
    return {
        "embeddings": {
            "seconds": seconds,
            "refused": served["rate_limited"],
            "tokens_per_minute": served["tokens"] / seconds * 60 if seconds else None,
        },
        "batch": {"seconds": wall, "provider_seconds": provider, "polls": batch["batch"]["polls"]},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    n = TEXTS[1] if args.quick else TEXTS[0]
    texts = mixed_texts(n)
    runner.log(f"batch-api: {n:,} texts through /embeddings (simulated time)", args.quiet)
    (a, served_a), seconds_a = run_in_virtual_time(_via_embeddings(texts))
    runner.log(f"batch-api: {n:,} texts through the Batch API (simulated time)", args.quiet)
    model = (VALIDATION, BATCH_PER_REQUEST, FINALIZING)
    with tempfile.TemporaryDirectory(prefix="embedsdk-bench-batch-") as tmp:
        # Its simulated seconds are not reported: the job's disk work (the plan, the store)
        # runs on worker threads, and a simulated clock skips to the next timer meanwhile.
        (b, served_b), _ = run_in_virtual_time(_via_batch(texts, Path(tmp) / "sim", model))
        real = None
        if getattr(args, "real_time", True):
            runner.log(f"batch-api: the same {n:,} texts, both routes in real time", args.quiet)
            real = asyncio.run(_real_time(texts, Path(tmp) / "real"))
    tokens = int(served_a["tokens"])
    batch = served_b["batch"]
    batch_requests = served_a["requests"]  # the same requests, one a line
    cost = tokens / 1e6 * PRICE
    return {
        "texts": n,
        "tokens": tokens,
        "account": {"rpm": RPM, "tpm": TPM, "in_flight": IN_FLIGHT, "batch_size": BATCH},
        "price_per_million": PRICE,
        "discount": DISCOUNT,
        "modelled": {
            "validation_s": VALIDATION,
            "per_request_s": BATCH_PER_REQUEST,
            "finalizing_s": FINALIZING,
        },
        "identical": bool(np.array_equal(a, b)),
        "embeddings": {
            "seconds": seconds_a,
            "requests": served_a["requests"],
            "refused": served_a["rate_limited"],
            "tokens_per_minute": tokens / seconds_a * 60 if seconds_a else None,
            "cost_usd": cost,
        },
        "batch": {
            # The provider's time on the batch as the simulator models it.
            "seconds": VALIDATION + BATCH_PER_REQUEST * batch_requests + FINALIZING,
            "embeddings_requests": served_b["requests"],
            "uploads": batch["uploads"],
            "upload_bytes": batch["upload_bytes"],
            "batches": batch["created"],
            "polls": batch["polls"],
            "tokens": batch["tokens"],
            "cost_usd": batch["tokens"] / 1e6 * PRICE * (1 - DISCOUNT),
        },
        "real_time": real,
        # What the account's TPM alone means for a corpus of 500 M tokens (arithmetic).
        "hours_for_500M_tokens_at_tpm": 500e6 / TPM / 60,
    }


def format_table(result: dict[str, Any]) -> str:
    e, b = result["embeddings"], result["batch"]
    share = e["tokens_per_minute"] / TPM if e["tokens_per_minute"] else None
    rows = [
        [
            "/embeddings",
            f"{e['seconds']:,.0f} s ({report.pct(share)} of the TPM)",
            f"{e['requests']:,} ({e['refused']:,} refused)",
            f"{result['tokens']:,}",
            f"${e['cost_usd']:.4f}",
        ],
        [
            "Batch API",
            "the provider's queue (<= 24 h)",
            f"{b['uploads']} upload, {b['batches']} batch, {b['polls']} polls; "
            f"{b['embeddings_requests']} to /embeddings",
            f"{b['tokens']:,}",
            f"${b['cost_usd']:.4f}",
        ],
    ]
    title = (
        f"Batch API vs /embeddings: {result['texts']:,} texts, {RPM:,} RPM / {TPM:,} TPM "
        f"told, same vectors: {'yes' if result['identical'] else 'NO'} (simulated time; "
        f"cost at ${result['price_per_million']:g}/M tokens; 500 M tokens at this TPM: "
        f"{result['hours_for_500M_tokens_at_tpm']:.1f} h of limit on /embeddings)"
    )
    header = ["route", "wall", "requests", "tokens", "cost"]
    text = title + "\n" + report.table(header, rows)
    real = result.get("real_time")
    if real:
        re_, rb = real["embeddings"], real["batch"]
        share = re_["tokens_per_minute"] / TPM if re_["tokens_per_minute"] else None
        text += (
            f"\nreal time, over HTTP: /embeddings {re_['seconds']:,.1f} s ({report.pct(share)} of "
            f"the TPM, {re_['refused']} refused); Batch API {rb['seconds']:,.1f} s for the whole "
            f"call, of which {rb['provider_seconds']:,.1f} s the provider's (modelled), "
            f"{rb['polls']} polls"
        )
    return text
