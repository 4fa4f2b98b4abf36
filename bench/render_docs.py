"""Rewrite the bench figures of the guides and the Ray pages from a results file.

Every figure that docs/guide.en.md, docs/guide.zh.md, docs/ray.en.md and docs/ray.zh.md quote
from a bench run sits between ``<!-- BENCH:name -->`` and ``<!-- /BENCH:name -->``: the
sentence saying which run it is, the tables, and the sentences read from them. This script
renders every block from ``bench/results.json`` (``embedsdk bench --all --json
bench/results.json``), in English or in Chinese after the page's name, and leaves the rest of
each page as it is::

    python bench/render_docs.py [RESULTS]           # rewrite the blocks
    python bench/render_docs.py --check [RESULTS]   # exit 1 with a diff if a block is stale

Where a sentence judges the numbers ("neither ahead throughout", "memory does not grow with
the file"), the judgement is computed here, with other words for when it does not hold.
Standard library only, so that it runs from a checkout without installing anything.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path("bench/results.json")

#: The blocks each page must hold.
GUIDE = ("auto", "run", "speedup", "fast", "cache", "memory", "adaptive", "batch")
PAGES = {"docs/guide.en.md": GUIDE, "docs/guide.zh.md": GUIDE}
PAGES.update({"docs/ray.en.md": ("ray",), "docs/ray.zh.md": ("ray",)})

#: The adaptive scenario's targets, as embedsdk/_bench/adaptive.py and gateway.py judge them
#: (the guides state them outside the blocks).
TARGET_SHARE = 0.9
TARGET_REFUSED = 0.05
FIRST_PER_IN_FLIGHT = 2  # refusals allowed in the first 10 s, per request in flight
MARGIN_POINTS = 2  # how far below plain retries the adaptive client may fall
#: What each Ray worker asks for (``embed_dataset``'s default ``num_cpus``).
RAY_WORKER_CPUS = 0.25

OPEN, CLOSE = "<!-- BENCH:{} -->", "<!-- /BENCH:{} -->"
MARKER = re.compile(r"<!-- (/?)BENCH:([\w-]+) -->")

Data = dict[str, Any]
Words = tuple[str, str]  # English, Chinese


class RenderError(ValueError):
    """A page or a results file the blocks cannot be rendered from; the message says where."""


class MissingData(RenderError):
    """The results lack what a block needs; :func:`render_page` adds the page and the block."""


# -- words and numbers -------------------------------------------------------------------------


def in_en(lang: str) -> bool:
    if lang not in ("en", "zh"):
        raise RenderError(f"unknown language {lang!r}: 'en' or 'zh'")
    return lang == "en"


def say(lang: str, en: str, zh: str, /, **fields: Any) -> str:
    """``en`` or ``zh``, with ``fields`` filled in."""
    return (en if in_en(lang) else zh).format(**fields)


def either(lang: str, holds: bool, yes: Words, no: Words, /, **fields: Any) -> str:
    """:func:`say` the words ``yes`` when ``holds``, else ``no``."""
    return say(lang, *(yes if holds else no), **fields)


def count(n: float) -> str:
    """``20,000``."""
    return f"{round(n):,}"


def pct(x: float, digits: int = 0) -> str:
    """``74 %`` for 0.74."""
    return f"{x * 100:.{digits}f} %"


def times(x: float, digits: int | None = None) -> str:
    """``1.66×`` below 2, ``3.2×`` below 10, ``85×`` from 10 on (or ``digits`` decimals)."""
    if digits is None:
        digits = 2 if x < 2 else 1 if x < 10 else 0
    return f"{x:.{digits}f}×"


def bei(lang: str, text: str) -> str:
    """``3.2×`` as the Chinese prose writes it, ``3.2 倍``."""
    return text if in_en(lang) else text.replace("×", " 倍")


def span(values: Iterable[float], show: Callable[[float], str], unit: str = "") -> str:
    """``17–32×``: the lowest and the highest value as ``show`` writes them, ``unit`` once;
    one figure when both read the same."""
    found = list(values)
    low, high = (show(v).removesuffix(unit) for v in (min(found), max(found)))
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def pct_span(values: Iterable[float], digits: int = 0) -> str:
    return span(values, lambda v: pct(v, digits), " %")


def listed(lang: str, items: Sequence[str], oxford: bool = False, zh: str = "和") -> str:
    """``a, b and c`` / ``甲、乙和丙``; ``zh``: the last joint, or every joint if punctuation."""
    if len(items) < 2:
        return "".join(items)
    if not in_en(lang):
        return zh.join(items) if zh in "，；、" else f"{'、'.join(items[:-1])}{zh}{items[-1]}"
    return f"{', '.join(items[:-1])}{',' if oxford and len(items) > 2 else ''} and {items[-1]}"


def number(lang: str, n: float) -> str:
    """``five`` / ``五`` up to ten, digits beyond."""
    words = (
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"],
        "零一两三四五六七八九十",
    )
    return words[0 if in_en(lang) else 1][int(n)] if n == int(n) and 0 <= n <= 10 else f"{n:,g}"


def texts(lang: str, n: int) -> str:
    """``200,000 texts`` / ``20 万条``."""
    if in_en(lang):
        return f"{n:,} texts"
    return f"{n // 10_000:,} 万条" if n >= 10_000 and n % 10_000 == 0 else f"{n:,} 条"


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# -- wrapping ----------------------------------------------------------------------------------

EN_WIDTH, ZH_WIDTH = 95, 100  # Chinese: display columns, a Chinese character counting two
_CLOSING = "，。、；：！？）」』】》%"
_OPENING = "（「『【《"
_UNIT = re.compile(r"(?<=\d) (?=(?:%|×|ms|s|MiB|MB)(?![\w-]))")  # kept on the number's line
_NBSP = "\u00a0"


def wrap_en(text: str, first: str = "", rest: str = "") -> str:
    glued = _UNIT.sub(_NBSP, text)
    lines = textwrap.wrap(
        glued,
        EN_WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines).replace(_NBSP, " ")


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in "WF"


def _width(text: str) -> int:
    return sum(2 if _wide(c) else 1 for c in text)


def _atoms(text: str) -> list[tuple[str, bool]]:
    """Each Chinese character alone, each run of other characters whole; with whether a space
    came before it."""
    atoms: list[tuple[str, bool]] = []
    space = False
    for char in text:
        if char == " ":
            space = True
        elif _wide(char) or not atoms or space or _wide(atoms[-1][0][-1]):
            atoms.append((char, space))
            space = False
        else:
            atoms[-1] = (atoms[-1][0] + char, atoms[-1][1])
    return atoms


def _units(text: str) -> list[tuple[str, bool]]:
    """The atoms joined where a Chinese line may not end: before closing punctuation, after
    opening punctuation, between a number and its unit, and between a number or a word and the
    Chinese character after it (``64 条``)."""
    units: list[tuple[str, bool]] = []
    for atom, space in _atoms(text):
        before = units[-1][0] if units else ""
        glued = bool(before) and (
            atom[0] in _CLOSING
            or before[-1] in _OPENING
            or (space and not _wide(before[-1]) and _wide(atom[0]))
            or (space and _UNIT.match(f"{before[-1]} {atom}", 1) is not None)
        )
        if glued:
            units[-1] = (before + (" " if space else "") + atom, units[-1][1])
        else:
            units.append((atom, space))
    return units


def wrap_zh(text: str, first: str = "", rest: str = "") -> str:
    """``text`` filled to 100 display columns; closing punctuation may hang past them."""
    lines, line = [], first
    for unit, space in _units(text):
        gap = " " if space and line.strip() else ""
        if line.strip() and _width(line + gap + unit.rstrip(_CLOSING)) > ZH_WIDTH:
            lines.append(line)
            line = rest + unit
        else:
            line += gap + unit
    return "\n".join([*lines, line])


def zh_spaced(text: str) -> str:
    """A space between a Chinese character and a Latin letter, a digit, a sign or a quote."""
    text = re.sub(r"([\u4e00-\u9fff])([A-Za-z0-9`\"+])", r"\1 \2", text)
    return re.sub(r"([A-Za-z0-9`\"%])([\u4e00-\u9fff])", r"\1 \2", text)


def para(lang: str, text: str) -> str:
    return wrap_en(text) if in_en(lang) else wrap_zh(zh_spaced(text))


def bullets(lang: str, items: Iterable[str]) -> str:
    if in_en(lang):
        return "\n".join(wrap_en(item, "- ", "  ") for item in items if item)
    return "\n".join(wrap_zh(zh_spaced(item), "- ", "  ") for item in items if item)


def table(heads: Sequence[str], align: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; ``align``: each column's rule, ``---`` or ``---:``."""
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def right(n: int) -> list[str]:
    """The rules of a table whose first column is text and whose ``n`` others are figures."""
    return ["---"] + ["---:"] * n


def block(*parts: str) -> str:
    """The parts, a blank line between them."""
    return "\n\n".join(p for p in parts if p)


# -- the run -----------------------------------------------------------------------------------


def scenario(results: Data, name: str) -> Data:
    found: Data | None = (results.get("scenarios") or {}).get(name)
    if not found:
        raise MissingData(
            f"the results have no {name!r} scenario (run `embedsdk bench --scenario {name}`)"
        )
    return found


def provenance(results: Data) -> Data:
    prov: Data | None = results.get("provenance")
    if not prov or not prov.get("commit") or not prov.get("started"):
        raise MissingData("the results have no provenance (commit, start): run the bench again")
    return prov


def machine(results: Data) -> Data:
    found: Data = provenance(results).get("machine") or results.get("machine") or {}
    if not found.get("cpus"):
        raise MissingData("the results do not say how many cores the machine had")
    return found


def busy(results: Data) -> bool:
    return bool((provenance(results).get("load") or {}).get("busy"))


MONTHS = "January February March April May June July August September October November December"


def run_fields(lang: str, results: Data) -> Data:
    """The run's ``date``, ``commit``, ``kind`` (full or quick), ``load`` and ``cores``."""
    prov = provenance(results)
    year, month, day = (int(p) for p in prov["started"][:10].split("-"))
    dirty = say(lang, " with uncommitted changes", "，有未提交的改动") if prov.get("dirty") else ""
    month_name = MONTHS.split()[month - 1]
    return {
        "date": say(lang, f"{day} {month_name} {year}", f"{year} 年 {month} 月 {day} 日"),
        "commit": prov["commit"][:7] + dirty,
        "kind": either(
            lang, bool(results.get("quick")), ("quick", "快速运行"), ("full", "完整运行")
        ),
        "load": either(lang, busy(results), ("busy", "当时机器繁忙"), ("quiet", "当时机器空闲")),
        "cores": machine(results)["cpus"],
        "a": "an" if re.match(r"8|1[18]$", str(machine(results)["cpus"])) else "a",
    }


def header(lang: str, results: Data, scenarios: str, details: str) -> str:
    """The paragraph that opens a block: which scenarios, which run, which machine; then
    ``details``, how the scenario ran."""
    return para(
        lang,
        say(
            lang,
            "Measured by `embedsdk bench --scenario {scenarios}`, a {kind} run, on {date} at "
            "commit {commit}, on {a} {cores}-core machine that was {load}. {details}",
            "数据来自 {date}（提交 {commit}）的 `embedsdk bench --scenario {scenarios}`"
            "（{kind}），{cores} 核机器，{load}。{details}",
            scenarios=scenarios,
            details=details,
            **run_fields(lang, results),
        ),
    )


