"""Quickstart: embed text, images and text+image items with one encoder, index them, search.

python examples/quickstart.py                 # the offline starter model (built on first use)
python examples/quickstart.py --model DIR     # any saved ret2 model / official ReT checkpoint
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ret2_plugin import load_encoder
from ret2_plugin.app.model_store import resolve_model
from ret2_plugin.index import IndexRecord
from ret2_plugin.plugins import get_index_backend

DATA = Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model dir, hub id or preset (default: starter)")
    args = parser.parse_args(argv)

    encoder = load_encoder(resolve_model(args.model))  # a sentence_transformers.SentenceTransformer
    documents = {
        "love-letter": {"text": "love letter", "image": str(DATA / "images" / "1f48c.png")},  # joint item
        "rocket": str(DATA / "images" / "1f680.png"),  # image only
        "pizza": "a slice of pizza",  # text only
    }
    vectors = encoder.encode_document(list(documents.values()), normalize_embeddings=True)

    # Any registered backend works the same way: "memory", "faiss", "elasticsearch", plugins.
    index = get_index_backend("memory").open("quickstart", dim=vectors.shape[1])
    index.add(IndexRecord(id=key, embedding=vec) for key, vec in zip(documents, vectors))

    query = encoder.encode_query("a spaceship launching", prompt="Find the matching emoji.", normalize_embeddings=True)
    hits = index.search(query, top_k=3)
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. {hit.id:<8} {hit.score:.3f}")
    return [hit.id for hit in hits]


if __name__ == "__main__":
    main()
