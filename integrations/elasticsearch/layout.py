"""The document layout ret2 writes since layout version 2: elasticsearch-haystack's, so both read it.

    {"id": "<record id>", "content": "<text>", "embedding": [...], "file_path": "<image reference>",
     "content_hash": "...", "blob": {"data": [bytes as ints], "mime_type": ..., "meta": {...}},
     "<meta key>": <value>, ...,  "tokens": "<base64 [K, D] float32>" (multi-vector only)}

This is `ElasticsearchDocumentStore`'s document (`Document.to_dict()` with meta flattened to the top
level, `_id` = `id`), so an index ret2 writes reads back in Haystack with the same ids, `content` =
the item text, `meta.*` filters working and the image reference in `meta["file_path"]` (where
Haystack's image components look for it); `content_hash` shows up in Haystack's meta too. Meta keys
that would collide with these fields are refused per record. Under ret2's "cosine" the vector goes to
an ES `cosine` field as written (Haystack's default too; ES normalises it, `_source` keeps it exactly),
so `ElasticsearchEmbeddingRetriever` and ret2 rank alike; multi-vector token vectors are normalised
client-side for MaxSim and the pooled vector drives kNN. Layout version 1 (`text`, `image`, `meta.*`)
is still read and written for indexes created before.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ret2_plugin.index import IndexRecord, check_extra, check_meta, check_record_fields, prepare_embedding

from .bulk import RecordEncoder, decode_tokens, encode_tokens, pooled
from .mapping import TOKENS_FIELD, VECTOR_FIELD

IMAGE_FIELD = "file_path"
# top-level fields that are not meta keys (Haystack's Document fields + ours)
RESERVED = frozenset(
    {"id", "content", VECTOR_FIELD, "blob", "score", "sparse_embedding", TOKENS_FIELD, "content_hash", IMAGE_FIELD}
)


def meta_of(source: dict[str, Any]) -> dict[str, Any]:
    """The meta of a v2 / Haystack document: every top-level key that is not a document field."""
    return {k: v for k, v in source.items() if k not in RESERVED}


class LayoutEncoder(RecordEncoder):
    """`RecordEncoder` for the v2 (Haystack) layout; validation by the shared rules of `ret2_plugin.index`."""

    def __init__(self, *, dim: int, multi_vector: bool, similarity: str) -> None:
        super().__init__(dim=dim, multi_vector=multi_vector, normalise_vectors=similarity == "cosine")
        self.similarity = similarity

    def source(self, record: IndexRecord) -> dict[str, Any]:
        """The `_source` for `record`; ValueError(reason) when it cannot be stored."""
        check_record_fields(record)  # id (<= 512 UTF-8 bytes), text / image / content_hash types
        meta = json.loads(check_meta(record.meta))
        clash = sorted(k for k in meta if k in RESERVED and not (k == IMAGE_FIELD and meta[k] == record.image))
        if clash:
            raise ValueError(f"meta key(s) {clash} are document fields in the Elasticsearch layout; rename them")
        extra = check_extra(record.extra) or {}
        doc: dict[str, Any] = {**meta, "id": record.id}
        if record.text is not None:
            doc["content"] = record.text
        if record.image is not None:
            doc[IMAGE_FIELD] = record.image
        if record.content_hash is not None:
            doc["content_hash"] = record.content_hash
        if "blob" in extra:
            blob = extra["blob"]
            doc["blob"] = {"data": list(blob["data"]), "mime_type": blob["mime_type"], "meta": blob["meta"]}
        if record.embedding is None:
            return doc
        vector = prepare_embedding(
            record.embedding, dim=self.dim, multi_vector=self.multi_vector, similarity=self.similarity
        )
        if self.multi_vector:
            doc[TOKENS_FIELD] = encode_tokens(vector)
            doc[VECTOR_FIELD] = pooled(vector).tolist()
        elif "embedding" in extra:  # exactly as the caller wrote it (ES cosine normalises internally)
            doc[VECTOR_FIELD] = extra["embedding"]
        else:
            doc[VECTOR_FIELD] = np.asarray(record.embedding, dtype=np.float32).tolist()
        return doc

    def record(self, doc_id: str, source: dict[str, Any]) -> IndexRecord:
        extra: dict[str, Any] = {}
        embedding = None
        if self.multi_vector and TOKENS_FIELD in source:
            embedding = decode_tokens(source[TOKENS_FIELD], self.dim)
        elif source.get(VECTOR_FIELD) is not None:
            embedding = np.asarray(source[VECTOR_FIELD], dtype=np.float32)
            extra["embedding"] = source[VECTOR_FIELD]
        blob = source.get("blob")
        if isinstance(blob, dict) and blob.get("data") is not None:
            extra["blob"] = {
                "data": bytes(blob["data"]),
                "mime_type": blob.get("mime_type"),
                "meta": blob.get("meta") or {},
            }
        return IndexRecord(
            doc_id,
            embedding,
            source.get("content"),
            source.get(IMAGE_FIELD),
            meta_of(source),
            source.get("content_hash"),
            extra or None,
        )