def block_run(lang: str, results: Data) -> str:
    """The Performance test section's paragraph on the run the tables come from."""
    load, found = provenance(results).get("load") or {}, machine(results)
    detail = []
    if (load.get("before") or [None])[0] is not None:
        detail.append(
            say(lang, "load average {x:g} before the run", "运行前负载 {x:g}", x=load["before"][0])
        )
    if load.get("others_cores") is not None:
        detail.append(
            say(
                lang,
                "other processes used {x:g} cores on average during it",
                "运行期间其他进程平均占 {x:g} 个核",
                x=load["others_cores"],
            )
        )
    names = ("python", "aiohttp", "numpy", "openai", "langchain-openai")
    versions = [f"{'Python' if n == 'python' else n} {found[n]}" for n in names if found.get(n)]
    memory = scenario(results, "memory")["settings"]["batch_size"]
    limits = next(t["settings"]["batch_size"] for t in scenario(results, "adaptive").values())
    others = either(
        lang,
        memory == limits,
        ("{m} for memory and rate limits", "内存和限速场景 {m}"),
        ("{m} for memory, {l} for rate limits", "内存场景 {m}，限速场景 {l}"),
        m=memory,
        l=limits,
    )
    text = say(
        lang,
        "The tables below are that file: one {kind} run of `embedsdk bench --all --json "
        "bench/results.json` at commit {commit} on {date}, on {a} {cores}-core {system} machine "
        "{running}{detail}{versions}. The simulated provider runs in a child process. Each "
        "table's first lines say how it was run. All but the batch table give every client the "
        "same fixed batch size (the bench's `--batch-size`, {ours}; {others}), so that all send "
        "the same requests. The bench's printed tables, with more columns, are in "
        "[bench/README.md](../bench/README.md#results).",
        "下面的表格就是这个文件：{date}在提交 {commit} 上{kind}一次 `embedsdk bench --all "
        "--json bench/results.json` 的结果，机器是一台 {cores} 核 {system}，{running}"
        "{detail}{versions}。模拟服务运行在子进程里。每张表开头几行说明了它的做法。除批大小"
        "那张表外，所有客户端都用同样的固定批大小（基准测试的 `--batch-size`，{ours}；"
        "{others}），以便发出同样的请求。基准测试自己打印的表格（列更多）见 "
        "[bench/README.md](../bench/README.md#results)。",
        system=str(found.get("platform") or "").split("-")[0],
        running=either(
            lang,
            busy(results),
            ("with other work running", "当时有别的任务在跑"),
            ("with nothing else running", "当时没有别的任务在跑"),
        ),
        detail=say(lang, " ({d})", "（{d}）", d=say(lang, "; ", "，").join(detail))
        if detail
        else "",
        versions=say(lang, ", with {v}", "，环境为 {v}", v=listed(lang, versions, zh="、"))
        if versions
        else "",
        ours=scenario(results, "throughput")["settings"]["batch_size"],
        others=others,
        **run_fields(lang, results),
    )
    return para(lang, text)


# -- throughput and fast -----------------------------------------------------------------------

#: The clients of the throughput and fast scenarios, as the docs name them.
CLIENTS = {
    "serial": ("serial", "串行"),
    "threads": ("thread pool", "线程池"),
    "async": ("async", "异步"),
    "raw": ("raw aiohttp", "纯 aiohttp"),
    "openai": ("openai-python", "openai-python"),
    "langchain": ("langchain-openai", "langchain-openai"),
}
OURS = ("threads", "async")


def name(lang: str, client: str) -> str:
    """``thread pool`` / ``线程池``."""
    return CLIENTS[client][0 if in_en(lang) else 1]


def runs_by(data: Data, scenario_name: str) -> dict[int, dict[str, Data]]:
    """Each size's runs by client; every client of :data:`CLIENTS` must have run."""
    found: dict[int, dict[str, Data]] = {}
    for r in data.get("runs") or []:
        found.setdefault(r["size"], {})[r["client"]] = r
    for size in data["settings"]["sizes"]:
        missing = [c for c in CLIENTS if c not in found.get(size, {})]
        if missing:
            raise MissingData(
                f"the {scenario_name} scenario has no run of {', '.join(missing)} at {size:,} "
                "texts (the bench extra brings openai-python and langchain-openai)"
            )
    return found


def fewer_in_flight(lang: str, data: Data, scenario_name: str) -> str:
    """`` (serial and langchain-openai: 1)``: the clients with fewer requests in flight."""
    s = data["settings"]
    groups: dict[int, list[str]] = {}
    for client, r in runs_by(data, scenario_name)[s["sizes"][0]].items():
        if r["concurrency"] != s["concurrency"]:
            groups.setdefault(r["concurrency"], []).append(name(lang, client))
    parts = [say(lang, "{c}: {n}", "{c}为 {n}", c=listed(lang, v), n=k) for k, v in groups.items()]
    return say(lang, " ({p})", "（{p}）", p=say(lang, "; ", "；").join(parts)) if parts else ""


def where(lang: str, sizes: Sequence[int], every: Sequence[int]) -> str:
    """Where something holds among ``every`` size: ``at every size``, ``from 4,000 texts on``
    (every size from there), ``at 10, 50 and 200 texts``."""
    if list(sizes) == list(every):
        return say(lang, "at every size", "在各个规模下")
    if len(sizes) > 1 and list(sizes) == list(every)[-len(sizes) :]:
        return say(lang, "from {n:,} texts on", "从 {n:,} 条起", n=sizes[0])
    return say(lang, "at {s} texts", "在 {s} 条时", s=listed(lang, [f"{n:,}" for n in sizes]))


def block_speedup(lang: str, results: Data) -> str:
    data = scenario(results, "throughput")
    s, runs = data["settings"], runs_by(data, "throughput")
    columns = ("threads", "async", "raw", "openai", "langchain")
    capital = {"threads": "Thread pool", "async": "Async"} if in_en(lang) else {}
    heads = [say(lang, "Texts", "文本数"), say(lang, "Ceiling", "上限")]
    heads += [capital.get(c, name(lang, c)) for c in columns]
    rows = [
        [f"{size:,}", f"{max(r['ceiling_speedup'] for r in runs[size].values()):g}×"]
        + [speedup_cell(lang, runs[size][c]) for c in columns]
        for size in s["sizes"]
    ]
    details = say(
        lang,
        "{ms:g} ms a request, batches of {batch_size}, {concurrency} in flight{fewer}, median of "
        "{repeat}; each cell: speed-up over embedsdk serial at the same size, in brackets its "
        "share of the ceiling.",
        "延迟 {ms:g} ms，批大小 {batch_size}，{concurrency} 并发{fewer}，取 {repeat} 次的中位数；"
        "每格是相对于同样条数下 embedsdk 串行的加速比，括号里是达到上限的百分比。",
        ms=s["latency_s"] * 1000,
        fewer=fewer_in_flight(lang, data, "throughput"),
        **s,
    )
    items = [reached(lang, data), serial_pace(lang, data), ours_pace(lang, data)]
    items.append(not_ahead(lang, data))
    return block(
        header(lang, results, "throughput", details),
        table(heads, ["---:"] * len(heads), rows),
        bullets(lang, items),
    )


def speedup_cell(lang: str, run: Data) -> str:
    if run["ceiling_speedup"] <= 1:
        return f"{run['speedup']:.2f}×"
    share = pct(run["speedup_efficiency"])
    return say(lang, "{x:.2f}× ({s})", "{x:.2f}×（{s}）", x=run["speedup"], s=share)


def reached(lang: str, data: Data) -> str:
    """The thread pool's and async's speed-ups where requests can overlap, by ceiling."""
    groups: list[tuple[float, list[str]]] = []
    for size, runs in sorted(runs_by(data, "throughput").items()):
        top = max(r["ceiling_speedup"] for r in runs.values())
        if top <= 1:
            continue
        got = bei(lang, span((runs[c]["speedup"] for c in OURS), lambda v: times(v, 1), "×"))
        unit = say(lang, " texts", "") if not groups else ""
        text = say(lang, "{x} at {n:,}{unit}", "{n:,} 条 {x}", x=got, n=size, unit=unit)
        if groups and groups[-1][0] == top:
            groups[-1][1].append(text)
        else:
            groups.append((top, [text]))
    parts = [
        say(
            lang,
            "{t} (ceiling {c:g}×)",
            "{t}（上限 {c:g} 倍）",
            t=say(lang, listed(lang, t), "，".join(t)),
            c=c,
        )
        for c, t in groups
    ]
    return say(
        lang,
        "The thread pool and async reach {p}.",
        "线程池和异步实测：{p}。",
        p=say(lang, "; ", "；").join(parts),
    )


def serial_pace(lang: str, data: Data) -> str:
    """Serial against its own ceiling, from the first size whose batches are all full."""
    s, runs = data["settings"], runs_by(data, "throughput")
    full = s["batch_size"] / s["latency_s"]
    at_full = [n for n in s["sizes"] if abs(runs[n]["serial"]["ceiling_texts_per_s"] - full) < 1e-6]
    if not at_full:
        return ""
    serial = [runs[n]["serial"] for n in s["sizes"] if n >= at_full[0]]
    return say(
        lang,
        "Serial itself runs at {share} of its own ceiling from {n:,} texts on (one batch of "
        "{batch_size} per {ms:g} ms: {rate} texts/s).",
        "串行本身从 {n:,} 条起达到自身上限的 {share}（每 {ms:g} ms 一批 {batch_size} 条，"
        "每秒 {rate} 条）。",
        share=pct_span(r["efficiency"] for r in serial),
        n=at_full[0],
        ms=s["latency_s"] * 1000,
        rate=span((r["texts_per_s"] for r in serial), count),
        **s,
    )


def ours_pace(lang: str, data: Data) -> str:
    """The thread pool and async at the two largest sizes in texts/s; how far apart they are,
    and whether one is ahead at every size."""
    s, runs = data["settings"], runs_by(data, "throughput")
    mine = [runs[n][c] for n in s["sizes"][-2:] for c in OURS]
    gaps, ahead = [], set()
    for size in s["sizes"]:
        a, t = (runs[size][c]["texts_per_s"] for c in ("async", "threads"))
        gaps.append(max(a, t) / min(a, t) - 1)
        ahead.add("async" if a > t else "threads" if t > a else "")
    lead = say(lang, "neither ahead throughout", "没有哪个始终领先")
    if ahead in ({"threads"}, {"async"}):
        leader = (
            say(lang, "the thread pool", "线程池") if "threads" in ahead else name(lang, "async")
        )
        lead = say(lang, "{x} ahead throughout", "{x}始终领先", x=leader)
    return say(
        lang,
        "In texts per second, at {where} texts the thread pool and async deliver {rate} texts/s: "
        "{share} of the {top} texts/s ceiling ({concurrency} × {batch_size} texts ÷ "
        "{latency_s:g} s). The two are within {gap} of each other at every size, {lead}.",
        "换算成吞吐：{where} 条时，线程池和异步每秒处理 {rate} 条，是每秒 {top} 条上限"
        "（{concurrency} × {batch_size} 条 ÷ {latency_s:g} 秒）的 {share}。两者在各个规模下相差"
        "都在 {gap} 以内，{lead}。",
        where=listed(lang, [f"{n:,}" for n in s["sizes"][-2:]]),
        rate=span((r["texts_per_s"] for r in mine), count),
        share=pct_span(r["efficiency"] for r in mine),
        top=count(mine[-1]["ceiling_texts_per_s"]),
        gap=pct(max(gaps), 1),
        lead=lead,
        **s,
    )


