"""`ret2 index/search --backend elasticsearch` against the real node, credentials from env vars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ret2_plugin.app.cli import main

pytestmark = pytest.mark.integration


def test_cli_indexes_and_searches_elasticsearch(
    es_node, tiny_model_dir: Path, image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("ELASTICSEARCH_USERNAME", es_node.username)
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", es_node.password)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "id": "red",
                    "text": "a plain red square",
                    "image": str(image_dir / "red.png"),
                    "meta": {"kind": "shape"},
                },
                {"id": "sea", "text": "deep blue ocean water", "meta": {"kind": "scene"}},
                {"id": "fox", "text": "the quick brown fox", "meta": {"kind": "animal"}},
                {"id": "bad", "image": str(image_dir / "missing.png")},
            ]
        )
        + "\n"
    )
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

    # --hybrid: BM25 on the text fused with kNN by RRF (scores are RRF scores: at most 2 / 61)
    assert main(["search", "--text", "quick brown fox", "--hybrid", "-k", "3", *args]) == 0
    fused = json.loads(capsys.readouterr().out)["results"]
    assert fused[0]["id"] == "fox" and 0 < fused[0]["score"] <= 2 / 61
    assert main(["search", "--text", "quick brown fox", "--hybrid", "--filter", "kind=scene", *args]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["results"]] == ["sea"]
    assert main(["search", "--image", str(image_dir / "red.png"), "--hybrid", *args]) == 2
    assert "needs query text" in capsys.readouterr().err

    # what `ret2 index` wrote reads in elasticsearch-haystack: the corpus ids, the text as content, meta
    from haystack_integrations.document_stores.elasticsearch import ElasticsearchDocumentStore

    store = ElasticsearchDocumentStore(
        hosts=es_node.url, index=name, basic_auth=es_node.basic_auth, api_key=None, api_key_id=None
    )
    store._client = es_node.client()  # the node lacks `GET /`
    docs = {
        d.id: d for d in store.filter_documents({"field": "meta.kind", "operator": "in", "value": ["shape", "scene"]})
    }
    assert sorted(docs) == ["red", "sea"]
    assert docs["sea"].content == "deep blue ocean water"
    assert docs["red"].meta["file_path"] == str(image_dir / "red.png")

    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", "wrong-password")
    assert main(["search", "--text", "x", *args]) != 0
    assert "wrong-password" not in capsys.readouterr().err
