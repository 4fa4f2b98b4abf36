"""The option set is declared once (``OPTION_TABLE``), and every other place that lists the
options agrees with it: the typed dicts, the clients' keywords, the module functions' per-call
parameters and docstrings, ``embedsdk embed --help``'s flags and their defaults, and the
option tables of docs/api.md and both guides.

Each source is compared by a function that returns the disagreements, so that each check is
also shown to fail on a doctored copy of its source (``test_*_catches_*``).

Private access: the declaration's helpers (``embedsdk.client._config``) and the command
line's translation of it (``embedsdk.cli._options``: flags, defaults, words) are the units under
test, and the parser is read for its subcommand's help.
"""

from __future__ import annotations

import argparse
import inspect
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import pytest

import embedsdk
from embedsdk import NOT_GIVEN, AsyncEmbedder, Embedder, EmbedderOptions, Options
from embedsdk.cli import build_parser, main
from embedsdk.cli._options import OPTION_FLAGS, client_kwargs, in_flags
from embedsdk.client import (
    OPTION_TABLE,
    PROFILES,
    BatchSize,
    EncodingFormat,
    OptionSpec,
    Provider,
    resolve_options,
)
from embedsdk.client._config import ENCODING_FORMATS, option_names

DOCS = Path(__file__).parent.parent / "docs"
#: The string values each annotation's ``Literal`` allows, by the alias's name.
LITERALS = {
    "BatchSize": ("auto",),
    "EncodingFormat": typing.get_args(EncodingFormat),
    "Provider": typing.get_args(Provider),
}


def _annotation(value: Any) -> str:
    """An annotation as written (annotations are postponed: a str, or a ForwardRef in a
    TypedDict)."""
    return value if isinstance(value, str) else value.__forward_arg__


# -- the typed dicts -----------------------------------------------------------------------------


def typed_dict_disagreements(typed: Any, names: tuple[str, ...]) -> list[str]:
    """How a typed dict differs from the declared options ``names``: missing or extra keys,
    and annotations other than declared."""
    keys = typed.__annotations__
    problems = [f"{n}: missing" for n in names if n not in keys]
    problems += [f"{n}: not declared" for n in keys if n not in names]
    problems += [
        f"{n}: {_annotation(keys[n])} but declared {OPTION_TABLE[n].annotation}"
        for n in names
        if n in keys and _annotation(keys[n]) != OPTION_TABLE[n].annotation
    ]
    return problems


def test_options_is_the_declared_client_options() -> None:
    assert typed_dict_disagreements(Options, option_names("every")) == []


def test_embedder_options_are_the_declared_ones_less_the_model_first_parameter() -> None:
    names = tuple(n for n in option_names("every", "call") if n != "model")
    assert typed_dict_disagreements(EmbedderOptions, names) == []


def test_typed_dict_check_catches_a_missing_option_and_a_wrong_type() -> None:
    class Doctored(typing.TypedDict, total=False):
        model: str | None  # declared str | NotGiven | None
        nope: int

    found = typed_dict_disagreements(Doctored, ("model", "timeout"))
    assert found == [
        "timeout: missing",
        "nope: not declared",
        "model: str | None but declared str | NotGiven | None",
    ]


# -- the clients' keywords ----------------------------------------------------------------------


def keyword_disagreements(init: Callable[..., Any]) -> list[str]:
    """How a client's ``__init__`` differs from the declaration: every declared option is
    either its own parameter (annotated and defaulted as declared) or a key of
    ``**options: Unpack[EmbedderOptions]``."""
    parameters = dict(inspect.signature(init).parameters)
    parameters.pop("self", None)
    spread = parameters.pop("options", None)
    problems = []
    if spread is None or _annotation(spread.annotation) != "Unpack[EmbedderOptions]":
        problems.append("options: not **options: Unpack[EmbedderOptions]")
    taken = set(parameters) | set(EmbedderOptions.__annotations__)
    problems += [f"{n}: not taken" for n in OPTION_TABLE if n not in taken]
    problems += [f"{n}: not declared" for n in sorted(taken - set(OPTION_TABLE))]
    for name, parameter in parameters.items():
        spec = OPTION_TABLE.get(name)
        if spec is not None and _annotation(parameter.annotation) != spec.annotation:
            problems.append(f"{name}: annotated {parameter.annotation}")
        if spec is not None and parameter.default is not spec.default:
            problems.append(f"{name}: defaults to {parameter.default!r}")
    return problems


