"""The one small protocol every index backend implements (FAISS, Elasticsearch, in-memory, plugins).

A backend stores `IndexRecord`s (id, embedding, payload) and answers nearest-neighbour queries with
optional metadata filters (Haystack filter syntax, see `ret2_plugin.filters`). Embeddings are either
one vector per item (`[D]`, ReT-2) or K token vectors (`[K, D]`, ReT v1 late interaction, scored by
MaxSim). Backends are created or reopened with `Backend.open(location, ...)` and chosen by name through
the plugin registry (`ret2_plugin.plugins.get_index_backend`).

Every backend validates with the same helpers below (`prepare_embedding`, `check_meta`,
`check_record_fields`, `check_ids`, `check_top_k`, `check_similarity`), so a record or query refused by one backend is refused by all, for
the same reason, and scores agree across backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

SIMILARITIES: tuple[str, ...] = ("cosine", "dot_product")
"""Similarities every backend supports. "cosine": embeddings and queries are L2-normalised (each token
vector, for multi-vector) on write and on query, then scored by inner product (MaxSim for multi-vector),
so a score is a cosine (a sum of cosines under MaxSim). "dot_product": raw inner product, stored as given."""


@dataclass
class IndexRecord:
    """What a backend stores for one item."""

    id: str
    embedding: np.ndarray | None  # float32 [D] (single vector) or [K, D] (multi-vector); None: not searchable
    text: str | None = None
    image: str | None = None  # the item's image reference (path or URL), never the pixels
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str | None = None  # lets `ret2 index` skip unchanged items
    extra: dict[str, Any] | None = None  # kept for Haystack: "blob" (bytes), "embedding" as written (`check_extra`)


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
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (id, why): sent, outcome not confirmed

    def merge(self, other: WriteReport) -> WriteReport:
        return WriteReport(self.written + other.written, self.failed + other.failed, self.unknown + other.unknown)


def check_extra(extra: Any) -> dict[str, Any] | None:
    """A deep copy of a record's `extra`, or ValueError(reason). Keys: "blob" = {"data": bytes,
    "mime_type": str | None, "meta": dict} (Haystack's ByteStream), "embedding" = the embedding exactly
    as the caller wrote it (list of floats), kept where the stored vector differs (normalised float32)."""
    if extra is None:
        return None
    if not isinstance(extra, dict) or set(extra) - {"blob", "embedding"}:
        raise ValueError("extra must be a dict with 'blob' and/or 'embedding'")
    out: dict[str, Any] = {}
    blob = extra.get("blob")
    if blob is not None:
        if not isinstance(blob, dict) or not isinstance(blob.get("data"), (bytes, bytearray)):
            raise ValueError("blob must be a dict with bytes under 'data'")
        mime_type = blob.get("mime_type")
        if mime_type is not None and not isinstance(mime_type, str):
            raise ValueError("blob mime_type must be a string or None")
        out["blob"] = {
            "data": bytes(blob["data"]),
            "mime_type": mime_type,
            "meta": json.loads(check_meta(blob.get("meta"))),
        }
    if extra.get("embedding") is not None:
        try:
            out["embedding"] = json.loads(json.dumps(extra["embedding"], allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra embedding is not a JSON list of numbers: {exc}") from None
    return out or None


def extra_to_json(extra: dict[str, Any] | None) -> str | None:
    """A checked `extra` as JSON (blob bytes in base64), for backends that store text."""
    import base64

    extra = check_extra(extra)
    if extra is None:
        return None
    if "blob" in extra:
        extra["blob"]["data"] = base64.b64encode(extra["blob"]["data"]).decode("ascii")
    return json.dumps(extra, ensure_ascii=False)


def extra_from_json(text: str | None) -> dict[str, Any] | None:
    import base64

    if not text:
        return None
    extra = json.loads(text)
    if "blob" in extra:
        extra["blob"]["data"] = base64.b64decode(extra["blob"]["data"])
    return extra


class IndexNotFoundError(ValueError):
    """`open(location)` without `dim` found no index there (backends raise it so callers can create one)."""


class IndexMismatchError(ValueError):
    """An existing index was built for other vectors (dims, similarity, single vs multi-vector)."""


class IndexStorageError(RuntimeError):
    """An index that cannot be read or written safely: damaged files, a concurrent writer, a failed
    save (disk full, file size limit ...). The message names the index / file and the reason; the
    CLI reports it in one line."""


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

    def search(self, query: np.ndarray, *, top_k: int = 10, filters: dict[str, Any] | None = None) -> list[SearchHit]:
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


# --- validation shared by the backends (one set of rules: a record refused by one is refused by all) ---


def check_similarity(similarity: str) -> str:
    """`similarity` if it is one of `SIMILARITIES`, else ValueError."""
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity {similarity!r} is not supported; use one of {SIMILARITIES}")
    return similarity


def prepare_embedding(
    vector: np.ndarray | Sequence[Any], *, dim: int, multi_vector: bool, similarity: str, what: str = "embedding"
) -> np.ndarray:
    """A contiguous float32 COPY of `vector` ready to store or search: `[dim]`, or `[K, dim]` with K >= 1
    when `multi_vector`; L2-normalised (per token) under cosine. Raises ValueError(reason) for a
    non-numeric or ragged array, a wrong shape, NaN/inf, an empty token list, or (under cosine) a zero
    vector, which has no direction. `what` names the thing in the message ("embedding", "query")."""
    try:
        out = np.array(vector, dtype=np.float32)  # np.array copies: the caller's array is never aliased
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not a numeric array: {exc}") from None
    if out.ndim != (2 if multi_vector else 1) or out.shape[-1] != dim:
        raise ValueError(f"{what} shape {tuple(out.shape)} does not fit index (dim={dim}, multi_vector={multi_vector})")
    if multi_vector and out.shape[0] == 0:
        raise ValueError(f"{what} has an empty token list (multi-vector needs at least one token vector)")
    if not np.isfinite(out).all():
        raise ValueError(f"{what} has NaN or inf values")
    if check_similarity(similarity) == "cosine":
        norms = np.linalg.norm(out, axis=-1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"{what} has a zero vector, which cannot be L2-normalised for cosine similarity")
        out /= norms
    return np.ascontiguousarray(out)


MAX_ID_BYTES = 512
"""Longest record id, in UTF-8 bytes (Elasticsearch's `_id` limit; one rule so an index can move between backends)."""


def check_record_fields(record: IndexRecord) -> None:
    """ValueError(reason) unless `record.id` is a non-empty string of at most MAX_ID_BYTES UTF-8 bytes and
    text / image / content_hash are strings or None (the record-level checks besides embedding and meta)."""
    doc_id = record.id
    if not isinstance(doc_id, str) or not doc_id:
        raise ValueError(f"id must be a non-empty string, got {str(doc_id)[:80]!r}")
    try:
        size = len(doc_id.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(f"id is not valid Unicode text: {exc.reason} at position {exc.start}") from None
    if size > MAX_ID_BYTES:
        raise ValueError(f"id is {size} bytes long (UTF-8); ids may have at most {MAX_ID_BYTES} bytes")
    for name in ("text", "image", "content_hash"):
        value = getattr(record, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None, got {type(value).__name__}")


def check_ids(ids: Sequence[str] | None) -> list[str]:
    """`ids` as a list of strings (None -> []). A bare `str` is refused with TypeError: iterating it
    would act on its characters (`delete("ab")` deleting "a" and "b")."""
    if ids is None:
        return []
    if isinstance(ids, (str, bytes)):
        raise TypeError(
            f"ids must be a sequence of ids, got the single {type(ids).__name__} {ids!r}; wrap it in a list"
        )
    out = list(ids)
    bad = [i for i in out if not isinstance(i, str)]
    if bad:
        raise TypeError(f"ids must be strings, got {bad[0]!r} ({type(bad[0]).__name__})")
    return out


def check_top_k(top_k: int) -> int:
    """`top_k` if it is an int >= 1, else ValueError (so every backend refuses 0 or negative the same way)."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    return int(top_k)


def check_meta(meta: dict[str, Any] | None) -> str:
    """`meta` (None -> {}) as JSON, or ValueError(reason) if it is not a dict of JSON-serialisable values
    (sets, objects, NaN/inf ...): what a backend stores must round-trip through every backend."""
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
    try:
        return json.dumps(meta, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta is not JSON-serialisable: {exc}") from None
