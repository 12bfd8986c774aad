"""In-memory exact index: the reference implementation of the backend protocol.

Brute force over numpy arrays; no persistence. Instances opened with the same `location` in one
process share their store, so an indexing pipeline and a query pipeline can meet by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from threading import Lock
from typing import Any, ClassVar

import numpy as np

from ret2_plugin.filters import matches, normalize_filters
from ret2_plugin.index import IndexMismatchError, IndexRecord, SearchHit, WriteReport, as_float32, maxsim

_STORES: dict[str, "InMemoryBackend"] = {}
_LOCK = Lock()


class InMemoryBackend:
    """Exact search (dot product on the stored vectors) with Python-side filters."""

    name: ClassVar[str] = "memory"

    def __init__(self, *, dim: int, multi_vector: bool, similarity: str, info: dict[str, Any]) -> None:
        self.dim = dim
        self.multi_vector = multi_vector
        self.similarity = similarity
        self._info = dict(info)
        self._records: dict[str, IndexRecord] = {}

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
        if options:
            raise TypeError(f"memory backend got unknown options {sorted(options)}")
        with _LOCK:
            store = _STORES.get(location)
            if store is None:
                if dim is None:
                    raise ValueError(f"in-memory index {location!r} does not exist; pass dim= to create it")
                store = _STORES[location] = cls(dim=dim, multi_vector=multi_vector, similarity=similarity, info=info or {})
            elif dim is not None and (dim, multi_vector) != (store.dim, store.multi_vector):
                raise IndexMismatchError(
                    f"in-memory index {location!r} holds dim={store.dim} multi_vector={store.multi_vector}, "
                    f"asked for dim={dim} multi_vector={multi_vector}"
                )
            return store

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def _check(self, vector: np.ndarray) -> str | None:
        want = 2 if self.multi_vector else 1
        if vector.ndim != want or vector.shape[-1] != self.dim:
            return f"embedding shape {tuple(vector.shape)} does not fit index (dim={self.dim}, multi_vector={self.multi_vector})"
        if not np.isfinite(vector).all():
            return "embedding has NaN or inf values"
        return None

    def add(self, records: Iterable[IndexRecord]) -> WriteReport:
        report = WriteReport()
        for record in records:
            vector = as_float32(record.embedding)
            problem = self._check(vector)
            if problem:
                report.failed.append((record.id, problem))
                continue
            self._records[record.id] = IndexRecord(
                record.id, vector, record.text, record.image, dict(record.meta), record.content_hash
            )
            report.written += 1
        return report

    def search(self, query: np.ndarray, *, top_k: int = 10, filters: dict[str, Any] | None = None) -> list[SearchHit]:
        query = as_float32(query)
        problem = self._check(query)
        if problem:
            raise ValueError(f"query {problem}")
        canonical = normalize_filters(filters)
        pool = [r for r in self._records.values() if matches(canonical, r.meta)]
        if not pool:
            return []
        stacked = np.stack([r.embedding for r in pool])
        scores = maxsim(query, stacked) if self.multi_vector else stacked @ query
        order = np.argsort(-scores, kind="stable")[:top_k]
        return [SearchHit(pool[i].id, float(scores[i]), pool[i].text, pool[i].image, dict(pool[i].meta)) for i in order]

    def get(self, ids: Sequence[str]) -> list[IndexRecord]:
        return [self._records[i] for i in ids if i in self._records]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return {r.id: r.content_hash for r in self.get(ids) if r.content_hash}

    def delete(self, ids: Sequence[str] | None = None, *, filters: dict[str, Any] | None = None) -> int:
        doomed = set(ids or ())
        canonical = normalize_filters(filters)
        if canonical:
            doomed |= {r.id for r in self._records.values() if matches(canonical, r.meta)}
        removed = [self._records.pop(i) for i in doomed if i in self._records]
        return len(removed)

    def count(self, filters: dict[str, Any] | None = None) -> int:
        canonical = normalize_filters(filters)
        return sum(1 for r in self._records.values() if matches(canonical, r.meta))

    def persist(self) -> None:
        """Nothing to write: this backend lives in memory."""

    def close(self) -> None:
        """The store stays registered under its location until `drop`."""

    @staticmethod
    def drop(location: str) -> None:
        with _LOCK:
            _STORES.pop(location, None)
