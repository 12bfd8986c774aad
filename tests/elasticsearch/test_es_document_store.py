"""Haystack's own DocumentStore test classes on ReT2DocumentStore over Elasticsearch (the real test node)."""

from __future__ import annotations

import pytest
from haystack import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.testing.document_store import (
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    DeleteAllTest,
    DeleteByFilterTest,
    DocumentStoreBaseTests,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldUniqueValuesTest,
    UpdateByFilterTest,
)

from haystack_integrations.document_stores.ret2 import ReT2DocumentStore
from tests.document_store.test_haystack_suite import ASYNC_SUITE, _Suite

pytestmark = pytest.mark.integration


class TestElasticsearchBackend(
    DocumentStoreBaseTests,
    DeleteAllTest,
    DeleteByFilterTest,
    UpdateByFilterTest,
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldUniqueValuesTest,
):
    @pytest.fixture
    def document_store(self, es_client, index_name):
        store = ReT2DocumentStore(
            backend="elasticsearch", location=index_name, backend_options={"client": es_client}, embedding_dim=768
        )
        yield store
        store.close()

    def assert_documents_are_equal(self, received: list[Document], expected: list[Document]):
        """Elasticsearch returns documents in index order, not write order (elasticsearch-haystack's own
        suite compares them sorted by id too); everything else must be equal."""
        assert sorted(received, key=lambda d: d.id) == sorted(expected, key=lambda d: d.id)

    test_content_and_id_filters = _Suite.test_content_and_id_filters

    def test_content_filter_needs_the_keyword_copy(self, es_client, index_name):
        """An index without an exact copy of `content` (v1, or Haystack's) refuses content filters."""
        from haystack.errors import FilterError

        es_client.indices.create(
            index=index_name,
            mappings={
                "properties": {
                    "embedding": {"type": "dense_vector", "dims": 4, "similarity": "cosine"},
                    "content": {"type": "text"},
                }
            },
        )
        store = ReT2DocumentStore(backend="elasticsearch", location=index_name, backend_options={"client": es_client})
        with pytest.raises(FilterError, match="keyword"):
            store.filter_documents({"field": "content", "operator": "==", "value": "x"})

    def test_write_documents(self, document_store: ReT2DocumentStore):
        """The default policy is InMemoryDocumentStore's: a duplicate id raises, nothing is overwritten."""
        doc = Document(content="test doc", meta={"n": 1})
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([Document(id=doc.id, content="other")])
        assert document_store.filter_documents() == [doc]

    def test_get_metadata_field_unique_values_distinct_types(self, document_store: ReT2DocumentStore):
        """Elasticsearch maps one type per field: a boolean into a numeric field is refused (per document,
        named, the others written; elasticsearch-haystack refuses it too). The values that are stored
        keep their type as written (`_source`), so 1, 1.0 and "1" stay distinct."""
        from haystack.document_stores.errors import DocumentStoreError

        docs = [
            Document(content="Doc 1", meta={"priority": 1}),
            Document(content="Doc 2", meta={"priority": "1"}),
            Document(content="Doc 3", meta={"priority": 1.0}),
            Document(content="Doc 4", meta={"priority": True}),
        ]
        with pytest.raises(
            DocumentStoreError, match=rf"1 document\(s\) were not written \(3 were\): {docs[3].id}.*priority"
        ):
            document_store.write_documents(docs)
        values, total_count = document_store.get_metadata_field_unique_values(metadata_field="priority")
        assert total_count == 3
        assert {type(v): v for v in values} == {int: 1, str: "1", float: 1.0}


@pytest.mark.slow
@pytest.mark.skipif(not ASYNC_SUITE, reason="pytest-asyncio (dev extra) is not installed")
class TestElasticsearchBackendAsync(*ASYNC_SUITE):
    """Haystack's async DocumentStore test classes on the real node (slow: CI runs them)."""

    document_store = TestElasticsearchBackend.document_store
    assert_documents_are_equal = TestElasticsearchBackend.assert_documents_are_equal

    @pytest.mark.asyncio
    async def test_write_documents_async(self, document_store: ReT2DocumentStore):
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([Document(id=doc.id, content="other")])
        assert await document_store.filter_documents_async() == [doc]

    @pytest.mark.asyncio
    async def test_get_metadata_field_unique_values_distinct_types_async(self, document_store: ReT2DocumentStore):
        """One type per Elasticsearch field: see the sync test of the same name."""
        from haystack.document_stores.errors import DocumentStoreError

        docs = [Document(content="Doc 1", meta={"priority": 1}), Document(content="Doc 4", meta={"priority": True})]
        with pytest.raises(DocumentStoreError, match=docs[1].id):
            await document_store.write_documents_async(docs)
        assert await document_store.get_metadata_field_unique_values_async(metadata_field="priority") == ([1], 1)
