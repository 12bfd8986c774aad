"""Elasticsearch: index the example corpus into a dense_vector kNN index and run a hybrid
(BM25 + kNN, reciprocal rank fusion) search and a filtered kNN search.

    ELASTICSEARCH_URL=http://localhost:9200 ELASTICSEARCH_USERNAME=elastic ELASTICSEARCH_PASSWORD=... \
        python examples/elasticsearch_hybrid.py [--model DIR] [--index NAME]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ret2_plugin import load_encoder
from ret2_plugin.app.model_store import resolve_model
from ret2_plugin.indexing import index_corpus
from ret2_plugin.search import create_index, embed_query

DATA = Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None, **connection: Any) -> dict[str, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model dir, hub id or preset (default: starter)")
    parser.add_argument("--index", default="ret2-example")
    parser.add_argument("--corpus", default=str(DATA / "corpus.jsonl"))
    parser.add_argument("--text", default="red apple fruit")
    args = parser.parse_args(argv)
    model = resolve_model(args.model)
    encoder = load_encoder(model)

    # Connection from ELASTICSEARCH_URL / _USERNAME / _PASSWORD / _API_KEY unless given here.
    index = create_index("elasticsearch", args.index, encoder, model=model, index_type="int8_hnsw", **connection)
    summary = index_corpus(args.corpus, index, encoder, batch_size=64)
    print(f"indexed {summary.indexed}, unchanged {summary.unchanged}, failed {len(summary.failed)}")

    vector = embed_query(encoder, text=args.text)
    hybrid = index.search(vector, top_k=5, text=args.text)  # BM25 on `text` + kNN, fused client-side
    photos = index.search(vector, top_k=5, filters={"field": "meta.source", "operator": "==", "value": "photo"})
    index.close()
    for name, hits in (("hybrid", hybrid), ("kNN, photos only", photos)):
        print(name)
        for hit in hits:
            print(f"  {hit.score:.3f}  {hit.id}  {hit.text}")
    return {"hybrid": [h.id for h in hybrid], "photos": [h.id for h in photos]}


if __name__ == "__main__":
    main()
