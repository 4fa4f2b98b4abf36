"""embedsdk's pytest plugin (loaded automatically where embedsdk is installed).

Fixtures:

- ``simulated_provider``: a running :class:`~embedsdk.testing.SimulatedProvider` with the
  default config, on a background thread; stopped after the test.
- ``simulated_provider_factory``: ``factory(config=None, **fields)`` starts one more
  provider per call (thread mode); all are stopped after the test.

embedsdk.testing is imported only when a fixture is used, so that the plugin costs nothing
to test runs that do not use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from embedsdk.testing import SimConfig, SimulatedProvider


@pytest.fixture
def simulated_provider() -> Iterator[SimulatedProvider]:
    """A started simulated provider with the default config (``.base_url`` to use it)."""
    from embedsdk.testing import SimulatedProvider

    with SimulatedProvider() as sim:
        yield sim


@pytest.fixture
def simulated_provider_factory() -> Iterator[Callable[..., SimulatedProvider]]:
    """``factory(config=None, **fields)`` -> a started simulated provider, stopped at teardown."""
    from embedsdk.testing import SimulatedProvider

    started: list[SimulatedProvider] = []

    def factory(config: SimConfig | None = None, **fields: Any) -> SimulatedProvider:
        sim = SimulatedProvider(config, **fields).start()
        started.append(sim)
        return sim

    try:
        yield factory
    finally:
        for sim in reversed(started):
            sim.stop()
