"""Request bodies for kNN and BM25, score conversion, and client-side reciprocal rank fusion.

The filter goes INSIDE the knn clause (a pre-filter: ES returns k matching neighbours, not k neighbours
of which some are then dropped). RRF is done here because the `rrf` retriever is absent from the
integ-test distribution and is a paid feature elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .mapping import TOKENS_FIELD, VECTOR_FIELD

MAX_NUM_CANDIDATES = 10_000


def default_num_candidates(k: int) -> int:
    return min(max(10 * k, 100), MAX_NUM_CANDIDATES)


def knn_body(
    vector: np.ndarray,
    *,
    k: int,
    num_candidates: int | None,
    filter_query: dict[str, Any] | None,
    similarity_threshold: float | None = None,
    oversample: float | None = None,
    with_tokens: bool = False,
) -> dict[str, Any]:
    """A top-level kNN search; `_source` without the vectors unless the tokens are needed for MaxSim."""
    if not 1 <= k <= MAX_NUM_CANDIDATES:
        raise ValueError(f"top_k must be between 1 and {MAX_NUM_CANDIDATES}, got {k}")
    candidates = default_num_candidates(k) if num_candidates is None else int(num_candidates)
    if not k <= candidates <= MAX_NUM_CANDIDATES:
        raise ValueError(f"num_candidates must be between top_k ({k}) and {MAX_NUM_CANDIDATES}, got {candidates}")
    knn: dict[str, Any] = {
        "field": VECTOR_FIELD,
        "query_vector": vector.tolist(),
        "k": k,
        "num_candidates": candidates,
    }
    if filter_query is not None:
        knn["filter"] = filter_query
    if similarity_threshold is not None:
        knn["similarity"] = float(similarity_threshold)  # raw similarity, not the ES score
    if oversample is not None:
        knn["rescore_vector"] = {"oversample": float(oversample)}
    excludes = [VECTOR_FIELD, "blob"] if with_tokens else [VECTOR_FIELD, TOKENS_FIELD, "blob"]
    return {"knn": knn, "size": k, "_source": {"excludes": excludes}}


def bm25_body(text: str, *, size: int, filter_query: dict[str, Any] | None, field: str = "text") -> dict[str, Any]:
    """BM25 `match` on the text field (`content` in Haystack's indexes) under the same filter as the kNN side."""
    query: dict[str, Any] = {"bool": {"must": [{"match": {field: text}}]}}
    if filter_query is not None:
        query["bool"]["filter"] = [filter_query]
    return {"query": query, "size": size, "_source": {"excludes": [VECTOR_FIELD, TOKENS_FIELD, "blob"]}}


def raw_similarity(score: float, es_similarity: str) -> float:
    """Undo ES's score transform so hits carry the plain cosine / inner product, like other backends."""
    if es_similarity in ("dot_product", "cosine"):
        return 2.0 * score - 1.0  # ES: (1 + sim) / 2
    if es_similarity == "max_inner_product":
        return score - 1.0 if score >= 1.0 else 1.0 - 1.0 / score  # ES: sim + 1, or 1 / (1 - sim) below 0
    return score


def rrf_fuse(rankings: Sequence[Sequence[str]], *, k: int = 60, top_k: int | None = None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank), rank from 1.
    Ties keep the order of first appearance (kNN list first)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    fused = sorted(scores.items(), key=lambda item: -item[1])  # stable: dict order breaks ties
    return fused if top_k is None else fused[:top_k]
