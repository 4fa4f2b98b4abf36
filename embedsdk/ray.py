"""The public import path of the integration in ``embedsdk.integrations.ray``."""

from __future__ import annotations

from .integrations.ray import *  # noqa: F403
from .integrations.ray import __all__ as __all__
