"""Print a pip constraints file pinning every direct dependency of ret2-plugin (core + the extras that
`[dev]` pulls in, or the extras named on the command line) to the FLOOR of its range in pyproject.toml.

scripts/test_lowest.sh installs with it and runs the unit tests, so a floor is a tested version, never
a guess. Transitive dependencies resolve normally (pip has no "lowest" mode: this is "lowest-direct").
The test-only tools of `[dev]` (pytest, pytest-timeout, pytest-asyncio, datasets, accelerate) are pinned
to their floors as well, like every runtime dependency: their ranges are in the published metadata too, so
they are tested, not exempted (a floor the suite cannot run on is raised in pyproject.toml instead).
Usage: python scripts/lowest_constraints.py [EXTRA ...]   (default: dev)
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_requirements(project: dict, extras: list[str]) -> list[str]:
    """Core dependencies plus the requirements of `extras`, self-references (`pkg[a,b]`) expanded."""
    name = _canonical(project["name"])
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r} (pyproject.toml has: {', '.join(sorted(optional))})")
        seen.add(extra)
        for requirement in optional[extra]:
            match = _REQ.match(requirement)
            if match and _canonical(match.group(1)) == name:
                todo += [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
            else:
                found.append(requirement)
    return found


def floors(requirements: list[str]) -> dict[str, str]:
    """`name -> lowest allowed version` for every requirement with a `>=` (or `==`) bound."""
    out: dict[str, str] = {}
    for requirement in requirements:
        match = _REQ.match(requirement)
        if not match:
            raise SystemExit(f"cannot parse requirement {requirement!r}")
        name, spec = _canonical(match.group(1)), match.group(3)
        for part in spec.split(","):
            bound = re.match(r"\s*(>=|==)\s*([^\s,]+)", part)
            if bound:
                version = bound.group(2)
                if name in out and out[name] != version:  # the same package in two extras: keep the higher floor
                    version = max(out[name], version, key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)))
                out[name] = version
    return out


def main(argv: list[str]) -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = argv or ["dev"]
    print(f"# lowest allowed versions of the direct dependencies of ret2-plugin[{','.join(extras)}]")
    for name, version in sorted(floors(direct_requirements(project, extras)).items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
