"""LangChain embeddings backed by embedsdk: ``pip install 'embedsdk[langchain]'``.

>>> from embedsdk.langchain import EmbedsdkEmbeddings               # doctest: +SKIP
>>> from langchain_core.vectorstores import InMemoryVectorStore
>>> emb = EmbedsdkEmbeddings(model="BAAI/bge-m3", max_concurrent=10, batch_size=32)
>>> store = InMemoryVectorStore.from_texts(texts, emb)             # all texts in one call
>>> docs = await store.asimilarity_search("天气", k=3)               # native async

Every vector store, retriever and indexing pipeline that takes a
``langchain_core.embeddings.Embeddings`` then runs at embedsdk's speed: the whole list goes
out with ``max_concurrent`` requests in flight, through the account's rate controller and
the disk cache. Sync methods run on the shared default client's loop thread (the one
:func:`embedsdk.get_batch_embeddings` uses); async methods run on the caller's event loop.
"""

from __future__ import annotations

from typing import Any, Literal

from ..client import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENT, DEFAULT_MODEL, given_options
from ._adapters import check_options, embed_async, embed_sync, missing

try:
    from langchain_core.embeddings import Embeddings
    from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr
except ImportError as exc:
    raise missing("embedsdk.langchain", "langchain-core", "langchain") from exc

__all__ = ["EmbedsdkEmbeddings"]


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class EmbedsdkEmbeddings(BaseModel, Embeddings):
    """A LangChain ``Embeddings`` on embedsdk's async core.

    Takes every option of :func:`embedsdk.get_batch_embeddings` as a keyword (``model``,
    ``base_url``, ``api_key``, ``rpm``, ``tpm``, ``cache``, ``dimensions``, ...), plus
    ``batch_size`` (inputs per request) and ``max_concurrent`` (requests in flight). They are
    checked here, before any request: an unknown keyword is a ``TypeError``, a bad value a
    :class:`~embedsdk.ConfigurationError`.

    The key comes from ``api_key=`` or the environment (as for the module functions); it is
    a ``SecretStr``, masked in ``repr`` and left out of ``model_dump``.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, description="the embedding model's name")
    api_key: SecretStr | None = Field(default=None, exclude=True)
    batch_size: int | Literal["auto"] = Field(
        default=DEFAULT_BATCH_SIZE, description='inputs per request, or "auto"'
    )
    max_concurrent: int = Field(
        default=DEFAULT_MAX_CONCURRENT, description="requests in flight at once"
    )
    # Whether api_key was given (else it comes from the environment on each call, as for the
    # module functions, so that this adapter shares their client).
    _key_given: bool = PrivateAttr(default=False)

    def __init__(self, **options: Any) -> None:
        options = given_options(options)  # NOT_GIVEN: left to the default, as for a client
        if "api_key" in options:
            options["api_key"] = _plain(options["api_key"])
        resolved = check_options(type(self).__name__, options)
        fields = {**options, "model": resolved.model, "api_key": resolved.api_key}
        super().__init__(**fields)
        self._key_given = options.get("api_key") is not None

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(self.model_extra or {})
        options.update(
            model=self.model, batch_size=self.batch_size, max_concurrent=self.max_concurrent
        )
        if self._key_given:  # "" (send no key) stays "", not the environment's key
            options["api_key"] = self.api_key.get_secret_value() if self.api_key else ""
        return options

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` in one embedsdk call: ``max_concurrent`` requests in flight."""
        return embed_sync(type(self).__name__, self._options(), texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed one query text."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts`` on the running event loop (no thread hop)."""
        return await embed_async(self._options(), texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query text on the running event loop."""
        return (await self.aembed_documents([text]))[0]
