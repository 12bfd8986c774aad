"""The pixel fast path computes the Hugging Face processor's tensor, and steps aside where it cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, ViTImageProcessor

from ret2_plugin.presets import clip_image_processor
from ret2_plugin.processing import ReT2Processor
from ret2_plugin.processing.fast_pixels import fast_pixel_values

pytestmark = pytest.mark.unit

SIZES = [(640, 480), (480, 640), (33, 17), (17, 33), (1, 1), (300, 2), (2, 300), (224, 224), (225, 223)]


def _rgb(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")


def _images(seed: int, *, rgb_only: bool = False) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    images = [_rgb(rng, size) for size in SIZES]
    if rgb_only:
        return images
    rgba = Image.fromarray(rng.integers(0, 256, size=(50, 70, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 256, size=(40, 90), dtype=np.uint8), "L")
    palette = _rgb(rng, (61, 29)).quantize(16)
    transparent = palette.copy()
    transparent.info["transparency"] = 3
    la = Image.fromarray(rng.integers(0, 256, size=(31, 31, 2), dtype=np.uint8), "LA")
    return images + [rgba, gray, palette, transparent, la, Image.new("RGB", (336, 336), "black")]


def _hf(image_processor, images) -> torch.Tensor:
    return image_processor(images, return_tensors="pt")["pixel_values"]


def _assert_same(image_processor, images) -> None:
    expected = _hf(image_processor, images)
    fast = fast_pixel_values(image_processor, images)
    assert fast is not None, "the fast path should apply to this processor"
    assert fast.shape == expected.shape and fast.dtype == expected.dtype
    assert float((fast - expected).abs().max()) <= 1e-6


@pytest.mark.parametrize(
    "make",
    [
        lambda: clip_image_processor(32),
        lambda: clip_image_processor(224),  # default OpenAI CLIP mean / std
        lambda: CLIPImageProcessor(
            size={"shortest_edge": 20}, crop_size={"height": 32, "width": 24}
        ),  # crop > image: zero fill
        lambda: CLIPImageProcessor(
            size={"shortest_edge": 40}, crop_size={"height": 40, "width": 40}, resample=Image.Resampling.LANCZOS
        ),
        lambda: CLIPImageProcessor(
            size={"shortest_edge": 40}, crop_size={"height": 40, "width": 40}, do_normalize=False
        ),
    ],
)
def test_clip_fast_path_matches_processor(make) -> None:
    _assert_same(make(), _images(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ViTImageProcessor(
            size={"height": 48, "width": 48}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        ),  # the starter's
        lambda: ViTImageProcessor(size={"height": 30, "width": 50}),
        lambda: ViTImageProcessor(
            size={"height": 48, "width": 48}, do_convert_rgb=True, resample=Image.Resampling.NEAREST
        ),
    ],
)
def test_vit_fast_path_matches_processor(make) -> None:
    image_processor = make()
    _assert_same(image_processor, _images(1, rgb_only=not image_processor.do_convert_rgb))
    if image_processor.do_convert_rgb:
        _assert_same(image_processor, _images(2))


def test_processor_pixel_values_uses_the_same_tensor() -> None:
    image_processor = clip_image_processor(32)
    processor = ReT2Processor(None, image_processor)
    images = _images(3)[:4]
    got = processor.pixel_values([images[0], None, images[1]])
    expected = _hf(image_processor, [images[0], Image.new("RGB", (336, 336), "black"), images[1]])
    assert torch.equal(got, expected)


class _Subclass(type(clip_image_processor(32))):
    pass


def _padded() -> object:
    image_processor = clip_image_processor(32)
    image_processor.do_center_crop = False
    image_processor.do_pad = True
    image_processor.pad_size = {"height": 80, "width": 80}
    return image_processor


def _longest_edge() -> object:
    image_processor = clip_image_processor(32)
    image_processor.size = {"shortest_edge": 32, "longest_edge": 40}
    return image_processor


def _no_rgb_conversion() -> object:
    image_processor = clip_image_processor(32)
    image_processor.do_convert_rgb = False
    return image_processor


@pytest.mark.parametrize(
    ("make", "images"),
    [
        (_padded, _images(4, rgb_only=True)[:3]),
        (_longest_edge, _images(5, rgb_only=True)[:3]),
        (lambda: _Subclass(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), _images(6)[:3]),
        (_no_rgb_conversion, [Image.new("L", (40, 40), 7)]),
    ],
    ids=["do_pad", "longest_edge", "subclass", "no_rgb_conversion_gray"],
)
def test_unsupported_options_fall_back_to_the_processor(make, images) -> None:
    image_processor = make()
    assert fast_pixel_values(image_processor, images) is None
    processor = ReT2Processor(None, image_processor)
    try:
        expected = _hf(image_processor, images)
    except Exception as exc:  # noqa: BLE001 - the processor's own error must surface unchanged
        with pytest.raises(type(exc)):
            processor.pixel_values(images)
        return
    assert torch.equal(processor.pixel_values(images), expected)