def faster(lang: str, data: Data, a: str, b: str, sizes: Sequence[int], digits: int) -> str:
    """Where ``a`` is faster than ``b`` and by how much, then where it is slower: ``0.1–5.2 %
    faster than async at 10 and 50 texts and 0.7–2.4 % slower from 4,000 texts on``."""
    runs, every = runs_by(data, "throughput"), data["settings"]["sizes"]
    gaps = {n: runs[n][a]["texts_per_s"] / runs[n][b]["texts_per_s"] - 1 for n in sizes}
    said: list[str] = []
    for sign, en, zh in ((1, "faster", "快"), (-1, "slower", "慢")):
        found = {n: sign * g for n, g in gaps.items() if sign * g > 0}
        if found:
            said.append(
                say(
                    lang,
                    "{g} {en}{than} {w}",
                    "{w}比{b}{zh} {g}",
                    g=pct_span(found.values(), digits),
                    w=where(lang, list(found), every),
                    than="" if said else f" than {name(lang, b)}",
                    b=name(lang, b),
                    en=en,
                    zh=zh,
                )
            )
    return say(lang, " and ", "，").join(said)


def not_ahead(lang: str, data: Data) -> str:
    """Raw aiohttp against async, async against openai-python, langchain-openai's pace."""
    runs, sizes = runs_by(data, "throughput"), data["settings"]["sizes"]
    overlap = [n for n in sizes if runs[n]["async"]["ceiling_speedup"] > 1]
    pace = span((runs[n]["langchain"]["speedup"] for n in sizes), lambda v: times(v, 2), "×")
    return say(
        lang,
        "Where we are not ahead: the raw aiohttp loop, which has no retries, checks, pacing or "
        "cache, is {raw}. Async is {peer}. langchain-openai sends its chunks one after another, "
        "so it runs at {pace} serial's speed.",
        "我们并不领先的地方：纯 aiohttp 循环没有重试、校验、限速和缓存，{raw}。异步{peer}。"
        "langchain-openai 逐块依次发送，速度是串行的 {pace}。",
        raw=faster(lang, data, "raw", "async", sizes, 1),
        peer=faster(lang, data, "async", "openai", overlap, 0),
        pace=bei(lang, pace),
    )


def more(lang: str, x: float) -> str:
    """``4 % more`` / ``多处理 4 %`` (fewer below zero)."""
    if x >= 0:
        return say(lang, "{p} more", "多处理 {p}", p=pct(x))
    return say(lang, "{p} fewer", "少处理 {p}", p=pct(-x))


def block_fast(lang: str, results: Data) -> str:
    data = scenario(results, "fast")
    s = data["settings"]
    size = s["sizes"][0]
    runs = runs_by(data, "fast")[size]
    cpu = {c: r["median_cpu_s"] / runs["async"]["median_cpu_s"] for c, r in runs.items()}
    rate = {c: r["texts_per_s"] / runs["async"]["texts_per_s"] - 1 for c, r in runs.items()}
    details = say(
        lang,
        "Latency {ms:g} ms, {dim} dimensions, {n:,} texts, batches of {batch_size}, {concurrency} "
        "in flight{fewer}; CPU seconds of the client process (`time.process_time()`), median of "
        "{repeat}.",
        "延迟 {ms:g} ms，{dim} 维，{n:,} 条文本，批大小 {batch_size}，{concurrency} 并发{fewer}；"
        "客户端进程的 CPU 秒数（`time.process_time()`），取 {repeat} 次的中位数。",
        ms=s["latency_s"] * 1000,
        n=size,
        fewer=fewer_in_flight(lang, data, "fast"),
        **s,
    )
    heads = say(
        lang,
        "Client|Vectors/s|CPU s per 100,000 vectors|vs embedsdk async",
        "客户端|向量/秒|每 10 万个向量的 CPU 秒|相对 embedsdk 异步",
    ).split("|")
    rows = []
    for c in ("async", "threads", "serial", "raw", "openai", "langchain"):
        label = name(lang, c)
        if c in ("async", "threads", "serial"):
            label = say(lang, "embedsdk ({c})", "embedsdk（{c}）", c=label)
        per_100k = runs[c]["median_cpu_s"] / size * 100_000
        rows.append([label, count(runs[c]["texts_per_s"]), f"{per_100k:.2f}", times(cpu[c], 2)])
    peers = {
        f"{p}_{o}": bei(lang, times(cpu[p] / cpu[o], 1))
        for p in ("openai", "langchain")
        for o in ("async", "threads")
    }
    items = [
        say(
            lang,
            "openai-python spends {openai_async} the CPU of embedsdk async and {openai_threads} "
            "that of the thread pool; langchain-openai {langchain_async} and {langchain_threads}.",
            "openai-python 的 CPU 开销是 embedsdk 异步的 {openai_async}、线程池的 "
            "{openai_threads}；langchain-openai 分别是 {langchain_async}和 {langchain_threads}。",
            **peers,
        ),
        say(
            lang,
            "The thread pool, whose workers are the async core's own, takes {t:.2f}× the CPU of "
            "async and delivers {more} vectors per second; serial takes {s:.2f}×.",
            "线程池的工作者就是异步核心自己的工作者：CPU 开销为异步的 {t:.2f} 倍，每秒{more}的"
            "向量；串行为 {s:.2f} 倍。",
            t=cpu["threads"],
            s=cpu["serial"],
            more=more(lang, rate["threads"]),
        ),
        either(
            lang,
            cpu["raw"] < 1,
            (
                "Where we are not ahead: the raw aiohttp loop uses {cpu} less CPU than async and "
                "delivers {more} vectors per second: that is the price of the checks, retries, "
                "pacing and cache it does without.",
                "我们并不领先的地方：纯 aiohttp 循环省掉了校验、重试、限速和缓存，CPU 比异步少用 "
                "{cpu}，每秒{more}的向量，这就是这些功能的代价。",
            ),
            (
                "The raw aiohttp loop, without checks, retries, pacing or cache, uses {cpu} more "
                "CPU than async and delivers {more} vectors per second.",
                "纯 aiohttp 循环省掉了校验、重试、限速和缓存，CPU 却比异步多用 {cpu}，每秒{more}的"
                "向量。",
            ),
            cpu=pct(abs(1 - cpu["raw"])),
            more=more(lang, rate["raw"]),
        ),
    ]
    return block(
        header(lang, results, "fast", details),
        table(heads, right(3), rows),
        bullets(lang, items),
    )


# -- cache and warm ----------------------------------------------------------------------------

VARIANTS = {"async": ("async", "异步"), "threads": ("thread pool", "线程池")}


def block_cache(lang: str, results: Data) -> str:
    cache, warm = scenario(results, "cache"), scenario(results, "warm")
    s, rows, store = cache["settings"], cache.get("rows") or [], cache.get("store")
    if not rows or not store:
        raise MissingData("the cache scenario has no rows or no figures of the store alone")
    variant = {r["variant"]: VARIANTS[r["variant"]][0 if in_en(lang) else 1] for r in rows}
    details = say(
        lang,
        "{texts:,} texts, {dim} dimensions, {ms:g} ms latency, batches of {batch_size}, "
        "{concurrency} in flight; medians of {repeat} cold and {warm} warm runs. A client with no "
        "overhead needs {ceiling_cold_s:.2f} s for the cold run.",
        "{texts:,} 条文本，{dim} 维，延迟 {ms:g} ms，批大小 {batch_size}，{concurrency} 并发；"
        "首次运行取 {repeat} 次、再次运行取 {warm} 次的中位数。没有任何额外开销的客户端首次运行"
        "需要 {ceiling_cold_s:.2f} 秒。",
        ms=s["latency_s"] * 1000,
        warm=s["repeat"] * s["warm_runs"],
        **s,
    )
    heads = say(
        lang,
        "Variant|Cold, cache off|Cold, cache on|Cache cost|Warm (all hits)|Warm vectors/s"
        "|Warm speed-up",
        "方式|首次（无缓存）|首次（开缓存）|缓存开销|再次（全部命中）|再次：向量/秒|再次：加速比",
    ).split("|")
    sec = say(lang, " s", " 秒")
    cold = [
        [
            variant[r["variant"]],
            f"{median(r['cold_nocache_s']):.2f}{sec}",
            f"{median(r['cold_s']):.2f}{sec}",
            f"{r['cache_cost'] * 100:+.1f} %",
            f"{median(r['warm_s']):.3f}{sec}",
            count(r["warm_vectors_per_s"]),
            times(r["warm_speedup"]),
        ]
        for r in rows
    ]
    requests = warm.get("warm_requests")
    intro = say(
        lang,
        "**Warm path** (`--scenario warm`): {texts:,} texts of {dim} dimensions, every one a hit, "
        "median of {pairs} alternating pairs; exact: {exact}, requests sent by the warm calls: "
        "{requests}; the store alone (`--scenario cache`): {vectors:,} vectors of {store_dim} "
        "dimensions, median of {store_pairs} alternating pairs.",
        "**再次读取的路径**（`--scenario warm`）：{texts:,} 条 {dim} 维的向量，全部命中，取 "
        "{pairs} 对交替运行的中位数；结果逐位一致：{exact}，再次调用发出的请求数：{requests}；"
        "单独的存储（`--scenario cache`）：{vectors:,} 条 {store_dim} 维的向量，取 {store_pairs} "
        "对交替运行的中位数。",
        texts=warm["texts"],
        dim=warm["dim"],
        pairs=warm["settings"]["pairs"],
        exact=either(lang, bool(warm.get("exact")), ("yes", "是"), ("NO", "否")),
        requests="–" if requests is None else requests,
        vectors=store["vectors"],
        store_dim=store["dim"],
        store_pairs=len(store["cache_s"]),
    )
    items = [warm_run(lang, rows, warm), cache_cost(lang, rows, variant)]
    items.append(warm_share(lang, warm, store))
    return block(
        header(lang, results, "cache,warm", details),
        table(heads, right(6), cold),
        para(lang, intro),
        warm_table(lang, warm, store),
        bullets(lang, items),
    )


def warm_table(lang: str, warm: Data, store: Data) -> str:
    heads = say(
        lang,
        "Read, every text a hit|Vectors|Median|Vectors/s|Share of the bare `SELECT`'s speed",
        "读取（全部命中）|向量数|中位数|向量/秒|速度占直接 `SELECT` 的比例",
    ).split("|")
    names = say(
        lang,
        "warm `get_batch_embeddings_async`|bare SQLite `SELECT … WHERE key IN (…)`, same file|"
        "`VectorCache.get_many` alone|bare `SELECT … IN (…)`, a plain table",
        "再次调用 `get_batch_embeddings_async`|直接执行 SQLite 的 `SELECT … WHERE key IN (…)`"
        "（同一个文件）|单独的 `VectorCache.get_many`|直接 `SELECT … IN (…)`（普通表）",
    ).split("|")
    n, v = warm["texts"], store["vectors"]
    warm_ms, raw_ms = (median(warm[k]) * 1000 for k in ("warm_s", "raw_s"))
    cache_s, raw_s = median(store["cache_s"]), median(store["raw_s"])
    rows = [
        [names[0], f"{n:,}", f"{warm_ms:.1f} ms", count(warm["warm_per_s"]), pct(warm["ratio"])],
        [names[1], f"{n:,}", f"{raw_ms:.1f} ms", count(warm["raw_per_s"]), "–"],
        [names[2], f"{v:,}", f"{cache_s * 1000:.0f} ms", count(v / cache_s), pct(store["ratio"])],
        [names[3], f"{v:,}", f"{raw_s * 1000:.0f} ms", count(v / raw_s), "–"],
    ]
    return table(heads, right(4), rows)


