"""The layer contract, checked on the source tree (CI runs it with the default suite).

    application  ret2_plugin.app            (ret2 command, demo, starter, model store, gallery, train CLI)
         |  imports
    trainers  ret2_plugin.trainers    integrations  ret2_plugin.integrations (+ haystack_integrations)
         |  import                         |  import
    library core  ret2_plugin.* (modeling, processing, encoder, items, index, indexing, search, filters,
                  plugins, precision, kv, workers, ...)

An arrow only points down: the core imports neither the application, nor the trainers, nor the
integrations (nor their third-party engines); trainers and integrations do not import each other or
the application; and no two files import each other, directly or round a longer loop (imports under
`if TYPE_CHECKING:` are ignored for loops: they never run). Function-level imports count: a lazy
import is still a dependency. Built-in plugins name their targets as "module:attr" strings, which is
how the core registers the integrations without importing them.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
# folder -> installed package (mirrors setup.py's package_dir)
ROOTS = {
    "ret2_plugin": "ret2_plugin",
    "integrations": "ret2_plugin.integrations",
    "trainers": "ret2_plugin.trainers",
    "haystack_integrations": "haystack_integrations",
}
APP, TRAINERS, INTEGRATIONS = "ret2_plugin.app", "ret2_plugin.trainers", "ret2_plugin.integrations"
ENGINES = ("haystack", "haystack_integrations", "elasticsearch", "faiss")  # third-party, integration-only
FORBIDDEN = {  # layer -> prefixes it must not import
    "core": (APP, TRAINERS, INTEGRATIONS, *ENGINES),
    "trainers": (APP, INTEGRATIONS, *ENGINES),
    "integrations": (APP, TRAINERS),
    "app": (),
}


def _layer(module: str) -> str:
    for name, prefix in (("app", APP), ("trainers", TRAINERS), ("integrations", INTEGRATIONS)):
        if module == prefix or module.startswith(prefix + "."):
            return name
    if module.startswith("haystack_integrations"):
        return "integrations"
    return "core"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def modules(root: Path, roots: dict[str, str] = ROOTS) -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the package folders under `root`."""
    out: dict[str, Path] = {}
    for folder, package in roots.items():
        for file in sorted((root / folder).rglob("*.py")):
            parts = [p for p in file.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = file
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(module: str, file: Path, known: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, only under TYPE_CHECKING) for every import in `file`, resolved to the
    most specific module (`from pkg import sub` is an import of `pkg.sub` when that is a module)."""
    tree = ast.parse(file.read_text(), str(file))
    guarded = _type_checking_lines(tree)
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, node.lineno in guarded
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                yield (target if target in known else base), node.lineno, node.lineno in guarded


def graph(root: Path, roots: dict[str, str] = ROOTS) -> tuple[dict[str, set[str]], list[str]]:
    """(runtime import graph between our files, layer violations as readable lines)."""
    files = modules(root, roots)
    known = set(files)
    edges: dict[str, set[str]] = {m: set() for m in files}
    violations: list[str] = []
    for module, file in files.items():
        forbidden = FORBIDDEN[_layer(module)]
        for target, line, type_only in imports(module, file, known):
            bad = next((p for p in forbidden if _within(target, p)), None)
            if bad:
                where = file.relative_to(root)
                violations.append(f"{where}:{line}: {_layer(module)} module {module} imports {target}")
            if not type_only:
                hit = target
                while hit and hit not in known:  # `import a.b.c` of a name inside a module
                    hit = hit.rpartition(".")[0]
                if hit and hit != module:
                    edges[module].add(hit)
    return edges, violations


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_core_trainers_and_integrations_never_import_upwards() -> None:
    _, violations = graph(REPO)
    assert not violations, "layer violations:\n" + "\n".join(violations)


def test_no_import_cycles_between_files() -> None:
    edges, _ = graph(REPO)
    assert not cycles(edges), f"import cycles: {cycles(edges)}"


def test_the_application_layer_exists_and_the_command_lives_there() -> None:
    files = modules(REPO)
    for name in ("cli", "demo", "starter", "model_store", "gallery", "train_cli"):
        assert f"{APP}.{name}" in files
    assert 'ret2 = "ret2_plugin.app.cli:main"' in (REPO / "pyproject.toml").read_text()


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return tmp_path


def test_the_checker_catches_an_upward_import_a_lazy_one_and_a_cycle(tmp_path: Path) -> None:
    """The checks above can fail: a synthetic tree with each kind of violation."""
    root = _tree(
        tmp_path,
        {
            "ret2_plugin/__init__.py": "",
            "ret2_plugin/search.py": "from ret2_plugin.app.model_store import resolve_model\n",
            "ret2_plugin/indexing.py": "def f():\n    from ret2_plugin.trainers import loop\n",
            "ret2_plugin/encoder.py": "import faiss\n",
            "ret2_plugin/modeling/__init__.py": "",
            "ret2_plugin/modeling/model.py": "def load():\n    from ret2_plugin.modeling.official import x\n",
            "ret2_plugin/modeling/official.py": "from ret2_plugin.modeling import model\n",
            "ret2_plugin/typing_only.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ret2_plugin.search import y\n",
            "ret2_plugin/app/__init__.py": "",
            "ret2_plugin/app/model_store.py": "from ret2_plugin.trainers import loop\nfrom ret2_plugin import search\n",
            "trainers/__init__.py": "",
            "trainers/loop.py": "from ret2_plugin.integrations import memory\n",
            "integrations/__init__.py": "",
            "integrations/memory.py": "from ret2_plugin.index import x\n",
        },
    )
    edges, violations = graph(root, {"ret2_plugin": "ret2_plugin", "integrations": INTEGRATIONS, "trainers": TRAINERS})
    text = "\n".join(violations)
    assert "core module ret2_plugin.search imports ret2_plugin.app.model_store" in text
    assert "core module ret2_plugin.indexing imports ret2_plugin.trainers" in text  # lazy import
    assert "core module ret2_plugin.encoder imports faiss" in text
    assert "trainers module ret2_plugin.trainers.loop imports ret2_plugin.integrations.memory" in text
    assert not any("ret2_plugin.app.model_store imports" in v for v in violations)  # the app may import anything
    assert len(violations) == 4
    assert sorted(cycles(edges)) == [  # a lazy import closes a loop too
        ["ret2_plugin.app.model_store", "ret2_plugin.search"],
        ["ret2_plugin.modeling.model", "ret2_plugin.modeling.official"],
    ]
    assert "ret2_plugin.search" not in edges["ret2_plugin.typing_only"]
