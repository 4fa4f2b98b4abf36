"""``embedsdk bench``: the command line of the benchmark (also ``python bench/run.py``)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

from .._exceptions import ConfigurationError, EmbedSDKError
from . import figures, provenance, report, runner
from .clients import CLIENTS, EXTRA_PEERS, available

#: Scenario names in run order; "main" is accepted for "throughput".
SCENARIOS = (
    "throughput",
    "fast",
    "cache",
    "warm",
    "memory",
    "adaptive",
    "nginx",
    "integrations",
    "batch",
    "batch-api",
    "ray",
)
DEFAULT_SCENARIOS = ("throughput", "fast")

#: Settings that differ between the full run and ``--quick``: (full, quick).
PRESETS: dict[str, tuple[Any, Any]] = {
    "sizes": ([10, 50, 200, 1000, 4000, 5000], [10, 50, 200, 1000]),
    "repeat": (3, 2),  # --quick: about a minute on a 2-core machine
    "fast_texts": (20_000, 2_000),
    "cache_texts": (20_000, 2_000),
    "memory_sizes": ([200_000, 2_000_000], [20_000, 200_000]),
    "integration_texts": (10_000, 2_000),
    "warm_pairs": (15, 7),
}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _seconds_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds separated by commas, got {text!r}"
        ) from None
    if not values or min(values) <= 0 or max(values) > 60:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 60, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def add_bench_parser(sub: Any) -> None:
    """Add the ``bench`` subcommand to the ``embedsdk`` parser."""
    parser = sub.add_parser(
        "bench",
        help="measure speed and CPU against the peers, and more (--scenario)",
        description="Measure embedsdk's serial, thread-pool and async calls against "
        "openai-python, langchain-openai and a bare aiohttp loop on the same texts in one run "
        "(the default scenarios), and with --scenario the cache, memory, rate limits of every "
        "kind, automatic batch sizes, the LangChain and LlamaIndex adapters and Ray. Without "
        "--base-url everything runs against the built-in simulated provider (in a child "
        "process), so no key and no network are needed. Prints tables; writes JSON and PNG "
        "charts under --out. See bench/README.md.",
    )
    add_bench_arguments(parser)
    parser.set_defaults(run=run_bench)


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's flags (shared by ``embedsdk bench`` and ``python bench/run.py``)."""
    _add_run_arguments(parser)
    _add_scenario_arguments(parser)
    _add_output_arguments(parser)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What runs, against which server, and how hard."""
    a = parser.add_argument
    a("--quick", action="store_true", help="smaller sizes: about a minute")
    a(
        "--all",
        action="store_true",
        help="every scenario (as --scenario all): the run that regenerates every figure the "
        "docs quote; over an hour, mostly the adaptive scenario",
    )
    a(
        "--scenario",
        type=_names,
        metavar="NAMES",
        help="comma-separated, from " + ", ".join(SCENARIOS) + ", or all "
        "(default: throughput,fast)",
    )
    a("--base-url", help="a real endpoint (key from the environment) instead of the simulator")
    a("--model", default="BAAI/bge-m3", help="model name (default: %(default)s)")
    a("--sizes", type=_int_list, metavar="N,N,...", help="texts per run (throughput)")
    a(
        "--repeat",
        type=int,
        metavar="R",
        help="repetitions; the median is reported (default: 3, --quick: 2)",
    )
    a(
        "--max-concurrent",
        "--workers",
        dest="concurrency",
        type=int,
        default=10,
        metavar="W",
        help="requests in flight / threads (default: %(default)s)",
    )
    a("--batch-size", type=int, default=20, metavar="B", help="texts per request (default: 20)")
    a(
        "--latency",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="simulated seconds per request (default: %(default)s)",
    )
    a("--dim", type=int, default=1024, help="simulated dimensions (default: %(default)s)")
    a("--rpm", type=float, help="requests per minute the ceiling assumes (real endpoints)")
    a("--clients", type=_names, metavar="NAMES", help="from " + ", ".join(CLIENTS))
    a("--no-peers", action="store_true", help="leave out openai-python and langchain-openai")
    a(
        "--otel",
        nargs="?",
        const="failed",
        choices=("failed", "all", "none"),
        metavar="SPANS",
        help="report every embedsdk client to OpenTelemetry while measuring (embedsdk.telemetry "
        "with the SDK, a batch span processor and in-memory exporter and reader): its cost, "
        "against a run without (needs opentelemetry-sdk); SPANS: which requests get a child "
        "span, failed (the default), all or none",
    )


def _add_scenario_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings of one scenario each."""
    a = parser.add_argument
    a(
        "--ablations",
        action="store_true",
        help="adaptive scenario: turn each rate-control mechanism off in turn (simulated time) "
        "and show the cases that get worse without it, instead of the two tables",
    )
    a(
        "--latencies",
        type=_seconds_list,
        metavar="SECONDS,...",
        help="adaptive scenario: the simulated-time table again with every request of every "
        "case answered in each of these many seconds (real servers take 0.2-1 s for a batch), "
        "instead of the two tables",
    )
    a(
        "--seeds",
        type=int,
        metavar="N",
        help="adaptive scenario: the simulated-time table at N timing seeds (0, the table's "
        "own, first): each case's mean and range, and at how many seeds it meets its "
        "targets, instead of the two tables",
    )
    a("--fast-texts", type=int, metavar="N", help="texts in the fast scenario (default: 20000)")
    a("--fast-latency", type=float, default=0.0, metavar="SECONDS", help="(default: 0)")
    a("--cache-texts", type=int, metavar="N", help="texts in the cache scenario (default: 20000)")
    a("--cache-latency", type=float, default=0.1, metavar="SECONDS", help="(default: 0.1)")
    a(
        "--warm-texts",
        type=int,
        default=20_000,
        metavar="N",
        help="texts in the warm scenario (default: %(default)s, --quick too)",
    )
    a(
        "--warm-pairs",
        type=int,
        metavar="N",
        help="alternating pairs (warm call, raw SELECT) in the warm scenario (default: 15, "
        "--quick: 7)",
    )
    a("--memory-sizes", type=_int_list, metavar="N,N", help="(default: 200000,2000000)")
    a("--memory-dim", type=int, default=64, help="dimensions in the memory scenario (default: 64)")
    a("--memory-batch", type=int, default=32, help="batch size in the memory scenario")
    a("--memory-cache", action="store_true", help="memory scenario with the cache on")
    a(
        "--memory-formats",
        type=_names,
        default=["npy", "jsonl", "parquet"],
        metavar="NAMES",
        help="outputs of the memory scenario, from npy, jsonl, parquet (default: all three; "
        "parquet only with pyarrow)",
    )
    a(
        "--integration-texts",
        type=int,
        metavar="N",
        help="chunks per index in the integrations scenario (default: 10000)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The texts' seed, and what is written and shown."""
    a = parser.add_argument
    a("--seed", type=int, default=0, help="seed of the generated texts")
    a(
        "--out",
        type=Path,
        default=Path("bench/results"),
        metavar="DIR",
        help="(default: %(default)s)",
    )
    a(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write the results to FILE (e.g. bench/results.json, which the README "
        "quotes): the scenarios, the figures the docs quote, and where they come from (the "
        "commit, the machine, what else was running)",
    )
    a("--no-chart", action="store_true", help="write no PNG")
    a("--no-verify", dest="verify", action="store_false", help="skip the exactness checks")
    a("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def _usage(message: str) -> NoReturn:
    """Refuse the command as argparse does a bad flag: one line on stderr, exit status 2."""
    print(f"embedsdk bench: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the settings left unset from the full or the ``--quick`` preset, and check them."""
    for name, (full, quick) in PRESETS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    scenarios = args.scenario or list(DEFAULT_SCENARIOS)
    if args.all:
        scenarios = ["all"]
    every = "all" in scenarios
    if every:
        scenarios = list(SCENARIOS)
    scenarios = ["throughput" if s == "main" else s for s in scenarios]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        _usage(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}, or all")
    args.scenario = [s for s in SCENARIOS if s in scenarios]
    ids = args.clients or list(CLIENTS)
    if args.no_peers:
        ids = [i for i in ids if i not in EXTRA_PEERS]
    unknown = sorted(set(ids) - set(CLIENTS))
    if unknown:
        _usage(f"unknown client {unknown[0]!r}; choose from {', '.join(CLIENTS)}")
    missing = [i for i in ids if not available(i)]
    if missing and not args.quiet:
        runner.log(f"not installed, left out: {', '.join(missing)} (pip install 'embedsdk[bench]')")
    args.clients = [i for i in CLIENTS if i in ids and i not in missing]
    if "serial" not in args.clients and "throughput" in args.scenario:
        args.clients.insert(0, "serial")  # the speed-ups are over it
    counts = ("repeat", "concurrency", "batch_size", "fast_texts", "cache_texts", "dim")
    others = ("memory_dim", "memory_batch", "integration_texts", "warm_texts", "warm_pairs")
    for name in (*counts, *others):
        if getattr(args, name) < 1:
            _usage(f"--{name.replace('_', '-')} must be at least 1")
    if getattr(args, "seeds", None) is not None and args.seeds < 1:
        _usage("--seeds must be at least 1")
    instead = [f"--{n}" for n in ("ablations", "latencies", "seeds") if getattr(args, n, None)]
    if len(instead) > 1:
        _usage(f"{' and '.join(instead)} each replace the adaptive tables: give one of them")
    if instead and every:
        _usage(
            f"{instead[0]} replaces the adaptive tables that --all measures for the docs: "
            "run it with --scenario adaptive"
        )
    if instead and "adaptive" not in args.scenario:
        _usage(f"{instead[0]} is for the adaptive scenario: add --scenario adaptive")
    unknown = sorted(set(args.memory_formats) - {"npy", "jsonl", "parquet"})
    if unknown or not args.memory_formats:
        _usage(f"--memory-formats takes npy, jsonl, parquet, not {', '.join(unknown) or '-'}")
    for name in ("latency", "fast_latency", "cache_latency"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            _usage(f"--{name.replace('_', '-')} must be seconds >= 0")
    return args


def _adaptive(args: argparse.Namespace) -> tuple[dict[str, Any], str] | None:
    """The adaptive scenario, when ``embedsdk._bench.adaptive`` exists.

    Contract: ``run(args) -> dict`` (JSON-able), and ``format_table(result) -> str`` or a
    ``"table"`` entry in the result.
    """
    try:
        module = importlib.import_module(f"{__package__}.adaptive")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.adaptive":
            raise
        runner.log("adaptive: not available in this version, skipped", args.quiet)
        return None
    result: dict[str, Any] = module.run(args)
    formatter: Callable[[dict[str, Any]], str] | None = getattr(module, "format_table", None)
    text = formatter(result) if formatter is not None else str(result.get("table", ""))
    return result, text


def _run_scenario(name: str, args: argparse.Namespace) -> tuple[Any, str, Any] | None:
    """Run one scenario; returns (result object, printable table, JSON) or None if skipped."""
    from . import cache, memory, scenarios

    if name == "throughput":
        t = scenarios.run_throughput(args)
        return t, report.throughput_table(t), t.to_json()
    if name == "fast":
        f = scenarios.run_fast(args)
        return f, report.fast_table(f), f.to_json()
    if name == "cache":
        c = cache.run_cache(args)
        return c, report.cache_table(c), c.to_json()
    if name == "warm":  # the warm cache path against a bare SELECT of the same rows
        from . import warm

        r = warm.run(args)
        return r, report.warm_table(r), r.to_json()
    if name == "memory":
        m = memory.run_memory(args)
        return m, report.memory_table(m), m.to_json()
    if name == "integrations":
        from . import integrations

        if not any(importlib.util.find_spec(m) for m in ("langchain_core", "llama_index")):
            runner.log(
                "integrations: neither LangChain nor LlamaIndex is installed (pip install "
                "'embedsdk[langchain,llama-index]'), skipped",
                args.quiet,
            )
            return None
        i = integrations.run_integrations(args)
        return i, integrations.format_table(i), i.to_json()
    if name == "batch":  # fixed batch sizes against batch_size="auto", in simulated time
        from . import batch

        b = batch.run(args)
        return b, batch.format_table(b), b
    if name == "batch-api":  # the provider's Batch API against /embeddings, simulated time
        from . import batchapi

        api = batchapi.run(args)
        return api, batchapi.format_table(api), api
    if name == "nginx":  # behind a real gateway's limits, when nginx is installed
        from . import gateway

        g = gateway.run(args)
        return g, gateway.format_table(g), g
    if name == "ray":  # embedsdk[ray]: Ray workers under one account limit
        from . import ray

        if importlib.util.find_spec("ray") is None:
            runner.log("ray: not installed (pip install 'embedsdk[ray]'), skipped", args.quiet)
            return None
        result = ray.run(args)
        return result, ray.format_table(result), result
    found = _adaptive(args)
    return None if found is None else (found[0], found[1], found[0])


def run_bench(args: argparse.Namespace) -> int:
    """Run the chosen scenarios, print their tables, write JSON and charts; exit status."""
    args = resolve_args(args)
    if args.base_url:
        runner.log(f"real endpoint {args.base_url}: requests are billed there", args.quiet)
    watch = provenance.Watch()
    stem = args.out / f"bench-{watch.started:%Y%m%d-%H%M%S}"
    results: dict[str, Any] = {}
    payload: dict[str, Any] = {
        "started": watch.started.isoformat(timespec="seconds"),
        "machine": report.machine(),
        "argv": sys.argv[1:],
        "quick": bool(args.quick),
        "scenarios": {},
    }
    spans = getattr(args, "otel", None)
    if spans:
        _instrument(spans)
        payload["otel"] = spans
    with runner.SimPool() as args.sims:  # one simulator, started on first use
        for name in args.scenario:
            done = _run_scenario(name, args)
            if done is None:
                continue
            results[name], text, payload["scenarios"][name] = done
            print(f"\n{text}\n", flush=True)
    # After the simulator's process has ended, so that its CPU counts as the bench's own.
    payload["provenance"] = provenance.provenance(watch)
    payload["figures"] = figures.derive(report.cleaned(payload))
    runner.log(f"machine: {payload['provenance']['load']['note']}", args.quiet)
    json_path = report.write_json(payload, stem.with_suffix(".json"))
    if args.json is not None:
        print(f"results: {report.write_json(payload, args.json)}")
    charts = [] if args.no_chart else _charts(results, stem)
    print(f"JSON: {json_path}")
    if charts:
        print("charts: " + ", ".join(str(p) for p in charts))
    elif not args.no_chart:
        print("charts: none (matplotlib is not installed)")
    return 0


def _instrument(request_spans: str = "failed") -> None:
    """embedsdk.telemetry on, as a service would run it: spans through a batch processor to an
    exporter (in memory here, so that no collector's cost blurs ours), metrics to a reader."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        raise ConfigurationError(
            "--otel needs OpenTelemetry's SDK: pip install opentelemetry-sdk"
        ) from None
    from embedsdk import telemetry

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry.instrument(tracer_provider, meter_provider, request_spans=request_spans)


def _charts(results: dict[str, Any], stem: Path) -> list[Path]:
    from .chart import write_charts

    return write_charts(results, stem)


def main(argv: list[str] | None = None) -> int:
    """``python bench/run.py ...``: the same flags as ``embedsdk bench``."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__)
    add_bench_arguments(parser)
    try:
        return run_bench(parser.parse_args(argv))
    except EmbedSDKError as exc:  # as `embedsdk bench` does: a message, no traceback
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
