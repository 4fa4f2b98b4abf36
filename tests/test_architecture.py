"""The package's shape, read statically (AST): subpackages on floors, seams between them.

- A module imports another subpackage only through that package's ``__init__`` (its seam:
  the names it exports for the others), never one of its private modules.
- No module imports a ``_private`` name from another module.
- Imports point down the floors (``FLOORS``), never up (imports for type checking only
  included: a type taken from a floor above is an arrow up all the same), and there is no
  cycle between modules (those aside: two modules of one package may name each other's
  types).

See docs/architecture.md#the-house.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "embedsdk"

#: Bottom to top. A module may import from its own floor's other packages only where listed in
#: SIDEWAYS, and from any floor below.
FLOORS = [
    {"_exceptions", "_text", "_version"},
    {"http", "_prices"},
    {"ratecontrol", "cache"},
    {"client"},
    {"files", "integrations", "batchapi", "plan", "telemetry", "cli"},
    {"testing"},
    {"__init__", "__main__", "langchain", "llama_index", "ray"},
    {"_bench"},  # the bench uses what a user has: embedsdk, its integrations, the simulator
]
SIDEWAYS = {
    ("cli", "files"),
    ("cli", "integrations"),
    ("cli", "batchapi"),
    ("cli", "plan"),
    ("batchapi", "files"),  # the job directory's lock is the output's
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _group(module: str) -> str:
    """The top-level name a module belongs to: its subpackage, or itself."""
    return module.split(".")[0]


def _floor(group: str) -> int:
    return next(i for i, names in enumerate(FLOORS) if group in names)


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str, typing: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) of every import of ``module``; those for type checking
    only too when ``typing``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if _is_package(module) else module.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
            names = [a.name for a in node.names]
            if (target in MODULES and _is_package(target)) or target == "":
                subs = [f"{target}.{n}".lstrip(".") for n in names]
                mods = [s for s in subs if s in MODULES]
                for sub in mods:
                    found.append((sub, [], node.lineno))
                rest = [n for n, s in zip(names, subs) if s not in MODULES]
                if rest:
                    found.append((target or "__init__", rest, node.lineno))
            else:
                found.append((target, names, node.lineno))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("embedsdk"):
            target = node.module[len("embedsdk.") :] if node.module != "embedsdk" else "__init__"
            found.append((target, [a.name for a in node.names], node.lineno))
    return found


def _violations() -> list[str]:
    problems = []
    for module in sorted(MODULES):
        group = _group(module)
        for target, names, line in _imports(module, typing=True):
            where = f"embedsdk/{MODULES[module].relative_to(PACKAGE)}:{line}"
            other = _group(target)
            if other != group and target != other and target.split(".")[-1].startswith("_"):
                problems.append(f"{where}: reaches into {target} (import it from {other})")
            if target != module:
                private = [n for n in names if n.startswith("_") and not n.endswith("__")]
                if private:
                    problems.append(f"{where}: imports private {', '.join(private)} from {target}")
            if (other != group and other in MODULES) or other in {"__init__"}:
                up = _floor(other) > _floor(group)
                same = _floor(other) == _floor(group) and (group, other) not in SIDEWAYS
                if up or (same and group != other):
                    problems.append(f"{where}: imports {other}, which is not below {group}")
    return problems


def _cycles() -> list[list[str]]:
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_is_on_a_floor() -> None:
    groups = {_group(m) for m in MODULES}
    placed = set().union(*FLOORS)
    assert groups <= placed, f"put {sorted(groups - placed)} on a floor of FLOORS"


def test_modules_meet_through_seams_and_imports_point_down() -> None:
    assert _violations() == []


def test_there_is_no_import_cycle() -> None:
    assert _cycles() == []


@pytest.mark.parametrize("package", sorted(m for m in MODULES if "." not in m and _is_package(m)))
def test_every_subpackage_says_its_job_exports_and_imports(package: str) -> None:
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text(encoding="utf-8"))) or ""
    assert len(doc) > 200, f"embedsdk/{package}/__init__.py: say its job, exports, imports"
