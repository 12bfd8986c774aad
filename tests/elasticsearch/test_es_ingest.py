"""Bulk ingest (streaming, idempotent, partial failures), get / content hashes, delete, reindex."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from tests.elasticsearch.conftest import unit_vectors

pytestmark = pytest.mark.integration


def _records(vectors, prefix="d", text="v1"):
    for i, vector in enumerate(vectors):
        yield IndexRecord(
            f"{prefix}{i}",
            vector,
            text=f"{text} {i}",
            image=f"img/{i}.png",
            meta={"k": i % 3, "tag": f"t{i % 2}"},
            content_hash=f"{text}-{i}",
        )


def test_generator_is_streamed_in_chunks(es_client, es_options, index_name):
    vectors = unit_vectors(250, 16)
    backend = ElasticsearchBackend.open(index_name, dim=16, chunk_size=50, **es_options)
    seen_before_end = []

    def stream():
        for i, record in enumerate(_records(vectors)):
            if i == 200:  # real-time GET: the first chunk is stored while the generator still runs
                seen_before_end.append(es_client.exists(index=index_name, id="d0").body)
            yield record

    report = backend.add(stream())
    assert report.written == 250 and report.failed == []
    assert seen_before_end == [True]
    assert backend.count() == 250


def test_reingest_is_idempotent_and_updates(es_options, index_name):
    vectors = unit_vectors(120, 16)
    backend = ElasticsearchBackend.open(index_name, dim=16, **es_options)
    backend.add(_records(vectors))
    assert backend.count() == 120
    moved = unit_vectors(120, 16, seed=9)
    report = backend.add(_records(moved, text="v2"))
    assert report.written == 120
    assert backend.count() == 120
    (record,) = backend.get(["d7"])
    assert record.text == "v2 7" and record.content_hash == "v2-7"
    np.testing.assert_allclose(record.embedding, moved[7], atol=1e-6)
    assert backend.search(moved[7], top_k=1)[0].id == "d7"


def test_partial_failure_is_reported_and_rest_indexed(es_options, index_name):
    vectors = unit_vectors(30, 16)
    backend = ElasticsearchBackend.open(index_name, dim=16, chunk_size=10, **es_options)
    records = list(_records(vectors))
    records[3] = IndexRecord("wrong-dims", np.ones(12, dtype=np.float32))
    records[11] = IndexRecord("nan", np.full(16, np.nan, dtype=np.float32))
    records[17] = IndexRecord("bad-type", vectors[17], meta={"k": "not a number"})  # meta.k is long
    records[25] = IndexRecord("zero", np.zeros(16, dtype=np.float32))
    report = backend.add(iter(records))
    failed = dict(report.failed)
    assert set(failed) == {"wrong-dims", "nan", "bad-type", "zero"}
    assert "shape (12,)" in failed["wrong-dims"]
    assert "NaN" in failed["nan"]
    assert "mapper_parsing_exception" in failed["bad-type"] or "document_parsing_exception" in failed["bad-type"]
    assert "zero vector" in failed["zero"]
    assert report.written == 26
    assert backend.count() == 26
    assert backend.get(["d2", "bad-type", "d29"])[-1].id == "d29"


def test_get_and_content_hashes(es_options, index_name):
    vectors = unit_vectors(10, 16)
    backend = ElasticsearchBackend.open(index_name, dim=16, **es_options)
    backend.add(_records(vectors))
    got = backend.get(["d4", "missing", "d1"])
    assert [r.id for r in got] == ["d4", "d1"]
    assert got[0].image == "img/4.png" and got[0].meta == {"k": 1, "tag": "t0"}
    np.testing.assert_allclose(got[0].embedding, vectors[4], atol=1e-6)
    assert backend.content_hashes(["d1", "d2", "nope"]) == {"d1": "v1-1", "d2": "v1-2"}


def test_delete_by_id_and_filter(es_options, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=16, **es_options)
    backend.add(_records(unit_vectors(30, 16)))
    assert backend.delete(["d0", "d1", "nope"]) == 2
    assert backend.count() == 28
    assert backend.delete(filters={"field": "meta.k", "operator": "==", "value": 2}) == 10
    assert backend.count() == 18
    assert backend.count({"k": 2}) == 0
    assert backend.delete(["d3"], filters={"tag": "t1"}) == 1 + 8  # d3 (k=0, t1) counted once
    assert backend.count() == 9
    assert {r.id for r in backend.get([f"d{i}" for i in range(30)])} == {
        "d4",
        "d6",
        "d10",
        "d12",
        "d16",
        "d18",
        "d22",
        "d24",
        "d28",
    }


def test_delete_refuses_a_bare_string_and_sees_unrefreshed_writes(es_options, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=16, refresh=False, **es_options)
    backend.add(_records(unit_vectors(6, 16)))
    with pytest.raises(TypeError, match="list of ids"):
        backend.delete("d1")
    # written but never refreshed: the delete by filter must still find them
    assert backend.delete(filters={"tag": "t0"}) == 3
    backend.persist()
    assert sorted(r.id for r in backend.get([f"d{i}" for i in range(6)])) == ["d1", "d3", "d5"]


def test_meta_that_is_not_json_is_reported_per_record(es_options, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=16, chunk_size=2, **es_options)
    vectors = unit_vectors(6, 16)
    bad = {3: {"tags": {"a", "b"}}, 4: {"score": float("nan")}}
    report = backend.add(IndexRecord(f"d{i}", v, meta=bad.get(i, {"k": i})) for i, v in enumerate(vectors))
    assert report.written == 4
    assert [doc_id for doc_id, _ in report.failed] == ["d3", "d4"]
    assert all("JSON" in reason for _, reason in report.failed)
    assert backend.count() == 4


def test_reindex_keeps_vectors_and_swaps_alias(es_client, es_options, index_name):
    vectors = unit_vectors(80, 32)
    old = ElasticsearchBackend.open(index_name, dim=32, index_type="hnsw", info={"model": "m1"}, **es_options)
    old.add(_records(vectors))
    new = old.reindex(f"{index_name}-int8", index_type="int8_hnsw", alias=f"{index_name}-live")
    mapping = es_client.indices.get_mapping(index=f"{index_name}-int8")[f"{index_name}-int8"]["mappings"]
    assert mapping["properties"]["embedding"]["index_options"]["type"] == "int8_hnsw"
    assert new.info == {"model": "m1"} and new.count() == 80 == old.count()
    ids = [f"d{i}" for i in range(80)]
    np.testing.assert_array_equal(
        np.stack([r.embedding for r in new.get(ids)]), np.stack([r.embedding for r in old.get(ids)])
    )
    live = ElasticsearchBackend.open(f"{index_name}-live", dim=32, **es_options)
    assert live.search(vectors[5], top_k=1)[0].id == "d5"
    # a second reindex moves the alias (never two indexes behind it)
    old.reindex(f"{index_name}-flat", index_type="flat", alias=f"{index_name}-live")
    assert list(es_client.indices.get_alias(name=f"{index_name}-live")) == [f"{index_name}-flat"]
    with pytest.raises(ValueError, match="already exists"):
        old.reindex(f"{index_name}-flat")
