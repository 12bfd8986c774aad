"""ret2-plugin: ReT / ReT-2 universal multimodal retrieval for real search stacks.

Heavy submodules (torch, transformers) load on first use of the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ret2_plugin.hookspecs import hookimpl

__version__ = "0.1.0"

_LAZY = {
    "ReT2Model": "ret2_plugin.modeling",
    "ReT2Config": "ret2_plugin.modeling",
    "ReT2Processor": "ret2_plugin.processing",
    "load_encoder": "ret2_plugin.encoder",
    "Item": "ret2_plugin.items",
    "IndexRecord": "ret2_plugin.index",
    "SearchHit": "ret2_plugin.index",
}

if TYPE_CHECKING:
    from ret2_plugin.encoder import load_encoder
    from ret2_plugin.index import IndexRecord, SearchHit
    from ret2_plugin.items import Item
    from ret2_plugin.modeling import ReT2Config, ReT2Model
    from ret2_plugin.processing import ReT2Processor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ret2_plugin' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl", *_LAZY]
