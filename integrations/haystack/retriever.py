"""`ReT2Retriever`: nearest-neighbour retrieval over any registered index backend.

Like Haystack's retrievers it takes a `document_store` (`ReT2DocumentStore` over any backend); the
`backend=` / `location=` form is a shortcut for `document_store=ReT2DocumentStore(backend=, location=)`.
The backend is chosen by name through the plugin registry (`"faiss"`, `"elasticsearch"`, `"memory"`, or
one a third-party plugin adds) and opened in `warm_up`. Filters use Haystack syntax, combined with the
init-time filters by `filter_policy`. With `hybrid=True` and `query` text, backends that have BM25
(Elasticsearch) run hybrid retrieval (kNN + BM25 fused by RRF; `score` is then the RRF score).
"""

from __future__ import annotations

import asyncio
import inspect
from functools import partial
from typing import Any

import numpy as np
from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import Document
from haystack.document_stores.types import FilterPolicy
from haystack.document_stores.types.filter_policy import apply_filter_policy

from ret2_plugin import plugins
from ret2_plugin.filters import normalize_filters
from ret2_plugin.index import SearchHit
from ret2_plugin.integrations.haystack.backend_options import (
    check_options,
    deserialize_options,
    resolve_options,
    serialize_options,
)
from ret2_plugin.integrations.haystack.document_store import (
    ReT2DocumentStore,
    haystack_filter_errors,
    record_to_document,
)

PUBLIC_MODULE = "haystack_integrations.components.retrievers.ret2"


def hit_to_document(hit: SearchHit) -> Document:
    """A backend hit as a Haystack Document (the image reference goes to `meta["file_path"]`)."""
    meta = dict(hit.meta)
    if hit.image is not None:
        meta["file_path"] = hit.image
    return Document(id=hit.id, content=hit.text, meta=meta, score=hit.score)


