"""The typed options: the typed dicts, the runtime check and resolve_options cannot drift apart,
every entry point is annotated with them, and mypy sees the names (tests/typecheck)."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, Callable

import pytest

import embedsdk
from embedsdk import AsyncEmbedder, ClientOptions, Embedder, Stats
from embedsdk.client._api import CLIENT_OPTIONS
from embedsdk.client._config import EmbedderOptions, Options, resolve_options

RESOLVED = set(inspect.signature(resolve_options).parameters)
PER_CALL = {"batch_size", "max_concurrent"}  # arguments of each call in the module functions


def test_function_options_are_resolve_options_less_the_per_call_ones() -> None:
    assert set(Options.__annotations__) == RESOLVED - PER_CALL
    assert set(Options.__annotations__) == CLIENT_OPTIONS  # the runtime check of unknown names


def test_embedder_options_are_resolve_options_less_the_model() -> None:
    # ``model`` is the clients' first (positional) parameter; ``transport`` is their own.
    assert set(EmbedderOptions.__annotations__) == RESOLVED - {"model"}


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


def test_options_and_stats_are_typed() -> None:
    properties: dict[str, Any] = dict(inspect.getmembers(Embedder))
    assert typing.get_type_hints(properties["options"].fget)["return"] is ClientOptions
    assert typing.get_type_hints(properties["stats"].fget)["return"] is Stats


@pytest.mark.slow  # about 2 s with mypy's cache, 20 s without
def test_mypy_sees_the_option_names_and_types() -> None:
    api = pytest.importorskip("mypy.api")
    usage = Path(__file__).parent / "typecheck" / "options_usage.py"
    out, err, status = api.run(["--strict", "--no-error-summary", str(usage)])
    assert status == 0, out + err
