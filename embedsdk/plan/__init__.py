"""Plan a job before paying for it: :func:`estimate` and ``embedsdk embed ... --dry-run``.

Reads the texts once, checks them as a run would (the first bad one is named), and reports
texts, duplicates, texts already in the cache, estimated tokens, requests at the chosen batch
size, the cost at the published (or given) price, and how long the told limits make the
run. It sends nothing and writes nothing: the cache is only read, and only where one exists.

Memory: 13 bytes per text (a 64-bit fingerprint, an estimate and a flag), so ten million
texts take about 130 MB; duplicates are counted on the fingerprints at the end. Two texts
sharing a fingerprint by chance (about 1 in 10^5 for 10^7 texts) would count as one: this
is an estimate, a run compares whole keys.

Exports :func:`estimate`, :func:`aestimate` and :class:`Estimate` (also as ``embedsdk.*``).
Imports the client's
options and token estimate, the cache and the price table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._exceptions import ConfigurationError
from .._prices import Price
from ..cache import VectorCache, cache_disabled_by_env, cache_keys, default_cache_dir
from ..client import ClientOptions, estimate_tokens, find_api_key, resolve_options, validate_texts

#: Texts read, checked and looked up in the cache at a time.
WINDOW = 8192


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a run of ``texts`` would send and cost. See :func:`estimate`.

    ``texts``: all read; ``duplicates``: repeats of a text earlier in the input (never sent
    twice); ``cached``: distinct texts the cache already holds; ``to_send``: the rest;
    ``tokens``: their tokens, estimated without a tokenizer (on the high side);
    ``tokens_saved``: those of the duplicates and cached texts; ``requests``: at
    ``batch_size`` texts and the profile's tokens per request; ``seconds``: the run's
    length under ``rpm`` / ``tpm`` (``None`` when neither is known), ``bound``: which of
    them sets it.
    """

    texts: int
    duplicates: int
    cached: int
    to_send: int
    tokens: int
    tokens_saved: int
    requests: int
    batch_size: int
    model: str
    provider: str
    endpoint: str
    price: Price | None = None
    rpm: float | None = None
    tpm: float | None = None
    cache: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def cost(self) -> float | None:
        """What the texts to send cost at :attr:`price` (``None`` without one)."""
        return None if self.price is None else self.price.cost(self.tokens)

    @property
    def saved(self) -> float | None:
        """What the duplicates and cached texts would have cost."""
        return None if self.price is None else self.price.cost(self.tokens_saved)

    @property
    def seconds(self) -> float | None:
        limits = self._limits()
        return max(limits.values()) if limits else None

    @property
    def bound(self) -> str:
        """What sets :attr:`seconds`: ``"rpm"``, ``"tpm"``, or ``""`` when nothing is known."""
        limits = self._limits()
        return max(limits, key=limits.__getitem__) if limits else ""

    def _limits(self) -> dict[str, float]:
        spans = {}
        if self.rpm:
            spans["rpm"] = self.requests / self.rpm * 60
        if self.tpm:
            spans["tpm"] = self.tokens / self.tpm * 60
        return spans

    def report(self) -> str:
        """The plan as a person reads it, one fact a line."""
        lines = [
            f"dry run: nothing sent. {self.model} at {self.endpoint} ({self.provider})",
            f"texts:      {self.texts:,} read, {self.duplicates:,} duplicates, "
            f"{self.cached:,} already cached"
            + ("" if self.cache else " (no cache to look in)")
            + f", {self.to_send:,} to send",
            f"tokens:     about {self.tokens:,} to send, {self.tokens_saved:,} not sent "
            "(estimated high: a CJK character 1, others 1 per 3 characters, 2 more a text)",
            f"requests:   {self.requests:,} at {self.batch_size} texts a request",
        ]
        price, cost, saved = self.price, self.cost, self.saved
        if price is not None and cost is not None and saved is not None:
            lines.append(
                f"cost:       at most {price.money(cost)} at {price}; "
                f"{price.money(saved)} saved by the cache and duplicates"
            )
        else:
            lines.append("cost:       no published price for this model (give yours: --price)")
        seconds = self.seconds
        if seconds is not None:
            told = ", ".join(
                f"{value:,.0f} {name}"
                for name, value in (("rpm", self.rpm), ("tpm", self.tpm))
                if value
            )
            lines.append(
                f"duration:   at least {_duration(seconds)} under {told} "
                f"(the {self.bound} limit sets it)"
            )
        else:
            lines.append(
                "duration:   no rate limit known: give your account's with --rpm / --tpm "
                "(as the provider's console shows it) to see how long the run takes"
            )
        lines.extend(f"note:       {note}" for note in self.notes)
        return "\n".join(lines)

    __str__ = report


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


