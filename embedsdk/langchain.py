"""The public import path of the integration in ``embedsdk.integrations.langchain``."""

from __future__ import annotations

from .integrations.langchain import *  # noqa: F403
from .integrations.langchain import __all__ as __all__
