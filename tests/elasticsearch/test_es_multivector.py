"""Multi-vector (ReT v1) indexes: token vectors stored exactly, results ranked by MaxSim."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.index import IndexRecord, maxsim
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend

pytestmark = pytest.mark.integration

N, K, DIM = 60, 6, 16


def _tokens(n: int, seed: int) -> np.ndarray:
    tokens = np.random.default_rng(seed).normal(size=(n, K, DIM)).astype(np.float32)
    return tokens / np.linalg.norm(tokens, axis=-1, keepdims=True)


def test_maxsim_ranking_equals_numpy(es_options, index_name):
    docs = _tokens(N, 0)
    backend = ElasticsearchBackend.open(index_name, dim=DIM, multi_vector=True, index_type="flat", **es_options)
    report = backend.add(IndexRecord(f"d{i}", d, meta={"odd": i % 2 == 1}) for i, d in enumerate(docs))
    assert report.written == N
    for seed in (1, 2, 3):
        query = _tokens(1, seed)[0]
        reference = maxsim(query, docs)
        order = np.argsort(-reference, kind="stable")[:10]
        hits = backend.search(query, top_k=10, rerank_candidates=N)
        assert [h.id for h in hits] == [f"d{i}" for i in order]
        np.testing.assert_allclose([h.score for h in hits], reference[order], rtol=1e-5)
    # filtered: the reference restricted to odd ids
    query = _tokens(1, 4)[0]
    reference = maxsim(query, docs)
    odd = [i for i in np.argsort(-reference, kind="stable") if i % 2 == 1][:5]
    assert [h.id for h in backend.search(query, top_k=5, filters={"odd": True}, rerank_candidates=N)] == [
        f"d{i}" for i in odd
    ]
    # a MaxSim threshold keeps exactly the documents scoring above it
    cut = float(np.sort(reference)[::-1][3])
    assert [h.id for h in backend.search(query, top_k=10, similarity_threshold=cut, rerank_candidates=N)] == [
        f"d{i}" for i in np.argsort(-reference, kind="stable")[:4]
    ]


def test_multivector_hybrid(es_options, index_name):
    docs = _tokens(20, 5)
    backend = ElasticsearchBackend.open(
        index_name, dim=DIM, multi_vector=True, progress=True, refresh="wait_for", **es_options
    )
    texts = ["stamp album" if i == 13 else f"other {i}" for i in range(20)]
    backend.add(IndexRecord(f"d{i}", d, text=t) for i, (d, t) in enumerate(zip(docs, texts)))
    ids = [h.id for h in backend.search(docs[2], top_k=3, text="stamp album")]
    assert ids[0] in ("d2", "d13") and {"d2", "d13"} <= set(ids)


def test_tokens_round_trip_and_shape_checks(es_options, index_name):
    docs = _tokens(3, 7)
    backend = ElasticsearchBackend.open(index_name, dim=DIM, multi_vector=True, **es_options)
    report = backend.add([IndexRecord(f"d{i}", d) for i, d in enumerate(docs)] + [IndexRecord("flat", docs[0][0])])
    assert report.failed == [("flat", f"embedding shape ({DIM},) does not fit index (dim={DIM}, multi_vector=True)")]
    got = backend.get(["d2"])[0].embedding
    assert got.shape == (K, DIM)
    np.testing.assert_allclose(got, docs[2], atol=1e-6)
    with pytest.raises(ValueError, match="query shape"):
        backend.search(docs[0][0])
