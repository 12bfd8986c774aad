"""ReT / ReT-2 embedders for Haystack (implemented in `ret2_plugin.integrations.haystack`)."""

from ret2_plugin.integrations.haystack.document_embedder import DocumentEmbeddingError, ReT2DocumentEmbedder
from ret2_plugin.integrations.haystack.query_embedder import ReT2QueryEmbedder

__all__ = ["DocumentEmbeddingError", "ReT2DocumentEmbedder", "ReT2QueryEmbedder"]
