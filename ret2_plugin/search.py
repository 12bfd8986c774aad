"""Open an index by backend name and query it with text, an image, or both."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ret2_plugin.encoder.shape import embedding_dim, is_multi_vector, model_config
from ret2_plugin.index import IndexBackend, SearchHit
from ret2_plugin.items import Item
from ret2_plugin.plugins import get_index_backend


def open_index(backend: str, location: str, **options: Any) -> IndexBackend:
    """Open an existing index through the plugin registry (the index must exist)."""
    return get_index_backend(backend).open(location, **options)


def create_index(
    backend: str, location: str, encoder: Any, *, model: str, encoder_name: str = "ret2", **options: Any
) -> IndexBackend:
    """Create (or reopen, checking it fits) an index for `encoder`'s vectors; records the model (and
    the encoder's registered name when it is not the built-in `ret2`)."""
    dim, multi_vector = embedding_dim(encoder), is_multi_vector(encoder)
    info: dict[str, Any] = {"model": model, "embedding_dim": dim, "multi_vector": multi_vector}
    if encoder_name != "ret2":
        info["encoder"] = encoder_name
    return get_index_backend(backend).open(
        location, dim=dim, multi_vector=multi_vector, similarity="cosine", info=info, **options
    )


def query_input(text: str | None = None, image: Any = None, instruction: str | None = None) -> dict[str, Any]:
    """The sentence-transformers input for a text, an image, or a joint query. Always a dict, so a
    text that looks like a file name is never taken for an image."""
    out: dict[str, Any] = {}
    if text:
        out["text"] = text
    if image is not None:
        out["image"] = str(image) if isinstance(image, Path) else image
    if not out and not instruction:
        raise ValueError("a query needs --text, --image, or both")
    if instruction:
        out["instruction"] = instruction
    return out


def embed_query(encoder: Any, text: str | None = None, image: Any = None, instruction: str | None = None) -> np.ndarray:
    """One query embedding ([D], or [K, D] for multi-vector models), normalised. The instruction is
    the query's own (`"{instruction} {text}"`), exactly as for `embed_queries` and the Haystack
    query embedder; the model's saved "query" prompt still applies."""
    query = Item(text=text, image=image, instruction=instruction)
    return embed_queries(encoder, [query])[0]


def embed_queries(encoder: Any, queries: list[Item], *, batch_size: int = 32) -> np.ndarray:
    """Embed many query items in batches through `iter_embeddings` (the path `ret2 index` and
    `ret2 eval` use: the model's saved "query" prompt, its later modules, the same batching); each
    query keeps its own instruction (`"{instruction} {text}"`). A query that cannot be encoded (e.g.
    its image does not load) raises ValueError naming it."""
    from ret2_plugin.encoder import iter_embeddings

    for query in queries:
        query_input(query.text, query.image, query.instruction)  # a clear error for an empty query
    chunks = []
    for batch in iter_embeddings(encoder, queries, side="query", batch_size=batch_size):
        if batch.errors:
            item, reason = batch.errors[0]
            raise ValueError(f"query {item.id or queries.index(item)}: {reason}")
        chunks.append(batch.embeddings)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def search(
    encoder: Any,
    index: IndexBackend,
    *,
    text: str | None = None,
    image: Any = None,
    instruction: str | None = None,
    top_k: int = 10,
    filters: dict[str, Any] | None = None,
    hybrid: bool = False,
) -> list[SearchHit]:
    """Nearest items to the query. `hybrid`: also BM25 on `text`, fused with kNN by RRF (then `score` is
    the RRF score), on backends that have BM25 (Elasticsearch); ValueError elsewhere or without text."""
    extra: dict[str, Any] = {}
    if hybrid:
        if not text:
            raise ValueError("hybrid search needs query text (--text) for its BM25 side")
        if "text" not in inspect.signature(index.search).parameters:
            raise ValueError(
                f"the {getattr(index, 'name', type(index).__name__)} backend has no BM25: hybrid search "
                "needs a backend that supports it, e.g. elasticsearch"
            )
        extra["text"] = text
    return index.search(embed_query(encoder, text, image, instruction), top_k=top_k, filters=filters, **extra)


__all__ = [
    "create_index",
    "embed_queries",
    "embed_query",
    "embedding_dim",
    "is_multi_vector",
    "model_config",
    "open_index",
    "query_input",
    "search",
]
