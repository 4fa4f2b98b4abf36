"""Shared test set-up: no real keys, no real cache directory, no sleeping retries."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import embedsdk
from embedsdk import ratecontrol
from embedsdk.client import API_KEY_VARIABLES
from embedsdk.http import is_testing

_ENV = (
    *API_KEY_VARIABLES,  # every provider's: each is read for its provider's hosts
    "EMBEDSDK_BASE_URL",
    "EMBEDSDK_MODEL",
    "EMBEDSDK_CACHE",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test: a fresh cache directory, no key from the environment, retries that don't
    sleep (tests that measure backoff turn it back on with ``embedsdk.set_testing(False)``),
    the module-level functions' shared clients closed and the shared rate controllers
    forgotten afterwards."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMBEDSDK_CACHE_DIR", str(tmp_path / "embedsdk-cache"))
    was = is_testing()
    embedsdk.set_testing(True)
    randomness = random.getstate()  # a test that seeds backoff's jitter seeds only itself
    yield
    random.setstate(randomness)
    embedsdk.set_testing(was)
    embedsdk.close_default_clients()
    # Rate controllers are shared per (endpoint, key, model): a 429 of one test must not
    # pace the next one against the same simulated endpoint.
    ratecontrol.forget_shared_controllers()
