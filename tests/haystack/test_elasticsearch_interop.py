"""Against the real Elasticsearch test node: ReT2 embeddings written to elasticsearch-haystack's
`ElasticsearchDocumentStore` are found by its `ElasticsearchEmbeddingRetriever` with ReT2 queries, and the
ReT2 writer/retriever run on the `elasticsearch` backend with the password as an env-var `Secret`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from haystack import Document
from haystack.components.writers import DocumentWriter
from haystack.utils import Secret

from haystack_integrations.components.retrievers.ret2 import ReT2Retriever
from haystack_integrations.components.writers.ret2 import ReT2DocumentWriter
from tests.haystack.test_pipelines import QUERIES, ask, indexing_pipeline, query_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def es_index(es_node: Any) -> Iterator[str]:
    name = f"ret2-test-haystack-{uuid.uuid4().hex[:8]}"
    yield name
    client = es_node.client()
    client.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)
    client.close()


def test_elasticsearch_document_store_interop(
    es_node: Any,
    es_index: str,
    tiny_model_dir: Path,
    corpus_dir: Path,
    corpus_docs: list[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from elasticsearch import Elasticsearch

    from haystack_integrations.components.retrievers.elasticsearch import ElasticsearchEmbeddingRetriever
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    # The store's connection check is `GET /`, served by Elasticsearch's `rest-root` module, which the
    # integ-test-zip test node lacks (405); check the connection with a real cluster-health call instead.
    monkeypatch.setattr(Elasticsearch, "info", lambda self, **kwargs: self.cluster.health())

    store = ElasticsearchDocumentStore(
        hosts=es_node.url, index=es_index, basic_auth=es_node.basic_auth, api_key=None, api_key_id=None
    )
    try:
        model = str(tiny_model_dir)
        indexing = indexing_pipeline(model, corpus_dir, DocumentWriter(document_store=store))
        assert indexing.run({"embedder": {"documents": corpus_docs}})["writer"]["documents_written"] == 6
        store.client.indices.refresh(index=es_index)
        query = query_pipeline(model, ElasticsearchEmbeddingRetriever(document_store=store, top_k=3))
        for q, expected in QUERIES:
            docs = ask(query, corpus_dir, q)
            assert docs[0].id == expected, (q, [d.id for d in docs])
        only_joint = ask(
            query, corpus_dir, QUERIES[0][0], filters={"field": "meta.kind", "operator": "==", "value": "joint"}
        )
        assert {d.id for d in only_joint} == {"j-green", "j-gradient"}
    finally:
        store.close()


def test_ret2_components_on_the_elasticsearch_backend(
    es_node: Any,
    es_index: str,
    tiny_model_dir: Path,
    corpus_dir: Path,
    corpus_docs: list[Document],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RET2_TEST_ES_PASSWORD", es_node.password)
    options = {
        "hosts": es_node.url,
        "username": es_node.username,
        "password": Secret.from_env_var("RET2_TEST_ES_PASSWORD"),
        "refresh": "wait_for",
    }
    model = str(tiny_model_dir)
    indexing = indexing_pipeline(
        model, corpus_dir, ReT2DocumentWriter(backend="elasticsearch", location=es_index, backend_options=options)
    )
    assert indexing.run({"embedder": {"documents": corpus_docs}})["writer"]["documents_written"] == 6
    assert es_node.password not in indexing.dumps()
    query = query_pipeline(
        model, ReT2Retriever(backend="elasticsearch", location=es_index, backend_options=options, top_k=3)
    )
    assert es_node.password not in query.dumps() and "RET2_TEST_ES_PASSWORD" in query.dumps()
    for q, expected in QUERIES:
        docs = ask(query, corpus_dir, q)
        assert docs[0].id == expected, (q, [d.id for d in docs])
    red = ask(query, corpus_dir, {"image": "img/red.png"})[0]
    assert red.meta["file_path"] == "img/red.png"
