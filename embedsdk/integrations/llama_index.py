"""A LlamaIndex embedding model backed by embedsdk: ``pip install 'embedsdk[llama-index]'``.

>>> from llama_index.core import VectorStoreIndex                  # doctest: +SKIP
>>> from embedsdk.llama_index import EmbedsdkEmbedding
>>> embed_model = EmbedsdkEmbedding(model_name="BAAI/bge-m3", max_concurrent=10)
>>> index = VectorStoreIndex.from_documents(documents, embed_model=embed_model)

LlamaIndex's own batch loop sends one request per ``embed_batch_size`` texts, one after
another. Here ``get_text_embedding_batch`` and ``aget_text_embedding_batch`` hand the whole
list to embedsdk in one call (``max_concurrent`` requests in flight, ``batch_size`` inputs
each, the rate controller and the disk cache), and still report one callback event and one
instrumentation event pair per ``embed_batch_size`` texts, as LlamaIndex does.
"""

from __future__ import annotations

from typing import Any, Literal

from ..client import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENT, given_options
from ._adapters import check_options, embed_async, embed_sync, missing

try:
    import llama_index.core.instrumentation as instrument
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.callbacks.schema import CBEventType, EventPayload
    from llama_index.core.instrumentation.events.embedding import (
        EmbeddingEndEvent,
        EmbeddingStartEvent,
    )
    from pydantic import ConfigDict, Field, PrivateAttr, SecretStr
except ImportError as exc:
    raise missing("embedsdk.llama_index", "llama-index-core", "llama-index") from exc

__all__ = ["EmbedsdkEmbedding"]

dispatcher = instrument.get_dispatcher(__name__)  # type: ignore[attr-defined]

#: LlamaIndex's largest embed_batch_size (its field's bound).
_MAX_EVENT_BATCH = 2048

_Started = list[tuple[str, list[str]]]  # (callback event id, the texts it covers)


