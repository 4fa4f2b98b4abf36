"""What a zero-overhead client could do: the ceilings the bench compares against (pure).

A client with no overhead at all, ``W`` requests in flight, ``B`` texts per request and a
server answering each request in ``L`` seconds embeds ``W * B / L`` texts per second; a
requests-per-minute limit caps that at ``RPM * B / 60``. A finite run of ``n`` texts is
``ceil(n / B)`` batches sent in ``ceil(batches / W)`` waves, so its best time is
``waves * L`` and the best speed-up over one request at a time is ``batches / waves``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def n_batches(n_texts: int, batch_size: int) -> int:
    """Requests needed for ``n_texts`` at ``batch_size`` texts per request."""
    return -(-n_texts // batch_size)


def n_waves(batches: int, concurrency: int) -> int:
    """Rounds of at most ``concurrency`` requests needed to send ``batches`` requests."""
    return -(-batches // concurrency)


def steady_ceiling(
    concurrency: int, batch_size: int, latency: float, rpm: float | None = None
) -> float:
    """Texts per second of a zero-overhead client in a long run.

    ``min(concurrency * batch / latency, rpm * batch / 60)``; ``inf`` when neither bounds it
    (latency 0 and no RPM limit).
    """
    by_latency = concurrency * batch_size / latency if latency > 0 else math.inf
    by_rpm = rpm * batch_size / 60.0 if rpm else math.inf
    return min(by_latency, by_rpm)


def ceiling_seconds(
    n_texts: int, batch_size: int, concurrency: int, latency: float, rpm: float | None = None
) -> float:
    """The least time a zero-overhead client needs for ``n_texts`` (seconds).

    Waves of ``concurrency`` requests of ``latency`` seconds each, and no faster than the RPM
    limit lets requests start.
    """
    batches = n_batches(n_texts, batch_size)
    seconds = n_waves(batches, concurrency) * latency
    if rpm:
        seconds = max(seconds, batches * 60.0 / rpm)
    return seconds


def ceiling_rate(
    n_texts: int, batch_size: int, concurrency: int, latency: float, rpm: float | None = None
) -> float:
    """Texts per second of a zero-overhead client over a run of ``n_texts`` (``inf`` if free)."""
    seconds = ceiling_seconds(n_texts, batch_size, concurrency, latency, rpm)
    return n_texts / seconds if seconds > 0 else math.inf


def ceiling_speedup(n_texts: int, batch_size: int, concurrency: int) -> float:
    """Best speed-up of ``concurrency`` requests in flight over one at a time.

    ``batches / waves``: 50 texts at batch 20 are 3 batches, one wave with 10 in flight, so
    at most 3x; 1,000 texts are 50 batches in 5 waves, at most 10x.
    """
    batches = n_batches(n_texts, batch_size)
    return batches / n_waves(batches, concurrency) if batches else 1.0


def ratio(value: float, ceiling: float) -> float | None:
    """``value / ceiling``, or ``None`` when there is no finite, positive ceiling."""
    if not math.isfinite(ceiling) or ceiling <= 0:
        return None
    return value / ceiling


def median(values: Sequence[float]) -> float:
    """The median of the repetitions (the bench's summary statistic)."""
    return float(statistics.median(values))
