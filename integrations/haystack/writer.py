"""`ReT2DocumentWriter`: writes embedded Documents into a registered index backend.

The counterpart of `ReT2Retriever` for indexing pipelines (embedder -> writer) on FAISS, Elasticsearch,
the in-memory backend or a plugin's backend. The index is created on first write (its dimension taken
from the first embedding) and reopened afterwards; writes are upserts by id and are persisted after
each run. Documents the backend refuses are returned with the reason, never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import partial
from typing import Any

from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import Document

from ret2_plugin import plugins
from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.haystack.backend_options import (
    check_options,
    deserialize_options,
    resolve_options,
    serialize_options,
)
from ret2_plugin.integrations.haystack.document_store import ReT2DocumentStore
from ret2_plugin.integrations.haystack.document_store import document_to_record as store_record

logger = logging.getLogger(__name__)

PUBLIC_MODULE = "haystack_integrations.components.writers.ret2"


@component
class ReT2DocumentWriter:
    """Writes Documents with embeddings to a ret2 index backend chosen by name."""

    __module__ = PUBLIC_MODULE  # serialise under haystack_integrations (default YAML allow-list)

    def __init__(
        self,
        *,
        document_store: ReT2DocumentStore | None = None,
        backend: str = "faiss",
        location: str | None = None,
        backend_options: dict[str, Any] | None = None,
        similarity: str = "cosine",
    ) -> None:
        """
        :param document_store: The `ReT2DocumentStore` to write into (or give backend / location instead).
        :param backend: Registered index backend name (see `ret2 plugins`).
        :param location: Where the index lives.
        :param backend_options: Extra keyword arguments for the backend's `open` (credentials as `Secret`).
        :param similarity: Similarity recorded when the index is created.
        """
        if (document_store is None) == (location is None):
            raise ValueError("ReT2DocumentWriter needs either document_store= or backend= and location=")
        if document_store is not None and not isinstance(document_store, ReT2DocumentStore):
            raise TypeError(f"document_store must be a ReT2DocumentStore, got {type(document_store).__name__}")
        self.document_store = document_store
        self.backend = backend
        self.location = location
        self.backend_options = check_options(backend_options)
        self.similarity = similarity
        self._index: Any = None

    def _open(self, dim: int) -> Any:
        if self.document_store is not None:
            return self.document_store._open(dim)
        if self._index is None:
            backend_cls = plugins.get_index_backend(self.backend)
            self._index = backend_cls.open(
                self.location, dim=dim, similarity=self.similarity, **resolve_options(self.backend_options)
            )
        return self._index

    def close(self) -> None:
        """Release the backend (it reopens on the next `run`)."""
        if self._index is not None:
            self._index.close()
            self._index = None

    def to_dict(self) -> dict[str, Any]:
        if self.document_store is not None:
            return default_to_dict(self, document_store=self.document_store.to_dict())
        return default_to_dict(
            self,
            backend=self.backend,
            location=self.location,
            backend_options=serialize_options(self.backend_options),
            similarity=self.similarity,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReT2DocumentWriter:
        params = dict(data.get("init_parameters", {}))  # leave the caller's dict untouched
        data = {**data, "init_parameters": params}
        params["backend_options"] = deserialize_options(params.get("backend_options"))
        if isinstance(params.get("document_store"), dict):
            params["document_store"] = ReT2DocumentStore.from_dict(params["document_store"])
        return default_from_dict(cls, data)

    def _record(self, doc: Document) -> IndexRecord:
        """The store's one Document -> record mapping (blob, meta["file_path"] kept), so
        `ReT2DocumentStore.filter_documents` reads back what either form of the writer wrote."""
        similarity = self.document_store.similarity if self.document_store is not None else self.similarity
        return store_record(doc, similarity)

    @component.output_types(documents_written=int, failed_documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Upsert `documents`; returns how many were written and those that were not (reason in
        `meta["write_error"]`)."""
        failed: list[tuple[Document, str]] = []
        records: list[IndexRecord] = []
        by_id: dict[str, Document] = {}
        for doc in documents:
            if doc.embedding is None:
                failed.append((doc, "document has no embedding (run an embedder first)"))
                continue
            records.append(self._record(doc))
            by_id[doc.id] = doc
        written = 0
        if records:
            first = records[0].embedding
            assert first is not None  # documents without an embedding were set aside above
            index = self._open(dim=int(first.shape[-1]))
            report = index.add(records)
            index.persist()
            written = report.written
            problems = list(report.failed) + [
                (i, f"outcome unknown: {why}") for i, why in getattr(report, "unknown", [])
            ]
            failed.extend((by_id.get(doc_id) or Document(id=doc_id), reason) for doc_id, reason in problems)
        for doc, reason in failed:
            logger.warning("document %s not written: %s", doc.id, reason)
        failed_docs = [replace(doc, meta={**doc.meta, "write_error": reason}) for doc, reason in failed]
        return {"documents_written": written, "failed_documents": failed_docs}

    @component.output_types(documents_written=int, failed_documents=list[Document])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """`run` in a worker thread (backends are synchronous)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(self.run, documents=documents))