def warm_run(lang: str, rows: list[Data], warm: Data) -> str:
    requests = warm.get("warm_requests")
    exact = bool(warm.get("exact")) and all(r.get("warm_exact") for r in rows)
    return say(
        lang,
        "A warm run, every text a hit, is {x} faster than the cold one ({rate} vectors/s); "
        "{sent} {same}.",
        "再次运行时全部命中，比首次运行快 {x}（每秒 {rate} 个向量）；{sent}，{same}。",
        x=bei(lang, span((r["warm_speedup"] for r in rows), times, "×")),
        rate=span((r["warm_vectors_per_s"] for r in rows), count),
        sent=either(
            lang,
            requests == 0,
            (
                "it sends no request (0 requests from the warm calls) and",
                "不发任何请求（再次调用发出的请求数为 0）",
            ),
            ("the warm calls sent {n} requests, and", "再次调用发出了 {n} 个请求"),
            n=requests,
        ),
        same=either(
            lang,
            exact,
            ("gives the same vectors, bit for bit", "结果与首次逐位相同"),
            ("its vectors were NOT the same, bit for bit", "结果与首次并不逐位相同"),
        ),
    )


def cache_cost(lang: str, rows: list[Data], variant: dict[str, str]) -> str:
    costs = [
        say(
            lang,
            "{c:+.1f} % ({v})",
            "{c:+.1f} %（{v}）",
            c=r["cache_cost"] * 100,
            v=variant[r["variant"]],
        )
        for r in rows
    ]
    return say(
        lang,
        "The cache costs the cold run {costs}: the time to write every vector to it.",
        "首次运行时缓存的开销是 {costs}，也就是把每个向量写进缓存的时间。",
        costs=listed(lang, costs),
    )


def warm_share(lang: str, warm: Data, store: Data) -> str:
    same = pct(store["ratio"]) == pct(warm["ratio"])
    return say(
        lang,
        "The warm call reads at {share} of the speed of a bare SQLite `SELECT` of the same rows in "
        "the same file (the target is {target}), {alone}. The rest is hashing the texts into "
        "keys, building the result matrix (a new {mb:.0f} MB array), validation and "
        "de-duplication.",
        "再次调用的读取速度是在同一个文件上对同样的行直接执行 SQLite `SELECT` 的 {share}（目标是 "
        "{target}），{alone}。其余的时间花在把文本哈希成键、构建结果矩阵（一个新的 {mb:.0f} MB "
        "数组）、输入校验和去重上。",
        share=pct(warm["ratio"]),
        target=pct(warm["settings"]["target"]),
        alone=either(
            lang,
            same,
            ("as does the store alone", "单独的存储也是 {s}"),
            ("the store alone at {s}", "单独的存储是 {s}"),
            s=pct(store["ratio"]),
        ),
        mb=warm["texts"] * warm["dim"] * 4 / 1e6,
    )


# -- memory ------------------------------------------------------------------------------------


def block_memory(lang: str, results: Data) -> str:
    data = scenario(results, "memory")
    s = data["settings"]
    rows = [r for r in data.get("rows") or [] if r.get("peak_rss_mib") is not None]
    if not rows:
        raise MissingData("the memory scenario has no rows with a peak")
    formats = [f for f in s["formats"] if any(r["format"] == f for r in rows)]
    sizes = sorted({r["texts"] for r in rows})
    peak = {(r["texts"], r["format"]): r["peak_rss_mib"] for r in rows}
    base = (data.get("baseline") or {}).get("peak_rss_mib")
    details = say(
        lang,
        "Short texts, one a line; {dim} dimensions, batches of {batch_size}, {concurrency} in "
        "flight, latency {ms:g} ms, cache {on} (`{cache_switch}`), one run per size and format. "
        "Peak resident memory of the `embedsdk embed` process{base}.",
        "短文本，每行一条；{dim} 维，批大小 {batch_size}，{concurrency} 并发，延迟 {ms:g} ms，"
        "缓存{on}（`{cache_switch}`），每种规模、每种格式运行一次。统计 `embedsdk embed` 进程的"
        "峰值常驻内存{base}。",
        ms=s["latency_s"] * 1000,
        on=either(lang, s["cache"] == "off", ("off", "关闭"), ("on", "开启")),
        base=""
        if base is None
        else say(
            lang,
            " (`embed --help` alone: {m:.0f} MiB)",
            "（只运行 `embed --help`：{m:.0f} MiB）",
            m=base,
        ),
        **s,
    )
    heads = [say(lang, "Texts", "文本数")] + [f"`.{f}`" for f in formats]
    cells = [
        [f"{n:,}"] + [f"{peak[(n, f)]:.0f} MiB" if (n, f) in peak else "–" for f in formats]
        for n in sizes
    ]
    items = [memory_flat(lang, sizes, formats, peak), memory_checked(lang, rows)]
    items.append(memory_times(lang, results, sizes[-1], formats, rows))
    return block(
        header(lang, results, "memory", details),
        table(heads, ["---:"] * len(heads), cells),
        bullets(lang, items),
    )


def memory_flat(
    lang: str, sizes: list[int], formats: list[str], peak: dict[tuple[int, str], float]
) -> str:
    """The peak of each format from the smallest input to the largest, and whether it stays
    put (within 5 %)."""
    if len(sizes) < 2:
        return ""
    by = {f: [peak[(n, f)] for n in sizes if (n, f) in peak] for f in formats}
    peaks = [(f, span(v, lambda x: f"{x:.0f}")) for f, v in by.items()]
    text = either(
        lang,
        all(max(v) <= 1.05 * min(v) for v in by.values()),
        (
            "{X} times the input, the same peak, in every format: {peaks}, {at} texts alike "
            "(within {spread:.1f} MiB): memory does not grow with the file.",
            "输入多了{x}倍，各种格式的峰值内存都不变：{peaks}，{at}都一样（相差不到 "
            "{spread:.1f} MiB）：内存占用不随文件大小增长。",
        ),
        (
            "The peak grows with the input ({x} times as many texts, {at}): {peaks}.",
            "峰值内存随输入增长（输入多了{x}倍，{at}）：{peaks}。",
        ),
        x=number(lang, sizes[-1] / sizes[0]),
        X=number(lang, sizes[-1] / sizes[0]).capitalize(),
        peaks=say(
            lang,
            listed(lang, [f"{p} MiB for `.{f}`" for f, p in peaks]),
            "，".join(f"`.{f}` {p} MiB" for f, p in peaks),
        ),
        at=listed(lang, [say(lang, "at {n:,}", texts(lang, n), n=n) for n in sizes]),
        spread=max(max(v) - min(v) for v in by.values()),
    )
    return text + say(
        lang,
        " Parquet's extra is pyarrow and the row group being written.",
        "Parquet 多出的是 pyarrow 本身和正在写的 row group。",
    )


def memory_checked(lang: str, rows: list[Data]) -> str:
    wrong = [f"{r['texts']:,} `.{r['format']}`" for r in rows if not r.get("output_ok")]
    return either(
        lang,
        not wrong,
        (
            "Every output's shape and sample rows were checked against the simulator's vectors.",
            "每种输出的形状和抽查的行都与模拟服务的向量核对过。",
        ),
        (
            "Checked against the simulator's vectors, these outputs were wrong: {w}.",
            "与模拟服务的向量核对，这些输出有误：{w}。",
        ),
        w=listed(lang, wrong),
    )


def memory_times(
    lang: str, results: Data, largest: int, formats: list[str], rows: list[Data]
) -> str:
    took = {r["format"]: r["seconds"] for r in rows if r["texts"] == largest}
    mine = [f for f in formats if f in took]
    if not mine:
        return ""
    zh = [f"`.{f}` {took[f]:.1f} 秒" for f in mine]
    zh[0] = f"写 `.{mine[0]}` 用了 {took[mine[0]]:.1f} 秒"
    return say(
        lang,
        "{lead}: {n} took {took} (about {rates} texts/s).",
        "{lead}：{n}{took}（约为每秒 {rates} 条）。",
        lead=either(
            lang,
            busy(results),
            (
                "The machine was busy, so the times are only a rough guide",
                "这次机器繁忙，耗时只能粗略参考",
            ),
            ("The machine was quiet, so the times hold", "这次机器空闲，所以耗时也可以参考"),
        ),
        n=texts(lang, largest),
        took=say(lang, listed(lang, [f"{took[f]:.1f} s to `.{f}`" for f in mine]), "，".join(zh)),
        rates=listed(lang, [count(round(largest / took[f], -2)) for f in mine]),
    )


# -- adaptive rate control and nginx -----------------------------------------------------------

#: The adaptive cases (the bench's name, less a hint): kind, names in the Chinese table, and in
#: English and Chinese prose. A bucket's seconds are its burst (1 s unless named), a window's
#: its length.
LIMITS = (
    (r"token bucket, ([\d.]+) s burst", "bucket", "令牌桶，{0} 秒突发量",
     "the bucket of {0} s of burst", "{0} 秒突发量的令牌桶"),
    (r"token bucket on tokens", "bucket", "按 token 的令牌桶",
     "the bucket on tokens", "按 token 的令牌桶"),
    (r"RPM and TPM buckets", "bucket", "RPM 和 TPM 令牌桶",
     "the RPM and TPM buckets", "RPM 和 TPM 令牌桶"),
    (r"fixed ([\d.]+) s window", "fixed", "{0} 秒固定窗口",
     "the fixed {0} s window", "{0} 秒固定窗口"),
    (r"sliding ([\d.]+) s window", "sliding", "{0} 秒滑动窗口",
     "the sliding {0} s window", "{0} 秒滑动窗口"),
    (r"(\d+) in flight, (\d+) beyond", "cap", "最多 {0} 个在途，超出回 {1}",
     "the cap of {0} with {1}", "最多 {0} 个在途、超出回 {1} 的并发上限"),
)  # fmt: skip


def limit_case(case_name: str) -> Data:
    """An adaptive case (``token bucket, 1 s burst + Retry-After``): its kind, its seconds, its
    hint, whether a told limit must stay under 1 % refused there (a bucket of >= 1 s of burst,
    a window of >= 10 s), and its names: ``en``, ``zh`` (tables), ``prose_en``, ``prose_zh``."""
    base, _, hint = case_name.partition(" + ")
    for pattern, kind, zh, prose_en, prose_zh in LIMITS:
        m = re.fullmatch(pattern, base)
        if m is None:
            continue
        seconds = 0.0 if kind == "cap" else float(m.group(1)) if m.groups() else 1.0
        found = {"kind": kind, "seconds": seconds, "hint": hint, "en": case_name}
        found["told_target"] = kind != "cap" and seconds >= (1 if kind == "bucket" else 10)
        found["zh"] = zh.format(*m.groups()) + (f" + {hint}" if hint else "")
        found["prose_en"] = prose_en.format(*m.groups()) + (f" with `{hint}`" if hint else "")
        found["prose_zh"] = (f"带 `{hint}` 的" if hint else "") + prose_zh.format(*m.groups())
        return found
    raise RenderError(f"no names for the rate-limit case {case_name!r}: add them to LIMITS")


def label(lang: str, case: Data, prose: bool = False) -> str:
    """A case's name in ``lang``'s table, or in its prose."""
    return str(case[f"prose_{lang}" if prose else lang])


class LimitTable:
    """One adaptive table (simulated or real time): its settings, its verdicts and cases, its
    rows by case and client."""

    def __init__(self, data: Data) -> None:
        self.settings: Data = data["settings"]
        self.real = self.settings["time"] != "simulated"
        self.verdicts: list[Data] = data.get("verdicts") or []
        self.cases = [(v, limit_case(v["name"])) for v in self.verdicts]
        self.rows = {(r["case"], r["client"]): r for r in data.get("rows") or []}

    def whole(self, case: str, client: str) -> Data | None:
        """The client's figures over the whole run of the case; None if it did not run, or
        gave up (those rows say so themselves)."""
        row = self.rows.get((case, client)) or {}
        return None if row.get("ended_s") is not None else row.get("whole")

    def of(self, client: str) -> list[Data]:
        return [r["whole"] for (_, c), r in self.rows.items() if c == client and r.get("whole")]


