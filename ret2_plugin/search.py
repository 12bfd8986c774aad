"""Open an index by backend name and query it with text, an image, or both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ret2_plugin.index import IndexBackend, SearchHit
from ret2_plugin.items import Item
from ret2_plugin.modeling import ReT2Config, ReT2Model
from ret2_plugin.plugins import get_index_backend


def open_index(backend: str, location: str, **options: Any) -> IndexBackend:
    """Open an existing index through the plugin registry (the index must exist)."""
    return get_index_backend(backend).open(location, **options)


def model_config(encoder: Any) -> ReT2Config | None:
    """The `ReT2Config` of the ReT model inside a sentence-transformers encoder; None for an encoder
    without one (a plugin's encoder)."""
    modules = getattr(encoder, "modules", None)
    for module in modules() if callable(modules) else ():
        if isinstance(module, ReT2Model):
            return module.config
    return None


def is_multi_vector(encoder: Any) -> bool:
    """Late-interaction (`[K, D]` per item) or single vector: the ReT config says, else the
    encoder's class (sentence-transformers' `MultiVectorEncoder`) or its `multi_vector` attribute."""
    config = model_config(encoder)
    if config is not None:
        return config.multi_vector
    if any(cls.__name__ == "MultiVectorEncoder" for cls in type(encoder).__mro__):
        return True
    return bool(getattr(encoder, "multi_vector", False))


def embedding_dim(encoder: Any) -> int:
    """Width of one vector (after the encoder's later modules and `truncate_dim`)."""
    for getter in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        dim = getattr(encoder, getter, None)
        if callable(dim) and dim():
            return int(dim())
    config = model_config(encoder)
    if config is not None:
        return int(config.embedding_dim)
    raise TypeError(f"cannot tell the embedding width of {type(encoder).__name__} (no get_embedding_dimension())")


def create_index(
    backend: str, location: str, encoder: Any, *, model: str, encoder_name: str = "ret2", **options: Any
) -> IndexBackend:
    """Create (or reopen, checking it fits) an index for `encoder`'s vectors; records the model (and
    the encoder's registered name when it is not the built-in `ret2`)."""
    dim, multi_vector = embedding_dim(encoder), is_multi_vector(encoder)
    info: dict[str, Any] = {"model": model, "embedding_dim": dim, "multi_vector": multi_vector}
    if encoder_name != "ret2":
        info["encoder"] = encoder_name
    return get_index_backend(backend).open(location, dim=dim, multi_vector=multi_vector, similarity="cosine", info=info, **options)


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
) -> list[SearchHit]:
    return index.search(embed_query(encoder, text, image, instruction), top_k=top_k, filters=filters)
