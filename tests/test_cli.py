"""`ret2` end to end: index -> search on a small corpus, JSON summaries, bad lines, the HTML gallery."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ret2_plugin.app.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture
def corpus(tmp_path: Path, image_dir: Path) -> Path:
    rows = [
        {"id": "red", "text": "a plain red square", "image": str(image_dir / "red.png"), "meta": {"color": "red"}},
        {"id": "green", "image": str(image_dir / "green.png"), "meta": {"color": "green"}},
        {"id": "blue", "text": "deep blue ocean water", "meta": {"color": "blue"}},
        {
            "id": "grad",
            "text": "a colourful gradient",
            "image": str(image_dir / "gradient.png"),
            "meta": {"color": "mixed"},
        },
        {"id": "words", "text": "the quick brown fox jumps over the lazy dog", "meta": {"color": "none"}},
    ]
    path = tmp_path / "corpus.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, "{broken json")
    lines.append(json.dumps({"id": "ghost", "image": "missing.png"}))
    lines.append(json.dumps({"id": "red", "text": "duplicate id"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else {"raw": out}


def test_index_then_search(tmp_path: Path, corpus: Path, tiny_model_dir: Path, image_dir: Path, capsys) -> None:
    index = str(tmp_path / "index")
    code, summary = _run(capsys, "index", str(corpus), "--index", index, "--model", str(tiny_model_dir), "--json")
    assert code == 0
    assert summary["indexed"] == 5 and summary["count"] == 5
    failures = {(f["line"], f["id"]): f["reason"] for f in summary["failures"]}
    assert failures[(3, None)].startswith("invalid JSON")
    assert "file not found" in failures[(7, "ghost")]
    assert failures[(8, "red")] == "duplicate id"

    # Re-indexing skips unchanged items (content hash) and keeps everything stored.
    code, again = _run(capsys, "index", str(corpus), "--index", index, "--model", str(tiny_model_dir), "--json")
    assert (again["indexed"], again["unchanged"], again["count"]) == (0, 5, 5)

    # No --model: the index records the model it was built with. Exact duplicates rank first.
    code, found = _run(capsys, "search", "--index", index, "--text", "deep blue ocean water", "-k", "3", "--json")
    assert code == 0 and found["results"][0]["id"] == "blue"
    assert [r["score"] for r in found["results"]] == sorted((r["score"] for r in found["results"]), reverse=True)
    code, found = _run(capsys, "search", "--index", index, "--image", str(image_dir / "green.png"), "--json")
    assert found["results"][0]["id"] == "green"
    assert found["results"][0]["image"].endswith("green.png") and found["results"][0]["meta"] == {"color": "green"}
    code, found = _run(
        capsys,
        "search",
        "--index",
        index,
        "--text",
        "a plain red square",
        "--image",
        str(image_dir / "red.png"),
        "--filter",
        "color=red",
        "--json",
    )
    assert [r["id"] for r in found["results"]] == ["red"]


def test_strict_and_nothing_valid_exit_non_zero(tmp_path: Path, corpus: Path, tiny_model_dir: Path, capsys) -> None:
    code, _ = _run(
        capsys,
        "index",
        str(corpus),
        "--index",
        str(tmp_path / "i1"),
        "--model",
        str(tiny_model_dir),
        "--json",
        "--strict",
    )
    assert code == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\nnot json\n')
    code, summary = _run(
        capsys, "index", str(bad), "--index", str(tmp_path / "i2"), "--model", str(tiny_model_dir), "--json"
    )
    assert code == 1 and summary["failed"] == 2 and summary["indexed"] == 0


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.stack: list[str] = []
        self.balanced = True

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.balanced = False


def test_html_gallery_is_valid_and_references_images(
    tmp_path: Path, corpus: Path, tiny_model_dir: Path, image_dir: Path, capsys
) -> None:
    index = str(tmp_path / "index")
    main(["index", str(corpus), "--index", index, "--model", str(tiny_model_dir), "--json"])
    capsys.readouterr()
    out = tmp_path / "report" / "gallery.html"
    out.parent.mkdir()
    code = main(
        [
            "search",
            "--index",
            index,
            "--text",
            "<script>alert(1)</script>",
            "--image",
            str(image_dir / "red.png"),
            "--html",
            str(out),
        ]
    )
    assert code == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page
    parser = _Collector()
    parser.feed(page)
    assert parser.balanced and not parser.stack
    assert len(parser.images) >= 2
    for src in parser.images:
        assert (out.parent / src).resolve().is_file(), src


def test_unknown_backend_lists_registered_ones(tmp_path: Path, tiny_model_dir: Path, corpus: Path, capsys) -> None:
    code = main(
        ["index", str(corpus), "--index", str(tmp_path / "x"), "--backend", "nope", "--model", str(tiny_model_dir)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown index backend 'nope'" in err and "faiss" in err and "memory" in err


def test_plugins_command_lists_builtins(capsys) -> None:
    code, found = _run(capsys, "plugins", "--json")
    assert code == 0
    assert found["index_backends"]["faiss"].endswith("(built-in)")
    assert {"elasticsearch", "memory"} <= set(found["index_backends"])


def test_convert_official_checkpoint_to_encoder_format(tmp_path: Path, capsys) -> None:
    import torch

    from ret2_plugin import ReT2Config, ReT2Model, load_encoder
    from ret2_plugin.presets import clip_image_processor, clip_tower_configs
    from ret2_plugin.processing import clip_tokenizer
    from tests.modeling.test_official import FUSION, write_official_checkpoint

    text, vision = clip_tower_configs(width=32, layers=12, heads=2)
    torch.manual_seed(5)
    source = ReT2Model(ReT2Config(text_config=text, vision_config=vision, layer_strategy="clip_vit_b", **FUSION)).eval()
    official = tmp_path / "official"
    official.mkdir()
    write_official_checkpoint(official, source, text, vision)
    clip_tokenizer().save_pretrained(str(official))
    clip_image_processor(32).save_pretrained(str(official))
    assert main(["convert", str(official), str(tmp_path / "ours"), "--json"]) == 0
    capsys.readouterr()
    converted, original = load_encoder(str(tmp_path / "ours")), load_encoder(str(official))
    a = converted.encode_query(["a cat"], convert_to_numpy=True)
    b = original.encode_query(["a cat"], convert_to_numpy=True)
    assert len(a[0]) == 4 and abs(a[0] - b[0]).max() < 1e-6  # K=4 token vectors, identical


def test_filter_values_are_json_and_meta_changes_are_reindexed(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        '{"id": "a", "text": "alpha", "meta": {"year": 2020}}\n{"id": "b", "text": "beta", "meta": {"year": 2021}}\n'
    )
    index = str(tmp_path / "idx")
    _run(capsys, "index", str(corpus), "--index", index, "--model", str(tiny_model_dir), "--json")
    code, found = _run(capsys, "search", "--index", index, "--text", "alpha", "--filter", "year=2021", "--json")
    assert [r["id"] for r in found["results"]] == ["b"]
    corpus.write_text(
        '{"id": "a", "text": "alpha", "meta": {"year": 2021}}\n{"id": "b", "text": "beta", "meta": {"year": 2021}}\n'
    )
    code, summary = _run(capsys, "index", str(corpus), "--index", index, "--model", str(tiny_model_dir), "--json")
    assert (summary["indexed"], summary["unchanged"]) == (1, 1)
    code, found = _run(capsys, "search", "--index", index, "--text", "alpha", "--filter", "year=2021", "--json")
    assert sorted(r["id"] for r in found["results"]) == ["a", "b"]
