"""Cutting a job into batch files: the texts no cache holds and no earlier part covers.

One pass reads the texts once, in windows, so memory stays bounded however many there are.
Each text is checked as ``/embeddings`` checks it (an empty or non-string text is named by
its index before anything is uploaded), looked up in the store, and claimed in the plan table
(a duplicate, in this pass or in an earlier run's, is not sent twice). The rest become
requests of at most the profile's inputs and estimated tokens, and the requests become files
of at most the Batch API's requests, bytes and inputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any, Callable, NamedTuple

from ..cache import VectorCache, cache_keys
from ..client import ClientOptions, estimate_tokens, validate_texts
from ._limits import BatchLimits
from ._state import JobState, Plan, part_file

#: Texts read, checked and looked up at a time.
WINDOW = 4096
#: The input's fingerprint is the sum of its texts' keys modulo this (order does not count).
_MOD = 1 << 128
#: What every request line of a job's files is sent to.
ENDPOINT = "/v1/embeddings"


def request_body(options: ClientOptions, texts: list[str]) -> dict[str, Any]:
    """The ``/embeddings`` body of one request line, as the default route would send it."""
    body: dict[str, Any] = {"model": options.model, "input": texts}
    if options.encoding_format == "base64":
        body["encoding_format"] = "base64"
    if options.dimensions is not None:
        body["dimensions"] = options.dimensions
    return body


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclasses.dataclass
class Scan:
    """What a planning pass saw: texts read, already stored, repeated in this pass, carried
    by an earlier pass's batches, planned now."""

    texts: int = 0
    cached: int = 0
    covered: int = 0
    earlier: int = 0
    planned: int = 0


class _PartWriter:
    """Requests into part files within the Batch API's limits (see :class:`BatchLimits`)."""

    def __init__(
        self, state: JobState, options: ClientOptions, limits: BatchLimits, round_: int
    ) -> None:
        self.state, self.options, self.limits, self.round = state, options, limits, round_
        self.made: list[dict[str, Any]] = []
        self._out: IO[bytes] | None = None
        self._requests = self._inputs = self._tokens = self._bytes = 0

    @property
    def first_part(self) -> int:
        """The number of this pass's first part: the plan table's rows of this pass name it
        (only whether a part is in ``job.json`` matters, see ``Plan``)."""
        return len(self.state.parts) + 1

    def add(self, texts: list[str], tokens: int) -> None:
        """One request of ``texts`` (in a new file when this one is full)."""
        body = request_body(self.options, texts)
        if self._out is None:
            self._open()
        line = request_line(f"{self._n}-{self._requests}", body)
        if self._requests and (
            self._requests + 1 > self.limits.requests_per_file
            or self._bytes + len(line) > self.limits.bytes_per_file
            or self._inputs + len(texts) > self.limits.inputs_per_batch
        ):
            self.close()
            self._open()
            line = request_line(f"{self._n}-0", body)
        assert self._out is not None
        self._out.write(line)
        self._requests += 1
        self._inputs += len(texts)
        self._tokens += tokens
        self._bytes += len(line)

    def _open(self) -> None:
        self._n = len(self.state.parts) + len(self.made) + 1
        self._out = open(self.state.path(part_file(self._n)), "wb")  # noqa: SIM115

    def close(self) -> None:
        if self._out is None:
            return
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        self._out = None
        self.made.append(
            {
                "n": self._n,
                "requests": self._requests,
                "inputs": self._inputs,
                "tokens": self._tokens,
                "bytes": self._bytes,
            }
        )
        self._requests = self._inputs = self._tokens = self._bytes = 0


