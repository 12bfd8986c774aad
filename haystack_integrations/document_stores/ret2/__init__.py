"""ReT / ReT-2 document store for Haystack over any registered ret2 index backend."""

from ret2_plugin.integrations.haystack.document_store import ReT2DocumentStore

__all__ = ["ReT2DocumentStore"]
