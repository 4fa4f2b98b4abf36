"""The frameworks' adapters: LangChain (``langchain``), LlamaIndex (``llama_index``)
and Ray (``ray``), on what they share (``_adapters``: sync calls on the shared default
``Embedder`` of their options, async calls on one ``AsyncEmbedder`` per event loop). Their
public paths are ``embedsdk.langchain``, ``embedsdk.llama_index`` and ``embedsdk.ray``;
``import embedsdk`` imports none of them, nor the frameworks.

Exports ``PER_CALL`` (the options a call may change) to the bench. Imports ``embedsdk.client``,
``embedsdk.ratecontrol`` and ``embedsdk._exceptions``.
"""

from __future__ import annotations

from ._adapters import (
    PER_CALL,
)

__all__ = [
    "PER_CALL",
]
