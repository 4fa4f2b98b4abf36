"""What the framework adapters hold between calls, for their tests.

The adapters keep one ``AsyncEmbedder`` per event loop and options, and close them with their
loop (``embedsdk.integrations._adapters``). Whether that registry empties when a loop shuts
down is the point of the tests that use this, and no public name shows it: hence the private
access, here only.
"""

from __future__ import annotations

from embedsdk.integrations import _adapters


def loop_clients_count() -> int:
    """How many event loops hold adapter clients now."""
    with _adapters._lock:
        return len(_adapters._loops)
