"""The public import path of the integration in ``embedsdk.integrations.llama_index``."""

from __future__ import annotations

from .integrations.llama_index import *  # noqa: F403
from .integrations.llama_index import __all__ as __all__
