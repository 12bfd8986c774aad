"""Interop: an index written by elasticsearch-haystack's ElasticsearchDocumentStore is searchable by the
ret2 backend (read-only: ret2 never writes into an index it did not create)."""

from __future__ import annotations

import numpy as np
import pytest

from ret2_plugin.index import IndexMismatchError, IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from tests.elasticsearch.conftest import unit_vectors

pytestmark = pytest.mark.integration


def test_haystack_document_store_index_is_searchable(es_node, es_options, index_name):
    from haystack import Document

    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    vectors = unit_vectors(12, 16, seed=4)
    store = ElasticsearchDocumentStore(
        hosts=es_node.url, index=index_name, basic_auth=es_node.basic_auth, api_key=None, api_key_id=None
    )
    docs = [
        Document(id=f"h{i}", content=f"note {i}", embedding=v.tolist(), meta={"page": i}) for i, v in enumerate(vectors)
    ]
    # The store's first call is `GET /` (client.info()), which the integ-test distribution does not serve
    # (its rest-root module is absent): hand the store a client and create its index with its own mapping.
    store._client = es_node.client()
    store._client.indices.create(index=index_name, mappings=store._default_mappings)
    assert store.write_documents(docs) == 12
    backend = ElasticsearchBackend.open(index_name, **es_options)
    assert backend.dim == 16 and backend.count() == 12
    expected = np.argsort(-(vectors @ vectors[5]))[:3]
    hits = backend.search(vectors[5], top_k=3)
    assert [h.id for h in hits] == [f"h{i}" for i in expected]
    assert hits[0].text == "note 5"
    assert hits[0].meta == {"page": 5}  # Haystack keeps meta at the top level of the document
    # filters and BM25 address Haystack's layout (meta keys at the top level, text in `content`)
    assert backend.count({"page": 7}) == 1
    late = backend.search(vectors[5], top_k=3, filters={"field": "meta.page", "operator": ">=", "value": 9})
    assert [h.id for h in late] == [f"h{i}" for i in np.argsort(-(vectors[9:] @ vectors[5]))[:3] + 9]
    in_0_11 = {"field": "meta.page", "operator": "in", "value": [0, 11]}
    hybrid = backend.search(vectors[0], top_k=2, text="note 11", filters=in_0_11)
    assert {h.id for h in hybrid} == {"h0", "h11"}
    assert backend.search(vectors[0], top_k=2, text="11")[0].id == "h11"  # BM25 on `content` finds it
    with pytest.raises(IndexMismatchError, match="not created by ret2"):
        backend.add([IndexRecord("x", vectors[0])])
    assert store.count_documents() == 12


def _haystack_store(es_node, index_name):
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    store = ElasticsearchDocumentStore(
        hosts=es_node.url, index=index_name, basic_auth=es_node.basic_auth, api_key=None, api_key_id=None
    )
    store._client = es_node.client()  # the node lacks `GET /`, which the store calls first (see above)
    return store


def test_index_ret2_writes_is_read_by_elasticsearch_haystack(es_node, es_options, index_name):
    """Same ids, `content` = the item text, `meta.*` filters, the image in meta["file_path"], and
    ElasticsearchEmbeddingRetriever ranking exactly as ret2 search (exact index: same order; scores on
    ES's (1 + cos) / 2 scale there, the cosine itself in ret2)."""
    from haystack_integrations.components.retrievers.elasticsearch import ElasticsearchEmbeddingRetriever

    vectors = unit_vectors(20, 16, seed=6)
    backend = ElasticsearchBackend.open(index_name, dim=16, index_type="flat", **es_options)
    records = [
        IndexRecord(
            f"item-{i}",
            v,
            text=f"caption {i}",
            image=f"img/{i}.png" if i % 2 else None,
            meta={"source": "stamps" if i < 10 else "coins", "year": 1900 + i},
            content_hash=f"h{i}",
        )
        for i, v in enumerate(vectors)
    ]
    assert backend.add(records).written == 20
    backend.persist()
    store = _haystack_store(es_node, index_name)
    docs = {d.id: d for d in store.filter_documents()}
    assert sorted(docs) == sorted(r.id for r in records)
    assert docs["item-3"].content == "caption 3" and docs["item-3"].meta["file_path"] == "img/3.png"
    assert docs["item-3"].meta["source"] == "stamps" and docs["item-3"].meta["year"] == 1903
    np.testing.assert_allclose(docs["item-3"].embedding, vectors[3], atol=1e-7)
    coins_late = {
        "operator": "AND",
        "conditions": [
            {"field": "meta.source", "operator": "==", "value": "coins"},
            {"field": "meta.year", "operator": ">=", "value": 1915},
        ],
    }
    assert sorted(d.id for d in store.filter_documents(coins_late)) == [f"item-{i}" for i in range(15, 20)]
    retriever = ElasticsearchEmbeddingRetriever(document_store=store, top_k=5)
    for q in (vectors[0], vectors[7] + 0.3 * vectors[8]):
        theirs = retriever.run(query_embedding=q.tolist())["documents"]
        ours = backend.search(q, top_k=5)
        assert [d.id for d in theirs] == [h.id for h in ours]
        np.testing.assert_allclose([2 * d.score - 1 for d in theirs], [h.score for h in ours], atol=1e-5)
        filtered = retriever.run(query_embedding=q.tolist(), filters=coins_late)["documents"]
        assert [d.id for d in filtered] == [h.id for h in backend.search(q, top_k=5, filters=coins_late)]


