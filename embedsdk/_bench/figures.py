"""The figures the docs quote, derived from a run's results, and the check of a quote (pure).

Each figure has a key (``cache.warm_speedup``), a ``value`` and the ``text`` the docs show
(``"17–32×"``). :func:`derive` computes them from a results file's scenarios and provenance
(``embedsdk bench --json`` stores them under ``figures``, so that a reader finds the number
the README quotes without recomputing it). README.md's figures paragraph is followed by a
comment listing the keys it quotes, one ``key: text`` a line::

    <!-- figures: bench/results.json -->
    Measured ... 9.4× faster than serial at 1,000 texts ...
    <!-- figure keys
    throughput.speedup.async: 9.4×
    throughput.size: 1,000
    -->

:func:`problems` finds what is wrong with such a paragraph: a key the results file does not
have, a text that is not the file's, a text the paragraph does not contain, and any number in
the paragraph that no key accounts for (a figure nobody can trace).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Callable

Figures = dict[str, dict[str, Any]]

#: The comment that opens the figures paragraph, and the one listing its keys.
START = "<!-- figures:"
KEYS = "<!-- figure keys"


# -- formatting ------------------------------------------------------------------------------


def count(n: float) -> str:
    """``20,000``."""
    return f"{round(n):,}"


def times(x: float) -> str:
    """``9.4×`` below 10, ``32×`` from 10 on."""
    return f"{x:.1f}×" if x < 10 else f"{x:.0f}×"


def percent(x: float, digits: int = 0) -> str:
    """``74 %`` (a share: 0.74), with ``digits`` decimals."""
    return f"{x * 100:.{digits}f} %"


def _span(low: float, high: float, show: Callable[[float], str], unit: str = "") -> str:
    """``17–32×``: both ends shown by ``show`` without their ``unit``, one when they agree."""
    a, b = (show(v).removesuffix(unit) for v in (low, high))
    return f"{a}{unit}" if a == b else f"{a}–{b}{unit}"


def _figure(figures: Figures, key: str, value: Any, text: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        return  # no figure: nothing finite to quote
    figures[key] = {"value": value, "text": text}


# -- deriving ----------------------------------------------------------------------------------


def _run(results: dict[str, Any], figures: Figures) -> None:
    """Which code, when, how: the commit, the date, quick or full, busy or quiet, the cores."""
    prov = results.get("provenance") or {}
    commit = prov.get("commit")
    if commit:
        _figure(figures, "run.commit", commit, commit[:7])
    if prov.get("started"):
        _figure(figures, "run.date", prov["started"][:10], prov["started"][:10])
    if "quick" in results:
        kind = "quick" if results["quick"] else "full"
        _figure(figures, "run.kind", kind, kind)
    busy = (prov.get("load") or {}).get("busy")
    if busy is not None:
        _figure(figures, "run.load", busy, "busy" if busy else "quiet")
    cores = (prov.get("machine") or {}).get("cpus")
    if cores:
        _figure(figures, "machine.cores", cores, str(cores))


def _runs_by_client(data: dict[str, Any], size: int) -> dict[str, dict[str, Any]]:
    return {r["client"]: r for r in data.get("runs", []) if r["size"] == size}


def _throughput(data: dict[str, Any], figures: Figures) -> None:
    s = data["settings"]
    sizes = s["sizes"]
    size = 1000 if 1000 in sizes else max(sizes)  # the size the docs quote
    _figure(figures, "throughput.size", size, count(size))
    _figure(figures, "throughput.concurrency", s["concurrency"], count(s["concurrency"]))
    _figure(figures, "throughput.batch", s["batch_size"], count(s["batch_size"]))
    if s.get("latency_s") is not None:
        ms = s["latency_s"] * 1000
        _figure(figures, "throughput.latency_ms", ms, f"{ms:g}")
    runs = _runs_by_client(data, size)
    for client in ("async", "threads"):
        run = runs.get(client)
        if run and run.get("speedup") is not None:
            _figure(figures, f"throughput.speedup.{client}", run["speedup"], times(run["speedup"]))
    if "async" in runs:
        top = runs["async"]["ceiling_speedup"]
        _figure(figures, "throughput.ceiling", top, f"{top:g}×")
    gaps = []
    for n in sizes:
        pair = _runs_by_client(data, n)
        if "raw" in pair and "async" in pair and pair["async"]["texts_per_s"]:
            gaps.append(abs(pair["raw"]["texts_per_s"] / pair["async"]["texts_per_s"] - 1))
    if gaps:
        _figure(figures, "throughput.raw_gap_max", max(gaps), percent(max(gaps), 1))


def _fast(data: dict[str, Any], figures: Figures) -> None:
    s = data["settings"]
    _figure(figures, "fast.texts", s["sizes"][0], count(s["sizes"][0]))
    if s.get("dim"):
        _figure(figures, "fast.dim", s["dim"], str(s["dim"]))
    runs = _runs_by_client(data, s["sizes"][0])
    ours = runs.get("async")
    if not ours or not ours["median_cpu_s"]:
        return
    for client, run in runs.items():
        ratio = run["median_cpu_s"] / ours["median_cpu_s"]
        if client != "async":
            _figure(figures, f"fast.cpu_ratio.{client}", ratio, times(ratio))
    if "raw" in runs:
        saving = 1 - runs["raw"]["median_cpu_s"] / ours["median_cpu_s"]
        _figure(figures, "fast.raw_cpu_saving", saving, percent(saving))


def _cache(data: dict[str, Any], figures: Figures) -> None:
    s = data["settings"]
    _figure(figures, "cache.texts", s["texts"], count(s["texts"]))
    _figure(figures, "cache.dim", s["dim"], str(s["dim"]))
    rows = data.get("rows") or []
    if rows:
        speedups = [r["warm_speedup"] for r in rows]
        low, high = min(speedups), max(speedups)
        _figure(figures, "cache.warm_speedup", [low, high], _span(low, high, times, "×"))
        cost = max(r["cache_cost"] for r in rows)
        _figure(figures, "cache.cost_max", cost, percent(cost, 1))
    for r in rows:
        variant = r["variant"]
        _figure(
            figures, f"cache.warm_speedup.{variant}", r["warm_speedup"], times(r["warm_speedup"])
        )
        per_s = r["warm_vectors_per_s"]
        _figure(figures, f"cache.warm_per_s.{variant}", per_s, count(per_s))
    store = data.get("store")
    if store:
        _figure(figures, "cache.store_ratio", store["ratio"], percent(store["ratio"]))


def _warm(data: dict[str, Any], figures: Figures) -> None:
    _figure(figures, "warm.texts", data["texts"], count(data["texts"]))
    _figure(figures, "warm.dim", data["dim"], str(data["dim"]))
    _figure(figures, "warm.ratio", data["ratio"], percent(data["ratio"]))
    _figure(figures, "warm.per_s", data["warm_per_s"], count(data["warm_per_s"]))
    _figure(figures, "warm.raw_per_s", data["raw_per_s"], count(data["raw_per_s"]))


def _memory(data: dict[str, Any], figures: Figures) -> None:
    s = data["settings"]
    _figure(figures, "memory.dim", s["dim"], str(s["dim"]))
    rows = [r for r in data.get("rows") or [] if r.get("peak_rss_mib") is not None]
    sizes = sorted({r["texts"] for r in rows})
    if sizes:
        _figure(figures, "memory.smallest", sizes[0], count(sizes[0]))
        _figure(figures, "memory.largest", sizes[-1], count(sizes[-1]))
    for fmt in sorted({r["format"] for r in rows}):
        peaks = [r["peak_rss_mib"] for r in rows if r["format"] == fmt]
        low, high = min(peaks), max(peaks)
        _figure(figures, f"memory.peak_mib.{fmt}", [low, high], _span(low, high, count))
    base = data.get("baseline") or {}
    if base.get("peak_rss_mib") is not None:
        _figure(figures, "memory.baseline_mib", base["peak_rss_mib"], count(base["peak_rss_mib"]))


def _adaptive(data: dict[str, Any], figures: Figures) -> None:
    """From both tables, simulated time (``adaptive.*``) and real time (``adaptive.real.*``):
    the adaptive client's share of each limit over the whole run, start included, its share
    of requests refused, and how many cases met every target."""
    for table_name, prefix in (("simulated", "adaptive"), ("real_time", "adaptive.real")):
        table = data.get(table_name) or {}
        rows = [r for r in table.get("rows") or [] if r["client"] == "adaptive" and r.get("whole")]
        if not rows:
            continue
        shares = [r["whole"]["of_allowance"] for r in rows]
        refused = [r["whole"]["refused_share"] or 0.0 for r in rows]
        _figure(figures, f"{prefix}.cases", len(rows), count(len(rows)))
        low, high = min(shares), max(shares)
        _figure(figures, f"{prefix}.share", [low, high], _span(low, high, percent, " %"))
        _figure(figures, f"{prefix}.refused_max", max(refused), percent(max(refused), 1))
        verdicts = table.get("verdicts") or []
        met = sum(1 for v in verdicts if v.get("met"))
        text = "every" if met == len(verdicts) else f"{met} of {len(verdicts)}"
        _figure(figures, f"{prefix}.targets_met", met, text)


def _batch(data: dict[str, Any], figures: Figures) -> None:
    verdicts = data.get("verdicts") or []
    if not verdicts:
        return
    gap = max(0.0, 1 - min(v["auto_of_best"] for v in verdicts))
    _figure(figures, "batch.auto_gap_max", gap, percent(gap, 1))
    rows = data.get("rows") or []
    for v in verdicts:
        if v.get("auto_of_rpm_cap") is None:
            continue
        by = {r["batch"]: r["texts_per_s"] for r in rows if r["case"] == v["case"]}
        if by.get(20) and "auto" in by:
            gain = by["auto"] / by[20]
            _figure(figures, "batch.rpm_gain_vs_20", gain, times(gain))
        _figure(
            figures, "batch.auto_of_rpm_cap", v["auto_of_rpm_cap"], percent(v["auto_of_rpm_cap"], 1)
        )


#: Each scenario's figures, from its JSON in a results file.
DERIVERS: dict[str, Callable[[dict[str, Any], Figures], None]] = {
    "throughput": _throughput,
    "fast": _fast,
    "cache": _cache,
    "warm": _warm,
    "memory": _memory,
    "adaptive": _adaptive,
    "batch": _batch,
}


def derive(results: dict[str, Any]) -> Figures:
    """Every figure a results file (``embedsdk bench --json``'s payload) holds, by key."""
    figures: Figures = {}
    _run(results, figures)
    for name, data in (results.get("scenarios") or {}).items():
        if data and name in DERIVERS:
            DERIVERS[name](data, figures)
    return dict(sorted(figures.items()))


# -- checking a quote ---------------------------------------------------------------------


def quoted(markdown: str) -> tuple[str, dict[str, str]]:
    """The figures paragraph of ``markdown`` and the ``key: text`` pairs listed after it.

    Raises ``ValueError`` when the markers are missing or a key line is malformed.
    """
    start = markdown.find(START)
    if start < 0:
        raise ValueError(f"no figures paragraph: {START!r} not found")
    body_start = markdown.index("-->", start) + 3
    keys_at = markdown.find(KEYS, body_start)
    if keys_at < 0:
        raise ValueError(f"the figures paragraph has no {KEYS!r} comment after it")
    keys_end = markdown.index("-->", keys_at)
    pairs: dict[str, str] = {}
    for line in markdown[keys_at + len(KEYS) : keys_end].splitlines():
        if not line.strip():
            continue
        key, sep, text = line.partition(":")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"a figure key line is not 'key: text': {line!r}")
        pairs[key.strip()] = text.strip()
    return markdown[body_start:keys_at], pairs


