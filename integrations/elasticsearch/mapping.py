"""The index mapping: built from the model's dims, read back and checked before any write.

Fields: `embedding` (dense_vector), `text` (BM25), `image` (keyword, not indexed: a reference only),
`content_hash` (keyword), `meta` (object; strings mapped as keyword so filters are exact), and for
multi-vector indexes `tokens` (binary, the `[K, D]` float32 token vectors, not indexed).

Similarity: our vectors are L2-normalised, so ret2's `cosine` is stored as ES `dot_product` on vectors we
normalise client-side: the same ranking and scores as cosine, the cheapest ES similarity, and ES itself
rejects a vector that is not unit length, which catches an encoder bug instead of indexing it.
ret2's `dot_product` and `max_inner_product` (unnormalised inner product) are stored as ES
`max_inner_product`, which, like FAISS and the memory backend, accepts vectors of any length (ES
`dot_product` would reject them).

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
META_VERSION = 1
INDEX_TYPES = ("hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat", "bbq_flat")
ES_SIMILARITY = {"cosine": "dot_product", "dot_product": "max_inner_product", "max_inner_product": "max_inner_product"}
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
            index_type, m=m, ef_construction=ef_construction, confidence_interval=confidence_interval, oversample=oversample
        ),
    }
    properties: dict[str, Any] = {
        VECTOR_FIELD: vector,
        "text": {"type": "text"},
        "image": {"type": "keyword", "index": False, "doc_values": False},
        "content_hash": {"type": "keyword"},
        "meta": {"type": "object", "dynamic": True},
    }
    if multi_vector:
        properties[TOKENS_FIELD] = {"type": "binary", "doc_values": False}
    return {
        "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
        "mappings": {
            "dynamic": "strict",
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
                {"meta_strings": {"path_match": "meta.*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}},
                {"meta_integers": {"path_match": "meta.*", "match_mapping_type": "long", "mapping": {"type": "double"}}},
                {"meta_floats": {"path_match": "meta.*", "match_mapping_type": "double", "mapping": {"type": "double"}}},
            ],
            "properties": properties,
        },
    }


def describe_mapping(name: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """Read dim / multi_vector / similarity / info / index_options back from an index's mapping."""
    properties = mapping.get("properties", {})
    vector = properties.get(VECTOR_FIELD)
    if not vector or vector.get("type") != "dense_vector":
        raise IndexMismatchError(f"Elasticsearch index {name!r} has no dense_vector field {VECTOR_FIELD!r}: not a ret2 index")
    ours = mapping.get("_meta", {}).get("ret2", {})
    es_similarity = vector.get("similarity")
    similarity = ours.get("similarity") or {"cosine": "cosine", "dot_product": "dot_product"}.get(es_similarity, es_similarity)
    return {
        "dim": int(vector["dims"]),
        "multi_vector": bool(ours.get("multi_vector", TOKENS_FIELD in properties)),
        "similarity": similarity,
        "es_similarity": es_similarity,
        "info": dict(ours.get("info", {})),
        "index_options": dict(vector.get("index_options", {})),
        "managed": bool(ours),
        # Haystack's ElasticsearchDocumentStore: text in `content`, meta keys at the top level
        "text_field": "text" if ours or "text" in properties else "content",
        "meta_prefix": "meta." if ours or "meta" in properties else "",
    }


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
            f"Elasticsearch index {name!r} was built with " + ", ".join(problems)
            + "; refusing to write into it. Use another index name, or `reindex` into a new one."
        )
