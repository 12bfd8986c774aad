"""The plugin layer: entry-point discovery, the RET2_LOAD_PLUGINS allow-list, lookups by name, and a
third-party backend used by the Haystack retriever, the CLI and a fresh process."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ret2_plugin import hookimpl, plugins
from ret2_plugin.index import IndexRecord
from tests.plugins.conftest import write_distribution

pytestmark = pytest.mark.unit


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_entry_point_backend_loads_when_no_allow_list(load_plugins_env: pytest.MonkeyPatch) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    backend = plugins.get_index_backend("toy")
    assert backend.__module__ == "toy_ret2_backend"
    assert backend.name == "toy"
    assert plugins.registered()["index_backends"]["toy"] == "toy-ret2-backend 0.1.0"
    assert plugins.registered()["index_backends"]["memory"] == "ret2-plugin (built-in)"


@pytest.mark.parametrize("allow", ["toy-ret2-backend", "toy", "other, toy-ret2-backend"])
def test_allow_list_by_distribution_or_entry_point_name(load_plugins_env: pytest.MonkeyPatch, allow: str) -> None:
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", allow)
    assert plugins.get_index_backend("toy").name == "toy"


@pytest.mark.parametrize("allow", ["", "some-other-plugin"])
def test_allow_list_excludes_plugins(load_plugins_env: pytest.MonkeyPatch, allow: str) -> None:
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", allow)
    with pytest.raises(KeyError) as err:
        plugins.get_index_backend("toy")
    message = str(err.value)
    assert "'toy'" in message
    for builtin in ("memory", "faiss", "elasticsearch"):
        assert builtin in message
    assert "toy" not in plugins.registered()["index_backends"]
    assert plugins.get_index_backend("memory").name == "memory"  # built-ins always load


def test_unknown_name_lists_registered_backends_including_plugins(load_plugins_env: pytest.MonkeyPatch) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    with pytest.raises(KeyError, match=r"unknown index backend 'nope'; registered index backends: .*memory.*toy"):
        plugins.get_index_backend("nope")


def test_reset_forgets_loaded_plugins(load_plugins_env: pytest.MonkeyPatch) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    assert "toy" in plugins.registered()["index_backends"]
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", "")
    assert "toy" in plugins.registered()["index_backends"]  # loaded once: env read at first load
    plugins.reset()
    assert "toy" not in plugins.registered()["index_backends"]


def test_plugin_image_loader_comes_before_builtins(load_plugins_env: pytest.MonkeyPatch) -> None:
    from ret2_plugin.processing.images import load_image

    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    loaders = plugins.image_loaders()
    assert loaders[0].__module__ == "toy_ret2_backend"
    assert load_image("toy://blue").getpixel((0, 0)) == (0, 0, 255)


def test_broken_plugin_names_itself(load_plugins_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_distribution(tmp_path, "broken-ret2", "broken_ret2_plugin", "raise ImportError('missing thing')\n")
    load_plugins_env.syspath_prepend(str(tmp_path))
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", "broken-ret2")
    with pytest.raises(RuntimeError, match=r"broken_ret2_plugin.*broken-ret2.*missing thing"):
        plugins.get_index_backend("memory")


def test_toy_backend_round_trip(load_plugins_env: pytest.MonkeyPatch) -> None:
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    backend = plugins.get_index_backend("toy")
    index = backend.open("toy-round-trip", dim=3)
    try:
        report = index.add([IndexRecord("a", _unit([1, 0, 0]), text="a"), IndexRecord("b", _unit([0, 1, 0]), text="b")])
        assert report.written == 2 and not report.failed
        assert [hit.id for hit in index.search(_unit([0.1, 1, 0]), top_k=2)] == ["b", "a"]
    finally:
        backend.drop("toy-round-trip")


def test_haystack_retriever_uses_plugin_backend_by_name(load_plugins_env: pytest.MonkeyPatch) -> None:
    from haystack import Pipeline

    from haystack_integrations.components.retrievers.ret2 import ReT2Retriever

    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    backend = plugins.get_index_backend("toy")
    index = backend.open("toy-haystack", dim=3)
    try:
        index.add(
            [
                IndexRecord("red", _unit([1, 0, 0]), text="red", image="red.png", meta={"kind": "colour"}),
                IndexRecord("green", _unit([0, 1, 0]), text="green", meta={"kind": "colour"}),
                IndexRecord("tree", _unit([0.2, 1, 0]), text="tree", meta={"kind": "plant"}),
            ]
        )
        pipe = Pipeline()
        pipe.add_component("retriever", ReT2Retriever(backend="toy", location="toy-haystack", top_k=2))
        docs = pipe.run({"retriever": {"query_embedding": _unit([0, 1, 0]).tolist()}})["retriever"]["documents"]
        assert [d.id for d in docs] == ["green", "tree"]
        assert docs[0].score == pytest.approx(1.0, abs=1e-5)
        filtered = pipe.run(
            {
                "retriever": {
                    "query_embedding": _unit([1, 0.1, 0]).tolist(),
                    "filters": {"field": "meta.kind", "operator": "==", "value": "colour"},
                }
            }
        )["retriever"]["documents"]
        assert [d.id for d in filtered] == ["red", "green"]
        assert filtered[0].meta == {"kind": "colour", "file_path": "red.png"}
        assert isinstance(pipe.get_component("retriever")._index, backend)
    finally:
        backend.drop("toy-haystack")


def _fresh_env(toy_site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RET2_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(toy_site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def test_fresh_process_discovers_the_plugin(toy_site: Path) -> None:
    code = "import json; from ret2_plugin import plugins; print(json.dumps(plugins.registered()))"
    found = subprocess.run(
        [sys.executable, "-c", code], env=_fresh_env(toy_site), capture_output=True, text=True, check=True
    )
    assert json.loads(found.stdout)["index_backends"]["toy"] == "toy-ret2-backend 0.1.0"
    off = subprocess.run(
        [sys.executable, "-c", code],
        env=_fresh_env(toy_site, RET2_LOAD_PLUGINS=""),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "toy" not in json.loads(off.stdout)["index_backends"]


OVERRIDE_MODULE = """
from ret2_plugin import hookimpl
from ret2_plugin.integrations.memory import InMemoryBackend


