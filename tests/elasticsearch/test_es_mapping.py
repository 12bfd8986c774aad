"""Index creation from the model's dims, mapping read-back, and refusal of mismatched indexes."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.index import IndexMismatchError, IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from tests.elasticsearch.conftest import unit_vectors

pytestmark = pytest.mark.integration


def test_mapping_from_dims_and_options(es_client, es_options, index_name):
    backend = ElasticsearchBackend.open(
        index_name, dim=48, info={"model": "tiny-ret2"}, index_type="hnsw", m=8, ef_construction=64, **es_options
    )
    mapping = es_client.indices.get_mapping(index=index_name)[index_name]["mappings"]
    vector = mapping["properties"]["embedding"]
    assert vector["type"] == "dense_vector"
    assert vector["dims"] == 48
    assert vector["similarity"] == "cosine"  # Haystack's default: both rank alike, vectors stored as written
    assert vector["index_options"]["type"] == "hnsw"
    assert vector["index_options"]["m"] == 8
    assert vector["index_options"]["ef_construction"] == 64
    # layout v2 = elasticsearch-haystack's document: content, file_path (image), meta keys at the top level
    assert mapping["properties"]["content"]["type"] == "text"
    assert mapping["properties"]["content_hash"]["type"] == "keyword"
    assert mapping["properties"]["file_path"]["type"] == "keyword"
    assert mapping["properties"]["blob"]["enabled"] is False
    assert mapping["_meta"]["ret2"]["version"] == 2
    assert "tokens" not in mapping["properties"]
    assert mapping["_meta"]["ret2"]["info"] == {"model": "tiny-ret2"}
    assert backend.info == {"model": "tiny-ret2"}
    # meta strings become keyword (exact filters), numbers double whatever the first value looked like
    backend.add(
        [IndexRecord("a", unit_vectors(1, 48)[0], meta={"source": "stamps", "year": 1990, "when": "2024-01-01"})],
        refresh=True,
    )
    meta = es_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]
    assert meta["source"]["type"] == "keyword"
    assert meta["year"]["type"] == "double"
    assert meta["when"]["type"] == "keyword"  # no date detection
    later = IndexRecord("b", unit_vectors(2, 48)[1], meta={"year": 1990.5, "when": "last spring"})
    report = backend.add([later], refresh=True)
    assert report.written == 1 and report.failed == []
    assert backend.count({"field": "meta.year", "operator": "==", "value": 1990.5}) == 1
    assert backend.count({"field": "meta.year", "operator": ">", "value": 1990}) == 1


def test_dot_product_accepts_vectors_of_any_length(es_options, index_name):
    """Like FAISS and the memory backend: no unit-length requirement, scores are the plain inner product."""
    vectors = unit_vectors(20, 16, seed=8) * np.linspace(0.5, 3.0, 20, dtype=np.float32)[:, None]
    backend = ElasticsearchBackend.open(index_name, dim=16, similarity="dot_product", index_type="flat", **es_options)
    report = backend.add([IndexRecord(f"d{i}", v) for i, v in enumerate(vectors)])
    assert report.written == 20 and report.failed == []
    query = vectors[2] * 2
    scores = vectors @ query
    hits = backend.search(query, top_k=5)
    assert [h.id for h in hits] == [f"d{i}" for i in np.argsort(-scores)[:5]]
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:5], rtol=1e-4)


@pytest.mark.parametrize("index_type", ["int8_hnsw", "bbq_hnsw", "flat", "int4_hnsw"])
def test_index_types_accepted(es_client, es_options, index_name, index_type):
    backend = ElasticsearchBackend.open(index_name, dim=64, index_type=index_type, **es_options)
    found = es_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]["embedding"]
    assert found["index_options"]["type"] == index_type
    assert backend.layout["index_options"]["type"] == index_type
    if index_type in ("int8_hnsw", "int4_hnsw"):  # quantized: raw-vector rescoring on by default
        assert found["index_options"]["rescore_vector"] == {"oversample": 2.0}


def test_unknown_index_type_is_refused(es_client, es_options, index_name):
    with pytest.raises(ValueError, match="unknown Elasticsearch index_type 'ivf'"):
        ElasticsearchBackend.open(index_name, dim=8, index_type="ivf", **es_options)
    assert not es_client.indices.exists(index=index_name)


def test_open_missing_index_without_dim(es_options, index_name):
    with pytest.raises(ValueError, match="does not exist"):
        ElasticsearchBackend.open(index_name, **es_options)


def test_reopen_reads_layout(es_options, index_name):
    ElasticsearchBackend.open(index_name, dim=16, multi_vector=True, info={"model": "v1"}, **es_options)
    again = ElasticsearchBackend.open(index_name, **es_options)  # no dim: take the index as it is
    assert (again.dim, again.multi_vector, again.info) == (16, True, {"model": "v1"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 32}, r"dims 16 \(asked for 32\)"),
        ({"dim": 16, "multi_vector": True}, r"single-vector \(asked for multi-vector\)"),
        ({"dim": 16, "similarity": "max_inner_product"}, r"similarity 'cosine'"),
    ],
)
def test_mismatch_is_refused_and_index_untouched(es_client, es_options, index_name, kwargs, message):
    backend = ElasticsearchBackend.open(index_name, dim=16, **es_options)
    backend.add([IndexRecord(f"d{i}", v) for i, v in enumerate(unit_vectors(5, 16))], refresh=True)
    before = es_client.indices.get_mapping(index=index_name)
    with pytest.raises(IndexMismatchError, match=message):
        ElasticsearchBackend.open(index_name, **kwargs, **es_options)
    assert es_client.indices.get_mapping(index=index_name) == before
    assert es_client.count(index=index_name)["count"] == 5


def test_foreign_index_is_refused(es_client, es_options, index_name):
    es_client.indices.create(index=index_name, mappings={"properties": {"title": {"type": "text"}}})
    with pytest.raises(IndexMismatchError, match="no dense_vector field 'embedding'"):
        ElasticsearchBackend.open(index_name, dim=8, **es_options)


def test_unmanaged_vector_index_is_read_only(es_client, es_options, index_name):
    """An index made elsewhere (e.g. a Haystack document store: `embedding` + `content`) can be searched,
    but ret2 does not write into it."""
    vectors = unit_vectors(5, 8, seed=3)
    es_client.indices.create(
        index=index_name,
        mappings={
            "properties": {
                "embedding": {"type": "dense_vector", "dims": 8, "similarity": "cosine", "index": True},
                "content": {"type": "text"},
            }
        },
    )
    for i, vector in enumerate(vectors):
        es_client.index(index=index_name, id=f"h{i}", document={"embedding": vector.tolist(), "content": f"c{i}"})
    es_client.indices.refresh(index=index_name)
    backend = ElasticsearchBackend.open(index_name, dim=8, **es_options)
    hits = backend.search(vectors[2], top_k=2)
    assert hits[0].id == "h2"
    # ES `cosine` scores are mapped back to the plain cosine (approximately: ES quantizes by default)
    np.testing.assert_allclose([h.score for h in hits], np.sort(vectors @ vectors[2])[::-1][:2], atol=0.03)
    with pytest.raises(IndexMismatchError, match="not created by ret2"):
        backend.add([IndexRecord("x", vectors[0])])
    with pytest.raises(IndexMismatchError, match="not created by ret2"):
        backend.delete(["h1"])
    assert es_client.count(index=index_name)["count"] == 5


def _v1_body(dim: int) -> dict:
    """The mapping ret2 wrote before layout v2 (`text`, `image`, `meta.*`, ES dot_product on unit vectors)."""
    return {
        "dynamic": "strict",
        "date_detection": False,
        "_meta": {"ret2": {"version": 1, "dim": dim, "multi_vector": False, "similarity": "cosine", "info": {}}},
        "dynamic_templates": [
            {"meta_strings": {"path_match": "meta.*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}}
        ],
        "properties": {
            "embedding": {
                "type": "dense_vector",
                "dims": dim,
                "index": True,
                "similarity": "dot_product",
                "index_options": {"type": "flat"},
            },
            "text": {"type": "text"},
            "image": {"type": "keyword", "index": False, "doc_values": False},
            "content_hash": {"type": "keyword"},
            "meta": {"type": "object", "dynamic": True},
        },
    }


def test_layout_v1_index_still_works_and_reindexes_to_v2(es_client, es_options, index_name):
    vectors = unit_vectors(6, 8, seed=12)
    es_client.indices.create(index=index_name, mappings=_v1_body(8))
    old = ElasticsearchBackend.open(index_name, dim=8, **es_options)
    assert (
        old.add(
            [IndexRecord(f"v{i}", v, text=f"t{i}", image="p.png", meta={"k": i % 2}) for i, v in enumerate(vectors)]
        ).written
        == 6
    )
    source = es_client.get(index=index_name, id="v1")["_source"]
    assert source["text"] == "t1" and source["meta"] == {"k": 1}  # still written in its own layout
    assert [h.id for h in old.search(vectors[1], top_k=2, filters={"k": 1})][0] == "v1"
    new = old.reindex(f"{index_name}-v2")
    source = es_client.get(index=f"{index_name}-v2", id="v1")["_source"]
    assert source["content"] == "t1" and source["k"] == 1 and source["file_path"] == "p.png" and "meta" not in source
    hits = new.search(vectors[3], top_k=3, filters={"field": "meta.k", "operator": "==", "value": 1})
    assert hits[0].id == "v3" and hits[0].image == "p.png" and hits[0].meta == {"k": 1}
    assert new.count() == 6
