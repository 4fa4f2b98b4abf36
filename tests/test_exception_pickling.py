"""Every embedsdk exception survives pickling with its message and attributes, and never with
the key: multiprocessing, ``ProcessPoolExecutor`` and LlamaIndex's worker pools send a worker's
exception back pickled, and one that cannot be unpickled hangs ``mp.Pool`` or turns into
``BrokenProcessPool`` without the real error."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import multiprocessing
import pickle
import pkgutil
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest

import embedsdk
from embedsdk import EmbedSDKError

KEY = "sk-pickle-test-0123456789"

#: A value for each keyword an exception class may require (a new required keyword fails the
#: test below until it gets one here).
SAMPLES: dict[str, Any] = {
    "index": 3,
    "status_code": 429,
    "code": "rate_limited",
    "trace_id": "trace-42",
    "retry_after": 1.5,
    "body": '{"error": "slow down"}',
    "host": "127.0.0.1",
    "port": 8080,
    "reason": "refused",
    "retryable": False,
    "job_dir": "/tmp/corpus.batch",
    "batch_id": "batch_42",
}


def _import_embedsdk() -> None:
    """Every module of embedsdk that needs no optional framework, so that their exception
    classes exist (the CLI's input and output files define their own)."""
    for module in pkgutil.iter_modules(embedsdk.__path__, "embedsdk."):
        if module.name.endswith("__main__"):  # runs the CLI
            continue
        with contextlib.suppress(ImportError):  # ray, langchain, llama_index: no framework
            importlib.import_module(module.name)


def _classes() -> list[type[EmbedSDKError]]:
    """Every subclass of EmbedSDKError in embedsdk, and the base itself (every exception
    embedsdk exports derives from it: tests/test_exports.py)."""
    _import_embedsdk()
    found: list[type[EmbedSDKError]] = []
    todo: list[type[EmbedSDKError]] = [EmbedSDKError]
    while todo:
        cls = todo.pop()
        if cls not in found and cls.__module__ != "embedsdk.ray":  # Ray pickles its own
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda cls: cls.__name__)


def _keywords(cls: type[EmbedSDKError]) -> dict[str, Any]:
    try:
        parameters = inspect.signature(cls).parameters
    except ValueError:  # Exception's own __init__ (Python < 3.12 has no signature for it)
        return {}
    kind = inspect.Parameter.KEYWORD_ONLY
    return {name: SAMPLES[name] for name, p in parameters.items() if p.kind is kind}


def _make(cls: type[EmbedSDKError]) -> EmbedSDKError:
    """An instance with every keyword of its constructor given, then marked as a call-stopping
    error is (failed inputs, what arrived, a note)."""
    exc = cls("it failed", **_keywords(cls))
    exc.failed_indices = [1, 2]
    exc.batch_indices = [0, 1, 2]
    exc.partial = np.array([[1.0, 2.0], [np.nan, np.nan]], dtype=np.float32)
    exc.args = (f"{exc.args[0]}; gave up after 3 attempts",)  # as the runner adds its notes
    return exc


def _state(exc: BaseException) -> dict[str, Any]:
    state = {k: v for k, v in vars(exc).items() if k != "partial"}
    return {"type": type(exc), "str": str(exc), "args": exc.args, **state}


def test_the_class_list_covers_the_public_exceptions() -> None:
    names = {cls.__name__ for cls in _classes()}
    public = {n for n in embedsdk.__all__ if n.endswith("Error")}
    assert public and all(issubclass(getattr(embedsdk, n), BaseException) for n in public)
    assert public <= names
    assert {"InputFileError", "OutputUsageError", "OutputFileError"} <= names


@pytest.mark.parametrize("cls", _classes(), ids=lambda cls: cls.__name__)
def test_every_exception_round_trips_through_pickle(cls: type[EmbedSDKError]) -> None:
    exc = _make(cls)
    copy = pickle.loads(pickle.dumps(exc))
    assert _state(copy) == _state(exc)
    assert np.array_equal(copy.partial, exc.partial, equal_nan=True)
    for name in SAMPLES:  # the constructor's attributes, where the class has them
        assert getattr(copy, name, None) == getattr(exc, name, None)


def _refused_with_key() -> BaseException:
    def refuse(request: embedsdk.Request) -> embedsdk.Response:
        return embedsdk.Response(401, {"x-request-id": "req-1"}, b'{"message": "bad key"}')

    transport = embedsdk.MockTransport(refuse)
    base_url = "http://127.0.0.1:9/v1"
    client = embedsdk.Embedder(transport=transport, base_url=base_url, api_key=KEY, cache=False)
    with client, pytest.raises(embedsdk.AuthenticationError) as caught:
        client.embed(["a", "b"])
    return caught.value


def test_a_real_status_error_pickles_its_details_and_never_the_key() -> None:
    exc = _refused_with_key()
    data = pickle.dumps(exc)
    assert KEY.encode() not in data
    copy = pickle.loads(data)
    assert isinstance(copy, embedsdk.AuthenticationError)
    assert (copy.status_code, copy.message, copy.trace_id) == (401, "bad key", "req-1")
    assert str(copy) == str(exc) and copy.failed_indices == exc.failed_indices == [0, 1]


# -- through a real process pool ---------------------------------------------------------------


def _embed_with_a_bad_item(texts: list[Any]) -> Any:
    """Runs in the worker: refused before any request (nothing listens on port 9)."""
    return embedsdk.get_batch_embeddings(texts, base_url="http://127.0.0.1:9/v1", api_key="")


def _raise_a_status_error(status: int) -> None:
    """Runs in the worker: the error a 5xx answer becomes."""
    raise embedsdk.InternalServerError("overloaded", status_code=status, trace_id="t-9")


def test_a_process_pool_gets_the_workers_real_error_back() -> None:
    # spawn: a fresh interpreter, as on macOS and Windows (and no fork of this process's
    # threads). The timeout only stops a hang from stalling the suite; it is never reached.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        invalid = pool.submit(_embed_with_a_bad_item, ["a", None])
        status = pool.submit(_raise_a_status_error, 503)
        with pytest.raises(embedsdk.InvalidInputError) as caught:
            invalid.result(timeout=120)
        assert caught.value.index == 1 and "texts[1] is NoneType" in str(caught.value)
        with pytest.raises(embedsdk.InternalServerError) as failed:
            status.result(timeout=120)
        assert (failed.value.status_code, failed.value.trace_id) == (503, "t-9")