def refused(found: Data, digits: int = 1) -> str:
    return pct(found["refused_share"] or 0.0, digits)


def cell(lang: str, row: Data | None) -> str:
    """``100 % / 2.3 %``: share of the allowance / share refused, over the whole run."""
    found = (row or {}).get("whole")
    if row is None or found is None:
        return "–"
    text = f"{pct(found['of_allowance'])} / {refused(found)}"
    if row.get("ended_s") is None:
        return text
    return say(
        lang, "{t} (gave up at {s:.0f} s)", "{t}（{s:.0f} 秒时放弃）", t=text, s=row["ended_s"]
    )


ZH_MISSES = (
    (r"(\S+)% < (\S+)%", r"\1 % < \2 %"),
    (r"told (\S+)% refused", r"告知限额 \1 % 被拒"),
    (r"(\S+)% refused", r"\1 % 被拒"),
    (r"(\d+) refused in the first 10 s", r"前 10 秒被拒 \1 次"),
    (r"below plain", "低于普通重试"),
)


def target_cell(lang: str, verdict: Data) -> str:
    if verdict["met"]:
        return say(lang, "yes", "是")
    if in_en(lang):
        return "**NO**: " + ", ".join(re.sub(r"(\d)%", r"\1 %", m) for m in verdict["misses"])
    said = []
    for miss in verdict["misses"]:
        zh = next((re.sub(p, z, miss) for p, z in ZH_MISSES if re.fullmatch(p, miss)), None)
        if zh is None:
            raise RenderError(f"no Chinese for the adaptive verdict {miss!r}: add it to ZH_MISSES")
        said.append(zh)
    return "**否**：" + "，".join(said)


COLUMNS = {
    "adaptive": ("embedsdk (default, adaptive)", "embedsdk（默认，自适应）"),
    "plain": ("`adaptive=False`", "`adaptive=False`"),
    "told": ("told the limit", "告知限额"),
    "openai": ("openai-python", "openai-python"),
}


def column(lang: str, client: str) -> str:
    if client not in COLUMNS:
        raise RenderError(f"no column name for the adaptive contender {client!r}: see COLUMNS")
    return COLUMNS[client][0 if in_en(lang) else 1]


def limit_table(lang: str, t: LimitTable) -> str:
    clients = list(t.settings["clients"])
    title = say(
        lang,
        "**In {kind} time**, {seconds:.0f} s a case (the table took {wall} s{cpu}):",
        "**{kind}时间**，每个场景 {seconds:.0f} 秒（这张表用了 {wall} 秒{cpu}）：",
        kind=either(lang, t.real, ("real", "真实"), ("simulated", "模拟")),
        wall=count(t.settings["wall_s"]),
        cpu=""
        if t.real
        else say(lang, ", {c} s of CPU", "，{c} 秒 CPU", c=count(t.settings["cpu_s"])),
        **t.settings,
    )
    heads = [say(lang, "Server's limit (not told)", "服务端的限制（不告知）")]
    heads += [column(lang, c) for c in clients] + [say(lang, "Targets", "目标")]
    rows = [
        [
            label(lang, case),
            *(cell(lang, t.rows.get((v["case"], c))) for c in clients),
            target_cell(lang, v),
        ]
        for v, case in t.cases
    ]
    return block(title, table(heads, [*right(len(clients)), "---"], rows))


#: The nginx limits by key: in the tables (English, Chinese), in prose (English, Chinese).
GATES = {
    "req": ("limit_req 10 r/s, burst 10", "limit_req 10 r/s，burst 10",
            "under `limit_req` with a burst", "有 burst 的 `limit_req` 下"),
    "req0": ("limit_req 10 r/s, no burst", "limit_req 10 r/s，无 burst",
             "under `limit_req` without a burst", "没有 burst 的 `limit_req` 下"),
    "conn": ("limit_conn 4", "limit_conn 4", "under `limit_conn 4`", "`limit_conn 4` 下"),
}  # fmt: skip


def nginx_rows(nginx: Data) -> list[tuple[tuple[str, ...], Data | None, Data | None]]:
    """Each nginx limit: its names (:data:`GATES`), the adaptive client's row, plain's."""
    rows = {(r["gate"], r["client"]): r for r in nginx.get("rows") or []}
    found = []
    for key in dict.fromkeys(gate for gate, _ in rows):
        if key not in GATES:
            raise RenderError(f"no names for the nginx limit {key!r}: add them to GATES")
        found.append((GATES[key], rows.get((key, "adaptive")), rows.get((key, "plain"))))
    return found


def nginx_table(lang: str, nginx: Data) -> str:
    title = say(
        lang,
        "**Behind nginx** ({v}), real time, {seconds:.0f} s a case:",
        "**在 nginx 后面**（{v}），真实时间，每个场景 {seconds:.0f} 秒：",
        v=str(nginx.get("nginx", "nginx")).removeprefix("nginx version: "),
        seconds=nginx["seconds"],
    )
    heads = [
        say(lang, "nginx limit (not told)", "nginx 的限制（不告知）"),
        column(lang, "adaptive"),
    ]
    heads += [column(lang, "plain"), say(lang, "Targets", "目标")]
    rows = []
    for names, ours, plain in nginx_rows(nginx):
        found, met = (ours or {}).get("whole"), "–"
        if found is not None:
            good = found["of_allowance"] >= TARGET_SHARE
            good = good and (found["refused_share"] or 0) <= TARGET_REFUSED
            met = either(lang, good, ("yes", "是"), ("**NO**", "**否**"))
        rows.append([names[0 if in_en(lang) else 1], cell(lang, ours), cell(lang, plain), met])
    return block(title, table(heads, [*right(2), "---"], rows))


def block_adaptive(lang: str, results: Data) -> str:
    data, nginx = scenario(results, "adaptive"), scenario(results, "nginx")
    tables = [LimitTable(data[k]) for k in ("simulated", "real_time") if data.get(k)]
    if not tables:
        raise MissingData("the adaptive scenario has neither a simulated nor a real-time table")
    s = tables[0].settings
    details = say(
        lang,
        "Batches of {batch_size}, {in_flight} in flight, {ms:g} ms a request (+ up to {jitter:g} "
        "ms). Each cell: texts delivered as a share of what the server's limiter allows / share "
        "of requests refused (429 or 503), over the whole run from the client's first request, "
        "start included.",
        "批大小 {batch_size}，{in_flight} 并发，每个请求 {ms:g} ms（另加至多 {jitter:g} ms）。"
        "每格：交付的文本占限速器允许量的比例 / 被拒绝（429 或 503）的请求占比，统计从客户端"
        "第一个请求起的整个运行，包括开头。",
        ms=s["latency_s"] * 1000,
        jitter=s["jitter_s"] * 1000,
        **s,
    )
    sim = next((t for t in tables if not t.real), None)
    main = tables[-1]  # real time when it ran: what a user sees
    items = [summary(lang, t, sim) for t in reversed(tables)]
    items += [plain_retries(lang, main), told_limit(lang, main), behind_nginx(lang, nginx)]
    return block(
        header(lang, results, "adaptive,nginx", details),
        *(limit_table(lang, t) for t in tables),
        nginx_table(lang, nginx),
        bullets(lang, items),
    )


def summary(lang: str, t: LimitTable, sim: LimitTable | None) -> str:
    """One table: the adaptive client's ranges (real time), how many cases met every target,
    the cases that missed and why; for real time, the fixed windows in simulated time."""
    n, met = len(t.verdicts), sum(1 for v in t.verdicts if v["met"])
    text = either(
        lang,
        t.real,
        (
            "**Real time, whole run** (what a user sees): ",
            "**真实时间、整个运行**（用户实际看到的）：",
        ),
        ("**Simulated time**: ", "**模拟时间**："),
    )
    if t.real:
        mine = t.of("adaptive")
        text += say(
            lang,
            "the adaptive client gets {share} of every limit with {refused} of its requests "
            "refused, and at most {first} refusals in the first 10 s (the target is {target}). ",
            "自适应的客户端在每种限速下拿到 {share}，被拒绝的请求占 {refused}，前 10 秒内最多被"
            "拒绝 {first} 次（目标是 {target} 次）。",
            share=pct_span(w["of_allowance"] for w in mine),
            refused=pct_span((w["refused_share"] or 0.0 for w in mine), 1),
            first=max(r["refused_first"] or 0 for (_, c), r in t.rows.items() if c == "adaptive"),
            target=FIRST_PER_IN_FLIGHT * t.settings["in_flight"],
        )
    text += either(
        lang,
        met == n,
        ("All {n} cases meet every target.", "{n} 个场景都达到了全部目标。"),
        ("{met} of the {n} cases meet every target.", "{n} 个场景中有 {met} 个达到全部目标。"),
        n=n,
        met=met,
    )
    missed = [(v, case) for v, case in t.cases if not v["met"]]
    said = [missed_case(lang, t, v, case) for v, case in missed]
    if said:
        text += either(
            lang,
            len(said) == 1,
            (" The case that misses: {s}.", "没有达到的：{s}。"),
            (" The cases that miss: {s}.", "没有达到的：{s}。"),
            s=say(lang, "; ".join(said[:-1]) + "; and " + said[-1], "；".join(said))
            if len(said) > 1
            else said[0],
        )
    return text + (fixed_windows(lang, missed, sim) if t.real and sim else "")


def beside(x: float, target: float) -> int:
    """Decimals to show the share ``x`` with beside ``target``: 1, or 2 where 1 would read as
    the target itself (``5.01 %`` refused, not ``5.0 %``, against a target of 5 %)."""
    return 2 if pct(x, 1) == pct(target, 1) else 1


def missed_case(lang: str, t: LimitTable, verdict: Data, case: Data) -> str:
    """A case that missed a target: which targets, and the adaptive client's and plain retries'
    figures over the whole run."""
    ours, plain = t.whole(verdict["case"], "adaptive"), t.whole(verdict["case"], "plain")
    reasons = [reason(lang, m, ours, plain, t.settings) for m in verdict["misses"]]
    figures = ""
    if ours is not None:
        share, share_off = ours["of_allowance"], ours["refused_share"] or 0.0
        figures = say(
            lang,
            ": {s} with {r} refused",
            "：{s}，{r} 被拒",
            s=pct(share, beside(share, TARGET_SHARE)),
            r=pct(share_off, beside(share_off, TARGET_REFUSED)),
        )
    if ours is not None and plain is not None:
        figures += say(
            lang,
            ", against plain retries' {s} with {r} refused",
            "，普通重试为 {s}，{r} 被拒",
            s=pct(plain["of_allowance"], 1),
            r=refused(plain),
        )
    return say(
        lang,
        "the **{name}**, {why}{figures}",
        "**{name}**，{why}{figures}",
        name=label(lang, case, prose=True).removeprefix("the "),
        why=listed(lang, reasons, zh="、"),
        figures=figures,
    )


def reason(lang: str, miss: str, ours: Data | None, plain: Data | None, settings: Data) -> str:
    """Which target a verdict's miss (``87% < 90%``, ``below plain``...) is about."""
    told = re.fullmatch(r"told (\S+)% refused", miss)
    if told:
        return say(
            lang,
            "the told limit {x} % refused (the target is < 1 %)",
            "告知限额 {x} % 被拒（目标 < 1 %）",
            x=told.group(1),
        )
    if miss.endswith("% < 90%"):
        return say(lang, "under {p}", "低于 {p}", p=pct(TARGET_SHARE))
    if miss.endswith("refused in the first 10 s"):
        return say(
            lang,
            "over {n} refusals in the first 10 s",
            "前 10 秒被拒超过 {n} 次",
            n=FIRST_PER_IN_FLIGHT * settings["in_flight"],
        )
    if miss.endswith("% refused"):
        return say(lang, "over {p} refused", "被拒超过 {p}", p=pct(TARGET_REFUSED))
    if miss == "below plain" and ours is not None and plain is not None:
        return say(
            lang,
            "{gap:.1f} points below plain retries (the margin is {m})",
            "比普通重试低 {gap:.1f} 个百分点（允许的差距是 {m} 个）",
            gap=(plain["of_allowance"] - ours["of_allowance"]) * 100,
            m=MARGIN_POINTS,
        )
    return miss


