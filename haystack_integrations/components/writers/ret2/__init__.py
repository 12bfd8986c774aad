"""Writer of embedded Documents into a registered ret2 index backend."""

from ret2_plugin.integrations.haystack.writer import ReT2DocumentWriter

__all__ = ["ReT2DocumentWriter"]
