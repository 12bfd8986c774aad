"""What a model folder may make us import: nothing of its own, unless the caller opts in.

A sentence-transformers folder names Python classes in its configs (`modules.json` types, Dense's
`activation_function`); Hugging Face configs can name code through `auto_map`. Importing or
instantiating any of those can run code that ships in the folder. `check_st_folder` vets a folder
BEFORE anything is loaded: module types must be ours (first) then sentence-transformers' Dense /
Normalize, module paths must stay inside the folder, and class names in module configs must resolve
to the allow-list below (torch.nn activations). Hugging Face loaders are always called with
`trust_remote_code=False` (see `processing/processor.py`, `modeling/backbones.py`), so an `auto_map`
is refused by transformers itself, never offered at its interactive prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

OUR_MODULE = "ret2_plugin.encoder.st_module.ReT2Encoder"
# sentence-transformers modules allowed after ours. Only these: others (Transformer, Router, ...) forward
# trust_remote_code to Hugging Face loaders, which would run `auto_map` code shipped in the folder.
SAFE_ST_MODULES = frozenset(
    f"sentence_transformers.{prefix}{name}"
    for name in ("Dense", "Normalize")
    for prefix in (f"base.modules.{name.lower()}.", "base.modules.", "models.")
)
# config keys that name a class, per module kind
_CLASS_KEYS = ("activation_function",)


class UnsafeModelError(ValueError):
    """A model folder asks us to import or run something outside the allow-list."""


def _allowed_activations() -> dict[str, type[nn.Module]]:
    """Dotted name -> class for every `torch.nn` module class without required constructor arguments
    that sentence-transformers' `fullname` may write (`torch.nn.modules.activation.Tanh`,
    `torch.nn.modules.linear.Identity`) or a user may type (`torch.nn.Tanh`)."""
    import inspect

    out: dict[str, type[nn.Module]] = {}
    for name, obj in vars(nn).items():
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__.startswith("torch.nn.modules.")):
            continue
        try:
            required = [
                p
                for p in inspect.signature(obj).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            ]
        except (TypeError, ValueError):
            continue
        if obj.__module__.split(".")[-1] in ("activation", "linear") and not required:
            out[f"{obj.__module__}.{obj.__qualname__}"] = obj
            out[f"torch.nn.{name}"] = obj
    return out


def resolve_activation(dotted: Any, where: str = "config") -> type[nn.Module]:
    """The allow-listed torch.nn class named `dotted` (no import happens: a lookup in `torch.nn`)."""
    allowed = _allowed_activations()
    if not isinstance(dotted, str) or dotted not in allowed:
        raise UnsafeModelError(
            f"{where} names the class {dotted!r}, which is not an allowed torch.nn activation "
            f"(allowed: torch.nn activations such as torch.nn.Tanh, torch.nn.ReLU, torch.nn.Identity); "
            "refusing to import it because it could run code shipped with the model"
        )
    return allowed[dotted]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsafeModelError(f"{path} is unreadable: {exc}") from exc


def check_st_folder(folder: Path, *, trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """Vet a sentence-transformers folder before loading it; returns its `modules.json` entries.

    Always: our module first (it is resolved from this package, never from the folder), module paths
    inside the folder. Unless `trust_remote_code`: only Dense / Normalize after ours, and every class
    named in their configs allow-listed. Raises `UnsafeModelError` naming the file and the reason."""
    modules = _read_json(folder / "modules.json")
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise UnsafeModelError(f"{folder}/modules.json must be a non-empty list of module entries")
    types = [str(m.get("type", "")) for m in modules]
    foreign = ([] if types[0] == OUR_MODULE else [types[0]]) + [t for t in types[1:] if t not in SAFE_ST_MODULES]
    if foreign and not trust_remote_code:
        raise UnsafeModelError(
            f"{folder} is a sentence-transformers folder with modules other than {OUR_MODULE} followed by "
            f"{sorted(SAFE_ST_MODULES)}: {foreign}; they could run code shipped with the model. Load it with "
            "sentence-transformers directly, or pass trust_remote_code=True if you trust it"
        )
    root = folder.resolve()
    for entry in modules:
        sub = (root / str(entry.get("path", ""))).resolve()
        if not sub.is_relative_to(root):
            raise UnsafeModelError(f"{folder}/modules.json: module path {entry.get('path')!r} leaves the model folder")
        if trust_remote_code or entry.get("type") not in SAFE_ST_MODULES:
            continue
        config_path = sub / "config.json"
        config = _read_json(config_path) if config_path.is_file() else {}
        for key in _CLASS_KEYS:
            if isinstance(config, dict) and key in config and config[key] is not None:
                resolve_activation(config[key], f"{config_path} ({key})")
    return modules
