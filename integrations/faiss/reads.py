"""The read side of `FaissBackend` (search, get, ids, content hashes, count), kept apart from the
write / durability side in `backend.py`. A mixin: it works on the backend's own state, under its lock,
and sees other instances' saves through the backend's `_refresh()`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ret2_plugin.filters import normalize_filters
from ret2_plugin.index import IndexRecord, SearchHit, check_ids, check_top_k

from . import factory, gpu
from .search import SearchSettings, search
from .store import PayloadStore
from .validate import prepare_query


class FaissReads:
    """Read methods of `FaissBackend` (which sets every attribute declared here)."""

    directory: Path
    dim: int
    multi_vector: bool
    similarity: str
    use_gpu: bool
    settings: SearchSettings
    active_index_type: str
    index: faiss.Index
    store: PayloadStore
    _lock: threading.RLock
    _n_docs: int
    _tombstones: set[int]
    _tomb_sel: faiss.IDSelector | None
    _search_index: tuple[faiss.Index, bool] | None

    def _refresh(self) -> None:  # the backend's: reload another instance's newer save
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def search(self, query: np.ndarray, *, top_k: int = 10, filters: dict[str, Any] | None = None) -> list[SearchHit]:
        """Best `top_k` hits (filters applied before ranking); scores are exact inner products / MaxSim."""
        with self._lock:
            self._check_open()
            top_k = check_top_k(top_k)
            q = prepare_query(query, self.dim, self.multi_vector, self.similarity)
            self._refresh()
            canonical = normalize_filters(filters)
            pool = self.store.matching_keys(canonical) if canonical else None
            if pool is not None:  # documents without embedding are filterable, not searchable
                pool = (pool[0][pool[1] > 0], pool[1][pool[1] > 0])
            search_index, on_gpu = self._device_index()
            ranked = search(
                q,
                top_k=top_k,
                index=self.index,
                search_index=search_index,
                on_gpu=on_gpu,
                index_type=self.active_index_type,
                store=self.store,
                multi_vector=self.multi_vector,
                pool=pool,
                pool_size=len(pool[0]) if pool is not None else self._n_docs,
                total=self._n_docs,
                tombstone_selector=self._tombstone_selector(),
                settings=self.settings,
            )
            rows = self.store.rows([k for k, _ in ranked])
            return [SearchHit(rows[k]["id"], s, rows[k]["text"], rows[k]["image"], rows[k]["meta"]) for k, s in ranked]

    def _device_index(self) -> tuple[faiss.Index, bool]:
        if self._search_index is None:
            try:
                self._search_index = gpu.to_search_device(self.index, self.active_index_type, use_gpu=self.use_gpu)
            except RuntimeError:  # e.g. a PQ layout the GPU kernels do not support: search on CPU
                self._search_index = (self.index, False)
        return self._search_index

    def _tombstone_selector(self) -> faiss.IDSelector | None:
        if not self._tombstones:
            return None
        if self._tomb_sel is None:
            batch = factory.selector(np.fromiter(self._tombstones, dtype=np.int64))
            sel = faiss.IDSelectorNot(batch)
            sel.__dict__["_batch"] = batch  # keep the wrapped selector alive
            self._tomb_sel = sel
        return self._tomb_sel

    def get(self, ids: Sequence[str]) -> list[IndexRecord]:
        """Stored records (embeddings as stored: L2-normalised under cosine similarity)."""
        with self._lock:
            self._check_open()
            ids = check_ids(ids)
            self._refresh()
            found = self.store.keys_for(ids)
            rows = self.store.rows([k for k, _ in found.values()], with_vectors=True)
            out = []
            for doc_id in ids:
                if doc_id in found:
                    r = rows[found[doc_id][0]]
                    vec = None if r["ntok"] == 0 else (r["vec"] if self.multi_vector else r["vec"][0]).copy()
                    out.append(
                        IndexRecord(r["id"], vec, r["text"], r["image"], r["meta"], r["content_hash"], r["extra"])
                    )
            return out

    def ids(self, filters: dict[str, Any] | None = None) -> list[str]:
        """Ids of the stored documents that match `filters` (all without), in write order."""
        with self._lock:
            self._check_open()
            canonical = normalize_filters(filters)
            self._refresh()
            if not canonical:
                return [r[0] for r in self.store.db.execute("SELECT id FROM docs ORDER BY key")]
            keys = self.store.matching_keys(canonical)[0]
            rows = self.store.rows(keys.tolist())
            return [rows[int(k)]["id"] for k in keys]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        return {r.id: r.content_hash for r in self.get(ids) if r.content_hash}

    def count(self, filters: dict[str, Any] | None = None) -> int:
        with self._lock:
            self._check_open()
            canonical = normalize_filters(filters)
            self._refresh()
            return self._n_docs if not canonical else len(self.store.matching_keys(canonical)[0])
