"""Processing: CLIP tokenizer offline, masks and placeholders, image validation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ret2_plugin.items import Item
from ret2_plugin.presets import clip_image_processor
from ret2_plugin.processing import ImageLoadError, ReT2Processor, clip_tokenizer, load_image

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def processor() -> ReT2Processor:
    return ReT2Processor(clip_tokenizer(), clip_image_processor(32))


def test_clip_tokenizer_reproduces_clip_ids() -> None:
    ids = clip_tokenizer()(["a photo of a cat"])["input_ids"][0]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]  # OpenAI CLIP's ids for this sentence
    long = clip_tokenizer()(["word " * 200], truncation=True)["input_ids"][0]
    assert len(long) == 77 and long[-1] == 49407


def test_masks_placeholder_and_instruction(processor: ReT2Processor) -> None:
    items = [
        Item(text="cat", instruction="Find the image."),
        Item(image=Image.new("RGB", (10, 10), "white")),
        Item(text="dog", image=Image.new("RGB", (10, 10), "white")),
    ]
    batch = processor(items, side="query")
    assert batch["text_mask"].tolist() == [1.0, 0.0, 1.0]
    assert batch["image_mask"].tolist() == [0.0, 1.0, 1.0]
    black = processor.pixel_values([Image.new("RGB", (336, 336), "black")])
    assert np.allclose(batch["pixel_values"][0].numpy(), black[0].numpy())
    tok = processor.tokenizer

    def ids(row) -> list[int]:
        return [int(t) for t, keep in zip(row[0], row[1]) if keep]

    assert ids((batch["input_ids"][0], batch["attention_mask"][0])) == tok(["Find the image. cat"])["input_ids"][0]
    doc = processor(items[:1], side="document")
    assert ids((doc["input_ids"][0], doc["attention_mask"][0])) == tok(["cat"])["input_ids"][0]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_image_errors_name_the_source_and_reason(tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(png, format="PNG")
    good = _write(tmp_path / "good.png", png.getvalue())
    truncated = _write(tmp_path / "truncated.png", png.getvalue()[: len(png.getvalue()) // 2])
    not_image = _write(tmp_path / "notes.png", b"this is text, not pixels")
    assert load_image(str(good)).size == (64, 64)
    cases = {
        str(tmp_path / "missing.png"): "file not found",
        str(truncated): "truncated",
        str(not_image): "not an image",
    }
    for source, reason in cases.items():
        with pytest.raises(ImageLoadError, match=reason) as err:
            load_image(source)
        assert Path(source).name in str(err.value)


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    with pytest.raises(ImageLoadError, match="decompression-bomb"):
        load_image(str(path))


def test_root_confines_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "in.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "out.png")
    assert load_image("in.png", root=root).size == (4, 4)
    with pytest.raises(ImageLoadError, match="escapes the image root"):
        load_image("../out.png", root=root)
    with pytest.raises(ImageLoadError, match="escapes the image root"):
        load_image(str(tmp_path / "out.png"), root=root)


def test_bytes_arrays_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (5, 6), "blue").save(buf, format="JPEG")
    assert load_image(buf.getvalue()).size == (5, 6)
    assert load_image(np.zeros((7, 8, 3), dtype=np.uint8)).size == (8, 7)
    monkeypatch.delenv("RET2_ALLOW_NETWORK", raising=False)
    with pytest.raises(ImageLoadError, match="network"):
        load_image("https://example.org/cat.jpg")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(b"garbage bytes")


def test_data_uris_and_loader_errors_are_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    buf = io.BytesIO()
    Image.new("RGB", (3, 2), "red").save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    assert load_image(uri).size == (3, 2)
    with pytest.raises(ImageLoadError, match="malformed base64"):
        load_image("data:image/png;base64,@@@")

    from ret2_plugin import plugins

    def broken(source, root=None):
        raise TypeError("bug inside a plugin loader")

    monkeypatch.setattr(plugins, "image_loaders", lambda: [broken])
    with pytest.raises(TypeError, match="bug inside"):
        load_image("whatever.png")