@pytest.mark.parametrize("client", [AsyncEmbedder, Embedder], ids=lambda c: c.__name__)
def test_client_keywords_are_the_declared_options(client: type) -> None:
    assert keyword_disagreements(client.__init__) == []  # type: ignore[misc]


def test_keyword_check_catches_an_undeclared_keyword_and_a_wrong_default() -> None:
    def doctored(
        model: str | None = None,
        *,
        transport: Any = NOT_GIVEN,
        proxy: str = "",
        **options: EmbedderOptions,  # annotated as written: Unpack[EmbedderOptions] expected
    ) -> None: ...

    assert keyword_disagreements(doctored) == [
        "options: not **options: Unpack[EmbedderOptions]",
        "proxy: not declared",
        "model: annotated str | None",
        "model: defaults to None",
        "transport: annotated Any",
    ]


def test_resolve_options_takes_the_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SILICONFLOW_API_KEY", "sk-x")
    resolved = resolve_options()
    for name in option_names("every", "call"):
        default = OPTION_TABLE[name].default
        if default is not NOT_GIVEN:  # worked out: checked in test_config
            assert getattr(resolved, name) == default, name
        assert getattr(resolved, name) is not NOT_GIVEN, name


# -- the module functions ------------------------------------------------------------------------

CONCURRENCY = {
    "get_batch_embeddings": None,  # serial: one request in flight, no parameter for it
    "get_batch_embeddings_concurrent": "max_workers",  # the usage guide's names
    "get_batch_embeddings_async": "max_concurrent",
}


@pytest.mark.parametrize("name", sorted(CONCURRENCY))
def test_module_functions_take_the_declared_per_call_defaults(name: str) -> None:
    parameters = inspect.signature(getattr(embedsdk, name)).parameters
    assert parameters["batch_size"].default == OPTION_TABLE["batch_size"].default
    concurrency = CONCURRENCY[name]
    if concurrency is not None:
        assert parameters[concurrency].default == OPTION_TABLE["max_concurrent"].default
    assert {"max_workers", "max_concurrent"} & set(parameters) == (
        {concurrency} if concurrency else set()
    )
    assert _annotation(parameters["options"].annotation) == "Unpack[Options]"


DOCUMENTED: list[tuple[Any, tuple[str, ...]]] = [
    (embedsdk.get_batch_embeddings, option_names("every")),
    (embedsdk.get_batch_embeddings_concurrent, option_names("every")),
    (embedsdk.get_batch_embeddings_async, option_names("every")),
    (Embedder, tuple(OPTION_TABLE)),
    (AsyncEmbedder, tuple(OPTION_TABLE)),
]


@pytest.mark.parametrize(("target", "names"), DOCUMENTED, ids=lambda x: getattr(x, "__name__", ""))
def test_docstrings_list_every_option_as_declared(target: Any, names: tuple[str, ...]) -> None:
    doc = inspect.getdoc(target) or ""
    listed = re.findall(r"^- ``(\w+)`` \(default: ", doc, re.M)
    assert tuple(listed) == names
    for name in names:
        spec = OPTION_TABLE[name]
        assert f"``{name}`` (default: {spec.shown_default}): " in doc


# -- the command line ----------------------------------------------------------------------------


def help_flags(help_text: str) -> list[str]:
    """The flags listed under "client options:" in ``embedsdk embed --help``."""
    section = help_text.split("client options:\n", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"^  (--[a-z-]+)", section, re.M)


def flag_disagreements(flags: list[str]) -> list[str]:
    declared = [flag for spec in OPTION_TABLE.values() for flag in spec.flags]
    problems = [f"{f}: declared, not in --help" for f in declared if f not in flags]
    problems += [f"{f}: in --help, not declared" for f in flags if f not in declared]
    return problems


@pytest.fixture(scope="module")
def embed_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return str(sub.choices["embed"].format_help())


def test_the_help_lists_the_declared_flags(embed_help: str) -> None:
    assert flag_disagreements(help_flags(embed_help)) == []


