"""Checks at the edges of the FAISS backend: incoming records and queries, and loaded directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ret2_plugin.index import (
    IndexMismatchError,
    IndexRecord,
    check_meta,
    check_record_fields,
    extra_to_json,
    prepare_embedding,
)

from .files import IndexCorruptedError
from .keys import MAX_TOKENS, faiss_ids
from .store import PayloadStore

# text, image, meta JSON, content hash, vectors [ntok, dim] (normalised under cosine; ntok 0: no
# embedding, stored but not searchable), extra JSON (Haystack's blob / embedding as written)
Row = tuple[str | None, str | None, str, str | None, np.ndarray, str | None]


def prepare_record(record: IndexRecord, dim: int, multi_vector: bool, similarity: str) -> Row | str:
    """The row to store for `record`, or the reason it is refused (reported in the WriteReport).

    Embedding and meta rules are the shared ones (`ret2_plugin.index`); on top, FAISS keys limit a
    multi-vector document to MAX_TOKENS token vectors."""
    try:
        check_record_fields(record)  # id (<= 512 UTF-8 bytes, as on Elasticsearch), text / image / hash types
        if record.embedding is None:
            vectors = np.empty((0, dim), np.float32)
        else:
            vectors = prepare_embedding(record.embedding, dim=dim, multi_vector=multi_vector, similarity=similarity)
        meta_json = check_meta(record.meta)
        extra_json = extra_to_json(getattr(record, "extra", None))
    except ValueError as exc:
        return str(exc)
    vectors = vectors.reshape(-1, dim)
    if vectors.shape[0] > MAX_TOKENS:
        return f"multi-vector embedding needs 1..{MAX_TOKENS} token vectors, got {vectors.shape[0]}"
    return record.text, record.image, meta_json, record.content_hash, vectors, extra_json


def prepare_query(query: np.ndarray, dim: int, multi_vector: bool, similarity: str) -> np.ndarray:
    """The query as contiguous float32 (normalised under cosine); ValueError if it does not fit."""
    return prepare_embedding(query, dim=dim, multi_vector=multi_vector, similarity=similarity, what="query")


def check_consistency(directory: Path, manifest: dict[str, Any], index: faiss.Index, store: PayloadStore) -> None:
    """Refuse to load a directory whose index, payload store and manifest disagree."""
    problems = []
    if not isinstance(index, faiss.IndexIDMap2):
        problems.append(f"the index is a {type(index).__name__}, not an IndexIDMap2")
    elif index.d != manifest["dim"]:
        problems.append(f"index dim {index.d} != manifest dim {manifest['dim']}")
    else:
        if index.ntotal != manifest.get("n_vectors", index.ntotal):
            problems.append(f"index holds {index.ntotal} vectors, manifest says {manifest['n_vectors']}")
        if store.count() != manifest.get("n_docs", store.count()):
            problems.append(f"payload store holds {store.count()} documents, manifest says {manifest['n_docs']}")
        ids = faiss.vector_to_array(index.id_map) if index.ntotal else np.empty(0, np.int64)
        live = faiss_ids(*store.keys_and_ntok(), manifest["multi_vector"])
        missing = np.setdiff1d(live, ids).size
        extra = np.setdiff1d(ids, live).size
        if missing:
            problems.append(f"{missing} stored vectors are missing from the index")
        if extra != manifest.get("n_tombstones", 0):
            problems.append(
                f"the index holds {extra} vectors of no stored document, manifest says {manifest.get('n_tombstones', 0)}"
            )
    if problems:
        raise IndexCorruptedError(f"FAISS index {directory} is inconsistent: " + "; ".join(problems))


def check_fits(
    directory: Path,
    manifest: dict[str, Any],
    dim: int | None,
    multi_vector: bool,
    similarity: str,
    index_type: str | None,
) -> None:
    """IndexMismatchError when an existing index was built for other vectors (checked when dim is given)."""
    if dim is not None:
        asked = {"dim": dim, "multi_vector": multi_vector, "similarity": similarity}
        wrong = {k: (manifest[k], v) for k, v in asked.items() if manifest[k] != v}
        if wrong:
            detail = ", ".join(f"{k}: index has {have!r}, asked for {want!r}" for k, (have, want) in wrong.items())
            raise IndexMismatchError(f"FAISS index {directory} was built for other vectors ({detail})")
    if index_type is not None and index_type != manifest["index_type"]:
        raise IndexMismatchError(
            f"FAISS index {directory} has index_type {manifest['index_type']!r}, asked for {index_type!r}; "
            f"call rebuild(index_type=...) to change it"
        )
