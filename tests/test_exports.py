"""The public names: ``embedsdk.__all__`` is exactly what the package exports (as httpx's
``tests/test_exported_members.py`` checks), and each of them is importable.

Private access: the exceptions' own module (``embedsdk._exceptions``) is read, to check that
every class it defines is exported and drawn in its docstring's tree.
"""

from __future__ import annotations
import __future__

import copy
import importlib
import inspect
import pickle
import typing

import pytest

import embedsdk
from embedsdk import _exceptions

#: What the usage guide and the issue promise, at least.
PROMISED = {
    "get_batch_embeddings",
    "get_batch_embeddings_concurrent",
    "get_batch_embeddings_async",
    "Embedder",
    "AsyncEmbedder",
    "EmbedSDKError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "RateLimitError",
    "InternalServerError",
    "APIConnectionError",
    "APITimeoutError",
    "InvalidInputError",
    "ConfigurationError",
    "ClientClosedError",
    "ResponseValidationError",
    "MockTransport",
    "set_testing",
    "__version__",
    # The types of the options and the results (docs/api.md once sent users to
    # embedsdk._config for Options).
    "Options",
    "EmbedderOptions",
    "NOT_GIVEN",
    "NotGiven",
    "ClientOptions",
    "EmbeddingResult",
    "Stats",
    "Vectors",
    "Rewrite",
    "BatchSize",
    "EncodingFormat",
    "ErrorMode",
    "Provider",
}


def _public_members() -> set[str]:
    return {
        name
        for name, value in vars(embedsdk).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)  # subpackages such as embedsdk.testing, once imported
        and not isinstance(value, __future__._Feature)  # `from __future__ import annotations`
    } | {"__version__"}


def test_all_is_exactly_the_public_members() -> None:
    assert set(embedsdk.__all__) == _public_members()


def _isort_style(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then the rest."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_all_is_sorted_without_duplicates() -> None:
    assert embedsdk.__all__ == sorted(set(embedsdk.__all__), key=_isort_style)


def test_not_given_is_one_object_of_its_own_type() -> None:
    sentinel = embedsdk.NOT_GIVEN
    assert isinstance(sentinel, embedsdk.NotGiven)
    assert repr(sentinel) == str(sentinel) == "NOT_GIVEN"
    assert list(embedsdk.NotGiven) == [sentinel]  # a singleton: no second value to make
    assert copy.deepcopy(sentinel) is sentinel
    assert pickle.loads(pickle.dumps(sentinel)) is sentinel  # to Ray workers and back


def test_promised_names_are_exported() -> None:
    assert set(embedsdk.__all__) >= PROMISED


@pytest.mark.parametrize("name", embedsdk.__all__)
def test_each_name_is_importable(name: str) -> None:
    module = importlib.import_module("embedsdk")
    value = getattr(module, name)
    namespace: dict[str, object] = {}
    exec(f"from embedsdk import {name} as imported", namespace)
    assert namespace["imported"] is value
    # A type alias such as Vectors (numpy's NDArray[float32]) is a class to Python 3.9's
    # inspect; its origin is numpy's, by design.
    if (inspect.isclass(value) and typing.get_origin(value) is None) or inspect.isfunction(value):
        assert value.__module__.startswith("embedsdk")  # ours, not a re-exported third party


def test_no_private_modules_leak_into_all() -> None:
    assert not [name for name in embedsdk.__all__ if name.startswith("_") and name != "__version__"]


def test_version_is_a_string() -> None:
    assert isinstance(embedsdk.__version__, str) and embedsdk.__version__[0].isdigit()


def test_every_exception_is_exported_and_derives_from_the_base() -> None:
    for name in _exceptions.__all__:
        assert name in embedsdk.__all__
        cls = getattr(embedsdk, name)
        assert issubclass(cls, embedsdk.EmbedSDKError)
    errors = {
        name
        for name, value in vars(_exceptions).items()
        if inspect.isclass(value) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert errors == set(_exceptions.__all__)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        ("ConfigurationError", "EmbedSDKError"),
        ("InvalidInputError", "EmbedSDKError"),
        ("ClientClosedError", "EmbedSDKError"),
        ("ResponseValidationError", "EmbedSDKError"),
        ("APIError", "EmbedSDKError"),
        ("APIConnectionError", "APIError"),
        ("APITimeoutError", "APIConnectionError"),
        ("APIStatusError", "APIError"),
        ("BadRequestError", "APIStatusError"),
        ("AuthenticationError", "APIStatusError"),
        ("PermissionDeniedError", "APIStatusError"),
        ("NotFoundError", "APIStatusError"),
        ("RateLimitError", "APIStatusError"),
        ("InsufficientQuotaError", "RateLimitError"),
        ("WaitTooLongError", "RateLimitError"),
        ("InternalServerError", "APIStatusError"),
    ],
)
def test_error_tree_as_drawn_in_the_docstring(child: str, parent: str) -> None:
    assert issubclass(getattr(embedsdk, child), getattr(embedsdk, parent))
    assert child in (_exceptions.__doc__ or "")


def test_value_errors_for_bad_options_and_inputs() -> None:
    # Code that catches ValueError for bad arguments keeps working.
    assert issubclass(embedsdk.ConfigurationError, ValueError)
    assert issubclass(embedsdk.InvalidInputError, ValueError)
