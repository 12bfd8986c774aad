"""Haystack's own DocumentStore test classes on ReT2DocumentStore over Elasticsearch (the real test node)."""

from __future__ import annotations

import pytest
from haystack import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    DeleteAllTest,
    DeleteByFilterTest,
    DocumentStoreBaseTests,
    UpdateByFilterTest,
)

from haystack_integrations.document_stores.ret2 import ReT2DocumentStore

pytestmark = pytest.mark.integration


class TestElasticsearchBackend(DocumentStoreBaseTests, DeleteAllTest, DeleteByFilterTest, UpdateByFilterTest,
                               CountDocumentsByFilterTest):
    @pytest.fixture
    def document_store(self, es_client, index_name):
        store = ReT2DocumentStore(backend="elasticsearch", location=index_name, backend_options={"client": es_client},
                                  embedding_dim=768)
        yield store
        store.close()

    def assert_documents_are_equal(self, received: list[Document], expected: list[Document]):
        """Elasticsearch returns documents in index order, not write order (elasticsearch-haystack's own
        suite compares them sorted by id too); everything else must be equal."""
        assert sorted(received, key=lambda d: d.id) == sorted(expected, key=lambda d: d.id)

    def test_write_documents(self, document_store: ReT2DocumentStore):
        """The default policy is InMemoryDocumentStore's: a duplicate id raises, nothing is overwritten."""
        doc = Document(content="test doc", meta={"n": 1})
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([Document(id=doc.id, content="other")])
        assert document_store.filter_documents() == [doc]
