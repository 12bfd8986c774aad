"""`ElasticsearchBackend`: the ret2 index protocol on an Elasticsearch 8.19 index.

One index per ret2 index (`location` = index name or an alias of one index). Writes go through the
streaming bulk writer; reads after writes in the same process see them (one refresh before the first
read that follows a write). Search: top-level kNN with the filter inside (pre-filter), optional
similarity threshold, optional hybrid with BM25 fused by RRF; multi-vector indexes re-rank pooled-vector
candidates by MaxSim on the stored token vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from ret2_plugin.index import (
    IndexMismatchError,
    IndexNotFoundError,
    IndexRecord,
    SearchHit,
    WriteReport,
    as_float32,
    check_ids,
    check_top_k,
    maxsim,
)

from . import mapping as mp
from .bulk import BulkSettings, RecordEncoder, decode_tokens, write_records
from .connection import CONNECTION_KEYS, check_connection, connect, describe
from .filters import to_es_query
from .layout import IMAGE_FIELD, LayoutEncoder, meta_of
from .maintenance import create_index, delete_matching, read_layout, recreate, reindex
from .queries import MAX_NUM_CANDIDATES, bm25_body, default_num_candidates, knn_body, raw_similarity, rrf_fuse
from .sender import Deadline, DeadlineExceeded, ElasticsearchUnavailable

log = logging.getLogger(__name__)
_BULK_KEYS = {
    "chunk_size": "chunk_size",
    "max_chunk_bytes": "max_chunk_bytes",
    "bulk_max_retries": "max_retries",
    "initial_backoff": "initial_backoff",
    "max_backoff": "max_backoff",
}


class ElasticsearchBackend:
    """Index backend on Elasticsearch. Open with `ElasticsearchBackend.open(index_name, dim=..., ...)`."""

    name: ClassVar[str] = "elasticsearch"
    durable_writes: ClassVar[bool] = True  # acknowledged bulk writes are in the translog; `persist` only commits

    def __init__(
        self,
        client: Any,
        index: str,
        layout: dict[str, Any],
        *,
        where: str,
        bulk: BulkSettings,
        refresh: bool | str | None = None,
        progress: bool = False,
        connection: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> None:
        self.client = client
        self.index = index
        self.layout = layout
        self.dim: int = layout["dim"]
        self.multi_vector: bool = layout["multi_vector"]
        self.similarity: str = layout["similarity"]
        self._where = where
        self._bulk = bulk
        self._refresh = refresh
        self._progress = progress
        self._connection = dict(connection or {})  # kept to open sibling indexes (reindex); never printed
        self._dirty = False
        self._deadline_seconds = deadline  # each call's (or each `run_deadline()` run's) time budget
        self._run_deadline: Deadline | None = None
        self._request_timeout = float(self._connection.get("request_timeout") or 30)
        self._meta_prefix: str = layout.get("meta_prefix", "meta.")
        self._text_field: str = layout.get("text_field", "text")
        self._v1 = self._meta_prefix == "meta."  # layout v1 (`text`, `image`, `meta.*`); else v2 = Haystack's
        self._encoder = (
            RecordEncoder(dim=self.dim, multi_vector=self.multi_vector, normalise_vectors=self.similarity == "cosine")
            if self._v1
            else LayoutEncoder(dim=self.dim, multi_vector=self.multi_vector, similarity=self.similarity)
        )

    def __repr__(self) -> str:
        return f"ElasticsearchBackend(index={self.index!r}, at={self._where!r}, dim={self.dim}, multi_vector={self.multi_vector})"

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
    ) -> ElasticsearchBackend:
        """Create the index if missing (needs `dim`) or reopen it; with `dim` given, refuse an index built
        for other vectors (dims, single vs multi-vector, similarity) with IndexMismatchError.

        Options: connection (`hosts`, `cloud_id`, `api_key`, `basic_auth` or `username`/`password`,
        `ca_certs`, `verify_certs`, `request_timeout`, `max_retries` or an existing `client`; the
        ELASTICSEARCH_* env vars fill the gaps), mapping on creation (`index_type` = int8_hnsw | hnsw |
        int4_hnsw | bbq_hnsw | flat | int8_flat | ..., `m`, `ef_construction`, `confidence_interval`,
        `oversample`, `shards`, `replicas`), bulk (`chunk_size`, `max_chunk_bytes`, `bulk_max_retries`,
        `initial_backoff`, `max_backoff`), `refresh` (None = refresh before reads after writes,
        True, "wait_for", False), `progress` (tqdm bar while adding) and `deadline` (seconds for each `add`, `persist` or
        `content_hashes` call, counted from its start, or for a whole run inside `run_deadline()`,
        which `index_items` uses; past it, DeadlineExceeded with the report so far).
        """
        connection = {k: options.pop(k) for k in CONNECTION_KEYS if k in options}
        mapping_options = {k: options.pop(k) for k in mp.MAPPING_OPTIONS if k in options}
        bulk = BulkSettings(**{field: options.pop(k) for k, field in _BULK_KEYS.items() if k in options})
        refresh = options.pop("refresh", None)
        progress = bool(options.pop("progress", False))
        deadline = options.pop("deadline", None)
        Deadline(deadline)  # refuse a bad value before connecting
        if options:
            raise TypeError(f"elasticsearch backend got unknown options {sorted(options)}")
        if similarity not in mp.ES_SIMILARITY:
            raise ValueError(f"unsupported similarity {similarity!r}; use one of {sorted(mp.ES_SIMILARITY)}")
        where = describe(connection)
        client = connect(**dict(connection))
        check_connection(client, where)
        layout = read_layout(client, location)
        if layout is None:
            if dim is None:
                raise IndexNotFoundError(
                    f"Elasticsearch index {location!r} does not exist at {where}; pass dim= to create it"
                )
            body = mp.build_index_body(
                dim=dim, multi_vector=multi_vector, similarity=similarity, info=info, **mapping_options
            )
            create_index(client, location, body)
            layout = read_layout(client, location)
            assert layout is not None
            mp.check_compatible(location, layout, dim=dim, multi_vector=multi_vector, similarity=similarity)
        else:
            if dim is not None:  # like the memory backend: a bare open(name) takes the index as it is
                mp.check_compatible(location, layout, dim=dim, multi_vector=multi_vector, similarity=similarity)
            if mapping_options:
                log.info(
                    "index %r exists; mapping options %s apply only on creation", location, sorted(mapping_options)
                )
        return cls(
            client,
            location,
            layout,
            where=where,
            bulk=bulk,
            refresh=refresh,
            progress=progress,
            connection=connection,
            deadline=deadline,
        )

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.layout["info"])

    # -- writes -----------------------------------------------------------------------------------
    def add(self, records: Iterable[IndexRecord], *, refresh: bool | str | None = None) -> WriteReport:
        """Upsert (id = `_id`); a generator is streamed in chunks. Bad records are reported, not fatal;
        writes whose outcome could not be confirmed are in `report.unknown`. A cluster that stops answering
        raises ElasticsearchUnavailable, a passed deadline DeadlineExceeded, both with `.report`."""
        self._check_writable()
        policy = self._refresh if refresh is None else refresh
        try:
            with self._translated("writing"):
                report = write_records(
                    self.client,
                    self.index,
                    records,
                    self._encoder,
                    self._bulk,
                    refresh=policy if policy is not None else False,
                    progress=self._progress,
                    deadline=self._call_deadline(),
                    where=self._where,
                    request_timeout=self._request_timeout,
                )
        except PermissionError:
            raise
        except BaseException:
            self._dirty = True  # some chunks may have landed
            raise
        self._dirty = self._dirty or report.written > 0
        return report

    def _check_writable(self) -> None:
        if not self.layout["managed"]:
            raise IndexMismatchError(
                f"Elasticsearch index {self.index!r} was not created by ret2 (no _meta.ret2 in its mapping); "
                "it can be searched but ret2 does not write into it"
            )

    def delete(self, ids: Sequence[str] | None = None, *, filters: dict[str, Any] | None = None) -> int:
        """Delete by id (real time) and/or by filter (`delete_by_query`, or scroll + bulk where the
        cluster lacks it); returns how many were deleted."""
        from elasticsearch.helpers import bulk

        self._check_writable()
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"delete takes a list of ids, got the string {ids!r}; use delete([{ids!r}])")
        ids = check_ids(ids)
        deleted = 0
        if ids:
            actions = ({"_op_type": "delete", "_index": self.index, "_id": i} for i in ids)
            _, errors = bulk(self.client, actions, raise_on_error=False, stats_only=False)
            missing = sum(1 for e in errors if e.get("delete", {}).get("status") == 404)
            real = [e for e in errors if e.get("delete", {}).get("status") != 404]
            if real:
                raise RuntimeError(f"delete failed for {len(real)} ids, first: {real[0]}")
            deleted += len(ids) - missing
            self._dirty = True
        query = to_es_query(filters, self._meta_prefix, self.layout.get("content_filter_field"))
        if query is not None:
            self._refresh_if_dirty(force=self._dirty)  # delete_by_query only sees refreshed documents
            deleted += delete_matching(self.client, self.index, query)
        self._dirty = True
        return deleted

    def refresh(self) -> None:
        """Make acknowledged writes visible to every reader (an ES refresh; no Lucene commit, unlike `persist`)."""
        self._refresh_if_dirty(force=True)

    def persist(self) -> None:
        """Refresh (searchable) and flush (Lucene commit). Bulk writes are already durable in the translog."""
        with self._translated("refreshing"):
            client = self._reads(self._call_deadline())
            client.indices.refresh(index=self.index)
            client.indices.flush(index=self.index)
        self._dirty = False

    @contextmanager
    def run_deadline(self) -> Iterator[None]:
        """One deadline for every call inside (an indexing run: its adds, look-ups and commits), counted
        from entering; outside, each call gets its own. A store kept open for hours never runs out."""
        outer, self._run_deadline = self._run_deadline, Deadline(self._deadline_seconds)
        try:
            yield
        finally:
            self._run_deadline = outer

    def _call_deadline(self) -> Deadline:
        """The running `run_deadline()`'s budget, else a fresh one for this call."""
        return self._run_deadline or Deadline(self._deadline_seconds)

    def _reads(self, deadline: Deadline) -> Any:
        """The client for look-ups during a run: timeout cut to the deadline, no resend after a timeout
        (a stalled node costs one timeout; a dead node of a cluster is still skipped)."""
        if deadline.expired():
            raise DeadlineExceeded(
                f"{deadline.describe()} passed (Elasticsearch index {self.index!r} at {self._where})"
            )
        return self.client.options(request_timeout=deadline.timeout(self._request_timeout), retry_on_timeout=False)

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Transport failures as ElasticsearchUnavailable (a ConnectionError) naming where and what."""
        from elasticsearch import ConnectionError as TransportConnectionError
        from elasticsearch import ConnectionTimeout

        try:
            yield
        except ConnectionTimeout as exc:
            raise ElasticsearchUnavailable(
                f"Elasticsearch at {self._where} did not answer while {what} (index {self.index!r}): {exc.message}"
            ) from exc
        except TransportConnectionError as exc:
            raise ElasticsearchUnavailable(
                f"lost the connection to Elasticsearch at {self._where} while {what} "
                f"(index {self.index!r}): {exc.message}"
            ) from exc

    def close(self) -> None:
        if not self._connection.get("client"):
            self.client.close()

    # -- reads ------------------------------------------------------------------------------------
    def _refresh_if_dirty(self, force: bool = False) -> None:
        from elasticsearch import AuthorizationException

        if (self._dirty and self._refresh is None) or force:
            try:
                self.client.indices.refresh(index=self.index)
            except AuthorizationException:  # a user without `maintenance`: reads see the periodic refresh
                log.debug("not allowed to refresh %r; reading without an explicit refresh", self.index)
            self._dirty = False

    def count(self, filters: dict[str, Any] | None = None) -> int:
        self._refresh_if_dirty()
        query = to_es_query(filters, self._meta_prefix, self.layout.get("content_filter_field"))
        return int(self.client.count(index=self.index, query=query or {"match_all": {}})["count"])

    def get(self, ids: Sequence[str]) -> list[IndexRecord]:
        """Stored records (with their vectors) in the order of `ids`; missing ids are skipped."""
        ids = check_ids(ids)
        out: list[IndexRecord] = []
        for start in range(0, len(ids), 500):
            docs = self.client.mget(index=self.index, ids=list(ids[start : start + 500]))["docs"]
            out += [self._encoder.record(d["_id"], d["_source"]) for d in docs if d.get("found")]
        return out

    def ids(self, filters: dict[str, Any] | None = None) -> list[str]:
        """Ids of the documents that match `filters` (all without), in index order."""
        from elasticsearch.helpers import scan

        query = to_es_query(filters, self._meta_prefix, self.layout.get("content_filter_field")) or {"match_all": {}}
        self._refresh_if_dirty()
        hits = scan(
            self.client, index=self.index, query={"query": query, "sort": ["_doc"]}, _source=False, preserve_order=True
        )
        return [hit["_id"] for hit in hits]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        ids = check_ids(ids)
        hashes: dict[str, str] = {}
        deadline = self._call_deadline()
        for start in range(0, len(ids), 1000):
            with self._translated("looking up content hashes"):
                docs = self._reads(deadline).mget(
                    index=self.index, ids=list(ids[start : start + 1000]), source_includes=["content_hash"]
                )
            for doc in docs["docs"]:
                value = doc.get("_source", {}).get("content_hash") if doc.get("found") else None
                if value:
                    hashes[doc["_id"]] = value
        return hashes

    def search(
        self,
        query: np.ndarray,
        *,
        top_k: int = 10,
        filters: dict[str, Any] | None = None,
        num_candidates: int | None = None,
        similarity_threshold: float | None = None,
        text: str | None = None,
        rrf_k: int = 60,
        rank_window: int | None = None,
        rerank_candidates: int | None = None,
        oversample: float | None = None,
    ) -> list[SearchHit]:
        """kNN (approximate for HNSW types, exact for flat) with a pre-filter; `text` adds BM25 and fuses
        the two rankings by RRF (then `score` is the RRF score). Multi-vector: `rerank_candidates`
        (default max(10 * top_k, 100)) pooled-vector neighbours are re-scored by MaxSim."""
        if check_top_k(top_k) > MAX_NUM_CANDIDATES:
            raise ValueError(f"top_k must be at most {MAX_NUM_CANDIDATES} on Elasticsearch, got {top_k!r}")
        self._refresh_if_dirty()
        vector = self._encoder.vector_for_query(query)
        filter_query = to_es_query(filters, self._meta_prefix, self.layout.get("content_filter_field"))
        window = top_k if text is None else min(MAX_NUM_CANDIDATES, rank_window or max(2 * top_k, 20))
        k = window
        if self.multi_vector:
            k = min(MAX_NUM_CANDIDATES, max(window, rerank_candidates or default_num_candidates(window)))
        candidates = (
            None if num_candidates is None else (max(num_candidates, k) if self.multi_vector else num_candidates)
        )
        body = knn_body(
            vector,
            k=k,
            num_candidates=candidates,
            filter_query=filter_query,
            similarity_threshold=None if self.multi_vector else similarity_threshold,
            oversample=oversample,
            with_tokens=self.multi_vector,
        )
        if text is None:
            response = self.client.search(index=self.index, **body)
            return self._vector_hits(response, as_float32(query), top_k, similarity_threshold)
        bm25 = bm25_body(text, size=window, filter_query=filter_query, field=self._text_field)
        searches = [{"index": self.index}, body, {"index": self.index}, bm25]
        knn_response, bm25_response = self.client.msearch(searches=searches)["responses"]
        for response in (knn_response, bm25_response):
            if "error" in response:
                raise RuntimeError(f"search on {self.index!r} failed: {response['error']}")
        knn_hits = self._vector_hits(knn_response, as_float32(query), window, similarity_threshold)
        bm25_hits = [self._hit(h, float(h["_score"])) for h in bm25_response["hits"]["hits"]]
        by_id = {h.id: h for h in bm25_hits} | {h.id: h for h in knn_hits}
        fused = rrf_fuse([[h.id for h in knn_hits], [h.id for h in bm25_hits]], k=rrf_k, top_k=top_k)
        return [SearchHit(i, score, by_id[i].text, by_id[i].image, by_id[i].meta) for i, score in fused]

    def _hit(self, raw: dict[str, Any], score: float) -> SearchHit:
        source = raw.get("_source", {})
        text = source.get(self._text_field)
        if self._v1:
            return SearchHit(raw["_id"], score, text, source.get("image"), dict(source.get("meta") or {}))
        # layout v2 / Haystack's document store: every top-level field but the document's own is a meta key
        return SearchHit(raw["_id"], score, text, source.get(IMAGE_FIELD), meta_of(source))

    def _vector_hits(self, response: Any, query: np.ndarray, top_k: int, threshold: float | None) -> list[SearchHit]:
        raw_hits = response["hits"]["hits"]
        if not self.multi_vector:
            es_similarity = self.layout["es_similarity"]
            return [self._hit(h, raw_similarity(float(h["_score"]), es_similarity)) for h in raw_hits]
        if not raw_hits:
            return []
        tokens = [decode_tokens(h["_source"]["tokens"], self.dim) for h in raw_hits]
        q = query / np.linalg.norm(query, axis=-1, keepdims=True) if self.similarity == "cosine" else query
        width = max(t.shape[0] for t in tokens)
        padded = np.full((len(tokens), width, self.dim), 0.0, dtype=np.float32)
        for row, t in enumerate(tokens):  # pad by repeating a real token: max over tokens is unchanged
            padded[row, : t.shape[0]] = t
            padded[row, t.shape[0] :] = t[0]
        scores = maxsim(q, padded)
        order = np.argsort(-scores, kind="stable")
        hits = [self._hit(raw_hits[i], float(scores[i])) for i in order]
        if threshold is not None:
            hits = [h for h in hits if h.score >= threshold]
        return hits[:top_k]

    # -- maintenance (maintenance.py) -------------------------------------------------------------
    def reindex(self, new_index: str, *, alias: str | None = None, **mapping_options: Any) -> ElasticsearchBackend:
        """Copy every stored vector into `new_index` with another mapping (e.g. hnsw -> int8_hnsw)
        without re-embedding: server-side `_reindex` (scroll + bulk where the cluster lacks it); then
        optionally move `alias` onto the new index. The source index is left as it was."""
        return reindex(self, new_index, alias=alias, **mapping_options)

    def recreate(self) -> None:
        """Delete the index and create it again, empty, with its mappings and settings (what Haystack's
        `delete_all_documents(recreate_index=True)` does). An alias is emptied by deleting its documents."""
        recreate(self)

    def drop(self) -> None:
        """Delete the whole index (tests, benchmarks)."""
        self.client.indices.delete(index=self.index, ignore_unavailable=True)