class EmbedsdkEmbedding(BaseEmbedding):
    """A LlamaIndex ``BaseEmbedding`` on embedsdk's async core.

    ``model_name`` (or ``model``) and every option of :func:`embedsdk.get_batch_embeddings`
    (``base_url``, ``api_key``, ``rpm``, ``tpm``, ``cache``, ``dimensions``, ...), plus
    ``batch_size`` (inputs per request) and ``max_concurrent`` (requests in flight), checked
    here before any request. LlamaIndex's own fields keep their meaning, and fill in for
    embedsdk's when those are not given: ``embed_batch_size`` gives ``batch_size`` (and the
    size of each callback event), ``num_workers`` gives ``max_concurrent``.

    LlamaIndex's ``rate_limiter``, when set, is honoured the only way it can be: batches go
    through LlamaIndex's own loop, one request per ``embed_batch_size`` texts. embedsdk's
    ``rpm`` / ``tpm`` limit without that cost.

    The key is a ``SecretStr``: masked in ``repr``, left out of ``to_dict`` / ``to_json`` and
    of the payloads sent to callbacks and instrumentation.
    """

    model_config = ConfigDict(extra="allow")

    api_key: SecretStr | None = Field(default=None, exclude=True)
    batch_size: int | Literal["auto"] = Field(
        default=DEFAULT_BATCH_SIZE, description='inputs per request, or "auto"'
    )
    max_concurrent: int = Field(
        default=DEFAULT_MAX_CONCURRENT, description="requests in flight at once"
    )
    _key_given: bool = PrivateAttr(default=False)

    def __init__(self, model_name: str | None = None, **kwargs: Any) -> None:
        kwargs = given_options(kwargs)  # NOT_GIVEN: left to the default, as for a client
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k not in BaseEmbedding.model_fields}
        model = ours.pop("model", None)
        if model_name is not None and model is not None and model != model_name:
            raise TypeError("give model_name or model, not both")
        if isinstance(ours.get("api_key"), SecretStr):
            ours["api_key"] = ours["api_key"].get_secret_value()
        _fill_in(ours, kwargs)
        resolved = check_options(type(self).__name__, {**ours, "model": model_name or model})
        # "auto": events of the provider's cap
        kwargs.setdefault("embed_batch_size", min(resolved.request_size, _MAX_EVENT_BATCH))
        super().__init__(
            model_name=resolved.model, **{**ours, "api_key": resolved.api_key}, **kwargs
        )
        self._key_given = ours.get("api_key") is not None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickle with every option: LlamaIndex pickles models into worker processes
        (``IngestionPipeline(num_workers=...)``).

        LlamaIndex's ``BaseComponent.__setstate__`` re-runs ``__init__`` with the fields
        only, so embedsdk's options (kept as pydantic extras: ``base_url``, ``cache``,
        ``dimensions``...) fell back to their defaults, and a private server's key went to
        the default base URL. Here they are passed too, with the key as it was given:
        ``api_key=""`` (send none) stays "", and a key read from the environment is read
        there again. A failing ``__init__`` is raised, not papered over with a half state.
        """
        fields = dict(state["__dict__"])
        key = fields.pop("api_key", None)
        if (state.get("__pydantic_private__") or {}).get("_key_given"):
            fields["api_key"] = key.get_secret_value() if key is not None else ""
        self.__init__(**{**(state.get("__pydantic_extra__") or {}), **fields})  # type: ignore[misc]

    @classmethod
    def class_name(cls) -> str:
        return "EmbedsdkEmbedding"

    def to_payload(self) -> dict[str, Any]:
        """What callbacks and instrumentation see of this model: never the key."""
        return {
            "class_name": self.class_name(),
            "model_name": self.model_name,
            "embed_batch_size": self.embed_batch_size,
            "batch_size": self.batch_size,
            "max_concurrent": self.max_concurrent,
        }

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(self.model_extra or {})
        options.update(
            model=self.model_name, batch_size=self.batch_size, max_concurrent=self.max_concurrent
        )
        if self._key_given:  # "" (send no key) stays "", not the environment's key
            options["api_key"] = self.api_key.get_secret_value() if self.api_key else ""
        return options

    def _embed(self, texts: list[str], progress: bool = False) -> list[list[float]]:
        return embed_sync(type(self).__name__, self._options(), texts, progress)

    async def _aembed(self, texts: list[str], progress: bool = False) -> list[list[float]]:
        return await embed_async(self._options(), texts, progress)

    # -- what BaseEmbedding asks of a model ----------------------------------------------

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._aembed([query]))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aembed([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._aembed(texts)

    # -- the batch path: the whole list in one embedsdk call -----------------------------

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """Embed ``texts`` in one embedsdk call; events per ``embed_batch_size`` texts."""
        if getattr(self, "rate_limiter", None) is not None:  # absent in older versions
            embeddings: list[list[float]]
            embeddings = super().get_text_embedding_batch(texts, show_progress, **kwargs)
            return embeddings
        started = self._start_events(texts)
        try:
            if getattr(self, "embeddings_cache", None):  # absent in older versions
                embeddings = self._get_text_embeddings_cached(list(texts))
            else:
                embeddings = self._embed(list(texts), progress=show_progress)
        except BaseException as exc:
            self._fail_events(started, exc)
            raise
        self._end_events(started, embeddings)
        return embeddings

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """Embed ``texts`` in one embedsdk call on the running loop; events as above."""
        if getattr(self, "rate_limiter", None) is not None:  # absent in older versions
            embeddings: list[list[float]]
            embeddings = await super().aget_text_embedding_batch(texts, show_progress, **kwargs)
            return embeddings
        started = self._start_events(texts)
        try:
            if getattr(self, "embeddings_cache", None):  # absent in older versions
                embeddings = await self._aget_text_embeddings_cached(list(texts))
            else:
                embeddings = await self._aembed(list(texts), progress=show_progress)
        except BaseException as exc:
            self._fail_events(started, exc)
            raise
        self._end_events(started, embeddings)
        return embeddings

    def _start_events(self, texts: list[str]) -> _Started:
        """One start event per ``embed_batch_size`` texts, as LlamaIndex's loop sends them."""
        payload = self.to_payload()
        size = self.embed_batch_size
        started: _Started = []
        for i in range(0, len(texts), size):
            dispatcher.event(EmbeddingStartEvent(model_dict=payload))
            event_id = self.callback_manager.on_event_start(
                CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: payload}
            )
            started.append((event_id, list(texts[i : i + size])))
        return started

    def _end_events(self, started: _Started, embeddings: list[list[float]]) -> None:
        at = 0
        for event_id, chunk in started:
            part = embeddings[at : at + len(chunk)]
            at += len(chunk)
            # Built without validation: it would check every float of vectors we just
            # decoded and checked (half a second per 10,000 x 1024).
            dispatcher.event(EmbeddingEndEvent.model_construct(chunks=chunk, embeddings=part))
            self.callback_manager.on_event_end(
                CBEventType.EMBEDDING,
                payload={EventPayload.CHUNKS: chunk, EventPayload.EMBEDDINGS: part},
                event_id=event_id,
            )

    def _fail_events(self, started: _Started, exc: BaseException) -> None:
        payload: dict[str, Any] | None = None
        if isinstance(exc, Exception):
            payload = {EventPayload.EXCEPTION: exc}
        for event_id, _ in started:
            self.callback_manager.on_event_end(
                CBEventType.EMBEDDING, payload=payload, event_id=event_id
            )


def _fill_in(ours: dict[str, Any], framework: dict[str, Any]) -> None:
    """embedsdk's per-call settings from LlamaIndex's, when only those are given."""
    if "batch_size" not in ours:
        ours["batch_size"] = framework.get("embed_batch_size") or DEFAULT_BATCH_SIZE
    if "max_concurrent" not in ours:
        ours["max_concurrent"] = framework.get("num_workers") or DEFAULT_MAX_CONCURRENT
