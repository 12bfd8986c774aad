"""`ReT2DocumentStore`: Haystack's DocumentStore protocol over any registered ret2 index backend.

`ReT2DocumentStore(backend="faiss", location=PATH)` (or "memory", "elasticsearch", a plugin's backend)
is what `DocumentWriter`, `ReT2Retriever(document_store=...)` and every other component that takes a
`document_store` use. Documents keep everything Haystack gives them: content (the record's text),
meta (filterable with Haystack's semantics, `ret2_plugin.filters`), `blob`, and the embedding exactly
as written (when the backend stores it normalised, the written list is kept beside it). Documents
without an embedding are stored and filterable but not vector-searchable.

The index is created on the first write that needs it: its dimension is `embedding_dim` if given,
else that of the first embedding written (a write of documents without any embedding into an index
that does not exist yet needs `embedding_dim`). Writes are durable when each call returns (FAISS saves a
new generation per call, so bulk loads should write in large batches; Elasticsearch writes are durable in
its translog and are not flushed per call).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
from haystack import default_from_dict, default_to_dict, logging
from haystack.dataclasses import ByteStream, Document
from haystack.document_stores.errors import DocumentStoreError, DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError as HaystackFilterError

from ret2_plugin import plugins
from ret2_plugin.filters import FilterError, normalize_filters
from ret2_plugin.index import IndexNotFoundError, IndexRecord, check_similarity
from ret2_plugin.integrations.haystack import metadata
from ret2_plugin.integrations.haystack.backend_options import (
    check_options,
    deserialize_options,
    resolve_options,
    serialize_options,
)

logger = logging.getLogger(__name__)

PUBLIC_MODULE = "haystack_integrations.document_stores.ret2"


class ReT2FilterError(HaystackFilterError, FilterError):
    """A malformed filter: both Haystack's `FilterError` and ret2's."""


@contextmanager
def haystack_filter_errors() -> Iterator[None]:
    """A ret2 FilterError raised inside surfaces as Haystack's FilterError (and still as ret2's)."""
    try:
        yield
    except ReT2FilterError:
        raise
    except FilterError as exc:
        raise ReT2FilterError(str(exc)) from exc


def _haystack_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    with haystack_filter_errors():
        return normalize_filters(filters)


def _raise_partial(report: Any, verb: str) -> None:
    """DocumentStoreError naming every document the backend refused or could not confirm (the others are done)."""
    problems = list(report.failed) + [
        (doc_id, f"outcome unknown: {why}") for doc_id, why in getattr(report, "unknown", [])
    ]
    if problems:
        detail = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in problems[:20])
        raise DocumentStoreError(f"{len(problems)} document(s) were not {verb} ({report.written} were): {detail}")


def document_to_record(doc: Document, similarity: str) -> IndexRecord:
    """A Document as a record: content -> text, `meta["file_path"]` also -> image reference, blob and the
    embedding as written (when the stored, normalised float32 copy would differ) -> `extra`."""
    extra: dict[str, Any] = {}
    embedding = None
    if doc.embedding is not None:
        embedding = np.asarray(doc.embedding, dtype=np.float32)
        stored = embedding / np.linalg.norm(embedding, axis=-1, keepdims=True) if similarity == "cosine" else embedding
        if stored.astype(np.float64).tolist() != list(doc.embedding):
            extra["embedding"] = [float(x) for x in doc.embedding]
    if doc.blob is not None:
        extra["blob"] = {"data": doc.blob.data, "mime_type": doc.blob.mime_type, "meta": dict(doc.blob.meta)}
    image = doc.meta.get("file_path")
    return IndexRecord(
        id=doc.id,
        embedding=embedding,
        text=doc.content,
        image=str(image) if image is not None else None,
        meta=dict(doc.meta),
        extra=extra or None,
    )


def record_to_document(record: IndexRecord, score: float | None = None) -> Document:
    extra = record.extra or {}
    embedding = extra.get("embedding")
    if embedding is None and record.embedding is not None and np.ndim(record.embedding) == 1:
        embedding = np.asarray(record.embedding, dtype=np.float32).astype(np.float64).tolist()
    blob = extra.get("blob")
    meta = dict(record.meta)
    if record.image is not None:
        meta.setdefault("file_path", record.image)
    return Document(
        id=record.id,
        content=record.text,
        meta=meta,
        embedding=embedding,
        score=score,
        blob=ByteStream(data=blob["data"], mime_type=blob.get("mime_type"), meta=blob.get("meta") or {})
        if blob
        else None,
    )


class ReT2DocumentStore:
    """A Haystack DocumentStore on a ret2 index backend (see the module docstring)."""

    __module__ = PUBLIC_MODULE  # serialise under haystack_integrations (default YAML allow-list)

    def __init__(
        self,
        *,
        backend: str = "faiss",
        location: str,
        backend_options: dict[str, Any] | None = None,
        embedding_dim: int | None = None,
        similarity: str = "cosine",
    ) -> None:
        """
        :param backend: Registered index backend name ("faiss", "memory", "elasticsearch", or a plugin's).
        :param location: Where the index lives (a folder for FAISS, an index name for Elasticsearch, ...).
        :param backend_options: Extra keyword arguments for the backend's `open`; credentials must be
            `haystack.utils.Secret`s (resolved when the index is opened, serialised as env var names).
        :param embedding_dim: Dimension of a new index (default: that of the first embedding written).
        :param similarity: "cosine" or "dot_product" for a new index.
        """
        plugins.get_index_backend(backend)  # an unknown backend fails now, naming the registered ones
        if embedding_dim is not None and (not isinstance(embedding_dim, int) or embedding_dim <= 0):
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        self.backend = backend
        self.location = location
        self.backend_options = check_options(backend_options)
        self.embedding_dim = embedding_dim
        self.similarity = check_similarity(similarity)
        self._index: Any = None

    # --- the backend -----------------------------------------------------------------------------

    def _open(self, dim: int | None = None) -> Any:
        """The backend index, opened (or created, when `dim` is known) on first use; None if it does not
        exist yet and no dimension is known."""
        if self._index is not None:
            return self._index
        backend_cls = plugins.get_index_backend(self.backend)
        options = resolve_options(self.backend_options)
        try:
            self._index = backend_cls.open(self.location, **options)
        except (IndexNotFoundError, FileNotFoundError):
            dim = self.embedding_dim or dim
            if dim is None:
                return None
            self._index = backend_cls.open(self.location, dim=dim, similarity=self.similarity, **options)
        return self._index

    @staticmethod
    def _persist(index: Any) -> None:
        """Make a call's writes durable. Backends whose writes are durable as they land (Elasticsearch: the
        translog; reads refresh first) say so with `durable_writes = True` and are not flushed per call.
        FAISS saves a new generation per call: for bulk loads, write in large batches (or `ret2 index`)."""
        if getattr(index, "durable_writes", False):
            index.refresh()  # visible to every reader (e.g. elasticsearch-haystack) when the call returns
        else:
            index.persist()

    @property
    def index(self) -> Any:
        """The backend index (opened on first use), e.g. for `ReT2Retriever` and `ret2 search`."""
        index = self._open()
        if index is None:
            raise ValueError(f"{self.backend} index {self.location!r} does not exist yet: write documents first")
        return index

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def _ids(self, index: Any, filters: dict[str, Any] | None) -> list[str]:
        if not hasattr(index, "ids"):
            raise DocumentStoreError(f"the {self.backend!r} backend cannot list documents (it has no `ids(filters)`)")
        return index.ids(filters)

    # --- the DocumentStore protocol ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            backend=self.backend,
            location=self.location,
            backend_options=serialize_options(self.backend_options),
            embedding_dim=self.embedding_dim,
            similarity=self.similarity,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReT2DocumentStore:
        params = dict(data.get("init_parameters", {}))
        params["backend_options"] = deserialize_options(params.get("backend_options"))
        return default_from_dict(cls, {**data, "init_parameters": params})

    def count_documents(self) -> int:
        index = self._open()
        return 0 if index is None else index.count()

    def count_documents_by_filter(self, filters: dict[str, Any]) -> int:
        canonical = _haystack_filters(filters)
        index = self._open()
        if index is None:
            return 0
        with haystack_filter_errors():
            return index.count(canonical)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        """Documents matching `filters` (Haystack syntax; all without), in write order where the backend
        keeps one (Elasticsearch: index order)."""
        canonical = _haystack_filters(filters)
        index = self._open()
        if index is None:
            return []
        with haystack_filter_errors():
            ids = self._ids(index, canonical)
        return [record_to_document(r) for r in index.get(ids)]

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Write `documents`; NONE and FAIL raise DuplicateDocumentError on an id already stored (or
        repeated in `documents`) and write nothing; SKIP keeps what is stored; OVERWRITE replaces it.
        Returns how many were written. Documents the backend refuses raise DocumentStoreError naming
        each id and reason (the others are written)."""
        if not isinstance(documents, list) or any(not isinstance(d, Document) for d in documents):
            raise ValueError("write_documents expects a list of haystack Documents")
        if not documents:
            return 0
        first = next((d.embedding for d in documents if d.embedding is not None), None)
        index = self._open(None if first is None else len(first))
        if index is None:
            raise ValueError(
                f"{self.backend} index {self.location!r} does not exist and none of these documents has an embedding "
                "to take its dimension from: pass embedding_dim= to ReT2DocumentStore"
            )
        ids = [d.id for d in documents]
        existing = {r.id for r in index.get(list(dict.fromkeys(ids)))}
        if policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL):
            repeated = sorted({i for i, n in Counter(ids).items() if n > 1} | existing)
            if repeated:
                raise DuplicateDocumentError(f"ID(s) {', '.join(repeated)} already exist in the document store")
            todo = documents
        elif policy == DuplicatePolicy.SKIP:
            seen = set(existing)
            todo = []
            for doc in documents:
                if doc.id not in seen:
                    seen.add(doc.id)
                    todo.append(doc)
        else:
            todo = list({d.id: d for d in documents}.values())  # the last of repeated ids wins, as upserts do
        similarity = getattr(index, "similarity", self.similarity)
        report = index.add([document_to_record(d, similarity) for d in todo])
        self._persist(index)
        _raise_partial(report, "written")
        return report.written

    def delete_documents(self, document_ids: list[str]) -> None:
        index = self._open()
        if index is not None and document_ids:
            index.delete(list(document_ids))
            self._persist(index)

    def delete_all_documents(self, recreate_index: bool = False) -> None:
        """Delete every document. `recreate_index`: also rebuild the index itself, empty (Elasticsearch:
        deleted and created again with its mappings and settings; FAISS: a fresh index structure)."""
        index = self._open()
        if index is None:
            return
        if recreate_index and hasattr(index, "recreate"):
            index.recreate()
            return
        ids = self._ids(index, None)
        if ids:
            index.delete(ids)
        if recreate_index and hasattr(index, "rebuild"):
            index.rebuild()
        self._persist(index)

    def delete_by_filter(self, filters: dict[str, Any]) -> int:
        canonical = _haystack_filters(filters)
        index = self._open()
        if index is None or canonical is None:
            return 0
        with haystack_filter_errors():
            deleted = index.delete(None, filters=canonical)
        self._persist(index)
        return deleted

    def update_by_filter(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        """Merge `meta` into the meta of every document matching `filters`; returns how many."""
        canonical = _haystack_filters(filters)
        index = self._open()
        if index is None or canonical is None:
            return 0
        with haystack_filter_errors():
            records = index.get(self._ids(index, canonical))
        for record in records:
            record.meta = {**record.meta, **meta}
        report = index.add(records)
        self._persist(index)
        _raise_partial(report, "updated")
        return report.written

    # --- metadata summaries (Haystack's optional store methods) --------------------------------------

    def _metas(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return [d.meta for d in self.filter_documents(filters)]

    def count_unique_metadata_by_filter(self, filters: dict[str, Any], metadata_fields: list[str]) -> dict[str, int]:
        """Number of distinct values of each field among the documents matching `filters`."""
        return metadata.count_unique(self._metas(filters), metadata_fields)

    def get_metadata_fields_info(self) -> dict[str, dict[str, str]]:
        """Meta field -> {"type": "keyword" | "int" | "float" | "boolean"}, from the stored values."""
        return metadata.fields_info(self._metas())

    def get_metadata_field_min_max(self, metadata_field: str) -> dict[str, Any]:
        return metadata.min_max(self._metas(), metadata_field)

    def get_metadata_field_unique_values(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        """(a page of the distinct values, how many there are); `search_term`: case-insensitive substring."""
        return metadata.unique_values(self._metas(filters), metadata_field, search_term, from_, size)

    # --- async variants (the backends are synchronous: run in a worker thread) ----------------------

    async def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kwargs))

    async def count_documents_async(self) -> int:
        return await self._in_thread(self.count_documents)

    async def filter_documents_async(self, filters: dict[str, Any] | None = None) -> list[Document]:
        return await self._in_thread(self.filter_documents, filters)

    async def write_documents_async(
        self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE
    ) -> int:
        return await self._in_thread(self.write_documents, documents, policy)

    async def delete_documents_async(self, document_ids: list[str]) -> None:
        await self._in_thread(self.delete_documents, document_ids)

    async def delete_all_documents_async(self, recreate_index: bool = False) -> None:
        await self._in_thread(self.delete_all_documents, recreate_index)

    async def delete_by_filter_async(self, filters: dict[str, Any]) -> int:
        return await self._in_thread(self.delete_by_filter, filters)

    async def update_by_filter_async(self, filters: dict[str, Any], meta: dict[str, Any]) -> int:
        return await self._in_thread(self.update_by_filter, filters, meta)

    async def count_documents_by_filter_async(self, filters: dict[str, Any]) -> int:
        return await self._in_thread(self.count_documents_by_filter, filters)

    async def count_unique_metadata_by_filter_async(
        self, filters: dict[str, Any], metadata_fields: list[str]
    ) -> dict[str, int]:
        return await self._in_thread(self.count_unique_metadata_by_filter, filters, metadata_fields)

    async def get_metadata_fields_info_async(self) -> dict[str, dict[str, str]]:
        return await self._in_thread(self.get_metadata_fields_info)

    async def get_metadata_field_min_max_async(self, metadata_field: str) -> dict[str, Any]:
        return await self._in_thread(self.get_metadata_field_min_max, metadata_field)

    async def get_metadata_field_unique_values_async(
        self,
        metadata_field: str,
        search_term: str | None = None,
        from_: int = 0,
        size: int = 10,
        filters: dict[str, Any] | None = None,
    ) -> tuple[list[Any], int]:
        return await self._in_thread(
            self.get_metadata_field_unique_values, metadata_field, search_term, from_, size, filters
        )
