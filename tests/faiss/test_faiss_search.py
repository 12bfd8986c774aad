"""Search quality of the FAISS backend: exact, HNSW, IVF-PQ, filters, multi-vector MaxSim."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.index import IndexRecord, maxsim
from ret2_plugin.integrations.faiss import FaissBackend, default_index_type
from ret2_plugin.integrations.faiss.factory import min_train_size
from ret2_plugin.plugins import get_index_backend
from tests.faiss.helpers import brute_force, records, unit

pytestmark = pytest.mark.unit


def test_registered_under_faiss():
    assert get_index_backend("faiss") is FaissBackend


def test_exact_search_equals_numpy(tmp_path):
    data, queries = unit(500, 32, seed=1), unit(5, 32, seed=2)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=32, index_type="Flat")
    assert backend.add(records(data)).written == 500
    for q in queries:
        hits = backend.search(q, top_k=10)
        assert [h.id for h in hits] == brute_force(data, q, 10)
        expected = np.sort(data @ q)[::-1][:10]
        np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-5, atol=1e-6)
    hit = backend.search(queries[0], top_k=1)[0]
    i = int(hit.id[1:])
    assert (hit.text, hit.image, hit.meta) == (f"text {i}", f"img/{i}.png", {"i": i, "group": i % 3})


def test_cosine_normalises_unnormalised_vectors(tmp_path):
    data = unit(50, 8, seed=3)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8)
    backend.add(records(data * np.arange(1, 51, dtype=np.float32)[:, None]))
    hits = backend.search(data[7] * 100, top_k=1)
    assert hits[0].id == "d7" and hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_hnsw_recall_at_10(tmp_path):
    data, queries = unit(3000, 32, seed=4), unit(50, 32, seed=5)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=32, index_type="HNSW32", ef_search=64, exact_threshold=0)
    backend.add(records(data))
    assert backend.active_index_type == "HNSW32"
    recall = np.mean(
        [len({h.id for h in backend.search(q, top_k=10)} & set(brute_force(data, q, 10))) / 10 for q in queries]
    )
    assert recall >= 0.95


def test_ivfpq_training_is_deferred_until_enough_vectors(tmp_path):
    data, queries = unit(1200, 32, seed=6), unit(20, 32, seed=7)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=32, index_type="IVF16,PQ16x4", nprobe=16, exact_threshold=0)
    assert min_train_size("IVF16,PQ16x4") == 480
    backend.add(records(data[:300]))
    assert backend.active_index_type == "Flat"  # not enough vectors to train: exact fallback
    assert [h.id for h in backend.search(queries[0], top_k=5)] == brute_force(data[:300], queries[0], 5)
    backend.add([IndexRecord(f"d{i}", data[i], meta={"i": i}) for i in range(300, 1200)])
    assert backend.active_index_type == "IVF16,PQ16x4"
    assert backend.index.is_trained and backend.index.ntotal == 1200
    recall = np.mean(
        [len({h.id for h in backend.search(q, top_k=10)} & set(brute_force(data, q, 10))) / 10 for q in queries]
    )
    assert recall >= 0.85  # all 16 lists probed, hits re-scored exactly: only PQ candidate loss remains
    hits = backend.search(data[42], top_k=3)
    assert hits[0].id == "d42" and hits[0].score == pytest.approx(1.0, abs=1e-5)  # scores are exact


def test_default_index_type_grows_with_corpus():
    assert default_index_type(1_000, 512) == "Flat"
    assert default_index_type(500_000, 512) == "HNSW32"
    big = default_index_type(10_000_000, 512)
    assert big.startswith("IVF") and big.endswith("PQ64")
    assert default_index_type(100_000_000, 768).startswith("OPQ96,")


def test_training_sizes():
    from ret2_plugin.integrations.faiss.factory import train_sample_size

    assert min_train_size("HNSW32") == train_sample_size("Flat") == 0
    assert min_train_size("IVF256,PQ64") == 30 * 256 and train_sample_size("IVF256,PQ64") == 256 * 256
    assert min_train_size("IVF64,PQ16x4") == 30 * 64 and min_train_size("IVF8,PQ16") == 30 * 256  # 8-bit PQ codebooks
    assert train_sample_size("IVF65536,PQ64") == 30 * 65536  # the cap never goes below the minimum
    assert train_sample_size("IVF4096,PQ64") == 262_144


def test_auto_mode_upgrades_and_keeps_results(tmp_path, monkeypatch):
    from ret2_plugin.integrations.faiss import factory

    monkeypatch.setattr(factory, "FLAT_MAX", 200)
    data = unit(400, 16, seed=8)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, exact_threshold=0)
    backend.add(records(data[:150]))
    assert backend.active_index_type == "Flat"
    backend.add([IndexRecord(f"d{i}", data[i]) for i in range(150, 400)])
    assert backend.active_index_type == "HNSW32" and backend.count() == 400
    assert backend.search(data[300], top_k=1)[0].id == "d300"


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32", "IVF16,PQ16x4"])
@pytest.mark.parametrize("share", [3, 97])  # a third of the corpus, and a very selective ~1% filter
def test_filters_are_prefilters_returning_top_k(tmp_path, index_type, share):
    data = unit(1500, 32, seed=9)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=32, index_type=index_type, exact_threshold=0, train_min=480)
    backend.add(records(data, bucket=lambda i: i % share))
    wanted = {"field": "meta.bucket", "operator": "==", "value": 1}
    members = np.asarray([i for i in range(1500) if i % share == 1])
    q = unit(1, 32, seed=10)[0]
    hits = backend.search(q, top_k=10, filters=wanted)
    assert len(hits) == 10 and all(h.meta["bucket"] == 1 for h in hits)
    truth = [f"d{members[j]}" for j in np.argsort(-(data[members] @ q))[:10]]
    assert len({h.id for h in hits} & set(truth)) >= 9


def test_filter_with_fewer_matches_than_top_k_and_logic(tmp_path):
    data = unit(300, 16, seed=11)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, index_type="HNSW32", exact_threshold=0)
    backend.add(records(data))
    few = {
        "operator": "AND",
        "conditions": [
            {"field": "meta.i", "operator": "<", "value": 30},
            {"field": "meta.group", "operator": "in", "value": [0, 2]},
        ],
    }
    hits = backend.search(data[0], top_k=50, filters=few)
    assert sorted(int(h.id[1:]) for h in hits) == [i for i in range(30) if i % 3 != 1]
    assert backend.search(data[0], top_k=5, filters={"group": 7}) == []


def _mv(n: int, k: int, dim: int, seed: int) -> np.ndarray:
    return unit(n * k, dim, seed=seed).reshape(n, k, dim)


@pytest.mark.parametrize("exact_threshold", [2048, 0])  # exact pool scoring, and ANN candidates + re-ranking
def test_multi_vector_maxsim_equals_numpy(tmp_path, exact_threshold):
    docs, query = _mv(60, 6, 16, seed=12), _mv(1, 4, 16, seed=13)[0]
    backend = FaissBackend.open(
        str(tmp_path / "ix"), dim=16, multi_vector=True, exact_threshold=exact_threshold, candidates=400
    )
    report = backend.add([IndexRecord(f"m{i}", docs[i], meta={"odd": i % 2}) for i in range(60)])
    assert report.written == 60 and backend.index.ntotal == 360
    expected = maxsim(query, docs)
    order = np.argsort(-expected, kind="stable")[:10]
    hits = backend.search(query, top_k=10)
    assert [h.id for h in hits] == [f"m{i}" for i in order]
    np.testing.assert_allclose([h.score for h in hits], expected[order], rtol=1e-5)
    odd = backend.search(query, top_k=5, filters={"odd": 1})
    odd_order = [i for i in np.argsort(-expected, kind="stable") if i % 2 == 1][:5]
    assert [h.id for h in odd] == [f"m{i}" for i in odd_order]


def test_multi_vector_variable_token_counts_and_planted_doc(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, multi_vector=True, exact_threshold=0)
    docs = [_mv(1, 3 + i % 4, 16, seed=100 + i)[0] for i in range(80)]
    backend.add([IndexRecord(f"m{i}", d) for i, d in enumerate(docs)])
    query = docs[17][:2] + 0.05 * _mv(1, 2, 16, seed=5)[0]
    hits = backend.search(query, top_k=3)
    assert hits[0].id == "m17"
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    assert hits[0].score == pytest.approx(float(maxsim(q, docs[17][None])[0]), rel=1e-5)


def test_bad_query_is_refused(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8)
    with pytest.raises(ValueError, match="query shape"):
        backend.search(np.ones(9, np.float32))
    backend.add(records(unit(5, 8)))
    for top_k in (0, -1):
        with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
            backend.search(unit(1, 8)[0], top_k=top_k)
    with pytest.raises(ValueError, match="zero vector"):
        backend.search(np.zeros(8, np.float32))


def test_selective_filter_on_hnsw_keeps_recall(tmp_path):
    data, queries = unit(4000, 16, seed=20), unit(10, 16, seed=21)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, index_type="HNSW32", ef_search=32, exact_threshold=0)
    backend.add(records(data, rare=lambda i: i % 50 == 0))
    members = np.arange(0, 4000, 50)
    recall = []
    for q in queries:
        hits = backend.search(q, top_k=10, filters={"rare": True})
        assert len(hits) == 10 and all(h.meta["rare"] for h in hits)
        truth = {f"d{members[j]}" for j in np.argsort(-(data[members] @ q))[:10]}
        recall.append(len({h.id for h in hits} & truth) / 10)
    assert np.mean(recall) >= 0.95


def test_train_min_below_faiss_minimum_waits_for_enough_vectors(tmp_path):
    data = unit(100, 16, seed=30)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, index_type="IVF64,Flat", train_min=1)
    backend.add(records(data[:10]))  # k-means needs >= 64 points: stay exact, do not fail
    assert backend.active_index_type == "Flat" and backend.count() == 10
    backend.add([IndexRecord(f"d{i}", data[i]) for i in range(10, 100)])
    assert backend.active_index_type == "IVF64,Flat" and backend.search(data[50], top_k=1)[0].id == "d50"
