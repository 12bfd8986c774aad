"""The plugin manager: one `PluginManager`, entry points of group `ret2_plugin`, built-ins as plugins.

`RET2_LOAD_PLUGINS` is an allow-list of distribution or entry-point names (comma separated) to load
from entry points; set it to the empty string to load none (what the test suite does for isolation).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
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
    """name -> (object, provider) over every plugin implementing the hook.

    Each plugin's hookimpl is called on its own, through `pm.subset_hook_caller` (so pluggy's order,
    `tryfirst` / `trylast` and the wrappers of other plugins still apply), with a `register` closure
    that knows which plugin it belongs to: no stack inspection, so decorated hookimpls and plugins
    sharing one function are attributed correctly.

    Which registration wins for a name: across plugins, the one called first (pluggy calls the plugin
    registered last first, `tryfirst` ahead), so a plugin overrides a built-in of the same name and
    dict order is call order (plugins first, built-ins last); within one plugin that registers a
    name twice, its last registration wins."""
    load_plugins()
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    wrappers = [impl.plugin for impl in impls if impl.hookwrapper or impl.wrapper]
    found: dict[str, tuple[Any, str]] = {}
    for impl in reversed(impls):  # pluggy's call order: the list is called back to front
        if impl.hookwrapper or impl.wrapper:
            continue
        others = [p for p in pm.get_plugins() if p is not impl.plugin and not any(p is w for w in wrappers)]
        own: dict[str, Any] = {}

        def register(name: str, obj: Any, _own: dict[str, Any] = own) -> None:
            _own[name] = obj

        pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
        provider = _providers.get(impl.plugin_name, impl.plugin_name)
        for name, obj in own.items():
            found.setdefault(name, (obj, provider))
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
