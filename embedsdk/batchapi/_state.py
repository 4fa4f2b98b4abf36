"""A job's state on disk, so that it survives the process: Ctrl-C, a crash, a reboot.

The job directory holds:

- ``job.json``: what the job sends (endpoint, model, dimensions; never the key) and its
  parts, each one uploaded file and one batch: its file name, request and input counts, the
  provider's file and batch ids once known, its status and what came back. Written whole to
  a temporary file and renamed over the old one, so a crash leaves the old or the new, never
  half of one.
- ``plan.sqlite``: which texts some part covers, by cache key (a digest of the endpoint,
  model, dimensions and text): the next run plans only texts no part covers and no cache
  holds, with memory bounded however many texts there are.
- ``part-NNNN.jsonl``: the requests of each part, as uploaded. They name the texts that the
  provider's output lines (matched by ``custom_id``) carry vectors for.
- ``part-NNNN.output.jsonl`` / ``.errors.jsonl``: what the provider returned, kept until the
  vectors are in the store, so that a crash between download and store pays nothing again.
- ``vectors/``: the job's vector store, which the result is read from (it never evicts; the
  caller's cache gets a copy of each vector).

One run at a time: :func:`embedsdk.batchapi.job_store` holds ``DIR.lock`` while it runs.

A part's life (``status`` is the provider's batch status; ``stage`` is ours):
``planned`` -> ``uploading`` -> ``uploaded`` (file id) -> ``creating`` -> ``submitted``
(batch id) -> ``finished`` (a terminal status seen, results stored, failures sorted).
``uploading`` and ``creating`` are written *before* the call, so that a run killed during
it looks the file or batch up by name before sending it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._exceptions import ConfigurationError

FORMAT = 1
STATE = "job.json"
PLAN = "plan.sqlite"
#: The job's own vector store (see ``job_store``).
STORE = "vectors"
#: Standard input, kept for the command line's second reading of it.
STDIN_COPY = "standard-input"

STAGES = ("planned", "uploading", "uploaded", "creating", "submitted", "finished")


def part_file(n: int, kind: str = "") -> str:
    """``part-0001.jsonl``, ``part-0001.output.jsonl``, ``part-0001.errors.jsonl``."""
    return f"part-{n:04d}{'.' + kind if kind else ''}.jsonl"


class JobState:
    """``job.json`` of one job directory, and its plan table."""

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.directory = directory
        self.data = data

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str | os.PathLike[str], identity: dict[str, Any]) -> JobState:
        """The job in ``directory``, made if new; refused if it sends something else.

        ``identity``: ``endpoint``, ``model``, ``dimensions``, ``encoding_format`` (what the
        stored vectors depend on).
        """
        path = Path(directory).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"the job directory {path} is a file")
        state_file = path / STATE
        if state_file.exists():
            state = cls.load(path)
            theirs = {k: state.data.get(k) for k in identity}
            if theirs != identity:
                differ = ", ".join(
                    f"{k} {theirs[k]!r} (now {identity[k]!r})"
                    for k in identity
                    if theirs[k] != identity[k]
                )
                raise ConfigurationError(
                    f"the job directory {path} holds a job with other settings: {differ}; "
                    "use another job directory, or delete this one (its batches are paid for)"
                )
            return state
        if path.exists() and any(p.name not in (STORE, STDIN_COPY) for p in path.iterdir()):
            raise ConfigurationError(
                f"the job directory {path} is not empty and holds no {STATE}: give an empty "
                "or new directory"
            )
        path.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "job": uuid.uuid4().hex, "created": int(time.time())}
        data.update(identity)
        data["parts"] = []
        state = cls(path, data)
        state.save()
        return state

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> JobState:
        """An existing job (``ConfigurationError`` when ``directory`` holds none)."""
        path = Path(directory).expanduser()
        try:
            data = json.loads((path / STATE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"{path} holds no batch job (no {STATE})") from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read {path / STATE}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigurationError(
                f"{path / STATE} is not a batch job this version of embedsdk can read"
            )
        return cls(path, data)

    # -- saving ------------------------------------------------------------------------------

    def save(self) -> None:
        """Write ``job.json`` atomically (a temporary file renamed over it, fsynced)."""
        handle, name = tempfile.mkstemp(prefix=".job-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(self.data, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(name, self.directory / STATE)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        _sync_directory(self.directory)

    # -- parts -------------------------------------------------------------------------------

    @property
    def job_id(self) -> str:
        return str(self.data["job"])

    @property
    def parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = self.data["parts"]
        return parts

    def add_part(
        self, round_: int, requests: int, inputs: int, tokens: int, size: int
    ) -> dict[str, Any]:
        n = len(self.parts) + 1
        part = {
            "n": n,
            "round": round_,
            "file": part_file(n),
            "requests": requests,
            "inputs": inputs,
            "tokens": tokens,
            "bytes": size,
            "stage": "planned",
            "file_id": None,
            "batch_id": None,
            "status": None,
            "counts": {"total": requests, "completed": 0, "failed": 0},
            "stored": 0,  # inputs whose vectors are in the store
            "tokens_used": 0,  # the provider's count
            "retry": [],  # request numbers to send again in a new batch
            "split": [],  # request numbers to send again one input each
            "refused": [],  # [request number, status, message] refused for good
            "resent": False,  # retry/split went into a later part
        }
        self.parts.append(part)
        return part

    def reset(self) -> None:
        """Forget every part (none was ever sent): their files go, the plan is emptied."""
        for path in self.directory.glob("part-*.jsonl"):  # a refused pass's too
            with contextlib.suppress(OSError):
                path.unlink()
        self.data["parts"] = []
        for key in ("input", "validated", "dim"):
            self.data.pop(key, None)
        # A new id: the old plan's files (uploaded, maybe) and batches (a failed one) must
        # never be found again under the new plan's names by a lookup after a kill.
        self.data["job"] = uuid.uuid4().hex
        with self.plan() as plan:
            plan.clear()
        self.save()

    def ever_sent(self) -> bool:
        """Whether any part's batch may exist at the provider (paid for, or being paid)."""
        return any(p["stage"] in ("creating", "submitted", "finished") for p in self.parts)

    def remote_name(self, part: dict[str, Any]) -> str:
        """The uploaded file's name: it finds the file again after a kill during upload."""
        return f"embedsdk-{self.job_id[:12]}-{part['file']}"

    def path(self, name: str) -> Path:
        return self.directory / name

    @contextlib.contextmanager
    def plan(self) -> Iterator[Plan]:
        plan = Plan(self.directory / PLAN)
        try:
            yield plan
        finally:
            plan.close()


