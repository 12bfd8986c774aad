"""Per-item errors and data: URIs in the Python API and the Haystack document embedder: one bad item
(too-long name, bad data URI, unreadable file) is reported with the reason, the rest is encoded."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from haystack import Document

from ret2_plugin.encoder import iter_embeddings
from ret2_plugin.encoder.inputs import to_item
from ret2_plugin.items import Item

pytestmark = pytest.mark.unit
LONG = "x" * 300 + ".png"  # one path component over 255 bytes: ENAMETOOLONG from the OS


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_data_uri_encodes_like_the_file(st_model, image_dir: Path) -> None:
    path = image_dir / "gradient.png"
    by_path = st_model.encode_document([str(path), {"text": "a gradient", "image": str(path)}])
    by_uri = st_model.encode_document([_data_uri(path), {"text": "a gradient", "image": _data_uri(path)}])
    np.testing.assert_allclose(by_uri, by_path, atol=1e-6)


def test_long_strings_are_never_an_os_error(st_model) -> None:
    with pytest.raises(ValueError, match="not found"):  # a mistyped path, not an OSError from the file system
        to_item(LONG)
    sentence = "see " + LONG
    assert to_item(sentence).text == sentence
    assert st_model.encode([sentence]).shape[0] == 1


def test_streaming_reports_bad_items_and_encodes_the_rest(st_model, image_dir: Path, monkeypatch) -> None:
    from ret2_plugin.processing import images

    monkeypatch.setattr(images, "MAX_DATA_URI_BYTES", 64)
    items = [
        Item(id="long", image=LONG),
        Item(id="ok", text="a red tile", image=str(image_dir / "red.png")),
        Item(id="big-uri", image=_data_uri(image_dir / "gradient.png")),
        Item(id="bad-uri", image="data:image/png;base64,%%%"),
        Item(id="folder", image=str(image_dir)),
        Item(id="text", text="just words"),
    ]
    good, errors = [], {}
    for batch in iter_embeddings(st_model, items, batch_size=4):
        good += [item.id for item in batch.items]
        errors.update({item.id: reason for item, reason in batch.errors})
    assert good == ["ok", "text"]
    assert "File name too long" in errors["long"]
    assert "more than 64 bytes" in errors["big-uri"]
    assert "malformed base64" in errors["bad-uri"]
    assert "file not found" in errors["folder"]


def test_content_hash_failures_are_value_errors_with_the_reason(tmp_path: Path, image_dir: Path) -> None:
    with pytest.raises(ValueError, match="cannot read image .* to hash it: File name too long"):
        Item(id="x", image=str(tmp_path / LONG)).content_hash()
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "red.png").write_bytes((image_dir / "red.png").read_bytes())
    here = Item(id="r", image=str(image_dir / "red.png")).content_hash(image_dir)
    there = Item(id="r", image=str(moved / "red.png")).content_hash(moved)
    assert here == there  # relative to the corpus root: where the corpus lives does not matter
    assert Item(id="r", image=str(image_dir / "red.png")).content_hash() != here


def test_haystack_document_embedder_takes_data_uris_under_a_root(
    tiny_model_dir: Path, image_dir: Path, st_model
) -> None:
    from haystack_integrations.components.embedders.ret2 import ReT2DocumentEmbedder

    embedder = ReT2DocumentEmbedder(
        model=str(tiny_model_dir), device="cpu", root_path=str(image_dir), progress_bar=False
    )
    docs = [
        Document(id="uri", meta={"file_path": _data_uri(image_dir / "blue.png")}),
        Document(id="file", meta={"file_path": "blue.png"}),
        Document(id="bad", meta={"file_path": "data:image/png;base64,@@"}),
        Document(id="long", meta={"file_path": LONG}),
    ]
    result = embedder.run(docs)
    embedded = {d.id: np.asarray(d.embedding) for d in result["documents"]}
    failed = {d.id: d.meta["embedding_error"] for d in result["failed_documents"]}
    assert set(embedded) == {"uri", "file"} and set(failed) == {"bad", "long"}
    np.testing.assert_allclose(embedded["uri"], embedded["file"], atol=1e-6)
    assert "malformed base64" in failed["bad"]
