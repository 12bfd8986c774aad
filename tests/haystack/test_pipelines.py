"""Real Haystack pipelines on the tiny corpus: indexing (embedder -> writer) and query (query embedder ->
retriever) over a ret2 backend, over Haystack's InMemoryDocumentStore, over FAISS, and the YAML round trip
in a fresh process with no allow-list configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.document_stores.in_memory import InMemoryDocumentStore

from haystack_integrations.components.embedders.ret2 import ReT2DocumentEmbedder, ReT2QueryEmbedder
from haystack_integrations.components.retrievers.ret2 import ReT2Retriever
from haystack_integrations.components.writers.ret2 import ReT2DocumentWriter
from ret2_plugin.integrations.memory import InMemoryBackend

pytestmark = pytest.mark.unit

# (query, expected top document): an identical input on the query side finds its document
QUERIES = [
    ({"text": "a great blue heron standing in the reeds"}, "t-heron"),
    ({"image": "img/red.png"}, "i-red"),
    ({"image": "img/blue.png"}, "i-blue"),  # the document holds it as a ByteStream blob
    ({"text": "a green square", "image": "img/green.png"}, "j-green"),
]


def indexing_pipeline(model: str, root: Path, writer: Any) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component(
        "embedder", ReT2DocumentEmbedder(model=model, root_path=str(root), batch_size=4, progress_bar=False)
    )
    pipe.add_component("writer", writer)
    pipe.connect("embedder.documents", "writer.documents")
    return pipe


def query_pipeline(model: str, retriever: Any) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("query_embedder", ReT2QueryEmbedder(model=model))
    pipe.add_component("retriever", retriever)
    pipe.connect("query_embedder.embedding", "retriever.query_embedding")
    return pipe


def ask(pipe: Pipeline, root: Path, query: dict[str, Any], **retriever: Any) -> list[Document]:
    inputs = {"text": query.get("text")}
    if "image" in query:
        inputs["image"] = str(root / query["image"])
    return pipe.run({"query_embedder": inputs, "retriever": retriever})["retriever"]["documents"]


@pytest.fixture
def location(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"haystack-pipe-{request.node.name}"
    yield name
    InMemoryBackend.drop(name)


def test_ret2_backend_pipelines(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document], location: str
) -> None:
    model = str(tiny_model_dir)
    indexing = indexing_pipeline(model, corpus_dir, ReT2DocumentWriter(backend="memory", location=location))
    written = indexing.run({"embedder": {"documents": corpus_docs}})
    assert written["writer"]["documents_written"] == 6
    assert written["embedder"]["failed_documents"] == [] and written["writer"]["failed_documents"] == []
    query = query_pipeline(model, ReT2Retriever(backend="memory", location=location, top_k=6))
    for q, expected in QUERIES:
        docs = ask(query, corpus_dir, q)
        assert docs[0].id == expected, (q, [d.id for d in docs])
        assert docs[0].score == pytest.approx(1.0, abs=1e-4)
        assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)
    top = ask(query, corpus_dir, {"image": "img/red.png"})[0]
    assert top.meta["file_path"] == "img/red.png" and top.meta["embedding_source"] == "image" and top.content is None
    only_text = ask(
        query, corpus_dir, {"image": "img/red.png"}, filters={"field": "meta.kind", "operator": "==", "value": "text"}
    )
    assert {d.id for d in only_text} == {"t-heron", "t-stamp"}


def test_in_memory_document_store_interop(tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document]) -> None:
    """ReT2 embeddings in Haystack's own store, found by its own embedding retriever."""
    model = str(tiny_model_dir)
    store = InMemoryDocumentStore(embedding_similarity_function="cosine")
    indexing = indexing_pipeline(model, corpus_dir, DocumentWriter(document_store=store))
    assert indexing.run({"embedder": {"documents": corpus_docs}})["writer"]["documents_written"] == 6
    query = query_pipeline(model, InMemoryEmbeddingRetriever(document_store=store, top_k=3, scale_score=False))
    for q, expected in QUERIES:
        docs = ask(query, corpus_dir, q)
        assert docs[0].id == expected, (q, [d.id for d in docs])
        assert docs[0].score == pytest.approx(1.0, abs=1e-4)


