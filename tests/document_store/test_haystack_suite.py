"""Haystack's own DocumentStore test classes, run on ReT2DocumentStore over the memory and FAISS backends
(Elasticsearch: tests/elasticsearch/test_es_document_store.py, against the real node)."""

from __future__ import annotations

import uuid

import pytest
from haystack import Document
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
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
from haystack.testing.document_store_async import (
    CountDocumentsAsyncTest,
    CountDocumentsByFilterAsyncTest,
    CountUniqueMetadataByFilterAsyncTest,
    DeleteAllAsyncTest,
    DeleteByFilterAsyncTest,
    DeleteDocumentsAsyncTest,
    FilterDocumentsAsyncTest,
    GetMetadataFieldMinMaxAsyncTest,
    GetMetadataFieldsInfoAsyncTest,
    GetMetadataFieldUniqueValuesAsyncTest,
    UpdateByFilterAsyncTest,
    WriteDocumentsAsyncTest,
)

from haystack_integrations.document_stores.ret2 import ReT2DocumentStore
from ret2_plugin.integrations.memory import InMemoryBackend

pytestmark = pytest.mark.unit


try:  # Haystack's async test classes need pytest-asyncio (in the dev extra)
    import pytest_asyncio  # noqa: F401

    ASYNC_SUITE: tuple[type, ...] = (
        CountDocumentsAsyncTest,
        CountDocumentsByFilterAsyncTest,
        CountUniqueMetadataByFilterAsyncTest,
        DeleteAllAsyncTest,
        DeleteByFilterAsyncTest,
        DeleteDocumentsAsyncTest,
        FilterDocumentsAsyncTest,
        GetMetadataFieldMinMaxAsyncTest,
        GetMetadataFieldsInfoAsyncTest,
        GetMetadataFieldUniqueValuesAsyncTest,
        UpdateByFilterAsyncTest,
        WriteDocumentsAsyncTest,
    )
except ImportError:  # pragma: no cover
    ASYNC_SUITE = ()


def test_haystack_async_suite_runs():
    if not ASYNC_SUITE:
        pytest.skip("pytest-asyncio (dev extra) is not installed: Haystack's async DocumentStore tests did not run")


class _Suite(
    DocumentStoreBaseTests,
    DeleteAllTest,
    DeleteByFilterTest,
    UpdateByFilterTest,
    CountDocumentsByFilterTest,
    CountUniqueMetadataByFilterTest,
    GetMetadataFieldsInfoTest,
    GetMetadataFieldMinMaxTest,
    GetMetadataFieldUniqueValuesTest,
    *ASYNC_SUITE,
):
    def test_write_documents(self, document_store: ReT2DocumentStore):
        """Haystack leaves the default policy to the store: ours is InMemoryDocumentStore's (FAIL)."""
        doc = Document(content="test doc", meta={"n": 1})
        assert document_store.write_documents([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([Document(id=doc.id, content="other")])
        assert document_store.filter_documents() == [doc]  # nothing overwritten
        # a batch with a duplicate id inside is refused whole
        with pytest.raises(DuplicateDocumentError):
            document_store.write_documents([Document(id="x", content="a"), Document(id="x", content="b")])
        assert document_store.count_documents() == 1
        assert document_store.write_documents([Document(id=doc.id, content="again")], policy=DuplicatePolicy.SKIP) == 0

    @pytest.mark.skipif(not ASYNC_SUITE, reason="pytest-asyncio (dev extra) is not installed")
    @pytest.mark.asyncio
    async def test_write_documents_async(self, document_store: ReT2DocumentStore):
        """The async default policy is the sync one (FAIL): a duplicate raises and overwrites nothing."""
        doc = Document(content="test doc")
        assert await document_store.write_documents_async([doc]) == 1
        with pytest.raises(DuplicateDocumentError):
            await document_store.write_documents_async([Document(id=doc.id, content="other")])
        assert await document_store.filter_documents_async() == [doc]

    def test_content_and_id_filters(self, document_store: ReT2DocumentStore):
        """Filters on `content` and `id` answer as Haystack's InMemoryDocumentStore on every backend (not in
        Haystack's suite)."""
        from haystack.document_stores.in_memory import InMemoryDocumentStore

        docs = [
            Document(id="a", content="A Foo Document", meta={"n": 1}),
            Document(id="b", content="Another one"),
            Document(id="c", meta={"n": 2}, embedding=[0.5] * 768),
        ]
        reference = InMemoryDocumentStore()
        for store in (document_store, reference):
            store.write_documents(docs)
        for condition in (
            {"field": "content", "operator": "==", "value": "A Foo Document"},
            {"field": "content", "operator": "!=", "value": "A Foo Document"},
            {"field": "content", "operator": "in", "value": ["Another one", "nothing"]},
            {"field": "content", "operator": "==", "value": None},
            {"field": "id", "operator": "==", "value": "b"},
            {"field": "id", "operator": "not in", "value": ["a", "c"]},
            {
                "operator": "OR",
                "conditions": [
                    {"field": "id", "operator": "==", "value": "c"},
                    {"field": "content", "operator": "==", "value": "Another one"},
                ],
            },
        ):
            expected = sorted(d.id for d in reference.filter_documents(condition))
            assert sorted(d.id for d in document_store.filter_documents(condition)) == expected, condition


class TestMemoryBackend(_Suite):
    @pytest.fixture
    def document_store(self):
        location = f"haystack-suite-{uuid.uuid4().hex}"
        store = ReT2DocumentStore(backend="memory", location=location, embedding_dim=768)
        yield store
        InMemoryBackend.drop(location)


class TestFaissBackend(_Suite):
    @pytest.fixture
    def document_store(self, tmp_path):
        store = ReT2DocumentStore(backend="faiss", location=str(tmp_path / "index"), embedding_dim=768)
        yield store
        store.close()
