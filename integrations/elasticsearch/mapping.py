"""The index mapping: built from the model's dims, read back and checked before any write.

Layout version 2 (`layout.py`, written since this version) is elasticsearch-haystack's: `id`,
`content` (text, BM25), `embedding` (dense_vector), `file_path` (the image reference), `content_hash`,
`blob` (stored, not indexed) and meta keys at the top level; multi-vector indexes add `tokens`
(binary, the `[K, D]` float32 token vectors, not indexed). Layout version 1 (`text`, `image`,
`meta.*`, similarity ES `dot_product` on client-normalised vectors) is still read and written.

Similarity (v2): ret2's `cosine` is ES `cosine`, Haystack's default, so a vector is stored exactly as
written and both ret2 and `ElasticsearchEmbeddingRetriever` rank by cosine. ES reports (1 + cos) / 2;
ret2 hits carry the cosine itself (`queries.raw_similarity`), on every backend the same scale. ret2's
`dot_product` is ES `max_inner_product`, which, like FAISS and the memory backend, accepts vectors of
any length.

Meta: strings are keyword, every number is `double` and date detection is off, so the meta mapping does
not depend on the first document (a first `"2024-01-01"` or a first integer would otherwise fix a
`date` / `long` field that rejects or truncates later values).

Multi-vector: this distribution has no `rank_vectors` field (x-pack module absent, and it
needs an Enterprise licence), so the pooled (mean, normalised) vector drives kNN candidate generation and
the stored tokens are re-ranked by MaxSim client-side.
"""

from __future__ import annotations

from typing import Any

from ret2_plugin.index import IndexMismatchError

VECTOR_FIELD = "embedding"
TOKENS_FIELD = "tokens"
META_VERSION = 2
CONTENT_KEYWORD_MAX = 8191  # texts up to this many characters are also indexed exactly (filters on `content`)
INDEX_TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat", "bbq_flat")
ES_SIMILARITY = {"cosine": "cosine", "dot_product": "max_inner_product", "max_inner_product": "max_inner_product"}
# Quantized HNSW re-scores oversample x k candidates with the raw float vectors. Measured on our node
# (400 random unit vectors, 64 dims, top 10): int8_hnsw recall 0.875 without, 1.0 with oversample 1.5.
DEFAULT_OVERSAMPLE = 2.0
MAPPING_OPTIONS = ("index_type", "m", "ef_construction", "confidence_interval", "oversample", "shards", "replicas")


