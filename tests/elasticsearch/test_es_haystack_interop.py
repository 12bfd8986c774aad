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
    store = ElasticsearchDocumentStore(hosts=es_node.url, index=index_name, basic_auth=es_node.basic_auth,
                                       api_key=None, api_key_id=None)
    docs = [Document(id=f"h{i}", content=f"note {i}", embedding=v.tolist(), meta={"page": i}) for i, v in enumerate(vectors)]
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
