"""Fresh virtual environments holding the built wheel and NOTHING else of the source checkout.

Installing torch & co. from an index in every test would take many minutes and need the network, so the
third-party packages come from the environment running the tests, but only those the wheel DECLARES:
the transitive closure of the wheel's `Requires-Dist` (for the extras asked) is symlinked file by file
(from each distribution's RECORD) into an overlay folder that a `.pth` file puts on the new venv's path.
pip then installs the wheel with `--no-index`: a requirement the wheel declares but the overlay lacks
fails the install, and a module the code imports without declaring it fails at run time. The checkout
is never on the path (the commands run from an empty directory, PYTHONPATH cleared).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SELF = "ret2-plugin"


def build_wheel(out_dir: Path) -> Path:
    """`pip wheel` of the checkout (no dependencies, no network: the build backend is already here)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out_dir),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = out_dir.glob("ret2_plugin-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(name).decode()
    return [
        Requirement(line.split(":", 1)[1].strip())
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in [*extras, ""])


def closure(requirements: list[Requirement], extras: set[str]) -> dict[str, md.Distribution]:
    """Every installed distribution the requirements (with `extras` of the root) pull in, by name.

    Raises if a required distribution is not installed here or its version does not satisfy the range:
    the environment running the tests must hold what the wheel declares."""
    found: dict[str, md.Distribution] = {}
    # Extras of the root that refer to the root itself (`ret2-plugin[a,b]`) expand first.
    wanted = set(extras)
    changed = True
    while changed:
        changed = False
        for req in requirements:
            if canonicalize_name(req.name) == SELF and _applies(req, wanted) and not req.extras <= wanted:
                wanted |= req.extras
                changed = True
    todo: list[tuple[Requirement, frozenset[str]]] = [
        (req, frozenset(wanted)) for req in requirements if canonicalize_name(req.name) != SELF
    ]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extras = todo.pop()
        if not _applies(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError as exc:
            raise AssertionError(f"{req} is declared but not installed in the test environment") from exc
        if not req.specifier.contains(dist.version, prereleases=True):
            raise AssertionError(f"{req} is declared but {dist.metadata['Name']} {dist.version} is installed")
        found[name] = dist
        for sub in dist.requires or []:
            todo.append((Requirement(sub), frozenset(req.extras)))
    return found


def _link_distribution(dist: md.Distribution, overlay: Path) -> int:
    """Symlink each installed file of `dist` (and the byte code next to it) under `overlay`."""
    base = Path(dist.locate_file("")).resolve()
    count = 0
    for entry in dist.files or []:
        rel = Path(str(entry))
        if rel.parts[0] == ".." or rel.suffix == ".pyc":  # scripts outside site-packages; byte code below
            continue
        source = base / rel
        if not source.exists():
            continue
        targets = [(source, overlay / rel)]
        if rel.suffix == ".py":
            cached = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
            if cached.exists():
                targets.append((cached, overlay / rel.parent / "__pycache__" / cached.name))
        for src, dst in targets:
            if dst.exists() or dst.is_symlink():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
            count += 1
    return count


def make_env(where: Path, wheel: Path, extras: set[str]) -> Path:
    """A fresh venv at `where` with `wheel[extras]` installed against the overlay; returns its python."""
    requirements = wheel_requirements(wheel)
    dists = closure(requirements, extras)
    overlay = where / "overlay"
    for dist in dists.values():
        _link_distribution(dist, overlay)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    Path(purelib_of(python), "zz_overlay.pth").write_text(f"{overlay}\n")
    spec = f"{wheel}[{','.join(sorted(extras))}]" if extras else str(wheel)
    # pip from this environment, installing INTO the new one; --no-index: nothing comes from a registry.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-index",
            "--no-build-isolation",
            "-q",
            spec,
        ],
        check=True,
        env=clean_env(),
        cwd=where,
    )
    return python


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that could put the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT)))
    env.update({"HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false"})
    env.update(extra)
    return env


def purelib_of(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


__all__ = ["build_wheel", "clean_env", "closure", "make_env", "purelib_of", "wheel_requirements"]
