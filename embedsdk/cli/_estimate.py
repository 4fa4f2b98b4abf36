"""``embedsdk embed --dry-run``: the plan before a run; and the money in a run's summary."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._exceptions import InvalidInputError
from ..batchapi import limits_for
from ..client import Stats
from ..files import LineNumbers
from ..plan import estimate
from ._options import client_kwargs


def add_estimate_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plan and cost")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing: read INPUT and say how many texts, duplicates and cached texts "
        "it has, the estimated tokens, requests and cost, and how long the run takes under "
        "--rpm / --tpm; OUTPUT is checked, not written",
    )


def run_dry(args: argparse.Namespace, prepare: Any, rows_of: Any, by_line: Any) -> int:
    """Check the command as a run would, read INPUT once, print the plan."""
    _, input_fmt = prepare(args)
    numbers = LineNumbers()
    texts = (row.text for row in rows_of(args, input_fmt, numbers))
    try:
        plan = estimate(texts, **client_kwargs(args))
    except InvalidInputError as exc:
        raise by_line(exc, args.input, numbers) from None
    lines = [plan.report()]
    if numbers.skipped:
        lines.append(f"note:       {numbers.skipped:,} empty lines skipped (--skip-empty)")
    if getattr(args, "via", "embeddings") == "batch":
        discount = limits_for(plan.provider).discount
        cost = plan.cost
        lines.append(
            f"--via batch: {plan.price.money(cost * (1 - discount))} through the Batch API "
            f"({discount:.0%} off), no rate limit; results within 24 hours"
            if plan.price is not None and cost is not None
            else f"--via batch: {discount:.0%} off the /embeddings price; no rate limit"
        )
    print("\n".join(lines), file=sys.stdout if args.output != "-" else sys.stderr)
    return 0


def money_note(stats: Stats) -> str:
    """The summary's cost: the tokens the provider counted at the stats' price, and about
    what the cache saved (:attr:`Stats.saved`: its hits at the run's average tokens per text
    sent); nothing without a price (a self-hosted server costs nothing per token)."""
    price, cost, saved = stats.price, stats.cost, stats.saved
    if price is None or cost is None or saved is None:
        return ""
    note = f"{price.money(cost)} at {price}"
    if stats.cache_hits and stats.inputs_sent:
        note += f", about {price.money(saved)} saved by the cache"
    elif stats.cache_hits and not stats.requests:  # no tokens per text to price them at
        note += ", every text from the cache"
    return note


__all__ = ["add_estimate_options", "money_note", "run_dry"]
