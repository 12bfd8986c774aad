"""Early reduction of huge images: ordinary images stay bit-identical, huge ones keep >= 4x the model
resolution and stay within the documented tolerance of full-resolution preprocessing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ret2_plugin.processing import images
from ret2_plugin.processing.images import (
    REDUCE_ABOVE_PIXELS,
    REDUCE_MARGIN,
    _PixelBudget,
    decode_image,
    load_image,
    reduction_factor,
    target_size,
)

pytestmark = pytest.mark.unit
CLIP = (224, 224)
HUGE_TOLERANCE = 0.1  # max |difference| of CLIP-normalised pixel values (~6/255), huge images only (README)


def _photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus texture: closer to a photo than a flat colour (which any filter preserves)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    base = np.stack([255 * x * np.ones_like(y), 255 * y * np.ones_like(x), 128 + 100 * np.sin(12 * x + 7 * y)], axis=-1)
    small = rng.normal(0, 30, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    texture = (
        np.asarray(
            Image.fromarray(np.clip(small + 128, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR),
            np.float32,
        )
        - 128
    )
    return Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8))


def _clip_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor()  # shortest edge 224, bicubic, center crop 224 (the official ReT preprocessing)


def test_target_size_reads_the_image_processor() -> None:
    from transformers import ViTImageProcessor

    assert target_size(_clip_processor()) == (224, 224)
    assert target_size(ViTImageProcessor(size={"height": 48, "width": 64})) == (64, 48)
    assert target_size(object()) is None


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080), (4096, 4096), (4000, 300)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_ordinary_images_are_decoded_bit_identically(tmp_path: Path, size, fmt: str) -> None:
    path = tmp_path / f"img.{fmt.lower()}"
    _photo_like(*size).save(path, format=fmt)
    assert reduction_factor(*size, CLIP) == 1
    with Image.open(path) as plain:
        expected = np.asarray(plain.convert("RGB"))
    np.testing.assert_array_equal(np.asarray(decode_image(path, target=CLIP)), expected)
    np.testing.assert_array_equal(np.asarray(load_image(str(path), target=CLIP)), expected)


def test_ordinary_images_give_identical_pixel_values(tmp_path: Path) -> None:
    from ret2_plugin.processing.fast_pixels import fast_pixel_values

    processor = _clip_processor()
    path = tmp_path / "photo.jpg"
    _photo_like(1600, 1200).save(path, quality=90)
    with Image.open(path) as plain:
        reference = processor(images=[plain.convert("RGB")], return_tensors="pt")["pixel_values"]
    ours = fast_pixel_values(processor, [load_image(str(path), target=target_size(processor))])
    assert ours is not None
    assert np.array_equal(ours.numpy(), reference.numpy())


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_huge_images_are_reduced_but_keep_four_times_the_model_size(tmp_path: Path, fmt: str) -> None:
    width, height = 6000, 3500
    assert width * height > REDUCE_ABOVE_PIXELS
    path = tmp_path / f"huge.{fmt.lower()}"
    source = _photo_like(width, height)
    source.save(path, format=fmt, quality=95)
    reduced = decode_image(path, target=CLIP)
    assert reduced.mode == "RGB"
    assert reduced.width < width and reduced.height < height
    assert min(reduced.size) >= REDUCE_MARGIN * 224  # still far above the model's input
    processor = _clip_processor()
    full = processor(images=[source], return_tensors="np")["pixel_values"]
    small = processor(images=[reduced], return_tensors="np")["pixel_values"]
    assert full.shape == small.shape
    difference = np.abs(full - small)
    assert difference.max() < HUGE_TOLERANCE and difference.mean() < 0.015


def test_huge_palette_and_alpha_images_are_reduced_too(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    _photo_like(5000, 4000).convert("P", palette=Image.ADAPTIVE).save(path)
    assert decode_image(path, target=CLIP).size == (1250, 1000)
    rgba = _photo_like(5000, 4000).convert("RGBA")
    assert load_image(rgba, target=CLIP).size == (1250, 1000) and load_image(rgba).size == (5000, 4000)


def test_pixel_cap_still_refuses_bombs_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (3000, 3000)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(images.ImageLoadError, match="decompression-bomb limit"):
        decode_image(path, target=CLIP)


def test_pixel_budget_bounds_full_resolution_decodes_in_flight() -> None:
    budget = _PixelBudget(100)
    lock = threading.Lock()
    live: list[int] = []
    seen: list[list[int]] = []

    def work(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                live.append(pixels)
                seen.append(list(live))
            time.sleep(0.02)
            with lock:
                live.remove(pixels)

    threads = [threading.Thread(target=work, args=(60,)) for _ in range(6)] + [
        threading.Thread(target=work, args=(150,))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 7
    assert all(sum(held) <= 100 or len(held) == 1 for held in seen), seen  # over budget only alone
    assert budget.used == 0
