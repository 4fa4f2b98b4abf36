"""Where a run's figures come from: the commit, the machine, and what else was running.

Recorded in every results file (``provenance``), so that a figure quoted in the docs can be
traced to the code that produced it (``tests/test_figures.py`` checks that the committed
results are not older than the client core and rate control they measure) and read with the
machine's state in mind: a figure measured while other work shared the cores is slower than
on an idle machine, and says so.

"Anything else running" is told two ways. The load average before the run (the bench has
not started: all of it is other work) and after it (the bench's own work is in it). And,
where ``/proc/stat`` exists (Linux), the CPU every process used during the run less what this
process and its children used (the simulator, the ``embedsdk embed`` runs): other work's CPU,
in cores on average.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from . import report

#: Load per core above which the machine counts as busy (the note in the results file).
BUSY_PER_CORE = 0.5
_MAX_DIRTY_PATHS = 50


def source_root() -> Path:
    """The folder holding the ``embedsdk`` package that runs (a checkout's root)."""
    return Path(__file__).resolve().parents[2]


def _git(root: Path, *args: str, strip: bool = True) -> str | None:
    """``git -C root ARGS``'s output (``strip``: without surrounding blanks), or ``None``
    when git fails or is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() if strip else done.stdout


def dirty_paths(porcelain: str) -> list[str]:
    """The paths of ``git status --porcelain`` output (``XY path``; a rename's new name)."""
    paths = []
    for line in porcelain.splitlines():
        if len(line) > 3:
            paths.append(line[3:].split(" -> ")[-1].strip('"'))
    return paths


def git_state(root: Path | None = None) -> dict[str, Any]:
    """The commit the code was run at, and whether the tree differed from it (and where).

    ``commit`` is ``None`` outside a git checkout (an installed package, an sdist) or without
    git; ``reason`` then says so.
    """
    root = source_root() if root is None else root
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "dirty_paths": [], "reason": f"{root}: no git"}
    # Not stripped: a line's first column is a blank when the change is not staged.
    status = _git(root, "status", "--porcelain", "--untracked-files=all", strip=False)
    paths = dirty_paths(status or "")
    return {
        "commit": commit,
        "branch": _git(root, "rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(paths) if status is not None else None,
        "dirty_paths": paths[:_MAX_DIRTY_PATHS],
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or ``None`` where the OS has none (Windows)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def busy_seconds(stat: str | None = None) -> float | None:
    """CPU seconds every process has used since boot, from ``/proc/stat``'s ``cpu`` line
    (user, nice, system, irq, softirq, steal; not idle or iowait), or ``None`` without it."""
    try:
        if stat is None:
            with open("/proc/stat", encoding="ascii") as f:
                stat = f.readline()
        ticks = [int(x) for x in stat.split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if len(ticks) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / hz


def own_seconds() -> float:
    """CPU seconds of this process (every thread) and of its children that have ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Watch:
    """The code's and the machine's state over a run: made before it, :meth:`finish` after
    it (once every child process has ended, so that their CPU is counted as ours)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = source_root() if root is None else root
        self.git = git_state(self.root)  # at the start: the code that runs
        self.started = datetime.datetime.now().astimezone()
        self._wall = time.perf_counter()
        self._load = load_average()
        self._busy = busy_seconds()
        self._own = own_seconds()

    def finish(self) -> dict[str, Any]:
        """The run's dates and the load record (see :func:`load_record`)."""
        wall = time.perf_counter() - self._wall
        others = None
        busy = busy_seconds()
        if busy is not None and self._busy is not None and wall > 0:
            used = (busy - self._busy) - (own_seconds() - self._own)
            others = max(0.0, used) / wall
        return {
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "seconds": round(wall, 1),
            "load": load_record(self._load, load_average(), others, os.cpu_count() or 1),
        }


def load_record(
    before: list[float] | None, after: list[float] | None, others: float | None, cores: int
) -> dict[str, Any]:
    """The load averages, other work's CPU (cores on average), whether that is ``busy``
    (above :data:`BUSY_PER_CORE` per core, before the run or during it) and a note saying
    what that means for the figures."""
    before_per_core = None if before is None else before[0] / cores
    others_per_core = None if others is None else others / cores
    known = [x for x in (before_per_core, others_per_core) if x is not None]
    busy = None if not known else max(known) > BUSY_PER_CORE
    parts = []
    if before is not None:
        parts.append(f"load average {before[0]:.2f} on {cores} cores before the run")
    if others is not None:
        parts.append(f"other processes used {others:.2f} cores on average during it")
    what = " and ".join(parts) or "the load is unknown on this system"
    verdict = {
        True: ": the machine was busy, so times are slower than on an idle one",
        False: ": the machine was quiet",
        None: "",
    }[busy]
    return {
        "before": before,
        "after": after,  # includes the bench's own work
        "cores": cores,
        "others_cores": None if others is None else round(others, 2),
        "busy": busy,
        "note": what + verdict,
    }


def provenance(watch: Watch) -> dict[str, Any]:
    """Everything a results file says about where its figures come from. ``head_after``:
    the commit checked out when the run ended, when it is not the one it started at."""
    record = {**watch.git, **watch.finish(), "machine": report.machine()}
    after = _git(watch.root, "rev-parse", "HEAD")
    if after != watch.git["commit"]:
        record["head_after"] = after
    return record