def _sync_directory(path: Path) -> None:
    """fsync a directory, so that a rename in it survives a power loss (POSIX; Windows
    cannot open a directory, and its renames are durable once done)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Plan:
    """Which part covers each text (by cache key): ``plan.sqlite``.

    Rows of a planning pass are written in one transaction committed after its parts are in
    ``job.json``; rows naming a part that ``job.json`` does not have (a kill between the
    two) are dropped by :meth:`forget_parts_above`.
    """

    def __init__(self, path: Path) -> None:
        self._con = sqlite3.connect(str(path), isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives a power loss (NORMAL may roll it back, and job.json, synced
        # after it, would then name parts whose texts the next run plans and pays again).
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS planned (key BLOB PRIMARY KEY, part INTEGER) WITHOUT ROWID"
        )

    def close(self) -> None:
        self._con.close()

    def forget_parts_above(self, last: int) -> None:
        self._con.execute("DELETE FROM planned WHERE part > ?", (last,))

    def begin(self) -> None:
        self._con.execute("BEGIN")

    def commit(self) -> None:
        self._con.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._con.execute("ROLLBACK")

    def claim(self, keys: Sequence[bytes], part: int) -> list[int]:
        """For each key: 0 when new (now claimed for ``part``), 1 when this pass claimed it
        already (a duplicate), 2 when an earlier pass's part covers it."""
        found = []
        for key in keys:
            cur = self._con.execute(
                "INSERT OR IGNORE INTO planned (key, part) VALUES (?, ?)", (key, part)
            )
            if cur.rowcount == 1:
                found.append(0)
                continue
            (owner,) = self._con.execute(
                "SELECT part FROM planned WHERE key = ?", (key,)
            ).fetchone()
            found.append(1 if owner >= part else 2)
        return found

    def clear(self) -> None:
        self._con.execute("DELETE FROM planned")

    def count(self) -> int:
        return int(self._con.execute("SELECT count(*) FROM planned").fetchone()[0])
