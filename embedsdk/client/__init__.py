"""The client: every entry point ends in ``AsyncEmbedder`` (``_core``).

- ``_config``: the options, declared once (``OPTION_TABLE``: name, type, default, doc, CLI
  flag), ``NOT_GIVEN``, the environment, validation; ``_providers``: the provider profiles
  (batch caps, token budgets, input limits, key variables);
- ``_planning``: validation of the texts, input limits, de-duplication, token estimates,
  batch plans (pure); ``_autobatch``: ``batch_size="auto"``'s sizer (pure);
- ``_job``: one call's state, ``Stats``, ``EmbeddingResult``; ``_progress``: the bar;
  ``_events``: event hooks (``Event``, ``Call``) and usage collectors (``track_usage``);
- ``_core``: ``AsyncEmbedder``, its event loop and its public calls; ``_runner``: the steps
  of a call (``Runner``: the core's internal interface, which ``_stream``, ``embed_stream``'s
  windows, and the integrations use); ``_sending``: one request, paced, sent, retried,
  decoded; ``_cache_async``: the cache off the loop;
- ``_sync``: ``Embedder`` on one event-loop thread; ``_api``: the usage guide's three
  functions on shared default clients.

Exports the public client names (re-exported by ``embedsdk``) and what the command line, the
integrations and the bench use of it. Imports ``embedsdk.http``, ``embedsdk.ratecontrol``,
``embedsdk.cache``, ``embedsdk._exceptions``, ``embedsdk._prices`` and ``embedsdk._text``.
"""

from __future__ import annotations

from ._api import (
    CLIENT_OPTIONS,
    client_for,
    close_default_clients,
    get_batch_embeddings,
    get_batch_embeddings_async,
    get_batch_embeddings_concurrent,
)
from ._config import (
    API_KEY_VARIABLES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_WAIT,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    OPTION_TABLE,
    REWRITE_MARK,
    BatchSize,
    ClientOptions,
    EmbedderOptions,
    EncodingFormat,
    ErrorMode,
    NotGiven,
    Options,
    OptionSpec,
    Provider,
    Rewrite,
    find_api_key,
    given_options,
    resolve_options,
)
from ._core import (
    AsyncEmbedder,
)
from ._events import EVENTS, Call, Event, add_global_hooks, track_usage
from ._job import (
    CALL_WIDE_ERRORS,
    EmbeddingResult,
    Stats,
    Vectors,
)
from ._planning import (
    estimate_tokens,
    validate_texts,
)
from ._progress import (
    held_back_by,
)
from ._providers import (
    PROFILES,
)
from ._runner import (
    Runner,
)
from ._sync import (
    Embedder,
)

__all__ = [
    "API_KEY_VARIABLES",
    "CALL_WIDE_ERRORS",
    "CLIENT_OPTIONS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_MODEL",
    "DEFAULT_TIMEOUT",
    "EVENTS",
    "NOT_GIVEN",
    "OPTION_TABLE",
    "PROFILES",
    "REWRITE_MARK",
    "AsyncEmbedder",
    "BatchSize",
    "Call",
    "ClientOptions",
    "Embedder",
    "EmbedderOptions",
    "EmbeddingResult",
    "EncodingFormat",
    "ErrorMode",
    "Event",
    "NotGiven",
    "OptionSpec",
    "Options",
    "Provider",
    "Rewrite",
    "Runner",
    "Stats",
    "Vectors",
    "add_global_hooks",
    "client_for",
    "close_default_clients",
    "estimate_tokens",
    "find_api_key",
    "get_batch_embeddings",
    "get_batch_embeddings_async",
    "get_batch_embeddings_concurrent",
    "given_options",
    "held_back_by",
    "resolve_options",
    "track_usage",
    "validate_texts",
]
