"""The built wheel on its own: installed into fresh venvs (no checkout on the path, no index), each
extra alone, `ret2 demo --quick` from an empty directory, one-line errors naming a missing extra.

See `wheel_env.py` for how the venvs get their third-party packages (only what the wheel declares).
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from ret2_plugin import __version__
from tests.packaging.wheel_env import ROOT, build_wheel, clean_env, make_env, purelib_of, wheel_requirements

pytestmark = pytest.mark.slow

# What each optional feature needs, probed inside the fresh venv: "ok" or the error it raised.
PROBE = r"""
import json, sys, tempfile
import numpy as np
out = {}
def probe(name, fn):
    try:
        fn()
        out[name] = "ok"
    except Exception as exc:
        out[name] = f"{type(exc).__name__}: {exc}"

def faiss_roundtrip():
    from ret2_plugin.index import IndexRecord
    from ret2_plugin.plugins import get_index_backend
    index = get_index_backend("faiss").open(tempfile.mkdtemp() + "/idx", dim=4, similarity="cosine")
    index.add([IndexRecord(id=str(i), embedding=np.eye(4, dtype=np.float32)[i]) for i in range(4)])
    assert [h.id for h in index.search(np.eye(4, dtype=np.float32)[2], top_k=1)] == ["2"]
    index.close()

def haystack_components():
    from haystack_integrations.components.embedders.ret2 import ReT2DocumentEmbedder
    from haystack_integrations.components.retrievers.ret2 import ReT2Retriever

def train_plot():
    from ret2_plugin.trainers.logging import plot_metrics
    assert plot_metrics([{"kind": "train", "step": 1, "loss": 1.0}], tempfile.mkdtemp() + "/c.png")

def starter_text_tower():
    from ret2_plugin.app.starter import minilm_dir
    assert (minilm_dir() / "config.json").is_file()

probe("faiss", faiss_roundtrip)
probe("elasticsearch", lambda: __import__("ret2_plugin.plugins").plugins.get_index_backend("elasticsearch"))
probe("haystack", haystack_components)
probe("train", train_plot)
probe("starter", starter_text_tower)
import ret2_plugin
out["ret2_plugin_file"] = ret2_plugin.__file__
print(json.dumps(out))
"""

# feature -> the extra that provides it (faiss: core)
FEATURES = {
    "faiss": None,
    "elasticsearch": "elasticsearch",
    "haystack": "haystack",
    "train": "train",
    "starter": "starter",
}
PROVIDES = {
    "": set(),
    "elasticsearch": {"elasticsearch"},
    "haystack": {"haystack", "elasticsearch"},
    "train": {"train"},
    "starter": {"starter"},
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


def test_wheel_metadata_and_contents(wheel: Path) -> None:
    requirements = wheel_requirements(wheel)
    core = {r.name: r for r in requirements if r.marker is None}
    assert "faiss-cpu" in core, "FAISS, the embedded default backend, must be a core dependency"
    for req in requirements:
        if req.name == "ret2-plugin" or any(
            f'extra == "{tool}"' in str(req.marker) for tool in ("dev", "lint", "release")
        ):
            continue  # self-references and developer tools (no ceiling needed)
        ops = {spec.operator for spec in req.specifier}
        assert "==" not in ops and "<" in ops and (">=" in ops), f"{req}: a range with a floor and a ceiling"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(f"ret2_plugin-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in meta  # the single version source
    assert "Requires-Python: >=3.11" in meta and "License-Expression: Apache-2.0" in meta
    assert f"ret2_plugin-{__version__}.dist-info/licenses/LICENSE" in names
    # Every file the example corpus and its query sets reference ships (so the FULL demo runs too).
    data = "ret2_plugin/example_data/"
    for name in ("corpus.jsonl", "queries_train.jsonl", "queries_heldout.jsonl", "LICENSE.md"):
        assert data + name in names
    local = ROOT / "examples" / "data"
    for jsonl in ("corpus.jsonl", "queries_train.jsonl", "queries_heldout.jsonl"):
        for line in (local / jsonl).read_text().splitlines():
            image = json.loads(line).get("image")
            if image:
                assert data + image in names, f"{image} (from {jsonl}) is missing from the wheel"
    assert not any(n.startswith(("tests/", "examples/", "integrations/", "trainers/")) for n in names)


@pytest.mark.parametrize("extra", sorted(PROVIDES), ids=lambda e: e or "core")
def test_each_extra_installs_and_works_alone(wheel: Path, extra: str, tmp_path: Path) -> None:
    python = make_env(tmp_path, wheel, {extra} if extra else set())
    work = tmp_path / "empty"
    work.mkdir()
    run = subprocess.run(
        [str(python), "-c", PROBE], cwd=work, env=clean_env(), capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found.pop("ret2_plugin_file").startswith(purelib_of(python))  # the wheel, not the checkout
    for feature, needs in FEATURES.items():
        if needs is None or needs in PROVIDES[extra]:
            assert found[feature] == "ok", f"{feature} with [{extra}]: {found[feature]}"
        else:  # one line, naming the extra to install
            assert found[feature].startswith("MissingExtraError: ") and "\n" not in found[feature], found[feature]
            assert f"pip install 'ret2-plugin[{needs}]'" in found[feature], found[feature]
    if extra in ("", "elasticsearch"):
        # The CLI: the default (starter) model is the `starter` extra: one line on stderr, exit 2.
        (work / "c.jsonl").write_text('{"id": "a", "text": "a"}\n')
        cli = subprocess.run(
            [str(python.parent / "ret2"), "index", "c.jsonl", "--index", "idx"],
            cwd=work,
            env=clean_env(RET2_CACHE_DIR=str(tmp_path / "cache")),
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 2, cli.stderr[-3000:]
        errors = [line for line in cli.stderr.splitlines() if line.startswith("ret2: error:")]
        assert "Traceback" not in cli.stderr and len(errors) == 1, cli.stderr[-3000:]
        assert "pip install 'ret2-plugin[starter]'" in errors[0]


def test_demo_quick_runs_from_the_installed_wheel_in_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    python = make_env(tmp_path, wheel, {"all"})
    work = tmp_path / "empty"
    work.mkdir()
    env = clean_env(RET2_CACHE_DIR=str(tmp_path / "cache"))
    run = subprocess.run(
        [str(python.parent / "ret2"), "demo", "--quick", "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,  # builds the starter-quick model first: minutes on an idle 2-core machine
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["documents"] == 150 and report["indexing"]["indexed"] == 150 and report["indexing"]["failed"] == 0
    assert report["input_errors"] == [] and report["heldout_queries"] > 0
    assert set(report["metrics_by_query_kind"]) == {"text", "image", "text+image"}
    gallery = work / "ret2-demo" / "gallery.html"
    assert gallery.is_file() and "<img" in gallery.read_text()
    # The corpus was read from the installed package data, not from a checkout.
    where = subprocess.run(
        [str(python), "-c", "from ret2_plugin.examples import example_data_dir; print(example_data_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(purelib_of(python)) and not where.startswith(str(ROOT))
