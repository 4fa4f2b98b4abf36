"""The disk cache of vectors: ``VectorCache`` (``_store``: keys on endpoint, model,
dimensions and text, never the key; fails soft) over its own SQLite table (``_sqlite``: the
schema, batched reads, writes, eviction, a connection pool; diskcache's public API was
several times too slow for a batched read, so the table is ours).

Exports ``VectorCache`` and what the client and the command line use to open, name and
clear it. Imports only ``embedsdk._exceptions`` and ``embedsdk._text`` of embedsdk.
"""

from __future__ import annotations

from ._sqlite import (
    DBNAME,
)
from ._store import (
    VectorCache,
    cache_disabled_by_env,
    cache_keys,
    default_cache_dir,
    file_in_the_way,
    open_cache,
)

__all__ = [
    "DBNAME",
    "VectorCache",
    "cache_disabled_by_env",
    "cache_keys",
    "default_cache_dir",
    "file_in_the_way",
    "open_cache",
]
