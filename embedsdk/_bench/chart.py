"""PNG charts of a run (matplotlib, Agg backend); skipped quietly when matplotlib is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cache import CacheResult
from .memory import MemoryResult
from .scenarios import ThroughputResult, cpu_per_100k


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display needed, and no GUI toolkit imported
    import matplotlib.pyplot as plt

    return plt


def _throughput(plt: Any, result: ThroughputResult, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    sizes = result.settings["sizes"]
    for client in dict.fromkeys(r.client for r in result.runs):
        runs = [r for r in result.runs if r.client == client]
        left.plot([r.size for r in runs], [r.texts_per_s for r in runs], "o-", label=runs[0].label)
        right.plot(
            [r.size for r in runs], [r.speedup or 0 for r in runs], "o-", label=runs[0].label
        )
    best = {r.size: r for r in result.runs if r.client in ("async", "threads")}
    if best:
        ceiling = [best[n].ceiling_texts_per_s or 0 for n in sizes if n in best]
        left.plot(sizes[: len(ceiling)], ceiling, "k--", label="zero-overhead ceiling")
        right.plot(sizes, [best[n].ceiling_speedup for n in sizes if n in best], "k--",
                   label="ceiling (batches / waves)")  # fmt: skip
    for ax, ylabel in ((left, "texts/s"), (right, "speed-up over serial")):
        ax.set_xscale("log")
        ax.set_xlabel("texts")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    left.set_yscale("log")
    right.legend(fontsize=8)
    s = result.settings
    fig.suptitle(
        f"{s['endpoint']}: batch {s['batch_size']}, {s['concurrency']} in flight, "
        f"latency {(s['latency_s'] or 0) * 1000:g} ms"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fast(plt: Any, result: ThroughputResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [r.label for r in result.runs]
    ax.barh(labels, [cpu_per_100k(r) for r in result.runs], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("client CPU seconds per 100,000 vectors (lower is better)")
    ax.set_title(f"Fast server ({result.settings['dim']} dims, near-zero latency)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cache(plt: Any, result: CacheResult, path: Path) -> None:
    from .ceiling import median

    fig, ax = plt.subplots(figsize=(8, 4))
    kinds = ("cold_nocache_s", "cold_s", "warm_s")
    names = ("cold, no cache", "cold, cache", "warm")
    width = 0.8 / len(result.rows)
    for i, row in enumerate(result.rows):
        values = [median(getattr(row, k)) for k in kinds]
        ax.bar([x + i * width for x in range(3)], values, width, label=row.label)
    ax.set_xticks([x + width * (len(result.rows) - 1) / 2 for x in range(3)], names)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.legend()
    ax.set_title(f"Cache: {result.settings['texts']:,} texts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _memory(plt: Any, result: MemoryResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"{r.texts:,}\n{r.format}" for r in result.rows]
    ax.bar(labels, [r.peak_rss_mib or 0 for r in result.rows])
    ax.set_xlabel("texts, output format")
    ax.set_ylabel("peak RSS of embedsdk embed (MiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_charts(results: dict[str, Any], stem: Path) -> list[Path]:
    """One PNG per scenario that has a chart, next to ``stem`` (``<stem>-<scenario>.png``)."""
    plt = _pyplot()
    if plt is None:
        return []
    written: list[Path] = []
    for name, result in results.items():
        path = stem.with_name(f"{stem.name}-{name}.png")
        if isinstance(result, ThroughputResult):
            (_fast if name == "fast" else _throughput)(plt, result, path)
        elif isinstance(result, CacheResult):
            _cache(plt, result, path)
        elif isinstance(result, MemoryResult):
            _memory(plt, result, path)
        else:
            continue
        written.append(path)
    return written
