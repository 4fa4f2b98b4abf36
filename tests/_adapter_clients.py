"""What the framework adapters hold between calls, for their tests.

The adapters keep one ``AsyncEmbedder`` per event loop and options, and close them with their
loop (``embedsdk.integrations._adapters``).

Private access: whether that registry empties when a loop shuts down is the point of the tests
that use this, and no public name shows it.
"""

from __future__ import annotations

import asyncio

from embedsdk import AsyncEmbedder
from embedsdk.integrations import _adapters


def loop_clients() -> list[AsyncEmbedder]:
    """The adapters' clients on the running event loop (one per option set)."""
    with _adapters._lock:
        entry = _adapters._loops.get(asyncio.get_running_loop())
        return [] if entry is None else list(entry.clients.values())


def loop_clients_count() -> int:
    """How many event loops hold adapter clients now."""
    with _adapters._lock:
        return len(_adapters._loops)
