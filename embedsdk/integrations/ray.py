"""Embed a Ray Dataset on a cluster, under one rate limit for the whole account.

>>> import ray, embedsdk.ray                                          # doctest: +SKIP
>>> ds = ray.data.read_parquet("s3://bucket/corpus/")
>>> ds = embedsdk.ray.embed_dataset(ds, column="text", model="BAAI/bge-m3", concurrency=8)
>>> ds.write_parquet("s3://bucket/vectors/")       # every other column kept; float32 vectors

:class:`EmbedBatches` is the callable class behind :func:`embed_dataset`, for
``ds.map_batches(EmbedBatches, fn_constructor_kwargs=..., concurrency=N)`` in your own
pipelines. Each worker runs one :class:`embedsdk.Embedder` (its own cache, connections and
retries, as on one machine); the workers of one endpoint, API key and model pace together
through one named actor per account that holds the account's rate controller (see
``embedsdk.ratecontrol``). Needs ``pip install "embedsdk[ray]"``; ``import embedsdk`` never
imports Ray.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from .._exceptions import (
    ConfigurationError,
    EmbedSDKError,
    InvalidInputError,
)
from ..client import (
    CALL_WIDE_ERRORS,
    Embedder,
    ErrorMode,
    given_options,
    resolve_options,
    validate_texts,
)
from ..ratecontrol import Follower, RateLeader, Syncer

__all__ = ["EmbedBatches", "RowError", "embed_dataset", "rate_leader"]

logger = logging.getLogger("embedsdk")

#: The Ray namespace of the rate leaders: every job on a cluster finds the same one.
NAMESPACE = "embedsdk"
#: A leader nobody has called for this long (seconds) ends itself.
IDLE_EXIT = 900.0
#: Seconds a worker waits for its leader's answer before pacing alone for a round.
SYNC_TIMEOUT = 10.0
#: Workers ask for this share of a CPU: they wait on the network, not on the processor.
NUM_CPUS = 0.25


class RowError(EmbedSDKError):
    """A row could not be embedded; the message names it (its id, else its text's start)."""

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries intact
        return (type(self), self.args, self.__dict__)  # with the indices it carries


class _Secret:
    """The API key on its way to the workers: never shown in a repr or a log."""

    __slots__ = ("value",)

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<API key>"


# -- the account's rate leader --------------------------------------------------------------


class _LeaderActor:
    """The named actor around a :class:`RateLeader`; ends itself when idle for long."""

    def __init__(self, endpoint: str, model: str) -> None:
        self._leader = RateLeader()
        self._about = f"{model} at {endpoint}"
        self._last = time.monotonic()
        threading.Thread(target=self._watch, name="embedsdk-leader-idle", daemon=True).start()

    def sync(self, worker: str, report: dict[str, Any]) -> dict[str, Any]:
        self._last = time.monotonic()
        return self._leader.sync(worker, report)

    def snapshot(self) -> dict[str, Any]:
        return {**self._leader.snapshot(), "about": self._about}

    def _watch(self) -> None:
        while time.monotonic() - self._last < IDLE_EXIT:
            time.sleep(min(60.0, IDLE_EXIT / 10))
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def _leader_name(endpoint: str, api_key: str | None, model: str) -> str:
    """The actor's name: a hash of the endpoint, the key's own hash and the model."""
    key = hashlib.sha256((api_key or "").encode("utf-8")).hexdigest()[:16]
    account = hashlib.sha256(f"{endpoint}\0{key}\0{model}".encode()).hexdigest()[:24]
    return f"rate-{account}"


def rate_leader(endpoint: str, api_key: str | None, model: str) -> Any:
    """The handle of the account's leader actor, created on first use.

    ``get_if_exists`` makes creation atomic: workers racing to create it all get the same
    one. Detached, so that it outlives the worker that created it (a worker killed mid-run
    takes nothing with it), restarted by Ray if its node dies, and it ends itself after
    :data:`IDLE_EXIT` seconds unused. The key never reaches it: only a hash, in its name.
    """
    actor = ray.remote(_LeaderActor).options(
        name=_leader_name(endpoint, api_key, model),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=-1,
        max_task_retries=0,
    )
    return actor.remote(endpoint, model)


def _sender(endpoint: str, api_key: str | None, model: str) -> Any:
    """``send(report) -> state`` for a worker's :class:`Syncer`: one actor call per round,
    finding the leader again when it was restarted or ended."""
    worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    handle: list[Any] = []

    def send(report: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(2):
            if not handle:
                handle.append(rate_leader(endpoint, api_key, model))
            try:
                state: dict[str, Any] = ray.get(
                    handle[0].sync.remote(worker, report), timeout=SYNC_TIMEOUT
                )
                return state
            except ray.exceptions.RayActorError:
                handle.clear()  # ended or restarting: find it (or create it) again
                if attempt:
                    raise
        raise AssertionError("unreachable")

    return send


# -- the callable class ---------------------------------------------------------------------


class EmbedBatches:
    """Embeds ``column`` of each batch into ``output_column``, for ``Dataset.map_batches``.

    ``ds.map_batches(EmbedBatches, fn_constructor_kwargs={"model": ...}, concurrency=8,
    num_cpus=0.25, batch_size=1024)`` takes any batch format (``"pyarrow"`` is the fastest:
    the other columns pass through untouched). The vectors are float32, as a fixed-size list
    column (``pyarrow``) or a tensor column (``numpy``, ``pandas``).

    ``errors="raise"``: a row that cannot be embedded stops the run with a :class:`RowError`
    naming it (by ``id_column`` when given, else by its text's start). ``errors="return"``:
    it gets a null vector (NaN in numpy and pandas batches) and a message in
    ``error_column``; the rest is kept. A batch the server refuses for one input's sake is
    split until the refused rows stand alone, so that only they fail. Errors of the whole
    run (a bad key, model or base URL, no quota) always raise.

    ``rpm`` / ``tpm`` are the account's: pass ``workers`` (the pool's size), and each worker
    keeps to its share. ``shared_limit=False``: each worker learns the limit alone. Every
    other keyword is a client option of :class:`embedsdk.Embedder`.
    """

    def __init__(
        self,
        column: str = "text",
        output_column: str = "embedding",
        *,
        errors: ErrorMode = "raise",
        error_column: str = "embedding_error",
        id_column: str | None = None,
        workers: int | None = None,
        shared_limit: bool = True,
        sync_interval: float = 0.1,
        **options: Any,
    ) -> None:
        if errors not in ("raise", "return"):
            raise ValueError(f'errors must be "raise" or "return", got {errors!r}')
        options = given_options(options)  # NOT_GIVEN: left to the client's default
        self.column, self.output_column = column, output_column
        self.errors, self.error_column, self.id_column = errors, error_column, id_column
        key = options.pop("api_key", None)
        options["api_key"] = key.value if isinstance(key, _Secret) else key
        _share_told_limits(options, workers)
        self._syncer: Syncer | None = None
        if shared_limit and options.get("adaptive", True) and "rate_controller" not in options:
            checked = resolve_options(**{k: v for k, v in options.items() if k != "transport"})
            follower = Follower()
            send = _sender(checked.endpoint, checked.api_key, checked.model)
            self._syncer = Syncer(follower, send, interval=sync_interval).start()
            options["rate_controller"] = follower.controller
        self._client = Embedder(**options)

    def __repr__(self) -> str:
        return f"<EmbedBatches {self.column!r} -> {self.output_column!r} {self._client!r}>"

    def __del__(self) -> None:
        syncer = getattr(self, "_syncer", None)
        if syncer is not None:
            syncer.stop(timeout=1.0)

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, pa.Table):
            return self._table(batch)
        if isinstance(batch, Mapping):
            return self._columns(dict(batch))
        return self._frame(batch)  # pandas

    # -- the three batch formats ------------------------------------------------------------

    def _table(self, table: pa.Table) -> pa.Table:
        texts = _column(table.column_names, self.column, lambda: table[self.column].to_pylist())
        ids = None if self.id_column is None else table[self.id_column].to_pylist()
        vectors, ok, messages = self._embed(texts, ids)
        dim = vectors.shape[1]
        values = pa.array(vectors.reshape(-1), type=pa.float32())
        column = pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~ok))
        table = _replace(table, self.output_column, column)
        if self.errors == "return":
            table = _replace(table, self.error_column, pa.array(messages, type=pa.string()))
        return table

    def _columns(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = _column(list(batch), self.column, lambda: list(batch[self.column]))
        ids = None if self.id_column is None else list(batch[self.id_column])
        vectors, _, messages = self._embed(texts, ids)
        batch[self.output_column] = vectors
        if self.errors == "return":
            batch[self.error_column] = np.array(messages, dtype=object)
        return batch

    def _frame(self, frame: Any) -> Any:
        texts = _column(list(frame.columns), self.column, lambda: frame[self.column].tolist())
        ids = None if self.id_column is None else frame[self.id_column].tolist()
        vectors, ok, messages = self._embed(texts, ids)
        frame = frame.copy()
        frame[self.output_column] = [v if good else None for v, good in zip(vectors, ok)]
        if self.errors == "return":
            frame[self.error_column] = messages
        return frame

    # -- embedding, row by row as needed ----------------------------------------------------

    def _embed(
        self, texts: list[Any], ids: list[Any] | None
    ) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
        """Vectors (NaN rows where none), the ``ok`` mask and each row's error message."""
        n = len(texts)
        messages: list[str | None] = [None] * n
        for i, text in enumerate(texts):
            try:
                validate_texts([text])
            except InvalidInputError as exc:
                messages[i] = str(exc).replace("texts[0]", "the text", 1)
        good = [i for i in range(n) if messages[i] is None]
        found = self._fetch([texts[i] for i in good])
        vectors = np.full((n, found.vectors.shape[1]), np.nan, dtype=np.float32)
        vectors[good] = found.vectors
        ok = np.zeros(n, dtype=bool)
        for j, i in enumerate(good):
            ok[i] = bool(found.ok[j])
            if not ok[i]:
                error = found.error_for(j)
                messages[i] = str(error) if error is not None else "no vector arrived"
        failed = [i for i in range(n) if not ok[i]]
        if failed and self.errors == "raise":
            i = failed[0]
            raise RowError(f"{_row_name(texts[i], ids, i)} was not embedded: {messages[i]}")
        return vectors, ok, messages

    def _fetch(self, texts: list[str]) -> Any:
        """``errors="return"``'s result for ``texts``. A batch refused for one input's sake
        is split by the client until the refused inputs stand alone (``_core._isolate``),
        so only the guilty rows fail; a batch refused whatever it holds fails whole, without
        a request per row."""
        result = self._client.embed(texts, errors="return")
        for error in result.errors:
            if isinstance(error, CALL_WIDE_ERRORS):  # of the whole run, not of a row
                raise error
        return result


def _share_told_limits(options: dict[str, Any], workers: int | None) -> None:
    """Divide the account's ``rpm`` / ``tpm`` between the workers."""
    told = [name for name in ("rpm", "tpm") if options.get(name) is not None]
    if not told:
        return
    if workers is None or isinstance(workers, bool) or int(workers) != workers or workers < 1:
        raise ConfigurationError(
            f"{told[0]} is the account's limit: pass workers=N (the number of workers, "
            f"map_batches' concurrency) so that each keeps to 1/N of it, got workers={workers!r}"
        )
    for name in told:
        options[name] = options[name] / workers


def _column(names: list[str], column: str, read: Any) -> list[Any]:
    if column not in names:
        raise ConfigurationError(f"no column {column!r} in the batch; its columns: {names}")
    values: list[Any] = read()
    return values


def _replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def _row_name(text: Any, ids: list[Any] | None, i: int) -> str:
    if ids is not None:
        return f"row {ids[i]!r}"
    shown = text if not isinstance(text, str) or len(text) <= 40 else text[:40] + "..."
    return f"the row whose text is {shown!r}"


# -- the whole dataset ----------------------------------------------------------------------


def embed_dataset(
    ds: Any,
    column: str = "text",
    output_column: str = "embedding",
    *,
    concurrency: int | tuple[int, int] = 4,
    rows_per_batch: int | None = None,
    num_cpus: float = NUM_CPUS,
    errors: ErrorMode = "raise",
    error_column: str = "embedding_error",
    id_column: str | None = None,
    shared_limit: bool = True,
    ray_remote_args: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """``ds`` with ``output_column``: the float32 vector of each row's ``column``.

    ``concurrency``: the number of workers (or Ray's ``(min, max)``); each asks for
    ``num_cpus`` of a CPU (they wait on the network: a 2-core machine runs 8 at 0.25).
    ``rows_per_batch``: rows handed to a worker at a time (default: enough for every
    request slot to be busy for a while). ``options``: every client option of
    :class:`embedsdk.Embedder`, ``batch_size`` (texts per request) and ``max_concurrent``
    (requests in flight per worker) included; ``rpm`` / ``tpm`` are the account's, divided
    between the workers. See :class:`EmbedBatches` for ``errors`` and ``id_column``.

    Checks the options and the column before anything runs; the dataset stays lazy.
    """
    options = given_options(options)  # NOT_GIVEN: left to the client's default
    checked = resolve_options(**options)  # a bad option fails here, not in every worker
    schema = ds.schema(fetch_if_missing=False)
    if schema is not None and column not in schema.names:
        raise ConfigurationError(
            f"no column {column!r} in the dataset; its columns: {schema.names}"
        )
    workers = concurrency if isinstance(concurrency, int) else max(concurrency)
    if rows_per_batch is None:
        rows_per_batch = max(64, checked.request_size * checked.max_concurrent * 8)
    kwargs = {
        **options,
        "api_key": _Secret(checked.api_key or ""),
        "column": column,
        "output_column": output_column,
        "errors": errors,
        "error_column": error_column,
        "id_column": id_column,
        "workers": workers,
        "shared_limit": shared_limit,
    }
    if isinstance(concurrency, int):
        pool = ray.data.ActorPoolStrategy(size=concurrency)
    else:
        pool = ray.data.ActorPoolStrategy(min_size=min(concurrency), max_size=max(concurrency))
    return ds.map_batches(
        EmbedBatches,
        fn_constructor_kwargs=kwargs,
        compute=pool,
        batch_size=rows_per_batch,
        batch_format="pyarrow",
        num_cpus=num_cpus,
        **(ray_remote_args or {}),
    )
