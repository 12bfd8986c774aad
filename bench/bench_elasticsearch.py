"""Benchmark of the Elasticsearch backend; prints one JSON object. Not part of the test run.

1. Ingest throughput: `ElasticsearchBackend.add` vs raw `elasticsearch.helpers.bulk` with the same
   precomputed vectors and the same mapping (goal: connector / raw >= 0.9).
2. kNN: latency p50 / p95 (client wall time, one query at a time) and recall@k against exact numpy
   search, for each index type (default int8_hnsw and bbq_hnsw).

Data: synthetic clustered unit vectors (centres + noise, normalised), queries near held-out points.
Without `--es-url` a throwaway node is started with `tests/es_node.py` (needs Java 17 + Maven once).

    .venv/bin/python bench/bench_elasticsearch.py --n 20000 --dim 512
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_data(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 100, 8), dim)).astype(np.float32)
    points = centres[rng.integers(0, len(centres), n + queries)] + 0.6 * rng.normal(size=(n + queries, dim)).astype(
        np.float32
    )
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points[:n], points[n:]


def records(vectors: np.ndarray):
    from ret2_plugin.index import IndexRecord

    for i, vector in enumerate(vectors):
        yield IndexRecord(f"d{i}", vector, text=f"doc {i}", meta={"bucket": i % 10}, content_hash=str(i))


def bench_ingest(options: dict[str, Any], vectors: np.ndarray, index_type: str, chunk_size: int) -> dict[str, Any]:
    from elasticsearch.helpers import bulk

    from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend

    out: dict[str, Any] = {"index_type": index_type, "docs": len(vectors), "chunk_size": chunk_size}
    for run in ("raw", "connector", "raw_again", "connector_again"):  # interleaved: warm JVM, fair order
        name = f"bench-{run}-{uuid.uuid4().hex[:6]}"
        backend = ElasticsearchBackend.open(
            name, dim=vectors.shape[1], index_type=index_type, chunk_size=chunk_size, **options
        )
        start = time.perf_counter()
        if run.startswith("raw"):
            actions = (
                {
                    "_index": name,
                    "_id": f"d{i}",
                    "_source": {
                        "embedding": v.tolist(),
                        "text": f"doc {i}",
                        "meta": {"bucket": i % 10},
                        "content_hash": str(i),
                    },
                }
                for i, v in enumerate(vectors)
            )
            written, errors = bulk(backend.client, actions, chunk_size=chunk_size, raise_on_error=False)
            assert not errors, errors[:1]
        else:
            report = backend.add(records(vectors))
            assert not report.failed, report.failed[:1]
            written = report.written
        elapsed = time.perf_counter() - start
        assert written == len(vectors)
        out.setdefault(run.replace("_again", ""), []).append(round(len(vectors) / elapsed, 1))
        backend.drop()
    out["raw_docs_per_s"] = max(out.pop("raw"))
    out["connector_docs_per_s"] = max(out.pop("connector"))
    out["ratio"] = round(out["connector_docs_per_s"] / out["raw_docs_per_s"], 3)
    return out


def bench_knn(
    options: dict[str, Any],
    vectors: np.ndarray,
    queries: np.ndarray,
    index_type: str,
    top_k: int,
    num_candidates: int | None,
    force_merge: bool,
) -> dict[str, Any]:
    from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend

    name = f"bench-knn-{index_type}-{uuid.uuid4().hex[:6]}"
    backend = ElasticsearchBackend.open(name, dim=vectors.shape[1], index_type=index_type, **options)
    try:
        start = time.perf_counter()
        backend.add(records(vectors))
        backend.persist()
        ingest_s = time.perf_counter() - start
        if force_merge:
            backend.client.indices.forcemerge(index=name, max_num_segments=1, request_timeout=600)
        exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :top_k]
        for query in queries[:10]:  # warm-up
            backend.search(query, top_k=top_k, num_candidates=num_candidates)
        latencies, found = [], 0
        for query, truth in zip(queries, exact):
            t0 = time.perf_counter()
            hits = backend.search(query, top_k=top_k, num_candidates=num_candidates)
            latencies.append((time.perf_counter() - t0) * 1000)
            found += len({h.id for h in hits} & {f"d{i}" for i in truth})
        segments = len(backend.client.cat.segments(index=name, format="json"))
        return {
            "index_type": index_type,
            "index_options": backend.layout["index_options"],
            "ingest_s": round(ingest_s, 1),
            "segments": segments,
            "num_candidates": num_candidates or "default max(10k, 100)",
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p95_ms": round(float(np.percentile(latencies, 95)), 2),
            f"recall@{top_k}": round(found / (top_k * len(queries)), 4),
        }
    finally:
        backend.drop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--es-url", help="use this node (else start one from tests/es_node.py)")
    parser.add_argument("--username", default=None)
    parser.add_argument("--password", default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--num-candidates", type=int, default=None)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--index-types", default="int8_hnsw,bbq_hnsw")
    parser.add_argument("--ingest-docs", type=int, default=None, help="docs for the ingest comparison (default --n)")
    parser.add_argument("--force-merge", action="store_true", help="merge to one segment before timing queries")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    node = None
    if args.es_url:
        from ret2_plugin.integrations.elasticsearch import backend_options_from_args

        options = backend_options_from_args(
            args.es_url, api_key=args.api_key, username=args.username, password=args.password
        )
    else:
        from tests.es_node import start_node

        node = start_node()
        options = node.backend_options()
    options["request_timeout"] = 120
    try:
        vectors, queries = make_data(args.n, args.dim, args.queries)
        result: dict[str, Any] = {
            "benchmark": "elasticsearch",
            "es_version": node.version if node else None,
            "n": args.n,
            "dim": args.dim,
            "queries": args.queries,
            "data": "synthetic clustered unit vectors",
            "ingest": bench_ingest(
                options, vectors[: args.ingest_docs or args.n], args.index_types.split(",")[0], args.chunk_size
            ),
            "knn": [
                bench_knn(options, vectors, queries, t, args.top_k, args.num_candidates, args.force_merge)
                for t in args.index_types.split(",")
            ],
        }
    finally:
        if node is not None:
            node.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