def test_embed_help_is_what_the_command_prints(
    embed_help: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    assert help_flags(capsys.readouterr().out) == help_flags(embed_help)


def test_flag_check_catches_a_missing_and_an_undeclared_flag(embed_help: str) -> None:
    doctored = embed_help.replace("  --tpm N", "  --tpm-limit N")
    assert flag_disagreements(help_flags(doctored)) == [
        "--tpm: declared, not in --help",
        "--tpm-limit: in --help, not declared",
    ]


def test_options_without_a_flag_say_why() -> None:
    for spec in OPTION_TABLE.values():
        assert bool(spec.flags) != bool(spec.no_flag), spec.name


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["embed", "in.txt", "-o", "out.npy", *argv])


def test_flags_default_to_the_declared_defaults() -> None:
    given = client_kwargs(_parse())
    expected = {
        name: spec.default
        for name, spec in OPTION_TABLE.items()
        if spec.flags and spec.default is not NOT_GIVEN
    }
    assert given == expected  # what the library works out (NOT_GIVEN) is left to it


#: A value for each flag; a new declared flag needs one here.
SAMPLES = {
    "--model": ["m"],
    "--base-url": ["http://127.0.0.1:9/v1"],
    "--provider": ["tei"],
    "--api-key-file": ["KEYFILE"],
    "--no-api-key": [],
    "--batch-size": ["8"],
    "--max-concurrent": ["2"],
    "--rpm": ["10"],
    "--tpm": ["10"],
    "--max-retries": ["1"],
    "--max-wait": ["5"],
    "--timeout": ["5"],
    "--dimensions": ["8"],
    "--encoding-format": ["float"],
    "--cache-dir": ["somewhere"],
    "--no-cache": [],
    "--max-batch-tokens": ["9"],
    "--allow-insecure": [],
    "--truncate": [],
    "--no-adaptive": [],
    "--price": ["0.5 CNY"],
}