def _windows(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(items)
    while True:
        window = list(itertools.islice(it, size))
        if not window:
            return
        yield window


def plan_texts(
    texts: Iterable[Any],
    state: JobState,
    plan: Plan,
    stores: Stores,
    namespace: bytes,
    options: ClientOptions,
    limits: BatchLimits,
    round_: int,
    check: Callable[[str, int], None],
) -> Scan:
    """Read ``texts`` once and add parts for those not stored and not planned.

    A text in the caller's cache but not in the job's store is copied there (the store is
    what the result is read from). ``check(digest, texts)`` sees the input's fingerprint
    before anything is committed, and may refuse it. Blocking (disk): run it on a worker
    thread. Raises :class:`InvalidInputError` naming the first bad text, with nothing planned.
    """
    per_request = options.request_size
    writer = _PartWriter(state, options, limits, round_)
    scan = Scan()
    digest = 0  # the sum of the texts' keys: the same texts in any order give the same
    plan.begin()
    try:
        pending: list[str] = []
        pending_tokens = 0
        for window in _windows(texts, WINDOW):
            validate_texts(window, scan.texts)
            scan.texts += len(window)
            keys = cache_keys(namespace, window)
            digest = (digest + sum(int.from_bytes(key[:16], "little") for key in keys)) % _MOD
            fresh = _not_stored(stores, namespace, window, keys, scan)
            claimed = plan.claim([key for _, key in fresh], writer.first_part)
            for (text, _), seen in zip(fresh, claimed):
                if seen:
                    scan.covered += seen == 1
                    scan.earlier += seen == 2
                    continue
                tokens = estimate_tokens(text)
                if pending and (
                    len(pending) >= per_request
                    or pending_tokens + tokens > options.max_batch_tokens
                ):
                    writer.add(pending, pending_tokens)
                    pending, pending_tokens = [], 0
                pending.append(text)
                pending_tokens += tokens
                scan.planned += 1
        if pending:
            writer.add(pending, pending_tokens)
        writer.close()
        fingerprint = f"{digest:032x}"
        check(fingerprint, scan.texts)
        plan.commit()  # before job.json: a kill between leaves rows that name no part
    except BaseException:
        writer.close()
        plan.rollback()
        raise
    for made in writer.made:
        part = state.add_part(
            round_, made["requests"], made["inputs"], made["tokens"], made["bytes"]
        )
        assert part["n"] == made["n"]
    state.data.setdefault("input", {"digest": fingerprint, "texts": scan.texts})
    state.save()
    return scan


class Stores(NamedTuple):
    """Where vectors are kept: the job's own store (never evicts: the result is read from
    it) and the caller's cache (``None`` when off), which gets a copy of each."""

    job: VectorCache
    cache: VectorCache | None


def _not_stored(
    stores: Stores, namespace: bytes, window: list[str], keys: list[bytes], scan: Scan
) -> list[tuple[str, bytes]]:
    """The texts of ``window`` (with their keys) that neither store holds; those only the
    caller's cache holds are copied into the job's store."""
    _, hit = stores.job.get_many(namespace, window)
    missing = [i for i, found in enumerate(hit) if not found]
    scan.cached += len(window) - len(missing)
    if missing and stores.cache is not None:
        wanted = [window[i] for i in missing]
        matrix, cached = stores.cache.get_many(namespace, wanted)
        if matrix is not None and cached.any():
            rows = [j for j, found in enumerate(cached) if found]
            copied = [wanted[j] for j in rows]
            stores.job.set_many(namespace, copied, matrix[rows])
            _, kept = stores.job.get_many(namespace, copied)
            done = {missing[j] for j, ok in zip(rows, kept) if ok}
            scan.cached += len(done)
            missing = [i for i in missing if i not in done]
    return [(window[i], keys[i]) for i in missing]


def resend_lines(
    state: JobState,
    options: ClientOptions,
    limits: BatchLimits,
    round_: int,
    requests: Iterable[tuple[list[str], int]],
) -> list[dict[str, Any]]:
    """New parts for ``requests`` (inputs, estimated tokens) that must go again."""
    writer = _PartWriter(state, options, limits, round_)
    try:
        for texts, tokens in requests:
            writer.add(texts, tokens)
    finally:
        writer.close()
    parts = []
    for made in writer.made:
        parts.append(
            state.add_part(round_, made["requests"], made["inputs"], made["tokens"], made["bytes"])
        )
    return parts


def read_requests(state: JobState, part: dict[str, Any]) -> list[list[str]]:
    """The inputs of each request of ``part``, from its file as uploaded."""
    requests: list[list[str]] = []
    with open(state.path(part["file"]), "rb") as lines:
        for line in lines:
            requests.append(json.loads(line)["body"]["input"])
    return requests
