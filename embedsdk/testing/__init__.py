"""A simulated OpenAI-compatible embeddings provider, for tests and benchmarks.

>>> from embedsdk.testing import SimulatedProvider, expected_matrix      # doctest: +SKIP
>>> with SimulatedProvider(latency=0.05, fault_rate=0.1) as sim:
...     vecs = embedsdk.get_batch_embeddings(texts, base_url=sim.base_url, cache=False)
...     assert (vecs == expected_matrix(texts)).all()   # bit for bit
...     sim.stats()["faults"]

It serves ``POST /v1/embeddings`` and ``GET /v1/models`` on 127.0.0.1 with deterministic
vectors (:func:`expected_vector`), configurable latency, batch and rate limits, error shapes
and injected faults (:class:`SimConfig`), and counts what it saw (``GET /stats``). Run it
in your event loop (``async with``), on a background thread (``with``), in a child process
(``process=True``), from the pytest fixtures ``simulated_provider`` and
``simulated_provider_factory``, or as ``python -m embedsdk.testing --port 8000``.

It also serves OpenAI's Batch API for embeddings (``/v1/files``, ``/v1/batches``: validation,
failed lines, expiry, cancel; the ``batch_*`` fields of :class:`SimConfig`) on asyncio timers
only, so a 24 h batch window passes in milliseconds under :func:`run_in_virtual_time`.
"""

from __future__ import annotations

from ._config import SimConfig
from ._inprocess import SimulatedTransport, TimingNoise, VirtualTimeLoop, run_in_virtual_time
from ._provider import SimulatedProvider
from ._vectors import count_tokens, expected_matrix, expected_vector

__all__ = [
    "SimConfig",
    "SimulatedProvider",
    "SimulatedTransport",
    "TimingNoise",
    "VirtualTimeLoop",
    "count_tokens",
    "expected_matrix",
    "expected_vector",
    "run_in_virtual_time",
]