def fixed_windows(lang: str, missed: list[tuple[Data, Data]], sim: LimitTable) -> str:
    """For the fixed windows missed in real time: what the simulated table gave them."""
    found = []
    for v, case in missed:
        got = sim.whole(v["case"], "adaptive")
        if case["kind"] == "fixed" and not case["hint"] and got is not None:
            share, window = pct(got["of_allowance"]), label(lang, case, prose=True)
            found.append(say(lang, "{s} of {n}", "{n}是 {s}", s=share, n=window))
    if not found:
        return ""
    return say(
        lang,
        " How much of a fixed window the client gets depends on where the window's edges fall "
        "against its start: the simulated table gives {f}.",
        "固定窗口能拿到多少，取决于窗口的边界相对客户端开始的时刻落在哪里：模拟时间的表里，{f}。",
        f=listed(lang, found, zh="，"),
    )


def behind(lang: str, t: LimitTable, client: str, template: Words) -> list[str]:
    """The cases where ``client`` got more than the margin less than the adaptive client (and
    did not give up), in ``template`` (fields ``n``, the case; ``t``, theirs; ``o``, ours)."""
    found = []
    for v, case in t.cases:
        theirs, ours = t.whole(v["case"], client), t.whole(v["case"], "adaptive")
        if theirs and ours and theirs["of_allowance"] < ours["of_allowance"] - MARGIN_POINTS / 100:
            found.append(
                say(
                    lang,
                    *template,
                    n=label(lang, case, prose=True),
                    t=pct(theirs["of_allowance"]),
                    o=pct(ours["of_allowance"]),
                )
            )
    return found


def plain_retries(lang: str, t: LimitTable) -> str:
    """Plain retries: how often refused, by kind of limit; where they fall behind; where they
    give up. Then openai-python, where it ran."""
    groups: dict[str, list[float]] = {"short": [], "long": [], "cap": []}
    hinted, gave_up = [], []
    for v, case in t.cases:
        row = t.rows.get((v["case"], "plain")) or {}
        if row.get("ended_s") is not None:
            gave_up.append((case, row))
        elif row.get("whole") and case["hint"] == "Retry-After":
            base = label(lang, limit_case(case["en"].partition(" + ")[0]), prose=True)
            share = refused(row["whole"])
            hinted.append(say(lang, "{r} on {n}", "{n}下 {r}", r=share, n=base))
        elif row.get("whole") and not case["hint"]:
            long = case["kind"] in ("fixed", "sliding") and case["seconds"] > 1
            kind = "cap" if case["kind"] == "cap" else "long" if long else "short"
            groups[kind].append(row["whole"]["refused_share"] or 0.0)
    names = {
        "short": ("on the buckets and the 1 s windows", "令牌桶和 1 秒窗口下"),
        "long": ("on the longer windows", "更长的窗口下"),
        "cap": ("on the caps", "并发上限下"),
    }
    parts = [(names[k][0 if in_en(lang) else 1], pct_span(v)) for k, v in groups.items() if v]
    if not parts:
        return ""
    first = say(
        lang,
        "{p} of their requests refused {w}",
        "{w}有 {p} 的请求被拒绝",
        w=parts[0][0],
        p=parts[0][1],
    )
    rest = [say(lang, "{p} {w}", "{w} {p}", w=w, p=p) for w, p in parts[1:]]
    text = listed(lang, [first, *rest], zh="，")
    if hinted:
        text += say(
            lang,
            " (with `Retry-After`, {h})",
            "（带 `Retry-After` 时，{h}）",
            h=listed(lang, hinted, zh="，"),
        )
    tails = []
    lagging = behind(lang, t, "plain", ("{n} ({t} against {o})", "{n}（{t}，自适应为 {o}）"))
    if lagging:
        tails.append(
            say(
                lang,
                "they fall more than {m} points behind the adaptive client on {l}",
                "在{l}下落后超过 {m} 个百分点",
                m=MARGIN_POINTS,
                l=listed(lang, lagging),
            )
        )
    if gave_up:
        tails.append(giving_up(lang, t, gave_up, they=not tails))
    return say(
        lang,
        "**Plain retries** (`adaptive=False`, `max_retries=20`) in {kind} time have {text}{tails}.",
        "**普通重试**（`adaptive=False`，`max_retries=20`）在{kind}时间里，{text}{tails}。",
        kind=either(lang, t.real, ("real", "真实"), ("simulated", "模拟")),
        text=text,
        tails=say(
            lang, "; " + ", and ".join(tails) if tails else "", "".join(f"；{x}" for x in tails)
        ),
    ) + openai_retries(lang, t)


def giving_up(lang: str, t: LimitTable, gave_up: list[tuple[Data, Data]], they: bool) -> str:
    said = [
        say(
            lang,
            "on {n} after {s:.0f} s ({share} of it, {r} refused)",
            "在{n}下 {s:.0f} 秒后放弃（拿到 {share}，{r} 被拒）",
            n=label(lang, case, prose=True),
            s=row["ended_s"],
            share=pct(row["whole"]["of_allowance"]),
            r=refused(row["whole"]),
        )
        for case, row in gave_up
    ]
    why = ""
    if any(case["hint"] == "Retry-After" for case, _ in gave_up):
        why = say(
            lang,
            ": when the server's `Retry-After` is exact, the {n} requests refused together all "
            "come back at the instant named, and most are refused again",
            "：服务端给出准确的 `Retry-After` 时，一起被拒绝的 {n} 个请求在指定的同一时刻一起"
            "回来，大多再次被拒",
            n=t.settings["in_flight"],
        )
    they_ = "they " if they else ""
    return say(
        lang,
        "{they}give up {s}{why}",
        "{s}{why}",
        they=they_,
        s=listed(lang, said, zh="；"),
        why=why,
    )


def openai_retries(lang: str, t: LimitTable) -> str:
    mine = t.of("openai")
    if not mine:
        return ""
    short = behind(lang, t, "openai", ("{n} ({t}, against our {o})", "{n}（{t}，我们是 {o}）"))
    return say(
        lang,
        " **openai-python** (its 2 retries, its own backoff) has {r} of its requests "
        "refused{short}.",
        "**openai-python**（2 次重试，自己的退避）有 {r} 的请求被拒绝{short}。",
        r=pct_span(w["refused_share"] or 0.0 for w in mine),
        short=""
        if not short
        else say(
            lang,
            ", and falls more than {m} points short of ours on {s}",
            "，在{s}下比我们低 {m} 个百分点以上",
            m=MARGIN_POINTS,
            s=listed(lang, short),
        ),
    )


def told_limit(lang: str, t: LimitTable) -> str:
    """The told limit on the long buckets, and its refusals where the server enforces it; then
    the 60 s windows after the first 10 s."""
    told = [(case, t.whole(v["case"], "told")) for v, case in t.cases]
    told = [(case, w) for case, w in told if w is not None]
    long = [(c["seconds"], w) for c, w in told if c["kind"] == "bucket" and c["seconds"] > 1]
    long = sorted((p for p in long), key=lambda p: -p[0])
    enforced = [w["refused_share"] or 0.0 for c, w in told if c["told_target"]]
    text = ""
    if long:
        got = [pct(w["of_allowance"]) for _, w in long]
        en = [f"{g} of one with {x:g} s" for g, (x, _) in zip(got, long)]
        en[0] = f"{got[0]} of a bucket with {long[0][0]:g} s of burst"
        zh = [f"{x:g} 秒突发量的令牌桶下 {g}" for g, (x, _) in zip(got, long)]
        zh[0] = f"{long[0][0]:g} 秒突发量的令牌桶下拿到 {got[0]}"
        text = say(
            lang,
            "**Told the limit** (`rpm=` / `tpm=`) gets {l}, by design: a told rpm is paced evenly "
            "over the minute and does not spend the burst.",
            "**告知限额**（`rpm=` / `tpm=`）在{l}，这是设计如此：告知的 rpm 在一分钟内均匀发送，"
            "不去用掉突发量。",
            l=say(lang, listed(lang, en), "，".join(zh)),
        )
    if enforced:
        text += say(
            lang,
            " Where the server enforces the told figure as a bucket of ≥ 1 s of burst or a window "
            "of ≥ 10 s, it is refused at most {m} of the time (the target is < 1 %).",
            "服务端以 ≥ 1 秒突发量的令牌桶或 ≥ 10 秒的窗口执行同一个限额时，它被拒绝的请求最多 "
            "{m}（目标 < 1 %）。",
            m=pct(max(enforced), 1),
        )
    after = {}
    for v, case in t.cases:
        row = t.rows.get((v["case"], "adaptive")) or {}
        minute = case["kind"] in ("fixed", "sliding") and case["seconds"] == 60
        if minute and not case["hint"] and row.get("after"):
            after[case["kind"]] = pct(row["after"]["of_allowance"])
    if set(after) == {"fixed", "sliding"}:
        text += say(
            lang,
            " The bench's printed tables also give each case after its first 10 s; on the 60 s "
            "windows that figure means little ({fixed} of the fixed one, {sliding} of the sliding "
            "one), because the minute's allowance is spent in the first seconds.",
            "基准测试打印的表格还给出每个场景前 10 秒之后的数字；在 60 秒窗口下这个数字意义不大"
            "（固定窗口 {fixed}，滑动窗口 {sliding}），因为一分钟的配额在最初几秒就用完了。",
            **after,
        )
    return text.strip()


def behind_nginx(lang: str, nginx: Data) -> str:
    ours, plain = [], []
    for names, mine, theirs in nginx_rows(nginx):
        w = (mine or {}).get("whole")
        if w is not None:
            first = not ours
            where_ = names[2 if in_en(lang) else 3]
            ours.append(
                say(
                    lang,
                    "{s} with {r}{refused} {where}",
                    "{where}{got}{s}，{r} 被拒",
                    s=pct(w["of_allowance"]),
                    r=refused(w),
                    where=where_,
                    refused=" refused" if first else "",
                    got="拿到 " if first else "",
                )
            )
        w = (theirs or {}).get("whole")
        if w is not None:
            plain.append((pct(w["of_allowance"]), refused(w, 0)))
    if not ours:
        return ""
    text = say(
        lang,
        "**Behind nginx**: {o}",
        "**在 nginx 后面**：{o}。",
        o=say(lang, ", ", "；").join(ours),
    )
    if plain:
        text += say(
            lang,
            "; plain retries get {s}, with {r} of their requests refused",
            "普通重试分别拿到 {s}，被拒绝的请求占 {r}。",
            s=listed(lang, [p[0] for p in plain]),
            r=listed(lang, [p[1] for p in plain]),
        )
    return text + say(lang, ".", "")


# -- batch size --------------------------------------------------------------------------------