class BetterMemory(InMemoryBackend):
    pass


@hookimpl
def register_index_backends(register):
    register("memory", BetterMemory)
"""


def test_a_plugin_may_replace_a_builtin_by_name(load_plugins_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_distribution(tmp_path, "better-memory", "better_memory_plugin", OVERRIDE_MODULE)
    load_plugins_env.syspath_prepend(str(tmp_path))
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", "better-memory")
    try:
        assert plugins.get_index_backend("memory").__name__ == "BetterMemory"
        assert plugins.registered()["index_backends"]["memory"] == "better-memory 0.1.0"
        assert plugins.get_index_backend("faiss").__name__ == "FaissBackend"  # the others stay built-in
    finally:
        sys.modules.pop("better_memory_plugin", None)


class _Wrapping:
    """A plugin object (not a module): a pluggy wrapper around every backend registration, and a
    `memory` backend of its own, which must override the built-in of that name."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def register_index_backends(self, register):  # type: ignore[no-untyped-def]
        self.calls += 1
        return (yield)

    @hookimpl(tryfirst=True)
    def register_image_loaders(self, register):  # type: ignore[no-untyped-def]
        register("first", _first_loader)


class _Override:
    @hookimpl
    def register_index_backends(self, register):  # type: ignore[no-untyped-def]
        register("memory", _OverrideBackend)


class _OverrideBackend:
    name = "memory-override"


def _first_loader(source):  # type: ignore[no-untyped-def]
    return None


def test_lookups_go_through_pm_hook_wrappers_order_and_overrides(load_plugins_env: pytest.MonkeyPatch) -> None:
    """Hooks are called through `pm.hook`: a wrapper sees each lookup, `tryfirst` puts a loader
    ahead of later-registered plugins, and a plugin's name overrides the built-in's."""
    load_plugins_env.delenv("RET2_LOAD_PLUGINS", raising=False)
    plugins.load_plugins()
    wrapping, override = _Wrapping(), _Override()
    plugins.pm.register(wrapping, name="wrapping")
    plugins.pm.register(override, name="override")
    assert plugins.get_index_backend("memory") is _OverrideBackend
    assert plugins.registered()["index_backends"]["memory"] == "override"
    assert plugins.registered()["index_backends"]["toy"] == "toy-ret2-backend 0.1.0"
    # the wrapper wraps every plugin's registration, in each of the 3 lookups above
    implementers = [i for i in plugins.pm.hook.register_index_backends.get_hookimpls() if not i.wrapper]
    assert len(implementers) >= 3 and wrapping.calls == 3 * len(implementers)
    loaders = plugins.image_loaders()
    assert loaders[0] is _first_loader  # tryfirst
    assert loaders[1].__module__ == "toy_ret2_backend"
    assert [f.__name__ for f in loaders[-3:]] == ["load_local_image", "load_image_bytes", "load_url_image"]
    plugins.pm.unregister(override)
    assert plugins.get_index_backend("memory").name == "memory"


def _decorated(function):  # type: ignore[no-untyped-def]
    """A decorator around a hookimpl (logging, timing...): the provider must still be known."""

    @functools.wraps(function)
    def inner(*args, **kwargs):  # type: ignore[no-untyped-def]
        return function(*args, **kwargs)

    return inner


class _DecoratedTwice:
    """Registers `twice` twice (its last registration wins) through a decorated hookimpl."""

    @hookimpl
    @_decorated
    def register_index_backends(self, register):  # type: ignore[no-untyped-def]
        register("twice", _FirstTwice)
        register("twice", _SecondTwice)


class _FirstTwice:
    name = "twice"


class _SecondTwice:
    name = "twice"


def _shared_register(register):  # type: ignore[no-untyped-def]
    register("shared", _FirstTwice)


class _Shared:
    """Two instances of this class are two plugins sharing one hookimpl function."""

    register_index_backends = staticmethod(hookimpl(_shared_register))


def test_provider_of_decorated_and_shared_hookimpls_and_the_winning_rule(load_plugins_env: pytest.MonkeyPatch) -> None:
    """No stack walking: a decorated hookimpl and two plugins sharing one function are attributed to
    their plugin; within a plugin the last registration of a name wins, across plugins the one
    called first (registered last) wins."""
    load_plugins_env.setenv("RET2_LOAD_PLUGINS", "")
    plugins.load_plugins()
    shared_a, shared_b = _Shared(), _Shared()
    plugins.pm.register(_DecoratedTwice(), name="decorated")
    plugins.pm.register(shared_a, name="shared-a")
    plugins.pm.register(shared_b, name="shared-b")
    backends = plugins.registered()["index_backends"]
    assert backends["twice"] == "decorated"
    assert plugins.get_index_backend("twice") is _SecondTwice
    assert backends["shared"] == "shared-b"  # registered last, so called first
    assert backends["memory"] == "ret2-plugin (built-in)"
    plugins.pm.unregister(shared_b)
    assert plugins.registered()["index_backends"]["shared"] == "shared-a"
