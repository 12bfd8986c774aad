"""Built-in encoders, index backends and image loaders, registered through the public hooks.

Targets are "module:attr" strings so that optional dependencies (faiss, elasticsearch) are imported
only when that backend is used.
"""

from __future__ import annotations

from ret2_plugin.hookspecs import Register, hookimpl


@hookimpl
def register_encoders(register: Register) -> None:
    register("ret2", "ret2_plugin.encoder:load_encoder")


@hookimpl
def register_index_backends(register: Register) -> None:
    register("memory", "ret2_plugin.integrations.memory:InMemoryBackend")
    register("faiss", "ret2_plugin.integrations.faiss:FaissBackend")
    register("elasticsearch", "ret2_plugin.integrations.elasticsearch:ElasticsearchBackend")


@hookimpl
def register_image_loaders(register: Register) -> None:
    register("file", "ret2_plugin.processing.images:load_local_image")
    register("bytes", "ret2_plugin.processing.images:load_image_bytes")
    register("url", "ret2_plugin.processing.images:load_url_image")