#: The batch cases: the bench's name, kind, then English and Chinese words for its table row,
#: for the limit (``a request limit``) and for the place (``under 2,000 RPM``).
BATCH_CASES = (
    (r"RPM ([\d,]+)", "rpm", "{0} RPM", "{0} RPM",
     "a request limit", "请求数限制", "under {0} RPM", "{0} RPM 下"),
    (r"TPM ([\d,]+)", "tpm", "{0} TPM", "{0} TPM",
     "a token limit", "token 数限制", "under a token limit", "token 数限制下"),
    (r"no limit", "none", "no limit", "没有限制",
     "no limit", "没有限制", "with no limit", "没有限制时"),
    (r"no limit, latency \+ ([\d.]+) ms x n\^2", "square",
     "no limit, latency + {0} ms × n²", "没有限制，延迟 + {0} ms × n²",
     "a latency that grows faster than the batch", "延迟比批增长得更快",
     "when latency grows faster than the batch", "延迟比批增长得更快时"),
    (r"RPM ([\d,]+), cap not known \((\d+)\)", "cap",
     "{0} RPM, cap not known ({1})", "{0} RPM，批上限未知（{1}）",
     "a cap it was not told", "服务端的批上限没有告诉客户端",
     "under {0} RPM with a cap it was not told", "{0} RPM、批上限未告知时"),
)  # fmt: skip


def batch_case(lang: str, case_name: str) -> Data:
    """A batch case (``RPM 2,000``): ``kind``, ``name`` (its row), ``limit``, ``at``, and the
    numbers in its name (``groups``)."""
    for pattern, kind, *words in BATCH_CASES:
        m = re.fullmatch(pattern, case_name)
        if m:
            found = [w.format(*m.groups()) for w in words][0 if in_en(lang) else 1 :: 2]
            return dict(zip(("name", "limit", "at"), found), kind=kind, groups=m.groups())
    raise RenderError(f"no names for the batch case {case_name!r}: add them to BATCH_CASES")


class Batches:
    """The batch scenario: settings, verdicts (one a case), texts/s by case and batch."""

    def __init__(self, data: Data) -> None:
        if not data.get("verdicts"):
            raise MissingData("the batch scenario has no verdicts")
        self.settings: Data = data["settings"]
        self.verdicts: list[Data] = data["verdicts"]
        self.rows = {(r["case"], r["batch"]): r for r in data.get("rows") or []}
        self.fixed = sorted({b for _, b in self.rows if b != "auto"})

    def rate(self, verdict: Data, batch: Any) -> float:
        """Texts per second of ``batch`` (a size or "auto") in the verdict's case; 0 if absent."""
        return float((self.rows.get((verdict["case"], batch)) or {}).get("texts_per_s") or 0)

    def settled(self, verdict: Data) -> float | None:
        """The median batch "auto" sent in the verdict's case."""
        found: float | None = (self.rows.get((verdict["case"], "auto")) or {}).get("median_batch")
        return found

    def of(self, lang: str, kind: str) -> tuple[Data, Data] | None:
        """The first case of ``kind``: its verdict and its names."""
        found = [(v, batch_case(lang, v["case"])) for v in self.verdicts]
        return next(((v, c) for v, c in found if c["kind"] == kind), None)

    def gap(self) -> float:
        """How far "auto" fell behind the best fixed size, at most."""
        return max(0.0, 1 - min(v["auto_of_best"] for v in self.verdicts))


def block_batch(lang: str, results: Data) -> str:
    b = Batches(scenario(results, "batch"))
    s = b.settings
    details = say(
        lang,
        "Simulated time: a request of n texts answered after {ms:g} ms + {per:g} ms × n (+ up "
        "to {jitter:g} ms), at most {cap} texts a request, {in_flight} in flight, {seconds:.0f} s "
        "a contender against a fresh server. Each cell: texts per second after the first "
        "{warm_up_s:.0f} s, in brackets its share of the best fixed batch.",
        "模拟时间：n 条文本的请求需要 {ms:g} ms + {per:g} ms × n（另加至多 {jitter:g} ms），"
        "每个请求最多 {cap} 条，{in_flight} 个请求同时在途，每个参赛者对着一个新的服务运行 "
        "{seconds:.0f} 秒。每格是前 {warm_up_s:.0f} 秒之后每秒处理的文本数，括号里是占最好的"
        "固定批大小的比例。",
        ms=s["latency_s"] * 1000,
        per=s["per_input_s"] * 1000,
        jitter=s["jitter_s"] * 1000,
        **s,
    )
    heads = [say(lang, "Limit (not told)", "服务端限制（客户端不知道）")]
    heads += [say(lang, "Batch {b}", "批 {b}", b=n) for n in b.fixed] + ['`"auto"`']
    heads += say(
        lang,
        "Auto's batch|Auto / best fixed|Auto / (RPM × {cap})",
        "auto 的批大小|auto / 最好的固定值|auto / (RPM × {cap})",
        **s,
    ).split("|")
    rows = []
    for v in b.verdicts:
        row = [batch_case(lang, v["case"])["name"]]
        for n in [*b.fixed, "auto"]:
            got, share = b.rate(v, n), pct(b.rate(v, n) / b.rate(v, v["best_fixed"]))
            row.append(say(lang, "{r} ({s})", "{r}（{s}）", r=count(got), s=share) if got else "–")
        row.append("–" if b.settled(v) is None else f"{b.settled(v):g}")
        of_cap = v.get("auto_of_rpm_cap")
        rows.append([*row, pct(v["auto_of_best"], 1), "–" if of_cap is None else pct(of_cap, 1)])
    items = [auto_overall(lang, b), auto_under_limits(lang, b)]
    items += [auto_unknown_cap(lang, b), best_fixed(lang, b)]
    return block(
        header(lang, results, "batch", details),
        table(heads, right(len(heads) - 1), rows),
        bullets(lang, items),
    )


def auto_overall(lang: str, b: Batches) -> str:
    caps = [v["auto_of_rpm_cap"] for v in b.verdicts if v.get("auto_of_rpm_cap") is not None]
    reach = say(
        lang,
        ", and reaches {s} of RPM × {cap} under a request limit",
        "，请求数受限时达到 RPM × {cap} 的 {s}",
        s=pct_span(caps, 1) if caps else "",
        **b.settings,
    )
    return say(
        lang,
        '"auto" is within {gap} of the best fixed size in all {n} cases{reach} (targets: within '
        "5 %, and 90 %). Auto's batch is the median size of the requests it sent after the first "
        "{warm_up_s:.0f} s.",
        '{n}种情况下 "auto" 与最好的固定大小相差都在 {gap} 以内{reach}（目标：5 % 以内，以及 '
        "90 %）。auto 的批大小是它在前 {warm_up_s:.0f} 秒之后所发请求大小的中位数。",
        gap=pct(b.gap(), 1),
        n=number(lang, len(b.verdicts)),
        reach=reach if caps else "",
        **b.settings,
    )


def auto_under_limits(lang: str, b: Batches) -> str:
    """Under the request limit, what batches of 20 leave; under the token limit, the spread."""
    said = []
    rpm = b.of(lang, "rpm")
    if rpm and b.rate(rpm[0], 20) and b.rate(rpm[0], "auto") and rpm[0].get("auto_of_rpm_cap"):
        v, case = rpm
        auto, small = b.rate(v, "auto"), b.rate(v, 20)
        said.append(
            say(
                lang,
                "{At}, batches of 20 (the old default) use {share} of what the account allows: "
                '"auto" embeds {gain} as many texts for the same number of requests.',
                '{At}，批大小 20（原来的默认值）用到账号允许量的 {share}："auto" 用同样多的请求'
                "处理了 {gain}的文本。",
                At=case["at"][0].upper() + case["at"][1:],
                share=pct(small / (auto / v["auto_of_rpm_cap"])),
                gain=bei(lang, times(auto / small)),
            )
        )
    tpm = b.of(lang, "tpm")
    if tpm:
        rates = [r["texts_per_s"] for (c, _), r in b.rows.items() if c == tpm[0]["case"]]
        spread = pct(max(rates) / min(rates) - 1, 1)
        said.append(
            say(
                lang,
                "Under a token limit every size does the same, within {s}.",
                "token 数受限时各种大小的结果相同，相差不到 {s}。",
                s=spread,
            )
        )
    return say(lang, " ", "").join(said)


def auto_unknown_cap(lang: str, b: Batches) -> str:
    found = b.of(lang, "cap")
    if not found or found[0].get("auto_of_rpm_cap") is None or b.settled(found[0]) is None:
        return ""
    v, case = found
    rpm, cap = case["groups"]
    still = b.settled(v) == int(cap)
    tail = ""
    if b.rate(v, 32):
        share = pct(b.rate(v, 32) / b.rate(v, v["best_fixed"]))
        tail = say(lang, ", where batches of 32 get {s}", "，而批大小 32 为 {s}", s=share)
    return say(
        lang,
        "On a server whose cap of {cap} the client is not told (the generic profile guesses 32), "
        'under {rpm} RPM, "auto" {still}settles at {m:g}: {best} of the best fixed size and '
        "{of_cap} of RPM × {c}{tail}.",
        "服务端的批上限是 {cap} 但客户端不知道（通用配置猜的是 32）时，在 {rpm} RPM 下 "
        '"auto" {still}停在 {m:g}：达到最好的固定大小的 {best}、RPM × {c} 的 {of_cap}{tail}。',
        cap=cap,
        rpm=rpm,
        still=either(lang, still, ("still ", "仍然"), ("", "")),
        m=b.settled(v),
        best=pct(v["auto_of_best"], 1),
        of_cap=pct(v["auto_of_rpm_cap"], 1),
        c=b.settings["cap"],
        tail=tail,
    )


def best_fixed(lang: str, b: Batches) -> str:
    """The best fixed size with no limit and with a latency that grows faster than the batch;
    whether "auto" ever beat the best fixed size."""
    text = ""
    none, square = b.of(lang, "none"), b.of(lang, "square")
    if none and square:
        x, y, v = none[0]["best_fixed"], square[0]["best_fixed"], square[0]
        auto = b.settled(v)
        text = either(
            lang,
            x == y,
            (
                "The best fixed size is {x} both with no limit and when latency grows faster than "
                "the batch.",
                "没有限制时和延迟比批增长得更快时，最好的固定大小都是 {x}。",
            ),
            (
                "The best fixed size depends on the server: {x} with no limit, {y} when latency "
                "grows faster than the batch ({x} then loses {loss}{auto}).",
                "最好的固定大小取决于服务端：没有限制时是 {x}，延迟比批增长得更快时是 {y}（这时 "
                "{x} 少 {loss}{auto}）。",
            ),
            x=x,
            y=y,
            loss=pct(1 - b.rate(v, x) / b.rate(v, y)),
            auto=""
            if auto is None
            else say(lang, '; "auto" settles at {a:g}', '；"auto" 停在 {a:g}', a=auto),
        )
    beaten = [v for v in b.verdicts if v["auto_of_best"] > 1]
    return text + either(
        lang,
        not beaten,
        (
            ' Where we are not ahead: "auto" never beats the best fixed size; its gain is not '
            "having to know which size that is.",
            '我们并不领先的地方："auto" 从来没有超过最好的固定大小；它的好处是不需要知道哪个'
            "大小最好。",
        ),
        (
            ' "auto" beats the best fixed size {at}, by at most {most}.',
            '"auto" 在{at}超过了最好的固定大小，最多 {most}。',
        ),
        at=listed(lang, [batch_case(lang, v["case"])["at"] for v in beaten]),
        most=pct(max([v["auto_of_best"] for v in beaten] or [1]) - 1, 1),
    )


