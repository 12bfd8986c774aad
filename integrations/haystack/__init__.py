"""Haystack components for ReT / ReT-2: embedders, a document store and a retriever over any registered
index backend, and a writer. Also published as `haystack_integrations.components.{embedders,retrievers,
writers}.ret2` and `haystack_integrations.document_stores.ret2` (the paths pipeline YAML names them by)."""

from ret2_plugin.extras import require

require("haystack", "the Haystack components")  # else a one-line error naming the extra to install

from ret2_plugin.integrations.haystack.document_embedder import DocumentEmbeddingError, ReT2DocumentEmbedder
from ret2_plugin.integrations.haystack.document_store import ReT2DocumentStore
from ret2_plugin.integrations.haystack.images import DocumentImageError
from ret2_plugin.integrations.haystack.query_embedder import ReT2QueryEmbedder
from ret2_plugin.integrations.haystack.retriever import ReT2Retriever
from ret2_plugin.integrations.haystack.writer import ReT2DocumentWriter

__all__ = [
    "DocumentEmbeddingError",
    "DocumentImageError",
    "ReT2DocumentEmbedder",
    "ReT2DocumentStore",
    "ReT2DocumentWriter",
    "ReT2QueryEmbedder",
    "ReT2Retriever",
]
