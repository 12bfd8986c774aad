"""Streaming bulk writer: records -> `_bulk` in chunks, per-document failures reported, never fatal.

Records are validated and serialised lazily (a generator is never materialised); `_id` is the record
id so re-ingesting upserts. 429 rejections are retried by `streaming_bulk` with exponential backoff.
Whole-request failures (node down, bad credentials) still raise: they are not per-document problems.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ret2_plugin.index import IndexRecord, WriteReport, as_float32

from .mapping import TOKENS_FIELD, VECTOR_FIELD


@dataclass(frozen=True)
class BulkSettings:
    chunk_size: int = 500
    max_chunk_bytes: int = 50 * 1024 * 1024
    max_retries: int = 3
    initial_backoff: float = 2.0
    max_backoff: float = 60.0


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

    def problem(self, vector: np.ndarray) -> str | None:
        want = 2 if self.multi_vector else 1
        if vector.ndim != want or vector.shape[-1] != self.dim or vector.size == 0:
            return (
                f"embedding shape {tuple(vector.shape)} does not fit index "
                f"(dim={self.dim}, multi_vector={self.multi_vector})"
            )
        if not np.isfinite(vector).all():
            return "embedding has NaN or inf values"
        if self.normalise_vectors and not np.all(np.linalg.norm(vector, axis=-1) > 0):
            return "embedding has a zero vector, which has no direction (cosine undefined)"
        return None

    def vector_for_query(self, query: np.ndarray) -> np.ndarray:
        query = as_float32(query)
        problem = self.problem(query)
        if problem:
            raise ValueError(f"query {problem}")
        if self.multi_vector:
            return pooled(query)
        return normalise(query) if self.normalise_vectors else query

    def source(self, record: IndexRecord) -> dict[str, Any]:
        vector = as_float32(record.embedding)
        problem = self.problem(vector)
        if problem:
            raise ValueError(problem)
        meta_problem = _json_problem(record.meta)
        if meta_problem:
            raise ValueError(f"meta is not JSON-serialisable: {meta_problem}")
        doc: dict[str, Any] = {
            "text": record.text,
            "image": record.image,
            "meta": dict(record.meta or {}),
            "content_hash": record.content_hash,
        }
        if self.multi_vector:
            tokens = vector / np.linalg.norm(vector, axis=-1, keepdims=True) if self.normalise_vectors else vector
            doc[TOKENS_FIELD] = encode_tokens(tokens)
            doc[VECTOR_FIELD] = pooled(tokens).tolist()
        else:
            doc[VECTOR_FIELD] = (normalise(vector) if self.normalise_vectors else vector).tolist()
        return doc

    def record(self, doc_id: str, source: dict[str, Any]) -> IndexRecord:
        if self.multi_vector:
            embedding = decode_tokens(source[TOKENS_FIELD], self.dim)
        else:
            embedding = np.asarray(source[VECTOR_FIELD], dtype=np.float32)
        return IndexRecord(
            doc_id, embedding, source.get("text"), source.get("image"), dict(source.get("meta") or {}), source.get("content_hash")
        )


def _json_problem(meta: Any) -> str | None:
    """Why the client could not send `meta` as JSON (checked per record, so one bad value fails its own
    record instead of raising out of a bulk chunk after earlier chunks landed)."""
    from elasticsearch.serializer import JsonSerializer

    try:
        json.dumps(meta or {}, allow_nan=False, default=JsonSerializer().default)  # numpy, dates: as the client sends them
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause.get('type', '')}: {cause['reason']})"
        return reason
    return str(error)


def write_records(
    client: Any,
    index: str,
    records: Iterable[IndexRecord],
    encoder: RecordEncoder,
    settings: BulkSettings,
    *,
    refresh: bool | str = False,
    progress: bool = False,
) -> WriteReport:
    """Index the records; ids that ES or our validation rejects land in `report.failed` with the reason."""
    from elasticsearch.helpers import streaming_bulk

    report = WriteReport()

    def actions() -> Iterator[dict[str, Any]]:
        for record in records:
            if not isinstance(record, IndexRecord):
                report.failed.append((str(getattr(record, "id", record))[:200], f"not an IndexRecord: {type(record).__name__}"))
                continue
            try:
                source = encoder.source(record)
            except (ValueError, TypeError) as exc:
                report.failed.append((record.id, str(exc)))
                continue
            yield {"_op_type": "index", "_index": index, "_id": record.id, "_source": source}

    from elasticsearch import AuthorizationException

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"indexing into {index}", unit="doc")
    try:
        for ok, item in streaming_bulk(
            client,
            actions(),
            chunk_size=settings.chunk_size,
            max_chunk_bytes=settings.max_chunk_bytes,
            max_retries=settings.max_retries,
            initial_backoff=settings.initial_backoff,
            max_backoff=settings.max_backoff,
            raise_on_error=False,
            refresh=refresh if refresh == "wait_for" else False,
        ):
            result = next(iter(item.values()))
            if ok:
                report.written += 1
            else:
                report.failed.append((str(result.get("_id")), _reason(result.get("error", result))))
            if bar is not None:
                bar.update(1)
    except AuthorizationException as exc:
        raise PermissionError(
            f"not allowed to write to Elasticsearch index {index!r} ({exc.message}); "
            f"{report.written} records were written before the refusal"
        ) from exc
    finally:
        if bar is not None:
            bar.close()
    if refresh is True:
        client.indices.refresh(index=index)
    return report
