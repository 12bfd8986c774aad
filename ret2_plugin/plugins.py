"""The plugin manager: one `PluginManager`, entry points of group `ret2_plugin`, built-ins as plugins.

`RET2_LOAD_PLUGINS` is an allow-list of distribution or entry-point names (comma separated) to load
from entry points; set it to the empty string to load none (what the test suite does for isolation).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
from typing import Any

import pluggy

from ret2_plugin import hookspecs

ENTRY_POINT_GROUP = "ret2_plugin"
BUILTIN_PLUGINS = ("ret2_plugin.builtin_plugins",)

pm = pluggy.PluginManager("ret2_plugin")
pm.add_hookspecs(hookspecs)
_loaded = False
_lock = threading.RLock()  # image loaders are looked up from decoding threads
_providers: dict[str, str] = {}  # plugin name -> "distribution version", for `ret2 plugins`


def load_plugins() -> pluggy.PluginManager:
    """Register built-ins, then entry-point plugins (honouring `RET2_LOAD_PLUGINS`). Idempotent."""
    global _loaded
    if _loaded:
        return pm
    with _lock:
        if not _loaded:
            _register_all()
            _loaded = True
    return pm


def _register_all() -> None:
    for name in BUILTIN_PLUGINS:
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(name), name=name)
            _providers[name] = "ret2-plugin (built-in)"
    allow = os.environ.get("RET2_LOAD_PLUGINS")
    wanted = None if allow is None else {n.strip() for n in allow.split(",") if n.strip()}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist else None
        if wanted is not None and ep.name not in wanted and dist not in wanted:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must name itself, not fail somewhere later
            raise RuntimeError(f"ret2 plugin {ep.name!r} ({ep.value}, from {dist}) failed to load: {exc}") from exc
        pm.register(plugin, name=ep.name)
        _providers[ep.name] = f"{dist} {ep.dist.version}" if ep.dist else ep.name


def reset() -> None:
    """Unregister every plugin so the next lookup reloads them (tests; after changing `RET2_LOAD_PLUGINS`)."""
    global _loaded
    with _lock:
        for plugin in list(pm.get_plugins()):
            pm.unregister(plugin)
        _providers.clear()
        _loaded = False


def _collect(hook_name: str) -> dict[str, tuple[Any, str]]:
    """name -> (object, provider) over every plugin implementing the hook, called through
    `pm.hook` (so pluggy's order, `tryfirst` / `trylast` and wrappers apply). Pluggy calls the
    plugin registered last first, so the first registration of a name wins: a plugin overrides a
    built-in of the same name, and dict order is call order (plugins first, built-ins last)."""
    load_plugins()
    caller = getattr(pm.hook, hook_name)
    # which plugin is registering: the hookimpl whose code is on the stack when `register` runs
    owners = {getattr(impl.function, "__code__", None): impl.plugin_name for impl in caller.get_hookimpls()}
    found: dict[str, tuple[Any, str]] = {}

    def register(name: str, obj: Any) -> None:
        frame, owner = sys._getframe(1), None
        while frame is not None and owner is None:
            owner, frame = owners.get(frame.f_code), frame.f_back
        found.setdefault(name, (obj, _providers.get(owner, owner) if owner else "unknown"))

    caller(register=register)
    return found


def _resolve(obj: Any) -> Any:
    if isinstance(obj, str) and ":" in obj:
        module, attr = obj.split(":", 1)
        return getattr(importlib.import_module(module), attr)
    return obj


def _get(kind: str, hook_name: str, name: str) -> Any:
    registry = _collect(hook_name)
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise KeyError(f"unknown {kind} {name!r}; registered {kind}s: {known}")
    return _resolve(registry[name][0])


def get_index_backend(name: str) -> Any:
    """The backend class registered under `name` (e.g. "faiss", "elasticsearch", "memory")."""
    return _get("index backend", "register_index_backends", name)


def get_encoder_loader(name: str) -> Any:
    return _get("encoder", "register_encoders", name)


def image_loaders() -> list[Any]:
    """All image loaders, plugins first and built-ins last (the first that returns an image wins)."""
    return [_resolve(obj) for obj, _ in _collect("register_image_loaders").values()]


def registered() -> dict[str, dict[str, str]]:
    """What is registered, by kind: {kind: {name: provider}} (for `ret2 plugins`)."""
    return {
        kind: {name: provider for name, (_, provider) in sorted(_collect(hook).items())}
        for kind, hook in (
            ("encoders", "register_encoders"),
            ("index_backends", "register_index_backends"),
            ("image_loaders", "register_image_loaders"),
        )
    }


def add_commands(subparsers: Any) -> None:
    """Let plugins add `ret2` sub-commands."""
    load_plugins()
    pm.hook.register_commands(cli=subparsers)
