"""`ret2 index/search --backend elasticsearch` against the real node, credentials from env vars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ret2_plugin.app.cli import main

pytestmark = pytest.mark.integration


def test_cli_indexes_and_searches_elasticsearch(es_node, tiny_model_dir: Path, image_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ELASTICSEARCH_USERNAME", es_node.username)
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", es_node.password)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in [
        {"id": "red", "text": "a plain red square", "image": str(image_dir / "red.png"), "meta": {"kind": "shape"}},
        {"id": "sea", "text": "deep blue ocean water", "meta": {"kind": "scene"}},
        {"id": "fox", "text": "the quick brown fox", "meta": {"kind": "animal"}},
        {"id": "bad", "image": str(image_dir / "missing.png")},
    ]) + "\n")
    name = "ret2-cli-test"
    args = ["--backend", "elasticsearch", "--index", name, "--es-url", es_node.url, "--json"]
    assert main(["index", str(corpus), "--model", str(tiny_model_dir), *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["indexed"], summary["count"]) == (3, 3)
    assert [(f["id"], "file not found" in f["reason"]) for f in summary["failures"]] == [("bad", True)]

    # The index records its model in the mapping's _meta: no --model needed. `_id` is the corpus id.
    assert main(["search", "--text", "deep blue ocean water", "-k", "2", *args]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert hits[0]["id"] == "sea" and hits[0]["meta"] == {"kind": "scene"}
    assert main(["search", "--text", "deep blue ocean water", "--filter", "kind=animal", *args]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["results"]] == ["fox"]

    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", "wrong-password")
    assert main(["search", "--text", "x", *args]) != 0
    assert "wrong-password" not in capsys.readouterr().err