def _options(given: dict[str, Any]) -> tuple[ClientOptions, tuple[str, ...]]:
    """The client's options as a run would resolve them; a missing key is only a note (a
    plan sends nothing)."""
    try:
        return resolve_options(**given), ()
    except ConfigurationError as exc:
        if "no API key" not in str(exc) or "api_key" in given:
            raise
    options = resolve_options(**{**given, "api_key": ""})
    key, _ = find_api_key(None, options.base_url)
    return options, () if key else (f"no API key found for {options.base_url}: a run needs one",)


def _open_cache(options: ClientOptions) -> VectorCache | None:
    """The cache a run would use, opened only if it exists (a plan creates nothing)."""
    spec = options.cache
    if isinstance(spec, VectorCache):
        return spec
    if spec is None or spec is False or (spec is True and cache_disabled_by_env()):
        return None
    try:
        directory = default_cache_dir() if spec is True else spec
    except (RuntimeError, KeyError):  # no home directory
        return None
    return VectorCache(directory) if VectorCache.exists(directory) else None


def _requests(tokens: np.ndarray, size: int, max_tokens: int) -> int:
    """Requests for ``tokens`` (per text, in order) at ``size`` texts and ``max_tokens``
    estimated tokens a request, a text over the budget alone."""
    if len(tokens) == 0:
        return 0
    if int(tokens.max()) * size <= max_tokens:  # the token budget never binds
        return math.ceil(len(tokens) / size)
    count, held, total = 0, 0, 0
    for t in tokens.tolist():
        if held and (held == size or total + t > max_tokens):
            count, held, total = count + 1, 0, 0
        held, total = held + 1, total + t
    return count + 1


def estimate(texts: Iterable[Any], **options: Any) -> Estimate:
    """Plan embedding ``texts`` with the client ``options`` (those of
    :func:`embedsdk.get_batch_embeddings`: ``model``, ``base_url``, ``batch_size``,
    ``cache``, ``rpm``, ``tpm``...), sending nothing.

    ``texts``: any iterable, read once. ``price=`` (an option too): yours per million tokens
    (a number in USD, ``"0.5 CNY"`` or a :class:`~embedsdk.Price`); default: the published
    one, when listed.
    Raises :class:`~embedsdk.InvalidInputError` for the first text a run would refuse, and
    :class:`~embedsdk.ConfigurationError` for a bad option.

    >>> plan = embedsdk.estimate(texts, model="BAAI/bge-m3", rpm=2000)   # doctest: +SKIP
    >>> print(plan)                                                      # doctest: +SKIP
    """
    resolved, notes = _options(options)
    namespace = VectorCache.namespace(resolved.endpoint, resolved.model, resolved.dimensions)
    cache = _open_cache(resolved)
    prints, counts, held = [], [], []
    seen = 0
    try:
        it = iter(texts)
        while True:
            window = list(itertools.islice(it, WINDOW))
            if not window:
                break
            validate_texts(window, seen)
            seen += len(window)
            keys = cache_keys(namespace, window)
            prints.append(np.frombuffer(b"".join(k[:8] for k in keys), dtype="<u8"))
            counts.append(np.fromiter(map(estimate_tokens, window), np.int64, len(window)))
            held.append(
                cache.contains_many(namespace, window)
                if cache is not None
                else np.zeros(len(window), dtype=bool)
            )
    finally:
        if cache is not None and cache is not resolved.cache:
            cache.close()
    fingerprints = np.concatenate(prints) if prints else np.zeros(0, "<u8")
    tokens = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    cached = np.concatenate(held) if held else np.zeros(0, bool)
    first = np.zeros(len(fingerprints), dtype=bool)
    first[np.unique(fingerprints, return_index=True)[1]] = True
    send = first & ~cached
    size = resolved.request_size
    if resolved.batch_size == "auto":
        notes += (
            f'batch_size="auto": counted at its cap, {size} a request; where no request '
            "limit binds the run cuts smaller batches to keep every slot busy (more "
            "requests, the same tokens and cost)",
        )
    return Estimate(
        texts=len(fingerprints),
        duplicates=int(len(fingerprints) - first.sum()),
        cached=int((first & cached).sum()),
        to_send=int(send.sum()),
        tokens=int(tokens[send].sum()),
        tokens_saved=int(tokens[~send].sum()),
        requests=_requests(tokens[send], size, resolved.max_batch_tokens),
        batch_size=size,
        model=resolved.model,
        provider=resolved.provider,
        endpoint=resolved.endpoint,
        price=resolved.price,
        rpm=resolved.rpm,
        tpm=resolved.tpm,
        cache=None if cache is None else str(cache.directory),
        notes=notes,
    )


async def aestimate(texts: Iterable[Any], **options: Any) -> Estimate:
    """:func:`estimate` from an event loop: the reading and the cache lookups run on a
    worker thread, so the loop is not blocked."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(estimate, texts, **options))


__all__ = ["Estimate", "aestimate", "estimate"]
