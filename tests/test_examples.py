"""Every example runs (on the tiny test model) and produces what it promises."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.unit
def test_quickstart(tiny_model_dir: Path) -> None:
    ranked = _load("quickstart").main(["--model", str(tiny_model_dir)])
    assert sorted(ranked) == ["love-letter", "pizza", "rocket"]


@pytest.mark.unit
def test_haystack_pipeline_example(tiny_model_dir: Path, tmp_path: Path) -> None:
    ids = _load("haystack_pipeline").main(
        ["--model", str(tiny_model_dir), "--index", str(tmp_path / "idx"), "--limit", "40", "--text", "grinning face"]
    )
    corpus_ids = {json.loads(line)["id"] for line in (EXAMPLES / "data" / "corpus.jsonl").read_text().splitlines()[:40]}
    assert len(ids) == 5 and set(ids) <= corpus_ids


@pytest.mark.integration
def test_elasticsearch_example(tiny_model_dir: Path, tmp_path: Path, es_node) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [json.loads(line) for line in (EXAMPLES / "data" / "corpus.jsonl").read_text().splitlines()]
    keep = [r for r in rows if r["meta"].get("source") == "photo"][:5] + [
        r for r in rows if r["meta"].get("source") == "emoji"
    ][:35]
    for row in keep:
        if row.get("image"):
            row["image"] = str(EXAMPLES / "data" / row["image"])
    corpus.write_text("\n".join(json.dumps(r) for r in keep) + "\n")
    found = _load("elasticsearch_hybrid").main(
        ["--model", str(tiny_model_dir), "--index", "ret2-example-test", "--corpus", str(corpus)],
        **es_node.backend_options(),
    )
    photo_ids = {r["id"] for r in keep if r["meta"]["source"] == "photo"}
    assert found["photos"] and set(found["photos"]) <= photo_ids
    assert len(found["hybrid"]) == 5


@pytest.mark.slow
def test_finetune_example(tiny_model_dir: Path, tmp_path: Path) -> None:
    final = _load("finetune").main(
        ["--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "run"), "--steps", "4", "--eval-every", "2"]
    )
    assert (final / "ret2_config.json").is_file()
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
