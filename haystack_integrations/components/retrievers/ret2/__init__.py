"""ReT / ReT-2 retriever for Haystack over any registered ret2 index backend."""

from ret2_plugin.integrations.haystack.retriever import ReT2Retriever

__all__ = ["ReT2Retriever"]
