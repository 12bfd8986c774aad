"""Resolve a `--model` value: a named preset (built once, then cached), a local directory, or a hub id."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ret2_plugin.presets import PRESETS, build_preset

CACHE_ENV = "RET2_CACHE_DIR"
DEFAULT_MODEL = "starter"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ret2-plugin")


def named_models() -> list[str]:
    return sorted([*PRESETS, "starter"])


def _build(name: str, target: Path, **kwargs: object) -> None:
    """Build into a temp dir beside `target`, then rename: a killed build leaves no half model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        if name == "starter":
            from ret2_plugin.starter import build_starter

            build_starter(tmp, **kwargs)  # type: ignore[arg-type]
        else:
            build_preset(name, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_model(spec: str | None, *, rebuild: bool = False, **build_kwargs: object) -> str:
    """A path (str) for presets and local dirs; hub ids are returned unchanged (loaded later)."""
    spec = spec or DEFAULT_MODEL
    if spec in named_models():
        target = cache_dir() / "models" / spec
        if rebuild and target.exists():
            shutil.rmtree(target)
        if not (target / "ret2_config.json").is_file():
            _build(spec, target, **build_kwargs)
        return str(target)
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists() or spec.startswith((".", "/")) or spec.count("/") != 1:
        raise FileNotFoundError(
            f"model {spec!r} is not a local directory, a hub id (owner/name) or a named preset ({', '.join(named_models())})"
        )
    return spec
