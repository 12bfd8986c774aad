"""In-memory exact index: the reference implementation of the backend protocol.

Brute force over numpy arrays; no persistence. Instances opened with the same `location` in one
process share their store, so an indexing pipeline and a query pipeline can meet by name.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from threading import Lock, RLock
from typing import Any, ClassVar

import numpy as np

from ret2_plugin.filters import matches, normalize_filters
from ret2_plugin.index import (
    IndexMismatchError,
    IndexNotFoundError,
    IndexRecord,
    SearchHit,
    WriteReport,
    check_extra,
    check_ids,
    check_meta,
    check_record_fields,
    check_similarity,
    check_top_k,
    maxsim,
    prepare_embedding,
)

_STORES: dict[str, InMemoryBackend] = {}
_LOCK = Lock()


class InMemoryBackend:
    """Exact search (inner product / MaxSim; vectors L2-normalised under cosine) with Python-side filters.

    Validation and normalisation are the shared ones of `ret2_plugin.index`, so scores equal FAISS's.
    One lock per store serialises its methods (thread-safe); stored arrays and meta are copies, never the
    caller's objects, and `get` / `search` hand out copies too."""

    name: ClassVar[str] = "memory"

    def __init__(self, *, dim: int, multi_vector: bool, similarity: str, info: dict[str, Any]) -> None:
        self.dim = dim
        self.multi_vector = multi_vector
        self.similarity = similarity
        self._info = dict(info)
        self._records: dict[str, IndexRecord] = {}
        self._lock = RLock()

    @classmethod
    def open(
        cls,
        location: str,
        *,
        dim: int | None = None,
        multi_vector: bool = False,
        similarity: str = "cosine",
        info: dict[str, Any] | None = None,
        **options: Any,
    ) -> InMemoryBackend:
        """Create the store `location` (needs `dim`) or reopen it (checking dim, multi_vector and
        similarity against it when `dim` is given, like the FAISS backend)."""
        if options:
            raise TypeError(f"memory backend got unknown options {sorted(options)}")
        check_similarity(similarity)
        with _LOCK:
            store = _STORES.get(location)
            if store is None:
                if dim is None:
                    raise IndexNotFoundError(f"in-memory index {location!r} does not exist; pass dim= to create it")
                if not isinstance(dim, int) or dim <= 0:
                    raise ValueError(f"dim must be a positive int, got {dim!r}")
                store = _STORES[location] = cls(
                    dim=dim, multi_vector=multi_vector, similarity=similarity, info=info or {}
                )
            elif dim is not None and (dim, multi_vector, similarity) != (
                store.dim,
                store.multi_vector,
                store.similarity,
            ):
                raise IndexMismatchError(
                    f"in-memory index {location!r} holds dim={store.dim} multi_vector={store.multi_vector} "
                    f"similarity={store.similarity!r}, asked for dim={dim} multi_vector={multi_vector} similarity={similarity!r}"
                )
            return store

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def _prepare(self, record: IndexRecord) -> IndexRecord | str:
        """The record to store (own copies, normalised), or the reason it is refused."""
        try:
            check_record_fields(record)  # id (<= 512 UTF-8 bytes), text / image / content_hash types
            vector = (
                None
                if record.embedding is None
                else prepare_embedding(
                    record.embedding, dim=self.dim, multi_vector=self.multi_vector, similarity=self.similarity
                )
            )
            meta = json.loads(check_meta(record.meta))  # a deep copy, exactly what FAISS / ES would store
            extra = check_extra(record.extra)
        except ValueError as exc:
            return str(exc)
        return IndexRecord(record.id, vector, record.text, record.image, meta, record.content_hash, extra)

    def add(self, records: Iterable[IndexRecord]) -> WriteReport:
        report = WriteReport()
        for record in records:
            prepared = self._prepare(record)
            if isinstance(prepared, str):
                report.failed.append((str(getattr(record, "id", "?")), prepared))
                continue
            with self._lock:
                self._records[prepared.id] = prepared
            report.written += 1
        return report

    def search(self, query: np.ndarray, *, top_k: int = 10, filters: dict[str, Any] | None = None) -> list[SearchHit]:
        top_k = check_top_k(top_k)
        q = prepare_embedding(
            query, dim=self.dim, multi_vector=self.multi_vector, similarity=self.similarity, what="query"
        )
        canonical = normalize_filters(filters)
        with self._lock:
            pool = [
                r
                for r in self._records.values()
                if r.embedding is not None and matches(canonical, r.meta, id=r.id, content=r.text)
            ]
            if not pool:
                return []
            scores = self._scores(q, pool)
            order = np.argsort(-scores, kind="stable")[:top_k]
            return [
                SearchHit(pool[i].id, float(scores[i]), pool[i].text, pool[i].image, copy.deepcopy(pool[i].meta))
                for i in order
            ]

    def _scores(self, query: np.ndarray, pool: list[IndexRecord]) -> np.ndarray:
        if not self.multi_vector:
            return np.stack([r.embedding for r in pool]) @ query
        scores = np.empty(len(pool), dtype=np.float32)
        groups: dict[int, list[int]] = {}  # documents may have different token counts: score by count
        for i, r in enumerate(pool):
            groups.setdefault(r.embedding.shape[0], []).append(i)
        for members in groups.values():
            scores[members] = maxsim(query, np.stack([pool[i].embedding for i in members]))
        return scores

    def get(self, ids: Sequence[str]) -> list[IndexRecord]:
        """Copies of the stored records (embeddings as stored: L2-normalised under cosine)."""
        ids = check_ids(ids)
        with self._lock:
            found = [self._records[i] for i in ids if i in self._records]
        return [
            IndexRecord(
                r.id,
                None if r.embedding is None else r.embedding.copy(),
                r.text,
                r.image,
                copy.deepcopy(r.meta),
                r.content_hash,
                copy.deepcopy(r.extra),
            )
            for r in found
        ]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return {r.id: r.content_hash for r in self.get(ids) if r.content_hash}

    def delete(self, ids: Sequence[str] | None = None, *, filters: dict[str, Any] | None = None) -> int:
        doomed = set(check_ids(ids))
        canonical = normalize_filters(filters)
        with self._lock:
            if canonical:
                doomed |= {r.id for r in self._records.values() if matches(canonical, r.meta, id=r.id, content=r.text)}
            removed = [self._records.pop(i) for i in doomed if i in self._records]
        return len(removed)

    def ids(self, filters: dict[str, Any] | None = None) -> list[str]:
        """Ids of the stored records that match `filters` (all without), in write order."""
        canonical = normalize_filters(filters)
        with self._lock:
            return [r.id for r in self._records.values() if matches(canonical, r.meta, id=r.id, content=r.text)]

    def count(self, filters: dict[str, Any] | None = None) -> int:
        canonical = normalize_filters(filters)
        with self._lock:
            return sum(1 for r in self._records.values() if matches(canonical, r.meta, id=r.id, content=r.text))

    def persist(self) -> None:
        """Nothing to write: this backend lives in memory."""

    def close(self) -> None:
        """The store stays registered under its location until `drop`."""

    @staticmethod
    def drop(location: str) -> None:
        with _LOCK:
            _STORES.pop(location, None)
