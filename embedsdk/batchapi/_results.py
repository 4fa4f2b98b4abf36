"""What a finished batch returned: vectors into the store, failures sorted.

Output lines are matched to requests by ``custom_id`` (the order is the provider's). Each
answer is judged as ``/embeddings`` judges it (:mod:`embedsdk.http`): a 200's vectors are
checked (every index once, one width, finite) and stored; a transient failure (429, 5xx,
``batch_expired``, ``batch_cancelled``) is sent again as it was; a refusal that blames the
content of a request of several inputs is sent again one input a request, so that one bad
text does not cost the others their vectors; what is left is refused for good, with the
provider's words.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._exceptions import APIStatusError, ResponseValidationError
from ..cache import VectorCache
from ..http import blames_input, embeddings_of, is_retryable, should_split, status_error
from ._state import JobState, part_file

#: Vectors written to the store in one transaction.
STORE_ROWS = 4096


class StoreFailed(OSError):
    """The store would not keep the vectors (full disk, read-only): they stay on disk in the
    job directory, and the next run stores them without paying again."""


def _lines(path: Any) -> Iterator[dict[str, Any]]:
    """The JSON objects of a downloaded file; a line that is not one is passed over (its
    request, answered by no line, is sent again)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            try:
                line = json.loads(raw) if raw.strip() else None
            except ValueError:
                continue
            if isinstance(line, dict):
                yield line


def _request_number(custom_id: Any, n: int) -> int | None:
    head, _, tail = str(custom_id).partition("-")
    if head != str(n) or not tail.isdigit():
        return None
    return int(tail)


def _vectors(body: Any, count: int, dimensions: int | None) -> tuple[np.ndarray, int | None]:
    """The rows of one answer, checked; ``dimensions``: the width they must have (asked
    for, or that of the job's first answer)."""
    try:
        if not isinstance(body, dict):
            raise ValueError("the response body is not a JSON object")
        matrix = embeddings_of(body, count)
        if dimensions is not None and matrix.shape[1] != dimensions:
            raise ValueError(f"vectors of {matrix.shape[1]} dimensions, not {dimensions}")
    except (ValueError, TypeError) as exc:
        raise ResponseValidationError(f"untrustworthy batch output: {exc}") from exc
    usage = body.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return matrix, tokens if isinstance(tokens, int) else None


def _judge(line: dict[str, Any]) -> APIStatusError | None:
    """The error of a failed line, ``None`` for one not run at all (expired, cancelled)."""
    response = line.get("response")
    if isinstance(response, dict) and response.get("status_code", 200) != 200:
        body = json.dumps(response.get("body"), ensure_ascii=False).encode()
        return status_error(int(response["status_code"]), {}, body)
    return None  # expired, cancelled: never run


class Sorter:
    """Sorts one finished part's lines: :meth:`store` the vectors, then :meth:`sort_errors`.

    ``retry``: requests sent again as they were (in this run); ``split``: sent again one
    input a request; ``deferred``: sent again by the next run (the batch was cancelled, or
    the provider refused them for the account's sake: a key, a quota, a model), with why;
    ``refused``: one input refused for its content, for good.
    """

    def __init__(
        self,
        state: JobState,
        part: dict[str, Any],
        requests: list[list[str]],
        dimensions: int | None,
    ) -> None:
        self.state, self.part, self.requests = state, part, requests
        self.dimensions = dimensions if dimensions is not None else state.data.get("dim")
        self.answered: set[int] = set()
        self.retry: list[int] = []
        self.split: list[int] = []
        self.deferred: list[int] = []
        self.why: str | None = None
        self.refused: list[list[Any]] = []
        self.tokens = 0

    def store(self, stores: Any, namespace: bytes) -> int:
        """Store the vectors of every 200 line; returns how many inputs. Raises
        :class:`StoreFailed` when the store did not keep them."""
        texts: list[str] = []
        rows: list[np.ndarray] = []
        stored = 0
        n = self.part["n"]
        for line in _lines(self.state.path(part_file(n, "output"))):
            i = _request_number(line.get("custom_id"), n)
            if i is None or i >= len(self.requests) or i in self.answered:
                continue
            response = line.get("response") or {}
            if response.get("status_code") != 200:
                self._failed(i, _judge(line))
                continue
            inputs = self.requests[i]
            try:
                matrix, tokens = _vectors(response.get("body"), len(inputs), self.dimensions)
            except ResponseValidationError:
                self.answered.add(i)
                self.retry.append(i)
                continue
            self.answered.add(i)
            if self.dimensions is None:  # the job's first answer sets the width
                self.dimensions = self.state.data["dim"] = int(matrix.shape[1])
            self.tokens += tokens or 0
            texts.extend(inputs)
            rows.append(matrix)
            if len(texts) >= STORE_ROWS:
                stored += _put(stores, namespace, texts, rows)
                texts, rows = [], []
        if texts:
            stored += _put(stores, namespace, texts, rows)
        return stored

    def sort_errors(self, cancelled: bool = False) -> None:
        """The error file's lines, then every request no file answered: sent again now,
        or, when the batch was ``cancelled``, by the next run (a cancel is someone's wish)."""
        n = self.part["n"]
        for line in _lines(self.state.path(part_file(n, "errors"))):
            i = _request_number(line.get("custom_id"), n)
            if i is None or i >= len(self.requests) or i in self.answered:
                continue
            self._failed(i, _judge(line))
        for i in range(len(self.requests)):
            if i not in self.answered:
                self.answered.add(i)
                (self.deferred if cancelled else self.retry).append(i)
        if cancelled and self.deferred and self.why is None:
            self.why = f"batch {self.part.get('batch_id')} was cancelled"

    def owed_inputs(self) -> int:
        """Inputs this part still owes a vector for (to be sent again)."""
        again = (*self.retry, *self.split, *self.deferred)
        return sum(len(self.requests[i]) for i in again)

    def _failed(self, i: int, exc: APIStatusError | None) -> None:
        self.answered.add(i)
        blamed = None if exc is None else blames_input(exc)
        if exc is None or is_retryable(exc):
            self.retry.append(i)
        elif should_split(exc) or (blamed is not False and exc.status_code in (400, 413, 422)):
            # about what an input holds (or cannot be told): alone, each input is judged
            if len(self.requests[i]) > 1:
                self.split.append(i)
            else:
                self.refused.append([i, exc.status_code, exc.message])
        else:  # a key, a quota, a model, an option: the user can mend them
            self.deferred.append(i)
            self.why = self.why or f"HTTP {exc.status_code}: {exc.message}"


def _put(stores: Any, namespace: bytes, texts: list[str], rows: list[np.ndarray]) -> int:
    """Write to the job's store (checked: the result is read from it), and a copy to the
    caller's cache (as any answer fills it; a cache that fails says so itself)."""
    matrix = np.vstack(rows)
    job: VectorCache = stores.job
    job.set_many(namespace, texts, matrix)
    _, hit = job.get_many(namespace, texts)
    if not hit.all():
        why = job.problem or "the vectors written could not be read back"
        raise StoreFailed(
            f"the job's vector store at {job.directory} did not keep the batch's vectors "
            f"({why}); they are kept in the job directory: fix it (disk space, permissions) "
            "and run the same command again"
        )
    if stores.cache is not None:
        stores.cache.set_many(namespace, texts, matrix)
    return len(texts)