def _alone(text: str) -> str:
    """A pattern of ``text`` where it is a whole number: not inside a longer one, so that
    "3 %" is not found in "13 %", nor "2" in "2,000" or "1.2"."""
    return r"(?<!\d)(?<!\d[.,])" + re.escape(text) + r"(?!\d)(?![.,]\d)"


def _without(paragraph: str, texts: Iterable[str]) -> str:
    """``paragraph`` with every occurrence of ``texts`` cut out, the longest first."""
    for text in sorted(set(texts), key=len, reverse=True):
        paragraph = re.sub(_alone(text), " ", paragraph)
    return paragraph


def _prose(paragraph: str) -> str:
    """The paragraph as read: without link targets and HTML comments."""
    paragraph = re.sub(r"<!--.*?-->", " ", paragraph, flags=re.S)
    return re.sub(r"\]\([^)]*\)", "]", paragraph)


def problems(markdown: str, results: dict[str, Any]) -> list[str]:
    """What is wrong with the figures paragraph of ``markdown`` against ``results`` (a results
    file's payload): an empty list when every figure it quotes is the file's."""
    try:
        paragraph, pairs = quoted(markdown)
    except ValueError as exc:
        return [str(exc)]
    figures = results.get("figures") or {}
    found = []
    prose = _prose(paragraph)
    for key, text in pairs.items():
        if key not in figures:
            found.append(f"{key}: not in the results file (run the scenario that measures it)")
        elif figures[key]["text"] != text:
            found.append(
                f"{key}: the README says {text!r}, the results file {figures[key]['text']!r}"
            )
        if not re.search(_alone(text), prose):
            found.append(f"{key}: {text!r} is listed but not in the paragraph")
    left = re.findall(r"\S*\d\S*", _without(prose, pairs.values()))
    if left:
        found.append(f"numbers in the figures paragraph that no key accounts for: {left}")
    return found
