"""The one small protocol every index backend implements (FAISS, Elasticsearch, in-memory, plugins).

A backend stores `IndexRecord`s (id, embedding, payload) and answers nearest-neighbour queries with
optional metadata filters (Haystack filter syntax, see `ret2_plugin.filters`). Embeddings are either
one vector per item (`[D]`, ReT-2) or K token vectors (`[K, D]`, ReT v1 late interaction, scored by
MaxSim). Backends are created or reopened with `Backend.open(location, ...)` and chosen by name through
the plugin registry (`ret2_plugin.plugins.get_index_backend`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass
class IndexRecord:
    """What a backend stores for one item."""

    id: str
    embedding: np.ndarray  # float32 [D] (single vector) or [K, D] (multi-vector)
    text: str | None = None
    image: str | None = None  # the item's image reference (path or URL), never the pixels
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str | None = None  # lets `ret2 index` skip unchanged items


@dataclass
class SearchHit:
    """One ranked result."""

    id: str
    score: float
    text: str | None = None
    image: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "text": self.text, "image": self.image, "meta": self.meta}


@dataclass
class WriteReport:
    """Outcome of an `add`: how many records were written and which failed, with the reason."""

    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)

    def merge(self, other: WriteReport) -> WriteReport:
        return WriteReport(self.written + other.written, self.failed + other.failed)


class IndexMismatchError(ValueError):
    """An existing index was built for other vectors (dims, similarity, single vs multi-vector)."""


@runtime_checkable
class IndexBackend(Protocol):
    """The protocol. `open` creates the index if missing (then `dim` is required) or reopens it,
    refusing with `IndexMismatchError` when `dim` / `multi_vector` / `similarity` disagree with it."""

    name: ClassVar[str]

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
    ) -> IndexBackend: ...

    @property
    def info(self) -> dict[str, Any]:
        """Index-level metadata given at creation (e.g. the model the index was built with)."""
        ...

    def add(self, records: Iterable[IndexRecord]) -> WriteReport:
        """Upsert by id: re-adding an id replaces it, never duplicates it."""
        ...

    def search(
        self, query: np.ndarray, *, top_k: int = 10, filters: dict[str, Any] | None = None
    ) -> list[SearchHit]:
        """`query` is `[D]` or `[K, D]`; hits best first. Filters are applied before ranking."""
        ...

    def get(self, ids: Sequence[str]) -> list[IndexRecord]:
        """Stored records for the ids that exist (order of `ids`, missing ones skipped)."""
        ...

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> stored content hash, for the ids that exist and have one."""
        ...

    def delete(self, ids: Sequence[str] | None = None, *, filters: dict[str, Any] | None = None) -> int:
        """Delete by ids and/or filter; returns how many were deleted."""
        ...

    def count(self, filters: dict[str, Any] | None = None) -> int: ...

    def persist(self) -> None:
        """Make every write durable (atomically for file-based backends)."""
        ...

    def close(self) -> None: ...


def maxsim(query: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Late-interaction score: for query `[K, D]` and docs `[N, K', D]`, sum over query tokens of the
    best-matching document token (ReT v1 / ColBERT). Returns `[N]`."""
    sims = np.einsum("kd,njd->nkj", query, docs)
    return sims.max(axis=2).sum(axis=1)


def as_float32(vectors: np.ndarray | Sequence[float]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