def test_faiss_backend_pipelines(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document], tmp_path: Path
) -> None:
    pytest.importorskip("faiss")
    model, location = str(tiny_model_dir), str(tmp_path / "faiss-index")
    indexing = indexing_pipeline(model, corpus_dir, ReT2DocumentWriter(backend="faiss", location=location))
    assert indexing.run({"embedder": {"documents": corpus_docs}})["writer"]["documents_written"] == 6
    # a new retriever reopens the persisted index from disk
    query = query_pipeline(model, ReT2Retriever(backend="faiss", location=location, top_k=3))
    for q, expected in QUERIES:
        docs = ask(query, corpus_dir, q)
        assert docs[0].id == expected, (q, [d.id for d in docs])
    joint = ask(query, corpus_dir, QUERIES[3][0], filters={"field": "meta.kind", "operator": "==", "value": "joint"})
    assert {d.id for d in joint} == {"j-green", "j-gradient"}


YAML_CHILD = r"""
import json, sys
from haystack import Document, Pipeline
from haystack.dataclasses import ByteStream
indexing = Pipeline.loads(open(sys.argv[1]).read())
query = Pipeline.loads(open(sys.argv[2]).read())
docs = [Document(id=d["id"], content=d["content"], meta=d["meta"]) for d in json.loads(sys.argv[3])]
written = indexing.run({"embedder": {"documents": docs}})["writer"]["documents_written"]
hits = query.run({"query_embedder": {"text": sys.argv[4]}})["retriever"]["documents"]
print(json.dumps({"written": written, "types": sorted({type(c).__module__ for _, c in query.walk()}),
                  "hits": [[d.id, d.score] for d in hits]}))
"""


def test_yaml_round_trip_in_a_fresh_process(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document], tmp_path: Path, location: str
) -> None:
    model = str(tiny_model_dir)
    indexing = indexing_pipeline(model, corpus_dir, ReT2DocumentWriter(backend="memory", location=location))
    query = query_pipeline(model, ReT2Retriever(backend="memory", location=location, top_k=3, filter_policy="merge"))
    index_yaml, query_yaml = indexing.dumps(), query.dumps()
    assert "haystack_integrations.components.embedders.ret2.ReT2DocumentEmbedder" in index_yaml
    assert "haystack_integrations.components.retrievers.ret2.ReT2Retriever" in query_yaml
    (tmp_path / "index.yaml").write_text(index_yaml)
    (tmp_path / "query.yaml").write_text(query_yaml)
    text_docs = [{"id": d.id, "content": d.content, "meta": d.meta} for d in corpus_docs if d.blob is None]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HAYSTACK_DESERIALIZATION") and k != "HAYSTACK_UNSAFE_DESERIALIZATION"
    }
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            YAML_CHILD,
            str(tmp_path / "index.yaml"),
            str(tmp_path / "query.yaml"),
            json.dumps(text_docs),
            "a green square",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    assert out["written"] == len(text_docs)
    assert out["types"] == [
        "haystack_integrations.components.embedders.ret2",
        "haystack_integrations.components.retrievers.ret2",
    ]
    # the same pipelines in this process give the same ranking and scores
    indexing.run({"embedder": {"documents": [d for d in corpus_docs if d.blob is None]}})
    here = query.run({"query_embedder": {"text": "a green square"}})["retriever"]["documents"]
    assert [h[0] for h in out["hits"]] == [d.id for d in here]
    np.testing.assert_allclose([h[1] for h in out["hits"]], [d.score for d in here], atol=1e-5)
    assert Pipeline.loads(query_yaml).to_dict() == query.to_dict()


def test_async_pipeline_run_matches_sync(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document], location: str
) -> None:
    """Haystack 3 pipelines run components' `run_async` through `Pipeline.run_async`."""
    import asyncio

    model = str(tiny_model_dir)
    indexing = indexing_pipeline(model, corpus_dir, ReT2DocumentWriter(backend="memory", location=location))
    assert asyncio.run(indexing.run_async({"embedder": {"documents": corpus_docs}}))["writer"]["documents_written"] == 6
    query = query_pipeline(model, ReT2Retriever(backend="memory", location=location, top_k=3))
    inputs = {"query_embedder": {"text": "a green square", "image": str(corpus_dir / "img" / "green.png")}}
    docs = asyncio.run(query.run_async(inputs))["retriever"]["documents"]
    sync = query.run(inputs)["retriever"]["documents"]
    assert docs[0].id == "j-green"
    assert [(d.id, round(d.score, 5)) for d in docs] == [(d.id, round(d.score, 5)) for d in sync]
