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
    """Presets built offline; `starter-quick` is the reduced starter of `ret2 demo --quick`."""
    return sorted([*PRESETS, "starter", "starter-quick"])


def _build(name: str, target: Path, **kwargs: object) -> None:
    """Build into a temp dir beside `target`, then swap it in: a killed or failed build leaves the
    previous model (if any) in place, and a concurrent build of the same model is not an error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    old = target.parent / f".{name}.old"
    try:
        if name.startswith("starter"):
            from ret2_plugin.app.starter import QUICK_STEPS, build_starter

            if name == "starter-quick":
                kwargs = {"steps": QUICK_STEPS, **kwargs}
            build_starter(tmp, **kwargs)  # type: ignore[arg-type]
        else:
            build_preset(name, tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "ret2_config.json").is_file():  # lost a race to another builder: fine
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def resolve_model(spec: str | None, *, rebuild: bool = False, **build_kwargs: object) -> str:
    """A path (str) for presets and local dirs; hub ids are returned unchanged (loaded later)."""
    spec = spec or DEFAULT_MODEL
    if spec in named_models():
        target = cache_dir() / "models" / spec
        if rebuild or not (target / "ret2_config.json").is_file():
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