def test_ret2_search_on_a_haystack_index_finds_the_true_neighbours(es_node, es_options, index_name):
    """Haystack writes vectors as they come (not unit length) into an ES `cosine` field: ret2 ranks them
    by the true cosine, with the cosine as score, and filters on Haystack's top-level meta."""
    from haystack import Document

    rng = np.random.default_rng(9)
    vectors = rng.normal(size=(40, 24)).astype(np.float32) * rng.uniform(0.1, 10, size=(40, 1)).astype(np.float32)
    store = _haystack_store(es_node, index_name)
    mappings = {**store._default_mappings}
    mappings["properties"] = {
        **mappings["properties"],
        "embedding": {**mappings["properties"]["embedding"], "index_options": {"type": "flat"}},
    }
    store._client.indices.create(index=index_name, mappings=mappings)
    store.write_documents(
        [
            Document(id=f"h{i}", content=f"note {i}", embedding=v.tolist(), meta={"k": i % 3})
            for i, v in enumerate(vectors)
        ]
    )
    backend = ElasticsearchBackend.open(index_name, **es_options)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for q in rng.normal(size=(5, 24)).astype(np.float32):
        cos = unit @ (q / np.linalg.norm(q))
        hits = backend.search(q, top_k=6)
        assert [h.id for h in hits] == [f"h{i}" for i in np.argsort(-cos)[:6]]
        np.testing.assert_allclose([h.score for h in hits], np.sort(cos)[::-1][:6], atol=1e-5)
        pool = [i for i in range(40) if i % 3 == 1]
        hits = backend.search(q, top_k=4, filters={"field": "meta.k", "operator": "==", "value": 1})
        assert [h.id for h in hits] == [f"h{pool[j]}" for j in np.argsort(-cos[pool])[:4]]


def test_documents_written_through_the_ret2_store_read_back_in_haystack(es_node, es_client, index_name):
    """Blob, documents without embedding, and the embedding exactly as written survive the trip from
    ReT2DocumentStore to elasticsearch-haystack's store."""
    from haystack import Document
    from haystack.dataclasses import ByteStream

    from haystack_integrations.document_stores.ret2 import ReT2DocumentStore

    ours = ReT2DocumentStore(backend="elasticsearch", location=index_name, backend_options={"client": es_client})
    docs = [
        Document(
            id="img",
            blob=ByteStream(b"\x89PNG...", mime_type="image/png"),
            meta={"file_path": "a.png"},
            embedding=[0.1, 0.2, 0.30000000000000004, 4.0],
        ),
        Document(id="txt", content="no embedding", meta={"lang": "en"}),
    ]
    assert ours.write_documents(docs) == 2
    theirs = {d.id: d for d in _haystack_store(es_node, index_name).filter_documents()}
    for doc in docs:
        assert theirs[doc.id].to_dict() == {**doc.to_dict(), "score": theirs[doc.id].score}
    assert sorted(d.id for d in ours.filter_documents()) == ["img", "txt"]
    assert ours.filter_documents({"field": "meta.lang", "operator": "==", "value": "en"}) == [docs[1]]


def test_hybrid_retriever_on_the_store(es_client, index_name):
    """`ReT2Retriever(hybrid=True)` fuses kNN with BM25 on the `query` text (RRF scores); without
    hybrid the `query` input is ignored."""
    from haystack import Document

    from haystack_integrations.components.retrievers.ret2 import ReT2Retriever
    from haystack_integrations.document_stores.ret2 import ReT2DocumentStore

    vectors = unit_vectors(30, 16, seed=13)
    store = ReT2DocumentStore(backend="elasticsearch", location=index_name, backend_options={"client": es_client})
    texts = [f"plain note {i}" for i in range(30)]
    texts[17] = "penny black postage stamp"
    store.write_documents(
        [Document(id=f"d{i}", content=t, embedding=v.tolist()) for i, (t, v) in enumerate(zip(texts, vectors))]
    )
    hybrid = ReT2Retriever(document_store=store, top_k=3, hybrid=True).run(
        query_embedding=vectors[2].tolist(), query="penny black"
    )
    ids = [d.id for d in hybrid["documents"]]
    assert "d2" in ids and "d17" in ids and all(0 < d.score <= 2 / 61 for d in hybrid["documents"])
    plain = ReT2Retriever(document_store=store, top_k=3).run(query_embedding=vectors[2].tolist(), query="penny black")
    assert plain["documents"][0].id == "d2" and "d17" not in [d.id for d in plain["documents"]]
    with pytest.raises(ValueError, match="RRF"):
        ReT2Retriever(document_store=store, hybrid=True, score_threshold=0.5)
