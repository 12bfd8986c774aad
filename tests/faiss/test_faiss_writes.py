"""Writes on the FAISS backend: upsert, delete, count, bad records, tombstones."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.filters import FilterError
from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.faiss import FaissBackend
from tests.faiss.helpers import records, unit

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("index_type", ["Flat", "HNSW32"])
def test_upsert_replaces_instead_of_duplicating(tmp_path, index_type):
    data = unit(101, 16, seed=1)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, index_type=index_type, exact_threshold=0)
    backend.add(records(data[:100]))
    report = backend.add([IndexRecord("d5", data[100], text="new", meta={"v": 2}, content_hash="new-hash")])
    assert report.written == 1 and backend.count() == 100
    hits = backend.search(data[100], top_k=3)
    assert hits[0].id == "d5" and hits[0].text == "new" and hits[0].meta == {"v": 2}
    assert sum(h.id == "d5" for h in backend.search(data[100], top_k=100)) == 1
    assert backend.content_hashes(["d5", "d6", "nope"]) == {"d5": "new-hash", "d6": "h6"}
    (rec,) = backend.get(["d5"])
    np.testing.assert_allclose(rec.embedding, data[100], rtol=1e-6)


def test_delete_by_ids_and_filter_and_count(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8)
    backend.add(records(unit(30, 8)))
    assert backend.count({"group": 0}) == 10
    assert backend.count({"field": "meta.i", "operator": ">=", "value": 25}) == 5
    assert backend.delete(["d1", "d2", "missing"]) == 2
    assert backend.delete(filters={"group": 0}) == 10
    assert backend.count() == 18 and backend.index.ntotal == 18
    assert backend.delete(["d4"], filters={"field": "meta.i", "operator": ">", "value": 27}) == 3  # d4, d28, d29
    assert [r.id for r in backend.get(["d4", "d5", "d28"])] == ["d5"]
    assert {h.id for h in backend.search(unit(1, 8, seed=3)[0], top_k=100)} == {
        r.id for r in backend.get([f"d{i}" for i in range(30)])
    }
    assert backend.delete() == 0
    with pytest.raises(TypeError, match="sequence of ids"):
        backend.delete("d5")
    with pytest.raises(TypeError, match="sequence of ids"):
        backend.get("d5")
    assert backend.count() == 15  # the refused calls deleted nothing (not "d" and "5")
    with pytest.raises(FilterError):
        backend.count({"field": "meta.i", "operator": "~", "value": 1})


def test_hnsw_deletes_are_tombstoned_then_compacted(tmp_path):
    data = unit(1300, 8, seed=2)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8, index_type="HNSW32", exact_threshold=0)
    backend.add(records(data))
    backend.delete([f"d{i}" for i in range(200)])
    assert backend.index.ntotal == 1300 and backend.count() == 1100  # tombstoned, not removed
    assert all(int(h.id[1:]) >= 200 for h in backend.search(data[3], top_k=20))
    backend.delete([f"d{i}" for i in range(200, 1250)])  # > a fifth of the index: compaction
    assert backend.index.ntotal == 50 and backend.count() == 50
    assert backend.search(data[1260], top_k=1)[0].id == "d1260"


def test_bad_records_are_reported_not_raised(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=4)
    good = unit(2, 4)
    report = backend.add(
        [
            IndexRecord("ok1", good[0]),
            IndexRecord("short", np.ones(3, np.float32)),
            IndexRecord("multi", np.ones((2, 4), np.float32)),
            IndexRecord("nan", np.array([1, np.nan, 0, 0], np.float32)),
            IndexRecord("zero", np.zeros(4, np.float32)),
            IndexRecord("ragged", [[1.0, 2.0], [1.0]]),
            IndexRecord("meta", good[1], meta={"when": object()}),
            IndexRecord("", good[1]),
            IndexRecord("ok2", good[1]),
        ]
    )
    assert report.written == 2
    reasons = dict(report.failed)
    assert set(reasons) == {"short", "multi", "nan", "zero", "ragged", "meta", ""}
    assert "shape (3,)" in reasons["short"] and "NaN" in reasons["nan"] and "JSON" in reasons["meta"]
    assert backend.count() == 2 and backend.index.ntotal == 2


def test_multi_vector_upsert_and_delete_remove_all_tokens(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8, multi_vector=True)
    tokens = unit(12, 8).reshape(3, 4, 8)
    backend.add([IndexRecord(f"m{i}", tokens[i]) for i in range(3)])
    assert backend.index.ntotal == 12
    backend.add([IndexRecord("m1", tokens[1][:2])])
    assert backend.index.ntotal == 10 and backend.count() == 3
    assert backend.get(["m1"])[0].embedding.shape == (2, 8)
    assert backend.delete(["m0"]) == 1 and backend.index.ntotal == 6
    report = backend.add([IndexRecord("flat", unit(1, 8)[0])])
    assert report.written == 0 and "multi_vector=True" in report.failed[0][1]


def test_failed_batch_is_reported_and_nothing_stored_is_lost(tmp_path, monkeypatch):
    from ret2_plugin.integrations.faiss import backend as backend_module

    data = unit(21, 8, seed=4)
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8, index_type="Flat")
    backend.add(records(data[:20]))
    real, calls = backend_module.faiss_ids, []

    def fail_on_add(*args, **kwargs):  # the 2nd call is the add, after the old vectors were removed
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("out of memory")
        return real(*args, **kwargs)

    monkeypatch.setattr(backend_module, "faiss_ids", fail_on_add)
    report = backend.add([IndexRecord("d3", data[20], text="replacement"), IndexRecord("brand-new", data[20])])
    assert report.written == 0
    assert sorted(report.failed) == [
        ("brand-new", "write failed: MemoryError: out of memory"),
        ("d3", "write failed: MemoryError: out of memory"),
    ]
    assert backend.count() == 20 and backend.index.ntotal == 20 and not backend.get(["brand-new"])
    hit = backend.search(data[3], top_k=1)[0]
    assert hit.id == "d3" and hit.text == "text 3" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_rebuild_switches_type_and_is_saved(tmp_path):
    loc = str(tmp_path / "ix")
    data = unit(600, 16, seed=5)
    backend = FaissBackend.open(loc, dim=16, index_type="Flat")
    backend.add(records(data))
    backend.rebuild("IVF8,Flat")
    assert backend.active_index_type == "IVF8,Flat" and backend.index.ntotal == 600
    assert backend.search(data[9], top_k=1)[0].id == "d9"
    backend.close()
    again = FaissBackend.open(loc, index_type="IVF8,Flat")
    assert again.active_index_type == "IVF8,Flat" and again.count() == 600
