"""Haystack: an indexing pipeline (embed text+image Documents, write to FAISS) and a query pipeline
loaded from YAML (`examples/haystack_query_pipeline.yaml`) with plain `Pipeline.loads`.

    python examples/haystack_pipeline.py [--model DIR] [--index DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from haystack import Document, Pipeline

from haystack_integrations.components.embedders.ret2 import ReT2DocumentEmbedder
from haystack_integrations.components.writers.ret2 import ReT2DocumentWriter
from ret2_plugin.app.model_store import resolve_model

DATA = Path(__file__).resolve().parent / "data"
QUERY_YAML = Path(__file__).resolve().parent / "haystack_query_pipeline.yaml"


def load_documents(limit: int) -> list[Document]:
    """Corpus lines -> Haystack Documents: text in `content`, image path in `meta["file_path"]`."""
    docs = []
    for line in (DATA / "corpus.jsonl").read_text().splitlines()[:limit]:
        row = json.loads(line)
        meta = dict(row.get("meta", {}))
        if row.get("image"):
            meta["file_path"] = row["image"]  # relative to root_path
        docs.append(Document(id=row["id"], content=row.get("text"), meta=meta))
    return docs


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model dir, hub id or preset (default: starter)")
    parser.add_argument("--index", default=None, help="FAISS index folder (default: a temp dir)")
    parser.add_argument("--limit", type=int, default=200, help="how many corpus documents to index")
    parser.add_argument("--text", default="a rocket flying to space")
    args = parser.parse_args(argv)
    model = resolve_model(args.model)
    index = args.index or tempfile.mkdtemp(prefix="ret2-haystack-")

    indexing = Pipeline()
    indexing.add_component("embedder", ReT2DocumentEmbedder(model=model, root_path=str(DATA), progress_bar=False))
    indexing.add_component("writer", ReT2DocumentWriter(backend="faiss", location=index))
    indexing.connect("embedder.documents", "writer.documents")
    indexing.run({"embedder": {"documents": load_documents(args.limit)}})

    # The query pipeline is plain YAML; our components load without any allow-list configuration.
    yaml_text = QUERY_YAML.read_text().replace("${MODEL}", model).replace("${INDEX}", index)
    querying = Pipeline.loads(yaml_text)
    result = querying.run({"query_embedder": {"text": args.text}})
    documents = result["retriever"]["documents"]
    for doc in documents:
        print(f"{doc.score:.3f}  {doc.id}  {doc.content}")
    return [doc.id for doc in documents]


if __name__ == "__main__":
    main()
