"""kNN against exact numpy search, pre-filters against the reference `matches`, thresholds, hybrid RRF."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.filters import matches, normalize_filters
from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from tests.elasticsearch.conftest import unit_vectors

pytestmark = pytest.mark.integration

N, DIM = 400, 64
COLORS = ["red", "green", "blue", "gold"]


def _meta(i: int) -> dict:
    meta = {"n": i, "color": COLORS[i % 4], "even": i % 2 == 0}
    if i % 5:  # every fifth document has no "shelf": tests != / not in on missing fields
        meta["shelf"] = f"s{i % 7}" if i % 5 != 1 else None  # and another fifth a null "shelf"
    return meta


@pytest.fixture(scope="module")
def corpus():
    vectors = unit_vectors(N, DIM, seed=1)
    metas = [_meta(i) for i in range(N)]
    queries = unit_vectors(20, DIM, seed=2)
    return vectors, metas, queries


def _fill(backend: ElasticsearchBackend, vectors, metas) -> None:
    report = backend.add(
        IndexRecord(f"d{i}", v, text=f"item {i}", meta=m) for i, (v, m) in enumerate(zip(vectors, metas))
    )
    assert report.written == len(vectors) and report.failed == []


def _exact(vectors, metas, query, top_k, filters=None):
    canonical = normalize_filters(filters)
    pool = np.array([i for i, m in enumerate(metas) if matches(canonical, m)])
    if pool.size == 0:
        return [], np.array([])
    scores = vectors[pool] @ query
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [f"d{pool[i]}" for i in order], scores[order]


@pytest.mark.parametrize(("index_type", "min_recall"), [("flat", 1.0), ("int8_hnsw", 0.95)])
def test_recall_against_exact(es_options, index_name, corpus, index_type, min_recall):
    vectors, metas, queries = corpus
    backend = ElasticsearchBackend.open(index_name, dim=DIM, index_type=index_type, **es_options)
    _fill(backend, vectors, metas)
    found = 0
    for query in queries:
        hits = backend.search(query, top_k=10)
        expected, scores = _exact(vectors, metas, query, 10)
        found += len({h.id for h in hits} & set(expected))
        if index_type == "flat":  # exact: same order and the plain cosine as score
            assert [h.id for h in hits] == expected
            np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
    assert found / (10 * len(queries)) >= min_recall


FILTERS = [
    {"field": "meta.color", "operator": "==", "value": "red"},
    {"field": "meta.even", "operator": "==", "value": False},
    {"field": "meta.color", "operator": "in", "value": ["green", "gold"]},
    {"field": "meta.n", "operator": ">=", "value": 100},
    {
        "operator": "AND",
        "conditions": [
            {"field": "meta.n", "operator": ">", "value": 50},
            {"field": "meta.n", "operator": "<=", "value": 300},
        ],
    },
    {
        "operator": "OR",
        "conditions": [
            {"field": "meta.color", "operator": "==", "value": "blue"},
            {"field": "meta.n", "operator": "<", "value": 40},
        ],
    },
    {
        "operator": "NOT",
        "conditions": [
            {"field": "meta.color", "operator": "==", "value": "red"},
            {"field": "meta.even", "operator": "==", "value": True},
        ],
    },
    {"field": "meta.shelf", "operator": "!=", "value": "s3"},
    {"field": "meta.shelf", "operator": "not in", "value": ["s1", "s2"]},
    {"field": "meta.shelf", "operator": "==", "value": "s4"},
    {"field": "meta.shelf", "operator": "in", "value": ["s0", "s5"]},
    {"field": "meta.shelf", "operator": "==", "value": None},  # missing or null: both None, as in Haystack
    {"field": "meta.shelf", "operator": "!=", "value": None},
    {"field": "meta.shelf", "operator": "in", "value": [None, "s1"]},
    {"field": "meta.shelf", "operator": "not in", "value": [None, "s2"]},
    {"operator": "NOT", "conditions": [{"field": "meta.shelf", "operator": "==", "value": None}]},
    {"operator": "NOT", "conditions": [{"field": "meta.shelf", "operator": "in", "value": ["s3"]}]},
    {"color": "gold", "even": False},  # shorthand
]


def test_filters_match_reference(es_options, index_name, corpus):
    vectors, metas, queries = corpus
    backend = ElasticsearchBackend.open(index_name, dim=DIM, index_type="flat", **es_options)
    _fill(backend, vectors, metas)
    for filters in FILTERS:
        expected, _ = _exact(vectors, metas, queries[0], 10, filters)
        assert [h.id for h in backend.search(queries[0], top_k=10, filters=filters)] == expected, filters
        assert backend.count(filters) == sum(matches(normalize_filters(filters), m) for m in metas), filters


def test_string_ordering_is_refused_before_querying(es_options, index_name, corpus):
    """Haystack orders strings only as ISO dates: another string is a FilterError, never a silent query."""
    from ret2_plugin.filters import FilterError

    vectors, metas, queries = corpus
    backend = ElasticsearchBackend.open(index_name, dim=DIM, index_type="flat", **es_options)
    _fill(backend, vectors, metas)
    for op in (">", ">=", "<", "<="):
        with pytest.raises(FilterError, match="ISO dates"):
            backend.count({"field": "meta.shelf", "operator": op, "value": "s4"})
        with pytest.raises(FilterError, match="ISO dates"):
            backend.search(queries[0], top_k=5, filters={"field": "meta.shelf", "operator": op, "value": "s4"})


def test_prefilter_returns_top_k_for_a_rare_value(es_options, index_name, corpus):
    """A filter that 5% of the corpus passes still yields top_k hits under HNSW (filter inside knn)."""
    vectors, metas, queries = corpus
    backend = ElasticsearchBackend.open(index_name, dim=DIM, index_type="int8_hnsw", **es_options)
    _fill(backend, vectors, metas)
    rare = {
        "operator": "AND",
        "conditions": [
            {"field": "meta.color", "operator": "==", "value": "red"},
            {"field": "meta.n", "operator": "<", "value": 80},
        ],
    }
    assert backend.count(rare) == 20
    for query in queries[:5]:
        hits = backend.search(query, top_k=10, filters=rare)
        assert len(hits) == 10
        assert all(h.meta["color"] == "red" and h.meta["n"] < 80 for h in hits)


def test_similarity_threshold(es_options, index_name, corpus):
    vectors, metas, queries = corpus
    backend = ElasticsearchBackend.open(index_name, dim=DIM, index_type="flat", **es_options)
    _fill(backend, vectors, metas)
    expected, scores = _exact(vectors, metas, queries[3], 50)
    threshold = float(scores[6] + scores[7]) / 2  # exactly 7 documents above
    hits = backend.search(queries[3], top_k=50, similarity_threshold=threshold)
    assert [h.id for h in hits] == expected[:7]


def test_hybrid_rrf(es_client, es_options, index_name):
    vectors = unit_vectors(60, 32, seed=5)
    texts = [f"plain note number {i}" for i in range(60)]
    for i in (7, 21, 40):
        texts[i] = f"penny black postage stamp {i}"
    backend = ElasticsearchBackend.open(index_name, dim=32, index_type="flat", **es_options)
    backend.add(
        [IndexRecord(f"d{i}", v, text=t, meta={"group": i % 2}) for i, (v, t) in enumerate(zip(vectors, texts))]
    )
    query = vectors[3]
    hits = backend.search(query, top_k=8, text="penny black stamp", rrf_k=60, rank_window=20)
    ids = [h.id for h in hits]
    assert "d3" in ids  # found by kNN only
    assert {"d7", "d21", "d40"} <= set(ids)  # found by BM25 only (their vectors are random)
    # reference RRF from the two independent rankings
    knn_ids = [h.id for h in backend.search(query, top_k=20)]
    bm25 = es_client.search(index=index_name, query={"match": {"content": "penny black stamp"}}, size=20)
    bm25_ids = [h["_id"] for h in bm25["hits"]["hits"]]
    fused = {}
    for ranking in (knn_ids, bm25_ids):
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1 / (60 + rank)
    np.testing.assert_allclose([h.score for h in hits], sorted(fused.values(), reverse=True)[:8])
    assert [fused[i] for i in ids] == sorted(fused.values(), reverse=True)[:8]
    # the filter applies to both sides
    filtered = backend.search(query, top_k=8, text="penny black stamp", filters={"group": 0})
    assert filtered and all(h.meta["group"] == 0 for h in filtered)
    assert "d7" not in {h.id for h in filtered} and "d40" in {h.id for h in filtered}


def test_top_k_is_validated_and_hybrid_window_capped(es_options, index_name):
    vectors = unit_vectors(12, 8, seed=6)
    backend = ElasticsearchBackend.open(index_name, dim=8, index_type="flat", **es_options)
    backend.add([IndexRecord(f"d{i}", v, text=f"note {i}") for i, v in enumerate(vectors)])
    for top_k in (0, -1):
        with pytest.raises(ValueError, match="top_k must be"):
            backend.search(vectors[0], top_k=top_k, text="note")
    hits = backend.search(vectors[0], top_k=3, text="note", rank_window=50_000)
    assert len(hits) == 3 and hits[0].id == "d0"


def test_bad_query_shape(es_options, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=8, **es_options)
    with pytest.raises(ValueError, match=r"query shape \(9,\)"):
        backend.search(np.ones(9, dtype=np.float32))
