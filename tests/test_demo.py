"""`ret2 demo` in its reduced mode: starter model built offline, FAISS index, queries, gallery, Recall@k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ret2_plugin.app.cli import main


@pytest.mark.slow
def test_demo_quick_runs_end_to_end_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("RET2_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["indexing"]["indexed"] == report["documents"] == 150 and report["indexing"]["failed"] == 0
    assert set(report["metrics"]) == {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}
    assert 0 < report["heldout_queries"] and 0.0 <= report["metrics"]["recall@10"] <= 1.0
    assert set(report["metrics_by_query_kind"]) == {"text", "image", "text+image"}
    assert (tmp_path / "cache" / "models" / "starter-quick" / "ret2_config.json").is_file()
    assert not (tmp_path / "cache" / "models" / "starter").exists()  # the full starter is never a quick build
    assert "<img" in (out / "gallery.html").read_text()
    # Second run: the cached model is reused and the index is unchanged (no re-embedding).
    assert main(["demo", "--quick", "--out", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["indexing"]["unchanged"] == 150 and again["indexing"]["indexed"] == 0
    assert again["metrics"] == report["metrics"]
