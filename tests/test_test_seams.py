"""The tests' own seams: a test reaches inside embedsdk only where its file says why.

Read statically (AST), as tests/test_architecture.py and tests/test_seams.py read the package.
A file under tests/ reaches inside when it

- imports a private module of embedsdk (a part of the path spelled ``_name``:
  ``embedsdk.client._core``, ``from embedsdk.http import _retry``) or a ``_private`` name
  from embedsdk;
- names such a module in a string it passes to a call (``monkeypatch.setattr(
  "embedsdk.client._progress.Progress.note", ...)``, ``sys.modules`` keys);
- touches a private attribute: ``x._name``, or ``getattr(x, "_name")`` and the like
  (``monkeypatch.setattr(x, "_name", ...)``). Not counted: ``self`` and ``cls``, a name the
  file defines itself (its own fakes' methods and attributes), a module of another library
  the file imports (``os._exit``), and the ``_``-names that are a library's public API
  (namedtuple's). Read statically, another library's object cannot be told from one of
  embedsdk's: its private attributes count too (``parser._actions``), and the file says so.

Such a file says why in its module docstring, on a line that begins ``Private access:``
(for example "Private access: the rate controller's state machine is the unit under test,
and has no public seam."). Everything else goes through the public surface: the names in
``embedsdk.__all__``, a subpackage's exports, the documented attributes of a client.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Where a file says why it reaches inside: a line of its module docstring that begins so,
#: followed by the reason.
MARK = re.compile(r"^Private access: \S.{19,}", re.MULTILINE)

#: Private-looking names that are a library's public API (namedtuple's).
LIBRARY_NAMES = frozenset({"_replace", "_asdict", "_fields", "_make"})

#: Calls whose string argument names an attribute.
BY_NAME = frozenset({"getattr", "setattr", "hasattr", "delattr"})

#: Files being rewritten in another branch (rate control, issue 22): their reaches are said
#: there. Remove an entry once its file has its "Private access:" line or no reach.
ELSEWHERE: frozenset[str] = frozenset()

_PRIVATE_PATH = re.compile(r"embedsdk(\.\w+)+")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "embedsdk" and any(_is_private(p) for p in parts[1:])


def _own(tree: ast.AST) -> set[str]:
    """Names the file makes itself: its functions and classes, the names assigned in its
    classes' bodies, and the attributes it sets on ``self`` or ``cls``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(
                target.id
                for statement in node.body
                if isinstance(statement, (ast.Assign, ast.AnnAssign))
                for target in (
                    statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                )
                if isinstance(target, ast.Name)
            )
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


def _other_libraries(tree: ast.AST) -> set[str]:
    """The names bound by ``import x`` of a module that is not embedsdk's (``os``, ...)."""
    return {
        alias.asname or alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] != "embedsdk"
    } | {"__future__"}


def _imports(node: ast.AST) -> list[str]:
    """What an import statement takes from embedsdk that is private."""
    if isinstance(node, ast.Import):
        return [f"import {a.name}" for a in node.names if _private_module(a.name)]
    if not isinstance(node, ast.ImportFrom) or node.level or node.module is None:
        return []
    if node.module.split(".")[0] != "embedsdk":
        return []
    if _private_module(node.module):
        return [f"from {node.module} import ..."]
    return [f"from {node.module} import {a.name}" for a in node.names if _is_private(a.name)]


def _by_name(node: ast.Call) -> list[str]:
    """``getattr(x, "_name")``, ``monkeypatch.setattr(x, "_name", ...)``, and a private
    module of embedsdk named in a string argument."""
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    found = []
    for arg in node.args:
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            continue
        text = arg.value
        if _PRIVATE_PATH.fullmatch(text) and _private_module(text):
            found.append(repr(text))
        elif name in BY_NAME and _is_private(text) and text.isidentifier():
            found.append(f"{name}(..., {text!r})")
    return found


def reaches(source: str) -> list[str]:
    """Each reach inside embedsdk of a test file's ``source``, as written."""
    tree = ast.parse(source)
    own = _own(tree) | LIBRARY_NAMES
    others = _other_libraries(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        found += _imports(node)
        if isinstance(node, ast.Call):
            found += _by_name(node)
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        if node.attr in own:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", *others):
            continue
        found.append(ast.unparse(node))
    return found


def says_why(source: str) -> bool:
    """Whether the module docstring has its ``Private access:`` line."""
    return bool(MARK.search(ast.get_docstring(ast.parse(source)) or ""))


def unexplained(directory: Path) -> dict[str, list[str]]:
    """For each file under ``directory`` that reaches inside without saying why: its reaches."""
    found = {}
    for path in sorted(directory.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(directory).as_posix()
        seen = reaches(source)
        if seen and not says_why(source):
            found[where] = sorted(set(seen))
    return found


def test_a_test_that_reaches_inside_embedsdk_says_why() -> None:
    found = unexplained(TESTS)
    assert {k: v for k, v in found.items() if k not in ELSEWHERE} == {}


# -- the check itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reach"),
    [
        ("from embedsdk.client._core import AsyncEmbedder\n", "from embedsdk.client._core"),
        ("from embedsdk.http import _retry\n", "from embedsdk.http import _retry"),
        ("import embedsdk.cache._sqlite\n", "import embedsdk.cache._sqlite"),
        ("from embedsdk import _exceptions\n", "from embedsdk import _exceptions"),
        ("def f(client):\n    return client._core\n", "client._core"),
        ("import embedsdk\nx = embedsdk.http._retry.is_testing()\n", "embedsdk.http._retry"),
        ("def f(emb):\n    return getattr(emb, '_sender')\n", "getattr(..., '_sender')"),
        ("def f(mp, c):\n    mp.setattr(c, '_clock', 1)\n", "setattr(..., '_clock')"),
        ("def f(mp):\n    mp.setattr('embedsdk.client._progress', 1)\n", "'embedsdk.client._pr"),
        ("_clock = 1\ndef f(store):\n    return store._clock\n", "store._clock"),
    ],
)
def test_the_check_sees_each_kind_of_reach(source: str, reach: str) -> None:
    found = reaches(source)
    assert any(f.startswith(reach) for f in found), found
    assert not says_why(source)
    explained = '"""A test.\n\nPrivate access: the planner\'s rule is the unit under test."""\n'
    assert says_why(explained + source)


@pytest.mark.parametrize(
    "source",
    [
        "from embedsdk import AsyncEmbedder\nfrom embedsdk.http import is_testing\n",
        "import os\nos._exit(0)\n",
        "class Fake:\n    def __init__(self):\n        self._n = 0\n\ndef f(fake):\n"
        "    return fake._n\n",
        "class Fake:\n    _calls: list = []\n    def _hook(self): ...\n\n"
        "def f(fake):\n    return fake._calls, fake._hook\n",
        "def f(row):\n    return row._replace(a=1)._asdict()\n",
        "def f(emb):\n    return emb.options, emb.stats, emb.closed, emb.runner\n",
        "x = 'see embedsdk.client._core for why'\nassert 'embedsdk._config' not in x\n",
    ],
)
def test_the_check_lets_the_public_surface_and_a_tests_own_names_pass(source: str) -> None:
    assert reaches(source) == []


def test_a_reason_is_a_line_of_the_module_docstring_with_words_after_the_mark() -> None:
    reach = "def f(c):\n    return c._core\n"
    assert not says_why('"""Private access:"""\n' + reach)  # no reason given
    assert not says_why('"""A test that says Private access: elsewhere in a line."""\n' + reach)
    assert not says_why('x = 1\n"""Private access: not the module docstring at all."""\n')
