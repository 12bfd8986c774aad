"""Hook specifications: what a ret2-plugin plugin can add.

A plugin is a module (or object) with functions marked `@ret2_plugin.hookimpl`, published under the
entry-point group `ret2_plugin`. Built-ins use the very same hooks (see `ret2_plugin.builtin_plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("ret2_plugin")
hookimpl = pluggy.HookimplMarker("ret2_plugin")

Register = Callable[[str, Any], None]


@hookspec
def register_encoders(register: Register) -> None:
    """Add encoders: `register("name", loader)`, where `loader(model: str, **kwargs)` returns a
    sentence-transformers compatible model (or a "module:attr" string naming such a loader)."""


@hookspec
def register_index_backends(register: Register) -> None:
    """Add index backends: `register("name", BackendClass)` (or a "module:attr" string), where the
    class implements `ret2_plugin.index.IndexBackend`."""


@hookspec
def register_image_loaders(register: Register) -> None:
    """Add image loaders: `register("name", loader)`, where `loader(source)` returns a PIL image for a
    source it understands (path, URL, bytes, Haystack ByteStream, ...) and None for one it does not."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add `ret2` sub-commands. `cli` is the argparse sub-parsers object: call
    `cli.add_parser(name, help=...)` and `parser.set_defaults(func=callable(args) -> int)`."""