def block_auto(lang: str, results: Data) -> str:
    """The Tuning section's case for "auto", from the batch scenario."""
    b = Batches(scenario(results, "batch"))
    cases = [batch_case(lang, v["case"]) for v in b.verdicts]
    bests = sorted({v["best_fixed"] for v in b.verdicts})
    gains = []
    for v, case in zip(b.verdicts, cases):
        small, auto = b.rate(v, 20), b.rate(v, "auto")
        if small and auto:
            first = not gains
            gains.append(
                either(
                    lang,
                    auto >= small,
                    ("{x}{many} {at}", "{at}{it}{x}"),
                    ("{p} fewer {at}", "{at}少 {p}"),
                    x=bei(lang, times(auto / small)),
                    p=pct(1 - auto / small, 1),
                    many=" as many texts" if first else "",
                    it="它处理的文本是 " if first else " ",
                    at=case["at"],
                )
            )
    limits = [c["limit"] for c in cases]
    text = say(
        lang,
        '**Why "auto" is the default**: in `embedsdk bench --scenario batch` '
        "([below](#batch-size-fixed-or-auto-simulated-time)) it was within {gap} of the best "
        "fixed size in every case, under {limits}, and the best fixed size {same}.{gains}",
        '**为什么默认用 "auto"**：在 `embedsdk bench --scenario batch`（见[性能测试](#性能测试)）'
        "中，无论是{limits}，它与最好的固定大小相差都不超过 {gap}，而各种情况下最好的固定大小"
        "{same}。{gains}",
        gap=pct(b.gap(), 1),
        limits=listed(lang, limits, oxford=True, zh="，还是"),
        same=either(
            lang,
            len(bests) > 1,
            ("was not the same in all of them", "并不相同"),
            ("was {b} in all of them", "都是 {b}"),
            b=bests[0],
        ),
        gains=say(
            lang,
            " Against the old default of 20 it embedded {g}.",
            "与原来的默认值 20 相比，{g}。",
            g=listed(lang, gains, oxford=True, zh="，"),
        )
        if gains
        else "",
    )
    return para(lang, text)


# -- Ray ---------------------------------------------------------------------------------------

#: The Ray contenders: a short key, and their names in the English and Chinese tables.
RAY_CLIENTS = {
    "embedsdk.ray (one leader)": ("leader", "embedsdk.ray (one leader)",
                                  "embedsdk.ray（一个 leader）"),
    "independent clients": ("alone", "independent embedsdk clients", "各自独立的 embedsdk 客户端"),
    "Ray HttpRequestProcessor": ("ray", "Ray `HttpRequestProcessor`", "Ray `HttpRequestProcessor`"),
}  # fmt: skip


def block_ray(lang: str, results: Data) -> str:
    data = scenario(results, "ray")
    rows = data.get("rows") or []
    broken = [f"{r['client']} ({r['workers']} workers): {r['error']}" for r in rows if r["error"]]
    if broken:
        raise MissingData("some Ray runs failed: " + "; ".join(broken))
    unknown = sorted({r["client"] for r in rows} - set(RAY_CLIENTS))
    if unknown:
        raise RenderError(f"no names for the Ray contenders {unknown}: add them to RAY_CLIENTS")
    details = say(
        lang,
        "One simulated provider with a {rpm} requests/min limit (1 s token bucket) the workers "
        "are not told, {batch} texts a request. Share of the limit accepted and share of requests "
        "answered 429, over the whole run (from the first request to the last, the bucket's "
        "burst included) and from the 10th second on.",
        "一个模拟服务商，限流为每分钟 {rpm} 个请求（1 秒的令牌桶），worker 事先不知道；每个请求 "
        "{batch} 条文本。统计被接受的请求占限额的比例，以及被回 429 的请求比例：整个运行（从第一个"
        "请求到最后一个，包括令牌桶的突发量），以及第 10 秒之后。",
        **data,
    )
    heads = say(
        lang,
        "Client|Workers|Share of the limit|429s|Share after 10 s|429s after 10 s",
        "客户端|worker 数|占限额比例|429 比例|10 秒之后占限额比例|10 秒之后 429 比例",
    ).split("|")
    lines = [
        [
            RAY_CLIENTS[r["client"]][1 if in_en(lang) else 2],
            str(r["workers"]),
            pct(r["share"]),
            pct(r["refused"], 1),
            pct(r["share_after_10s"]),
            pct(r["refused_after_10s"], 1),
        ]
        for r in rows
    ]
    return block(
        header(lang, results, "ray", details),
        table(heads, ["---"] * len(heads), lines),
        para(lang, ray_prose(lang, results, rows)),
    )


def ray_prose(lang: str, results: Data, rows: list[Data]) -> str:
    groups: dict[str, list[Data]] = {"leader": [], "alone": [], "ray": []}
    for r in rows:
        groups[RAY_CLIENTS[r["client"]][0]].append(r)
    if not all(groups.values()):
        raise MissingData(
            f"the Ray scenario lacks rows of {[k for k, v in groups.items() if not v]}"
        )

    def shares(key: str, field: str, digits: int = 0) -> str:
        values = [r[field] for r in groups[key]]
        if in_en(lang):
            return pct_span(values, digits)
        low, high = (f"{v * 100:.{digits}f}%" for v in (min(values), max(values)))
        return low if low == high else f"{low}–{high}"  # as the Chinese Ray page writes ranges

    workers = sorted({r["workers"] for r in rows})
    cores, most = machine(results)["cpus"], max(workers)
    placed = int(cores / RAY_WORKER_CPUS)
    text = say(
        lang,
        "In this run one leader got {leader} of the limit with {workers} workers, independent "
        "clients {alone}, and Ray's `HttpRequestProcessor` {ray}: it has `qps` = the limit / N, a "
        "whole number (it rounds down), and sends one request a row (`max_retries=3`){refused}. "
        "One leader's workers had {leader_429} of their requests answered 429 over the whole run "
        "and {leader_after} from the 10th second on; independent clients {alone_429} and "
        "{alone_after}.",
        "这次运行中，{workers} 个 worker 时，一个 leader 拿到限额的 {leader}，各自独立的客户端 "
        "{alone}，Ray 的 `HttpRequestProcessor` {ray}：它的 `qps` = 限额 / N，只能取整数（向下"
        "取整），每行发一个请求（`max_retries=3`）{refused}。一个 leader 的各 worker 在整个运行中"
        "有 {leader_429} 的请求收到 429，第 10 秒之后 {leader_after}；各自独立的客户端分别是 "
        "{alone_429} 和 {alone_after}。",
        workers=listed(lang, [str(w) for w in workers], zh="、"),
        refused=either(
            lang,
            all(r["refused"] == 0 for r in groups["ray"]),
            (", so it is never refused", "，所以从不被拒"),
            (", and had {r} of its requests answered 429", "，有 {r} 的请求收到 429"),
            r=shares("ray", "refused", 1),
        ),
        leader_429=shares("leader", "refused", 1),
        leader_after=shares("leader", "refused_after_10s", 1),
        alone_429=shares("alone", "refused", 1),
        alone_after=shares("alone", "refused_after_10s", 1),
        **{k: shares(k, "share") for k in groups},
    )
    if placed >= most:
        return text
    return text + say(
        lang,
        " At {c:g} CPU a worker, {n} cores place {p} of the {m} workers asked for; the rest wait.",
        "每个 worker 占 {c:g} 个 CPU 时，{n} 个核只能放下所要求的 {m} 个 worker 中的 {p} 个，"
        "其余等待。",
        c=RAY_WORKER_CPUS,
        n=cores,
        p=placed,
        m=most,
    )


# -- pages -------------------------------------------------------------------------------------

BLOCKS: dict[str, Callable[[str, Data], str]] = {
    "auto": block_auto,
    "run": block_run,
    "speedup": block_speedup,
    "fast": block_fast,
    "cache": block_cache,
    "memory": block_memory,
    "adaptive": block_adaptive,
    "batch": block_batch,
    "ray": block_ray,
}


def page_lang(page: str) -> str:
    """``zh`` for ``*.zh.md``, else ``en``."""
    return "zh" if page.endswith(".zh.md") else "en"


def blocks_in(text: str, page: str) -> list[tuple[str, int, int]]:
    """Each block of ``text``: its name, where its body starts (the line after the opening
    marker) and where it ends (at the closing marker's line)."""
    found: list[tuple[str, int, int]] = []
    opened: tuple[str, int] | None = None
    for m in MARKER.finditer(text):
        name, closing = m.group(2), bool(m.group(1))
        own_line = text[m.start() - 1 : m.start()] in ("", "\n") and text[
            m.end() : m.end() + 1
        ] in ("", "\n")
        if not own_line:
            raise RenderError(f"{page}: block {name!r}: {m.group(0)} must be on a line of its own")
        if not closing and opened is not None:
            raise RenderError(
                f"{page}: block {opened[0]!r}: no {CLOSE.format(opened[0])} before {m.group(0)}"
            )
        if not closing:
            opened = (name, m.end() + 1)
        elif opened is None or opened[0] != name:
            raise RenderError(
                f"{page}: block {name!r}: {m.group(0)} without {OPEN.format(name)} before it"
            )
        else:
            found.append((name, opened[1], m.start()))
            opened = None
    if opened is not None:
        raise RenderError(
            f"{page}: block {opened[0]!r}: no {CLOSE.format(opened[0])} after its opening marker"
        )
    return found


def render_page(text: str, page: str, results: Data) -> str:
    """``text``, the page ``page`` (its name says its language, and for the four pages which
    blocks it must hold), with every block rendered from ``results``."""
    found = blocks_in(text, page)
    names = [name for name, _, _ in found]
    for name in PAGES.get(page, ()):
        if name not in names:
            raise RenderError(f"{page}: block {name!r}: {OPEN.format(name)} not found")
    out, done = [], 0
    for name, start, end in found:
        if name not in BLOCKS:
            raise RenderError(f"{page}: block {name!r}: no such block (known: {', '.join(BLOCKS)})")
        if names.count(name) > 1:
            raise RenderError(f"{page}: block {name!r}: more than once")
        try:
            body = BLOCKS[name](page_lang(page), results)
        except MissingData as exc:
            raise RenderError(f"{page}: block {name!r}: {exc}") from None
        out += [text[done:start], body, "\n"]
        done = end
    return "".join([*out, text[done:]])


def render_docs(results: Data, root: Path = ROOT) -> dict[str, tuple[str, str]]:
    """Each page of :data:`PAGES` under ``root``: its text, and that text rendered from
    ``results``."""
    pages = {}
    for page in PAGES:
        path = root / page
        if not path.is_file():
            raise RenderError(f"{page}: not found under {root}")
        old = path.read_text("utf-8")
        pages[page] = (old, render_page(old, page, results))
    return pages


def load_results(path: Path) -> Data:
    try:
        found = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise RenderError(f"{path}: cannot read the results: {exc}") from None
    if not isinstance(found, dict):
        raise RenderError(f"{path}: not a results file (a JSON object)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/render_docs.py",
        description="Rewrite the <!-- BENCH:... --> blocks of the guides and the Ray pages from a "
        "results file.",
    )
    parser.add_argument(
        "results", nargs="?", type=Path, help=f"the results file (default: {RESULTS})"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 with a diff if a page would change",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="the checkout whose docs to render (default: this one)",
    )
    args = parser.parse_args(argv)
    try:
        pages = render_docs(load_results(args.results or args.root / RESULTS), args.root)
    except RenderError as exc:
        print(f"render_docs: error: {exc}", file=sys.stderr)
        return 2
    stale = {page: pair for page, pair in pages.items() if pair[0] != pair[1]}
    for page, (old, new) in stale.items():
        if args.check:
            diff = difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), f"a/{page}", f"b/{page}"
            )
            sys.stdout.writelines(diff)
        else:
            (args.root / page).write_text(new, "utf-8")
            print(f"rewrote {page}")
    if args.check and stale:
        print(
            f"render_docs: {', '.join(stale)}: not what the results give; "
            "run python bench/render_docs.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
