"""Plan before spending (issue 24): ``embedsdk.estimate`` and ``embedsdk embed --dry-run``,
and the cost at the published or given price (``embedsdk.Price``) in the summaries.

The plan is checked against what a run then does on the simulated provider: the texts it
sends, its requests at a fixed batch size, the cache it reads. A plan sends nothing (the
server counts no request) and writes nothing (no cache directory appears, an existing one
is left byte for byte).

Private access: the summary's money note (``embedsdk.cli._estimate.money_note``) is checked
on made-up counters, where a run could not give round figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import embedsdk
from embedsdk import ConfigurationError, Embedder, InvalidInputError, Price, cli, price_for
from embedsdk.batchapi import JobReport
from embedsdk.cli._estimate import money_note
from embedsdk.testing import SimulatedProvider

MODEL = "text-embedding-3-small"


def corpus(n: int, repeats: int = 0) -> list[str]:
    texts = [f"text {i}: 今天天气很好, the weather is nice" for i in range(n)]
    return texts + texts[:repeats]


def options(sim: SimulatedProvider, cache: Path | bool, **more: object) -> dict[str, object]:
    return {"base_url": sim.base_url, "model": MODEL, "dimensions": 8, "cache": cache, **more}


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


# -- the plan against the run ------------------------------------------------------------------


def test_the_plan_says_what_the_run_then_sends(
    simulated_provider: SimulatedProvider, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    texts = corpus(500, repeats=40)
    with Embedder(**options(simulated_provider, cache, batch_size=32)) as emb:
        emb.embed(texts[:120])  # 120 distinct texts are cached now
    simulated_provider.reset_stats()

    plan = embedsdk.estimate(texts, **options(simulated_provider, cache, batch_size=32))

    assert simulated_provider.stats()["requests"] == 0  # a plan sends nothing
    assert (plan.texts, plan.duplicates, plan.cached, plan.to_send) == (540, 40, 120, 380)
    assert plan.requests == 12  # 380 texts at 32 a request
    with Embedder(**options(simulated_provider, cache, batch_size=32)) as emb:
        emb.embed(texts)
        assert emb.stats.inputs_sent == plan.to_send
        assert emb.stats.requests == plan.requests
    # estimated high: never below what the provider counted
    assert plan.tokens >= simulated_provider.stats()["tokens"] > 0


def test_the_token_budget_of_a_request_counts_in_the_requests(
    simulated_provider: SimulatedProvider,
) -> None:
    long = ["word " * 300 + str(i) for i in range(20)]  # about 500 estimated tokens each
    plan = embedsdk.estimate(
        long, **options(simulated_provider, False, batch_size=64, max_batch_tokens=2_000)
    )
    assert plan.tokens > 20 * 400
    assert plan.requests == 7  # three texts of about 503 fit 2,000 tokens, not 64
    with Embedder(
        **options(simulated_provider, False, batch_size=64, max_batch_tokens=2_000)
    ) as emb:
        emb.embed(long)
        assert emb.stats.requests == plan.requests


def test_a_plan_writes_nothing(tmp_path: Path, simulated_provider: SimulatedProvider) -> None:
    missing = tmp_path / "no-cache-yet"
    plan = embedsdk.estimate(corpus(10), **options(simulated_provider, missing))
    assert plan.cache is None and not missing.exists()

    cache = tmp_path / "cache"
    with Embedder(**options(simulated_provider, cache)) as emb:
        emb.embed(corpus(5))
    before = _digest(cache)
    assert embedsdk.estimate(corpus(10), **options(simulated_provider, cache)).cached == 5
    assert _digest(cache) == before


def test_a_server_that_is_down_and_a_missing_key_do_not_stop_a_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENAI_API_KEY", "SILICONFLOW_API_KEY", "siliconflow_api_key"):
        monkeypatch.delenv(name, raising=False)
    plan = embedsdk.estimate(
        corpus(3), base_url="https://api.openai.com/v1", model=MODEL, cache=False
    )
    assert plan.to_send == 3 and plan.provider == "openai"
    assert any("no API key" in note for note in plan.notes)
    down = embedsdk.estimate(corpus(3), base_url="http://127.0.0.1:9/v1", cache=False)
    assert down.requests == 1


def test_the_first_bad_text_is_named_before_anything(simulated_provider: SimulatedProvider) -> None:
    texts = [*corpus(10_000), "  ", "x"]  # past the first window of texts read
    with pytest.raises(InvalidInputError, match=r"texts\[10000\] is empty") as caught:
        embedsdk.estimate(iter(texts), **options(simulated_provider, False))
    assert caught.value.index == 10_000
    with pytest.raises(ConfigurationError, match="batch_size"):
        embedsdk.estimate(corpus(2), **options(simulated_provider, False, batch_size=0))


def test_duration_follows_the_tighter_told_limit(simulated_provider: SimulatedProvider) -> None:
    texts = corpus(640)  # 20 requests of 32
    base = options(simulated_provider, False, batch_size=32)
    assert embedsdk.estimate(texts, **base).seconds is None
    by_requests = embedsdk.estimate(texts, **base, rpm=60)
    assert by_requests.seconds == pytest.approx(20.0) and by_requests.bound == "rpm"
    by_tokens = embedsdk.estimate(texts, **base, rpm=60_000, tpm=by_requests.tokens / 2)
    assert by_tokens.seconds == pytest.approx(120.0) and by_tokens.bound == "tpm"
    assert "2.0 min" in by_tokens.report() and "the tpm limit sets it" in by_tokens.report()


def test_aestimate_reads_off_the_loop(simulated_provider: SimulatedProvider) -> None:
    on_loop = threading.Event()  # set by a task on the loop while the texts are being read

    def texts() -> Iterator[str]:
        assert on_loop.wait(timeout=30), "the loop was blocked while the texts were read"
        yield from corpus(50, repeats=5)

    async def main() -> embedsdk.Estimate:
        asyncio.get_running_loop().call_soon(on_loop.set)
        return await embedsdk.aestimate(texts(), **options(simulated_provider, False))

    plan = asyncio.run(main())
    assert (plan.texts, plan.duplicates) == (55, 5)


# -- prices ------------------------------------------------------------------------------------


def test_published_prices_carry_their_currency_and_date() -> None:
    small = price_for("openai", "text-embedding-3-small")
    assert small is not None and (small.per_million, small.currency) == (0.02, "USD")
    assert small.read and small.source
    v4 = price_for("dashscope", "text-embedding-v4")
    assert v4 is not None and v4.currency == "CNY" and v4.of(2_000_000) == "¥1.00"
    assert price_for("siliconflow", "BAAI/bge-m3") is None  # not read from the provider
    assert price_for("generic", MODEL) is None  # a price belongs to a provider's profile


@pytest.mark.parametrize(
    ("given", "expected"),
    [("0.02", Price(0.02)), ("$0.13", Price(0.13)), ("0.5 CNY", Price(0.5, "CNY")),
     ("¥0.7", Price(0.7, "CNY")), (0.1, Price(0.1)), (Price(2, "EUR"), Price(2, "EUR"))],
)  # fmt: skip
def test_a_given_price_wins(
    given: object, expected: Price, simulated_provider: SimulatedProvider
) -> None:
    plan = embedsdk.estimate(corpus(3), price=given, **options(simulated_provider, False))
    assert plan.price == expected and plan.cost == pytest.approx(
        plan.tokens / 1e6 * expected.per_million
    )


@pytest.mark.parametrize("bad", ["free", "-1", "$1 CNY", "", True, [1]])
def test_a_bad_price_is_a_configuration_error(
    bad: object, simulated_provider: SimulatedProvider
) -> None:
    with pytest.raises(ConfigurationError, match="price"):
        embedsdk.estimate(corpus(1), price=bad, **options(simulated_provider, False))


def test_a_batch_report_costs_in_the_price_currency() -> None:
    report = JobReport("job", planned=10, tokens=4_000_000, price=Price(0.5, "CNY"))
    assert report.cost == pytest.approx(1.0) and report.saved == pytest.approx(1.0)
    assert "¥1.00 at ¥0.5/M tokens (your price), ¥1.00 less than /embeddings" in report.summary()
    assert "no published price" in JobReport("job").summary()


# -- the command line --------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(corpus(100, repeats=10)) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    argv = ["embed", str(source), "-o", str(out), "--base-url", simulated_provider.base_url]
    flags = ["--model", MODEL, "--provider", "openai", "--no-cache", "--batch-size", "32"]
    status = cli.main([*argv, *flags, "--dry-run", "--rpm", "60", "--via", "batch"])
    report, _ = capsys.readouterr()
    assert status == 0 and not out.exists() and not Path(f"{out}.batch").exists()
    assert simulated_provider.stats()["requests"] == 0
    assert "110 read, 10 duplicates, 0 already cached (no cache to look in), 100 to send" in report
    assert "4 at 32 texts a request" in report and "$0.02/M tokens (published" in report
    assert "under 60 rpm" in report and "through the Batch API (50% off)" in report


def test_dry_run_names_the_line_of_a_bad_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n\nfour\n", encoding="utf-8")
    argv = ["embed", str(source), "-o", str(tmp_path / "o.npy"), "--dry-run"]
    status = cli.main([*argv, "--base-url", simulated_provider.base_url, "--no-cache"])
    _, err = capsys.readouterr()
    assert status != 0 and "line 3" in err


def test_the_summary_shows_the_money_and_a_bad_price_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], simulated_provider: SimulatedProvider
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(corpus(40)) + "\n", encoding="utf-8")
    out = tmp_path / "o.npy"
    argv = ["embed", str(source), "-o", str(out), "--base-url", simulated_provider.base_url]
    cached = ["--cache-dir", str(tmp_path / "cache"), "--dimensions", "8"]
    assert cli.main([*argv, *cached, "--price", "0.5 CNY"]) == 0
    tokens = simulated_provider.stats()["tokens"]
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    cost = Price(0.5, "CNY").of(tokens)
    assert f"{tokens:,} tokens ({cost} at ¥0.5/M tokens (your price)), held back by " in summary
    assert cli.main([*argv, *cached, "--price", "$2"]) == 0  # a run from the cache
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert "40 cache hits" in summary and "0 tokens ($0.00 at $2/M tokens" in summary
    assert cli.main([*argv, *cached]) == 0  # no price known for a self-hosted server: none shown
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    assert summary.endswith(f"0 tokens -> {out}")
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--price", "cheap"])
    assert exit_.value.code == 2 and "not a number per million tokens" in capsys.readouterr().err


def test_the_cache_saving_is_the_hits_at_the_average_tokens_sent() -> None:
    stats = embedsdk.Stats(tokens=3_000_000, inputs_sent=100, cache_hits=50, price=Price(1.0))
    assert money_note(stats) == (
        "$3.00 at $1/M tokens (your price), about $1.50 saved by the cache"
    )
    warm = embedsdk.Stats(cache_hits=50, price=Price(1.0))  # nothing sent: no average
    assert money_note(warm) == "$0.00 at $1/M tokens (your price), every text from the cache"
    stats.price = None
    assert money_note(stats) == ""


def test_the_summary_counts_the_429s_the_server_sent(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    simulated_provider_factory: Any,
) -> None:
    sim = simulated_provider_factory(fault_rate=0.3, faults=("429",), seed=3)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(corpus(200)) + "\n", encoding="utf-8")
    argv = ["embed", str(source), "-o", str(tmp_path / "o.npy"), "--base-url", sim.base_url]
    assert cli.main([*argv, "--no-cache", "--batch-size", "10", "--dimensions", "8"]) == 0
    refused = sim.stats()["status"].get(429, 0)
    assert refused > 0
    err = capsys.readouterr().err
    assert f"{refused} 429 answer" in err
    assert "held back by " in err  # said without a bar too (stderr is no terminal here)