@component
class ReT2Retriever:
    """Retrieves Documents whose ReT / ReT-2 embeddings are nearest to a query embedding.

    ```python
    retriever = ReT2Retriever(backend="faiss", location="index/")
    docs = retriever.run(query_embedding=embedding, top_k=5)["documents"]
    ```
    """

    __module__ = PUBLIC_MODULE  # serialise under haystack_integrations (default YAML allow-list)

    def __init__(
        self,
        *,
        document_store: ReT2DocumentStore | None = None,
        backend: str = "faiss",
        location: str | None = None,
        backend_options: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        top_k: int = 10,
        filter_policy: str | FilterPolicy = FilterPolicy.REPLACE,
        score_threshold: float | None = None,
        hybrid: bool = False,
    ) -> None:
        """
        :param document_store: The `ReT2DocumentStore` to search (or give backend / location instead).
        :param backend: Registered index backend name (see `ret2 plugins`).
        :param location: Where the index lives (a folder for FAISS, an index name for Elasticsearch, ...).
        :param backend_options: Extra keyword arguments for the backend's `open`; credentials must be
            `haystack.utils.Secret` (resolved at `warm_up`, serialised as env var names).
        :param filters: Haystack-syntax filters applied to every query.
        :param top_k: Maximum number of Documents to return.
        :param filter_policy: How runtime filters combine with `filters` (replace or merge).
        :param score_threshold: Drop hits scoring below this value (a cosine; not with `hybrid`).
        :param hybrid: Also run BM25 on the `query` text and fuse it with kNN by RRF (scores are then RRF
            scores); needs a backend with BM25 (Elasticsearch). Off: a `query` input is ignored.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if (document_store is None) == (location is None):
            raise ValueError("ReT2Retriever needs either document_store= or backend= and location=")
        if document_store is not None and not isinstance(document_store, ReT2DocumentStore):
            raise TypeError(f"document_store must be a ReT2DocumentStore, got {type(document_store).__name__}")
        self.document_store = document_store
        self.backend = backend
        self.location = location
        self.backend_options = check_options(backend_options)
        self.filters = filters or {}  # serialised as given
        with haystack_filter_errors():
            self._filters = normalize_filters(self.filters) or {}  # canonical: MERGE only combines canonical filters
        self.top_k = top_k
        self.filter_policy = FilterPolicy.from_str(filter_policy) if isinstance(filter_policy, str) else filter_policy
        if hybrid and score_threshold is not None:
            raise ValueError("score_threshold is a cosine and hybrid scores are RRF scores: use one or the other")
        self.score_threshold = score_threshold
        self.hybrid = hybrid
        self._index: Any = None

    def warm_up(self) -> None:
        """Open the index once (later calls do nothing)."""
        if self._index is None:
            if self.document_store is not None:
                self._index = self.document_store.index
                return
            backend_cls = plugins.get_index_backend(self.backend)
            self._index = backend_cls.open(self.location, **resolve_options(self.backend_options))

    def close(self) -> None:
        """Release the backend (it reopens on the next `run`)."""
        if self._index is not None:
            if self.document_store is None:  # a store's index is the store's to close
                self._index.close()
            self._index = None

    def to_dict(self) -> dict[str, Any]:
        if self.document_store is not None:
            where: dict[str, Any] = {"document_store": self.document_store.to_dict()}
        else:
            where = {
                "backend": self.backend,
                "location": self.location,
                "backend_options": serialize_options(self.backend_options),
            }
        return default_to_dict(
            self,
            **where,
            filters=self.filters,
            top_k=self.top_k,
            filter_policy=self.filter_policy.value,
            score_threshold=self.score_threshold,
            hybrid=self.hybrid,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReT2Retriever:
        params = dict(data.get("init_parameters", {}))  # leave the caller's dict untouched
        data = {**data, "init_parameters": params}
        params["backend_options"] = deserialize_options(params.get("backend_options"))
        if isinstance(params.get("document_store"), dict):
            params["document_store"] = ReT2DocumentStore.from_dict(params["document_store"])
        if isinstance(params.get("filter_policy"), str):
            params["filter_policy"] = FilterPolicy.from_str(params["filter_policy"])
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        query: str | None = None,
    ) -> dict[str, list[Document]]:
        """Retrieve the nearest Documents, best first, with `score` set.

        :param query_embedding: The query vector (e.g. from `ReT2QueryEmbedder`).
        :param query: Query text for the BM25 side when the retriever was created with `hybrid=True`.
        :param filters: Runtime filters, combined with the init filters by `filter_policy`.
        :param top_k: Overrides the init `top_k`.
        """
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        with haystack_filter_errors():
            runtime = normalize_filters(filters)  # the shorthand {"source": "x"} becomes canonical before merging
        self.warm_up()
        vector = np.asarray(query_embedding, dtype=np.float32)
        combined = apply_filter_policy(self.filter_policy, self._filters, runtime) or None
        extra: dict[str, Any] = {}
        if self.hybrid:
            if not query:
                raise ValueError("a hybrid ReT2Retriever needs the query text (`query` input) for its BM25 side")
            if "text" not in inspect.signature(self._index.search).parameters:
                raise ValueError(
                    f"the {type(self._index).__name__} index has no BM25: hybrid retrieval (query=) needs "
                    "a backend that supports it, e.g. elasticsearch"
                )
            extra["text"] = query
        with haystack_filter_errors():
            hits = self._index.search(vector, top_k=self.top_k if top_k is None else top_k, filters=combined, **extra)
        if self.score_threshold is not None:
            hits = [hit for hit in hits if hit.score >= self.score_threshold]
        if self.document_store is None:
            return {"documents": [hit_to_document(hit) for hit in hits]}
        # the stored documents (blob, embedding as written, meta), in hit order with the hit's score
        records = {r.id: r for r in self._index.get([hit.id for hit in hits])}
        return {
            "documents": [
                record_to_document(records[h.id], score=h.score) if h.id in records else hit_to_document(h)
                for h in hits
            ]
        }

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query_embedding: list[float],
        filters: dict[str, Any] | None = None,
        top_k: int | None = None,
        query: str | None = None,
    ) -> dict[str, list[Document]]:
        """`run` in a worker thread (backends are synchronous)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, partial(self.run, query_embedding=query_embedding, filters=filters, top_k=top_k, query=query)
        )
