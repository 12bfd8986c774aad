"""Package metadata against the files that use it: ranges in pyproject.toml, the exact known-good set in
constraints.txt, the floors the lowest-versions job installs, the single version source."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import ret2_plugin
from tests.packaging.wheel_env import ROOT

pytestmark = pytest.mark.unit

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TOOLS = {"dev", "lint", "release"}  # developer tools: a floor, no ceiling needed


def _runtime_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra, items in PROJECT["optional-dependencies"].items():
        if extra not in TOOLS:
            reqs += [Requirement(r) for r in items if canonicalize_name(Requirement(r).name) != "ret2-plugin"]
    return reqs


def _pins(text: str) -> dict[str, Version]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def test_runtime_dependencies_are_ranges_with_a_floor_and_a_ceiling() -> None:
    for req in _runtime_requirements():
        ops = {spec.operator for spec in req.specifier}
        assert ops == {">=", "<"}, f"{req}: expected `>=floor,<ceiling`"


def test_known_good_constraints_lie_inside_the_ranges() -> None:
    pins = _pins((ROOT / "constraints.txt").read_text())
    for req in _runtime_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but constraints.txt does not pin it"
        assert req.specifier.contains(pins[name]), f"constraints.txt pins {name}=={pins[name]} outside {req}"
    assert "torchvision" not in pins  # never installed (its presence breaks imports)


def test_lowest_constraints_pin_every_floor() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lowest_constraints.py"), "dev"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    floors = _pins(out)
    for req in _runtime_requirements():
        if req.name == "faiss-gpu":
            continue
        (floor,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert floors[canonicalize_name(req.name)] == floor
    assert {"pytest", "torch", "faiss-cpu", "haystack-ai"} <= set(floors)
    assert "faiss-gpu" not in floors  # an alternative to faiss-cpu, not part of [dev]


def test_single_version_source() -> None:
    assert "version" in PROJECT.get("dynamic", []) and "version" not in PROJECT
    assert md.version("ret2-plugin") == ret2_plugin.__version__
    assert PROJECT["requires-python"] == ">=3.11" and sys.version_info >= (3, 11)


def test_licence_file_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["license"] == "Apache-2.0"
