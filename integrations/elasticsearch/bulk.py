"""Records -> `_bulk` in chunks; per-document failures reported, never fatal.

Records are validated with the rules every backend shares (`ret2_plugin.index`: id, embedding, meta) and
serialised lazily (a generator is never materialised); `_id` is the record id so re-ingesting upserts.
Sending (bisection of rejected requests, retries, deadline, reconciled timeouts) is `sender.py`'s job.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ret2_plugin.index import IndexRecord, WriteReport, check_meta, check_record_fields, prepare_embedding

from .mapping import TOKENS_FIELD, VECTOR_FIELD
from .sender import BulkSender, BulkSettings, Deadline, Doc

__all__ = ["BulkSettings", "RecordEncoder", "decode_tokens", "encode_tokens", "write_records"]


def encode_tokens(tokens: np.ndarray) -> str:
    """`[K, D]` float32 -> base64 of the little-endian bytes (exact, ~1.33 x the raw size)."""
    return base64.b64encode(np.ascontiguousarray(tokens, dtype="<f4").tobytes()).decode("ascii")


def decode_tokens(data: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim).astype(np.float32)


def pooled(tokens: np.ndarray) -> np.ndarray:
    """Mean of the token vectors, L2-normalised: the multi-vector kNN candidate generator."""
    return normalise(tokens.mean(axis=0))


def normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("zero vector cannot be normalised")
    return (vector / norm).astype(np.float32)


class RecordEncoder:
    """Turns IndexRecords into `_source` docs for one index layout; explains what is wrong with a bad one."""

    def __init__(self, *, dim: int, multi_vector: bool, normalise_vectors: bool) -> None:
        self.dim = dim
        self.multi_vector = multi_vector
        self.normalise_vectors = normalise_vectors

    def _embedding(self, vector: Any, what: str) -> np.ndarray:
        """The shared embedding rules (shape, NaN/inf, empty, zero under cosine); normalised under cosine."""
        similarity = "cosine" if self.normalise_vectors else "dot_product"
        return prepare_embedding(vector, dim=self.dim, multi_vector=self.multi_vector, similarity=similarity, what=what)

    def vector_for_query(self, query: np.ndarray) -> np.ndarray:
        query = self._embedding(query, "query")
        return pooled(query) if self.multi_vector else query

    def source(self, record: IndexRecord) -> dict[str, Any]:
        """The `_source` for `record`; ValueError(reason) when the shared rules refuse it."""
        check_record_fields(record)
        vector = self._embedding(record.embedding, "embedding")
        doc: dict[str, Any] = {
            "text": record.text,
            "image": record.image,
            "meta": json.loads(check_meta(record.meta)),
            "content_hash": record.content_hash,
        }
        if self.multi_vector:
            doc[TOKENS_FIELD] = encode_tokens(vector)
            doc[VECTOR_FIELD] = pooled(vector).tolist()
        else:
            doc[VECTOR_FIELD] = vector.tolist()
        return doc

    def record(self, doc_id: str, source: dict[str, Any]) -> IndexRecord:
        if self.multi_vector:
            embedding = decode_tokens(source[TOKENS_FIELD], self.dim)
        else:
            embedding = np.asarray(source[VECTOR_FIELD], dtype=np.float32)
        return IndexRecord(
            doc_id,
            embedding,
            source.get("text"),
            source.get("image"),
            dict(source.get("meta") or {}),
            source.get("content_hash"),
        )


def write_records(
    client: Any,
    index: str,
    records: Iterable[IndexRecord],
    encoder: RecordEncoder,
    settings: BulkSettings,
    *,
    refresh: bool | str = False,
    progress: bool = False,
    deadline: Deadline | None = None,
    where: str = "",
    request_timeout: float | None = 30.0,
) -> WriteReport:
    """Index the records; ids that ES or the shared validation reject land in `report.failed` with the
    reason, ids whose write could not be confirmed in `report.unknown`. Raises ElasticsearchUnavailable /
    DeadlineExceeded (with `.report`) when the cluster stops answering or the deadline passes."""
    report = WriteReport()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"indexing into {index}", unit="doc")

    def docs() -> Iterator[Doc]:
        for record in records:
            if not isinstance(record, IndexRecord):
                report.failed.append(
                    (str(getattr(record, "id", record))[:200], f"not an IndexRecord: {type(record).__name__}")
                )
                continue
            try:
                body = json.dumps(encoder.source(record), ensure_ascii=False, allow_nan=False)
            except (ValueError, TypeError) as exc:
                report.failed.append((str(record.id)[:600], str(exc)))
                continue
            yield Doc(record.id, body, record.content_hash)

    sender = BulkSender(
        client,
        index,
        settings,
        deadline=deadline or Deadline(None),
        where=where or index,
        request_timeout=request_timeout,
        refresh=refresh,
        on_outcome=bar.update if bar is not None else None,
    )
    try:
        sender.send(docs(), report)
    finally:
        if bar is not None:
            bar.close()
    if refresh is True:
        bounded_refresh = sender.deadline.timeout(request_timeout)
        client.options(request_timeout=bounded_refresh).indices.refresh(index=index)
    return report
