"""ReT2DocumentStore beyond Haystack's suite: blobs, documents without embedding, persistence, the
components that take a document_store, and pipeline YAML loaded in a fresh process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import numpy as np
import pytest
from haystack import Document, Pipeline
from haystack.components.writers import DocumentWriter
from haystack.dataclasses import ByteStream
from haystack.document_stores.types import DuplicatePolicy
from haystack.errors import FilterError

from haystack_integrations.components.retrievers.ret2 import ReT2Retriever
from haystack_integrations.components.writers.ret2 import ReT2DocumentWriter
from haystack_integrations.document_stores.ret2 import ReT2DocumentStore

pytestmark = pytest.mark.unit


def _vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=["memory", "faiss"])
def store(request, tmp_path):
    location = f"store-{uuid.uuid4().hex}" if request.param == "memory" else str(tmp_path / "ix")
    return ReT2DocumentStore(backend=request.param, location=location)


def test_blob_no_embedding_and_written_embedding_round_trip(store):
    png = ByteStream(data=b"\x89PNG fake bytes", mime_type="image/png", meta={"source": "scanner"})
    docs = [
        Document(id="img", blob=png, meta={"file_path": "a.png", "kind": "image"}, embedding=[3.0, 4.0] + [0.0] * 6),
        Document(id="txt", content="no vector yet", meta={"kind": "text"}),
    ]
    assert store.write_documents(docs) == 2
    back = {d.id: d for d in store.filter_documents()}
    assert back["img"].blob == png and back["img"].meta["file_path"] == "a.png"
    assert back["img"].embedding == [3.0, 4.0] + [0.0] * 6  # as written, not the normalised copy searched on
    assert back["txt"].embedding is None and back["txt"].content == "no vector yet"
    assert store.filter_documents({"field": "meta.kind", "operator": "==", "value": "text"}) == [docs[1]]
    # only the document with an embedding is searchable; the other is filterable only
    hits = ReT2Retriever(document_store=store).run(query_embedding=[1.0] + [0.0] * 7)["documents"]
    assert [h.id for h in hits] == ["img"] and hits[0].score == pytest.approx(0.6)
    # the retriever hands back the stored document: blob, embedding as written, meta
    assert hits[0].blob == png and hits[0].embedding == docs[0].embedding and hits[0].meta == docs[0].meta


def test_writer_shortcut_and_store_form_store_the_same(tmp_path):
    """`ReT2DocumentWriter(backend=, location=)` is `document_store=ReT2DocumentStore(backend=, location=)`:
    one Document -> record mapping (blob and meta["file_path"] kept)."""
    png = ByteStream(data=b"bytes", mime_type="image/png")
    doc = Document(id="d", content="c", blob=png, meta={"file_path": "x.png"}, embedding=_vectors(1)[0].tolist())
    location = str(tmp_path / "ix")
    assert ReT2DocumentWriter(backend="faiss", location=location).run(documents=[doc])["documents_written"] == 1
    assert ReT2DocumentStore(backend="faiss", location=location).filter_documents() == [doc]


def test_first_write_without_embedding_needs_a_dimension(tmp_path):
    store = ReT2DocumentStore(backend="faiss", location=str(tmp_path / "ix"))
    with pytest.raises(ValueError, match="embedding_dim"):
        store.write_documents([Document(content="x")])
    assert store.count_documents() == 0 and store.filter_documents() == []
    with pytest.raises(FilterError):  # validated even before the index exists
        store.filter_documents({"conditions": []})


@pytest.mark.parametrize("backend", ["memory", "faiss"])
def test_backends_say_index_not_found_by_type(backend, tmp_path):
    """The store creates an index when `open` raises IndexNotFoundError, not by reading the message."""
    from ret2_plugin.index import IndexNotFoundError
    from ret2_plugin.plugins import get_index_backend

    with pytest.raises(IndexNotFoundError):
        get_index_backend(backend).open(str(tmp_path / "none") if backend == "faiss" else f"none-{uuid.uuid4().hex}")


def test_faiss_store_persists_and_reopens_in_a_new_instance(tmp_path):
    vectors = _vectors(5)
    location = str(tmp_path / "ix")
    first = ReT2DocumentStore(backend="faiss", location=location)
    first.write_documents(
        [Document(id=f"d{i}", content=f"doc {i}", embedding=v.tolist(), meta={"i": i}) for i, v in enumerate(vectors)]
    )
    first.write_documents([Document(id="plain", content="no embedding")])
    first.close()
    again = ReT2DocumentStore(backend="faiss", location=location)
    assert again.count_documents() == 6
    assert [d.id for d in again.filter_documents({"field": "meta.i", "operator": ">=", "value": 3})] == ["d3", "d4"]
    hits = ReT2Retriever(document_store=again, top_k=2).run(query_embedding=vectors[2].tolist())["documents"]
    assert hits[0].id == "d2" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    again.write_documents(
        [Document(id="plain", content="replaced", embedding=vectors[0].tolist())], policy=DuplicatePolicy.OVERWRITE
    )
    assert {
        h.id for h in ReT2Retriever(document_store=again, top_k=2).run(query_embedding=vectors[0].tolist())["documents"]
    } == {"d0", "plain"}


def test_haystack_document_writer_and_ret2_writer_take_the_store(store):
    vectors = _vectors(4, seed=1)
    docs = [Document(id=f"w{i}", content=f"w {i}", embedding=v.tolist()) for i, v in enumerate(vectors)]
    assert DocumentWriter(document_store=store).run(documents=docs[:2])["documents_written"] == 2
    out = ReT2DocumentWriter(document_store=store).run(documents=docs[2:] + [Document(id="bad", content="x")])
    assert out["documents_written"] == 2 and [d.id for d in out["failed_documents"]] == ["bad"]
    assert sorted(d.id for d in store.filter_documents()) == ["w0", "w1", "w2", "w3"]
    assert asyncio.run(store.count_documents_async()) == 4
    assert asyncio.run(store.filter_documents_async({"field": "id", "operator": "==", "value": "w3"})) == [docs[3]]


def test_hybrid_retriever_needs_bm25_and_query_text(store):
    store.write_documents([Document(id="a", content="x", embedding=_vectors(1)[0].tolist())])
    retriever = ReT2Retriever(document_store=store, hybrid=True)
    with pytest.raises(ValueError, match="needs the query text"):
        retriever.run(query_embedding=_vectors(1)[0].tolist())
    with pytest.raises(ValueError, match="no BM25"):
        retriever.run(query_embedding=_vectors(1)[0].tolist(), query="x")


def test_retriever_needs_a_store_or_a_location():
    with pytest.raises(ValueError, match="document_store"):
        ReT2Retriever()
    with pytest.raises(TypeError, match="ReT2DocumentStore"):
        ReT2Retriever(document_store=object())  # type: ignore[arg-type]


def test_pipeline_yaml_round_trip_in_a_fresh_process(tmp_path):
    """Indexing and query pipelines using the store are dumped to YAML here and loaded and run in another
    interpreter with Haystack's default deserialisation allow-list."""
    vectors = _vectors(6, seed=2)
    location = str(tmp_path / "ix")
    store = ReT2DocumentStore(backend="faiss", location=location)
    indexing = Pipeline()
    indexing.add_component("writer", DocumentWriter(document_store=store, policy=DuplicatePolicy.OVERWRITE))
    query = Pipeline()
    query.add_component(
        "retriever",
        ReT2Retriever(document_store=store, top_k=2, filters={"field": "meta.even", "operator": "==", "value": True}),
    )
    (tmp_path / "indexing.yaml").write_text(indexing.dumps())
    (tmp_path / "query.yaml").write_text(query.dumps())
    (tmp_path / "docs.json").write_text(
        json.dumps(
            [
                Document(id=f"y{i}", content=f"y {i}", embedding=v.tolist(), meta={"even": i % 2 == 0}).to_dict()
                for i, v in enumerate(vectors)
            ]
        )
    )
    script = f"""
import json
from haystack import Document, Pipeline
docs = [Document.from_dict(d) for d in json.load(open({str(tmp_path / "docs.json")!r}))]
indexing = Pipeline.loads(open({str(tmp_path / "indexing.yaml")!r}).read())
print(json.dumps(indexing.run({{"writer": {{"documents": docs}}}})["writer"]["documents_written"]))
query = Pipeline.loads(open({str(tmp_path / "query.yaml")!r}).read())
hits = query.run({{"retriever": {{"query_embedding": docs[3].embedding}}}})["retriever"]["documents"]
print(json.dumps([h.id for h in hits]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    written, ids = [json.loads(line) for line in out.stdout.strip().splitlines()[-2:]]
    assert written == 6
    even = [i for i in range(6) if i % 2 == 0]
    expected = [f"y{even[j]}" for j in np.argsort(-(vectors[even] @ vectors[3]))[:2]]
    assert ids == expected
    assert "haystack_integrations.document_stores.ret2.ReT2DocumentStore" in (tmp_path / "query.yaml").read_text()