def index_options(
    index_type: str = "int8_hnsw",
    *,
    m: int | None = None,
    ef_construction: int | None = None,
    confidence_interval: float | None = None,
    oversample: float | None = None,
) -> dict[str, Any]:
    """The dense_vector `index_options` (flat types = exact brute force, the others HNSW)."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown Elasticsearch index_type {index_type!r}; use one of {list(INDEX_TYPES)}")
    options: dict[str, Any] = {"type": index_type}
    if index_type.endswith("hnsw"):
        if m is not None:
            options["m"] = int(m)
        if ef_construction is not None:
            options["ef_construction"] = int(ef_construction)
    elif m is not None or ef_construction is not None:
        raise ValueError(f"m / ef_construction apply to HNSW index types, not {index_type!r}")
    if confidence_interval is not None and index_type.startswith(("int8", "int4")):
        options["confidence_interval"] = float(confidence_interval)
    if index_type.startswith(("int8", "int4")) and oversample is None:
        oversample = DEFAULT_OVERSAMPLE
    if oversample is not None and index_type.startswith(("int8", "int4", "bbq")):  # bbq: ES defaults to 3.0
        options["rescore_vector"] = {"oversample": float(oversample)}
    return options


def build_index_body(
    *,
    dim: int,
    multi_vector: bool,
    similarity: str,
    info: dict[str, Any] | None,
    index_type: str = "int8_hnsw",
    m: int | None = None,
    ef_construction: int | None = None,
    confidence_interval: float | None = None,
    oversample: float | None = None,
    shards: int = 1,
    replicas: int = 0,
) -> dict[str, Any]:
    """`settings` + `mappings` for `indices.create`; ret2's own description sits in `_meta.ret2`."""
    if similarity not in ES_SIMILARITY:
        raise ValueError(f"unsupported similarity {similarity!r}; use one of {sorted(ES_SIMILARITY)}")
    if not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    vector = {
        "type": "dense_vector",
        "dims": dim,
        "index": True,
        "similarity": ES_SIMILARITY[similarity],
        "index_options": index_options(
            index_type,
            m=m,
            ef_construction=ef_construction,
            confidence_interval=confidence_interval,
            oversample=oversample,
        ),
    }
    properties: dict[str, Any] = {
        VECTOR_FIELD: vector,
        "id": {"type": "keyword"},
        "content": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": CONTENT_KEYWORD_MAX}}},
        "file_path": {"type": "keyword"},
        "content_hash": {"type": "keyword"},
        "blob": {"type": "object", "enabled": False},
    }
    if multi_vector:
        properties[TOKENS_FIELD] = {"type": "binary", "doc_values": False}
    return {
        "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
        "mappings": {
            "dynamic": True,
            "_meta": {
                "ret2": {
                    "version": META_VERSION,
                    "dim": dim,
                    "multi_vector": multi_vector,
                    "similarity": similarity,
                    "info": dict(info or {}),
                }
            },
            "date_detection": False,
            "dynamic_templates": [
                {"strings": {"path_match": "*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}},
                {"integers": {"path_match": "*", "match_mapping_type": "long", "mapping": {"type": "double"}}},
                {"floats": {"path_match": "*", "match_mapping_type": "double", "mapping": {"type": "double"}}},
            ],
            "properties": properties,
        },
    }


def describe_mapping(name: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """Read dim / multi_vector / similarity / info / index_options back from an index's mapping."""
    properties = mapping.get("properties", {})
    vector = properties.get(VECTOR_FIELD)
    if not vector or vector.get("type") != "dense_vector":
        raise IndexMismatchError(
            f"Elasticsearch index {name!r} has no dense_vector field {VECTOR_FIELD!r}: not a ret2 index"
        )
    ours = mapping.get("_meta", {}).get("ret2", {})
    es_similarity = vector.get("similarity")
    similarity = ours.get("similarity") or {"cosine": "cosine", "dot_product": "dot_product"}.get(
        es_similarity, es_similarity
    )
    return {
        "dim": int(vector["dims"]),
        "multi_vector": bool(ours.get("multi_vector", TOKENS_FIELD in properties)),
        "similarity": similarity,
        "es_similarity": es_similarity,
        "info": dict(ours.get("info", {})),
        "index_options": dict(vector.get("index_options", {})),
        "managed": bool(ours),
        "version": int(ours.get("version", 1)) if ours else None,
        # layout v1: `text` + `meta.*`; v2 and Haystack's ElasticsearchDocumentStore: `content`, meta at the top
        "text_field": "text" if _is_v1(ours, properties) else "content",
        "meta_prefix": "meta." if _is_v1(ours, properties) else "",
        # exact filters on `content` need its keyword copy (layout v2); None: refused with FilterError
        "content_filter_field": "content.keyword"
        if properties.get("content", {}).get("fields", {}).get("keyword", {}).get("type") == "keyword"
        else None,
    }


def _is_v1(ours: dict[str, Any], properties: dict[str, Any]) -> bool:
    if ours:
        return int(ours.get("version", 1)) < 2
    return "meta" in properties and "content" not in properties


def check_compatible(name: str, found: dict[str, Any], *, dim: int | None, multi_vector: bool, similarity: str) -> None:
    """Refuse (IndexMismatchError) to use an index built for other vectors; never write into it."""
    problems = []
    if dim is not None and dim != found["dim"]:
        problems.append(f"dims {found['dim']} (asked for {dim})")
    if multi_vector != found["multi_vector"]:
        kind = lambda mv: "multi-vector" if mv else "single-vector"  # noqa: E731
        problems.append(f"{kind(found['multi_vector'])} (asked for {kind(multi_vector)})")
    if similarity != found["similarity"]:
        problems.append(f"similarity {found['similarity']!r} (asked for {similarity!r})")
    if problems:
        raise IndexMismatchError(
            f"Elasticsearch index {name!r} was built with "
            + ", ".join(problems)
            + "; refusing to write into it. Use another index name, or `reindex` into a new one."
        )
