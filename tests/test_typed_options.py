"""The typed options: the typed dicts, the runtime check and resolve_options cannot drift apart,
every entry point is annotated with them, and mypy sees the names (tests/typecheck)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Callable

import pytest

import embedsdk
from embedsdk import AsyncEmbedder, ClientOptions, Embedder, EmbedderOptions, Options, Stats
from embedsdk.client import CLIENT_OPTIONS, resolve_options

PER_CALL = {"batch_size", "max_concurrent"}  # arguments of each call in the module functions


def test_function_options_are_the_runtime_check_of_unknown_names() -> None:
    assert set(Options.__annotations__) == CLIENT_OPTIONS


def test_resolve_options_takes_every_typed_option() -> None:
    # ``model`` is the clients' first (positional) parameter; ``transport`` is their own.
    spread = inspect.signature(resolve_options).parameters["given"]
    assert spread.kind is inspect.Parameter.VAR_KEYWORD
    assert spread.annotation == "Unpack[_ResolvedOptions]"
    assert set(EmbedderOptions.__annotations__) == CLIENT_OPTIONS - {"model"} | PER_CALL


def test_every_option_may_be_left_out() -> None:
    assert Options.__required_keys__ == EmbedderOptions.__required_keys__ == frozenset()


ENTRY_POINTS: list[tuple[Callable[..., Any], str]] = [
    (embedsdk.get_batch_embeddings, "Unpack[Options]"),
    (embedsdk.get_batch_embeddings_concurrent, "Unpack[Options]"),
    (embedsdk.get_batch_embeddings_async, "Unpack[Options]"),
    (Embedder.__init__, "Unpack[EmbedderOptions]"),
    (AsyncEmbedder.__init__, "Unpack[EmbedderOptions]"),
]


@pytest.mark.parametrize(
    ("function", "annotation"), ENTRY_POINTS, ids=lambda x: getattr(x, "__qualname__", x)
)
def test_entry_points_take_typed_options(function: Callable[..., Any], annotation: str) -> None:
    options = inspect.signature(function).parameters["options"]
    assert options.kind is inspect.Parameter.VAR_KEYWORD
    assert options.annotation == annotation  # a string: annotations are postponed


TAKE_ERRORS: list[Callable[..., Any]] = [
    embedsdk.get_batch_embeddings,
    embedsdk.get_batch_embeddings_concurrent,
    embedsdk.get_batch_embeddings_async,
    Embedder.embed,
    Embedder.embed_async,
    Embedder.embed_stream,
    Embedder.embed_threaded,
    AsyncEmbedder.embed,
    AsyncEmbedder.embed_stream,
]


@pytest.mark.parametrize("function", TAKE_ERRORS, ids=lambda f: f.__qualname__)
def test_errors_is_a_literal_in_every_signature(function: Callable[..., Any]) -> None:
    # The implementation's annotation; mypy's view of the overloads is in tests/typecheck
    # (``errors="retrun"`` must be an error there).
    assert inspect.signature(function).parameters["errors"].annotation == "ErrorMode"
    assert typing.get_args(embedsdk.ErrorMode) == ("raise", "return")
    overloads = getattr(typing, "get_overloads", lambda f: [])(function)  # Python 3.11+
    taken = [inspect.signature(o).parameters["errors"].annotation for o in overloads]
    assert "str" not in taken  # the fallback that let any string through is gone


def test_options_and_stats_are_typed() -> None:
    properties: dict[str, Any] = dict(inspect.getmembers(Embedder))
    assert typing.get_type_hints(properties["options"].fget)["return"] is ClientOptions
    assert typing.get_type_hints(properties["stats"].fget)["return"] is Stats


def test_resolved_options_are_typed_precisely() -> None:
    fields = {f.name: f.type for f in dataclasses.fields(ClientOptions)}
    assert "Any" not in fields.values()
    assert fields["cache"] == "bool | str | os.PathLike[str] | VectorCache | None"
    assert fields["rate_controller"] == "RateController | None"
    assert fields["encoding_format"] == "EncodingFormat"
    assert fields["provider"] == "Provider"


@pytest.mark.slow  # about 2 s with mypy's cache, 20 s without
def test_mypy_sees_the_option_names_and_types() -> None:
    api = pytest.importorskip("mypy.api")
    usage = Path(__file__).parent / "typecheck" / "options_usage.py"
    out, err, status = api.run(["--strict", "--no-error-summary", str(usage)])
    assert status == 0, out + err