@pytest.mark.parametrize(
    ("name", "flag"), [(n, f) for n, s in OPTION_TABLE.items() for f in s.flags]
)
def test_each_flag_sets_its_declared_option(name: str, flag: str, tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    key.write_text("sk-from-file\n")
    argv = [str(key) if v == "KEYFILE" else v for v in SAMPLES[flag]]
    default = client_kwargs(_parse())
    given = client_kwargs(_parse(flag, *argv))
    assert given.get(name, NOT_GIVEN) != default.get(name, NOT_GIVEN)
    assert {n for n in given if given[n] != default.get(n, NOT_GIVEN)} == {name}


def test_the_max_wait_flag_takes_none_for_no_bound() -> None:
    assert client_kwargs(_parse())["max_wait"] == 300.0
    assert client_kwargs(_parse("--max-wait", "none"))["max_wait"] is None
    assert client_kwargs(_parse("--max-wait", "3600"))["max_wait"] == 3600.0


def test_messages_name_each_option_by_its_first_declared_flag() -> None:
    assert {n: s.flags[0] for n, s in OPTION_TABLE.items() if s.flags} == OPTION_FLAGS


def test_library_words_become_flags_but_a_servers_words_stay() -> None:
    assert in_flags("pass allow_insecure=True if trusted") == "pass --allow-insecure if trusted"
    assert in_flags("or pass provider='generic'") == "or pass --provider generic"
    assert in_flags('api_key="" sends none') == "--no-api-key sends none"
    assert in_flags("the model must be set; model=abc") == "the model must be set; model=abc"
    server = "HTTP 400: batch_size must be below 64; max_retries=3 (pass api_key= or set X)"
    assert in_flags(server, server_words=True) == server.replace("api_key=", "--api-key-file FILE")


# -- the docs ------------------------------------------------------------------------------------


def _plain(cell: str) -> str:
    """A Markdown cell without its links' targets: ``[text](url)`` -> ``text``."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell).strip()


def option_rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The rows of the first table after ``heading``: option name -> its cells."""
    section = markdown.split(heading, 1)[1]
    rows: dict[str, list[str]] = {}
    for line in section.split("\n## ", 1)[0].splitlines():
        if rows and not line.startswith("|"):
            break
        found = re.match(r"\| `(\w+)` \|", line)
        if found:
            rows[found.group(1)] = [_plain(c) for c in line.strip("|").split(" | ")]
    return rows


def docs_disagreements(rows: Mapping[str, list[str]]) -> list[str]:
    """How docs/api.md's option table differs from the declaration: its rows (in order),
    each Default cell, the start of each Meaning cell, and the Type cell's ``None`` and
    literal values."""
    if list(rows) != list(OPTION_TABLE):
        return [f"rows {list(rows)} but declared {list(OPTION_TABLE)}"]
    problems = []
    for name, (_, kind, default, meaning) in rows.items():
        spec = OPTION_TABLE[name]
        if default.replace("`", "") != spec.shown_default:
            problems.append(f"{name}: default {default!r} but declared {spec.shown_default!r}")
        if not meaning.startswith(spec.doc):
            problems.append(f"{name}: meaning does not start with {spec.doc!r}")
        if ("`None`" in kind) != ("None" in spec.annotation.split(" | ")):
            problems.append(f"{name}: type {kind!r} and declared {spec.annotation} on None")
        for alias, values in LITERALS.items():
            missing = [v for v in values if alias in spec.annotation and f'"{v}"' not in kind]
            problems += [f"{name}: type {kind!r} lacks {v!r}" for v in missing]
    return problems


@pytest.fixture(scope="module")
def api_md() -> str:
    return (DOCS / "api.md").read_text(encoding="utf-8")


def test_the_api_reference_table_is_the_declaration(api_md: str) -> None:
    assert docs_disagreements(option_rows(api_md, "\n## Options\n")) == []


def test_docs_check_catches_a_changed_default_and_a_missing_row(api_md: str) -> None:
    rows = option_rows(api_md, "\n## Options\n")
    changed = dict(rows, timeout=[*rows["timeout"][:2], "`30.0`", rows["timeout"][3]])
    assert docs_disagreements(changed) == ["timeout: default '`30.0`' but declared '60.0'"]
    kind = rows["provider"][1].replace('`"tei"`, ', "")
    assert docs_disagreements(
        dict(rows, provider=[rows["provider"][0], kind, *rows["provider"][2:]])
    ) == [f"provider: type {kind!r} lacks 'tei'"]
    del rows["tpm"]
    assert len(docs_disagreements(rows)) == 1


def test_the_command_lines_table_lists_every_declared_flag(api_md: str) -> None:
    section = api_md.split("### `embedsdk embed INPUT -o OUTPUT [options]`", 1)[1]
    section = section.split("\n### ", 1)[0]
    first_cells = [row[2:].split(" | ", 1)[0] for row in section.splitlines() if row[:3] == "| `"]
    documented = {flag for cell in first_cells for flag in re.findall(r"`(--[a-z-]+)", cell)}
    declared = {flag for spec in OPTION_TABLE.values() for flag in spec.flags}
    assert declared <= documented, sorted(declared - documented)


def test_the_api_reference_points_at_public_names_only(api_md: str) -> None:
    assert "embedsdk._config" not in api_md  # Options is embedsdk.Options now
    assert "Unpack[embedsdk.Options]" in api_md


@pytest.mark.parametrize(
    ("guide", "heading"), [("guide.en.md", "### Shared options"), ("guide.zh.md", "### 共同选项")]
)
def test_the_guides_tables_use_declared_names(guide: str, heading: str) -> None:
    text = (DOCS / guide).read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `(\w+)`(?: / `(\w+)`)?", section, re.M))
    names = {n for pair in named for n in pair if n}
    assert names and names <= set(OPTION_TABLE) | {"max_workers"}  # max_workers: the guide's


# -- the literals ---------------------------------------------------------------------------------


def test_the_literals_are_the_values_the_library_takes() -> None:
    assert typing.get_args(Provider) == tuple(PROFILES)
    assert typing.get_args(EncodingFormat) == ENCODING_FORMATS
    assert typing.get_args(BatchSize)[0] is int


def test_plain_defaults_are_shown_as_written() -> None:
    for spec in OPTION_TABLE.values():
        if spec.default is not NOT_GIVEN:
            assert spec.shown_default.startswith(repr(spec.default).replace("'", '"')), spec.name


def test_the_declaration_is_frozen() -> None:
    spec = OPTION_TABLE["timeout"]
    assert isinstance(spec, OptionSpec)
    with pytest.raises(AttributeError):
        spec.default = 1.0  # type: ignore[misc]
