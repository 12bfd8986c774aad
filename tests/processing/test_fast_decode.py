"""`image_decode="fast"`: JPEGs decode at the DCT scale nearest to the model's input size. Opt-in,
never the default; other formats and small JPEGs are decoded exactly as before; the pixels stay close
to the exact path (the Recall figures live in bench/, see docs/performance.md)."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ret2_plugin.processing.images import decode_image, load_image
from tests.processing.test_reduced_decoding import CLIP, _clip_processor, _photo_like

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("size", "scale"),
    [((640, 480), 2), ((1920, 1080), 4), ((4000, 3000), 8), ((4000, 300), 1), ((300, 300), 1)],
)
def test_fast_jpegs_decode_at_the_largest_scale_that_still_covers_the_target(
    tmp_path: Path, size: tuple[int, int], scale: int
) -> None:
    path = tmp_path / "photo.jpg"
    _photo_like(*size).save(path, quality=90)
    fast = decode_image(path, target=CLIP, fast=True)
    assert fast.size == (-(-size[0] // scale), -(-size[1] // scale))
    assert fast.width >= CLIP[0] and fast.height >= CLIP[1]  # the resize after it never upsamples
    assert fast.mode == "RGB"
    exact = decode_image(path, target=CLIP)  # the default is unchanged: full size
    assert exact.size == size
    assert load_image(str(path), target=CLIP, fast=True).size == fast.size  # through the plugin loaders


def test_fast_mode_leaves_other_formats_and_grey_jpegs_usable(tmp_path: Path) -> None:
    png = tmp_path / "photo.png"
    _photo_like(640, 480).save(png)
    np.testing.assert_array_equal(
        np.asarray(decode_image(png, target=CLIP, fast=True)), np.asarray(decode_image(png, target=CLIP))
    )
    grey = tmp_path / "grey.jpg"
    _photo_like(640, 480).convert("L").save(grey, quality=90)
    image = decode_image(grey, target=CLIP, fast=True)
    assert image.mode == "RGB" and image.size == (320, 240)


def test_fast_pixel_values_have_the_exact_geometry_and_stay_close(tmp_path: Path) -> None:
    from ret2_plugin.processing.fast_pixels import fast_pixel_values

    processor = _clip_processor()
    diffs = []
    for seed, size in enumerate([(640, 480), (1024, 768), (500, 1333)]):
        path = tmp_path / f"photo{seed}.jpg"
        _photo_like(*size, seed=seed).save(path, quality=90)
        exact = fast_pixel_values(processor, [decode_image(path, target=CLIP)])
        fast = fast_pixel_values(processor, [decode_image(path, target=CLIP, fast=True)])
        assert exact is not None and fast is not None and fast.shape == exact.shape == (1, 3, 224, 224)
        diffs.append((fast - exact).abs())
    diff = torch.cat(diffs)
    assert 0 < float(diff.mean()) < 0.02  # CLIP-normalised units (1/255 of a pixel ~ 0.015); measured 0.005-0.014
    assert float(diff.max()) < 0.2  # measured 0.06-0.10


def test_huge_jpegs_keep_the_bounded_memory_path_in_fast_mode(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (5000, 4000), (10, 120, 200)).save(path, quality=80)
    fast, exact = decode_image(path, target=CLIP, fast=True), decode_image(path, target=CLIP)
    assert fast.size == exact.size  # huge sources: the same reduction (>= 4x the model size) either way
    assert min(fast.size) >= 4 * CLIP[0]


def _jpeg_items(folder: Path, target: tuple[int, int]) -> list[str]:
    paths = []
    for i in range(3):
        path = folder / f"photo{i}.jpg"
        _photo_like(4 * target[0] + 17 * i, 3 * target[1] + 5, seed=i).save(path, quality=90)
        paths.append(str(path))
    return paths


def test_encoder_fast_mode_is_opt_in_close_and_not_saved(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ret2_plugin import load_encoder
    from ret2_plugin.processing.images import target_size

    exact_model = load_encoder(tiny_model_dir, device="cpu")
    fast_model = load_encoder(tiny_model_dir, device="cpu", image_decode="fast")
    assert exact_model[0].image_decode == "exact" and fast_model[0].image_decode == "fast"
    target = target_size(exact_model[0].processor.image_processor)
    assert target is not None
    jpegs = _jpeg_items(tmp_path, target)
    png = tmp_path / "photo.png"
    _photo_like(4 * target[0], 3 * target[1]).save(png)

    exact = exact_model.encode_document(jpegs, convert_to_tensor=True)
    fast = fast_model.encode_document(jpegs, convert_to_tensor=True)
    assert not torch.equal(exact, fast)  # the JPEGs really were decoded differently
    assert float(torch.nn.functional.cosine_similarity(exact, fast).min()) > 0.99
    for inputs in ([str(png)], ["a photo of a cat"]):  # nothing to draft: identical vectors
        torch.testing.assert_close(
            fast_model.encode_document(inputs, convert_to_tensor=True),
            exact_model.encode_document(inputs, convert_to_tensor=True),
            rtol=0,
            atol=0,
        )

    # a per-machine setting like image_workers: kept by pickling (multi-process pool), not saved
    assert pickle.loads(pickle.dumps(fast_model[0])).image_decode == "fast"
    assert copy.deepcopy(fast_model)[0].image_decode == "fast"
    fast_model.save(str(tmp_path / "saved"))
    assert load_encoder(tmp_path / "saved", device="cpu")[0].image_decode == "exact"
    assert load_encoder(tmp_path / "saved", device="cpu", image_decode="fast")[0].image_decode == "fast"


def test_streaming_uses_the_encoder_decode_mode(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ret2_plugin import load_encoder
    from ret2_plugin.encoder import iter_embeddings
    from ret2_plugin.items import Item
    from ret2_plugin.processing.images import target_size

    fast_model = load_encoder(tiny_model_dir, device="cpu", image_decode="fast")
    target = target_size(fast_model[0].processor.image_processor)
    assert target is not None
    jpegs = _jpeg_items(tmp_path, target)
    streamed = torch.cat(
        [torch.as_tensor(b.embeddings) for b in iter_embeddings(fast_model, [Item(image=p) for p in jpegs])]
    )
    encoded = fast_model.encode_document(jpegs, convert_to_tensor=True)
    torch.testing.assert_close(streamed.float(), encoded.float(), rtol=0, atol=1e-6)


def test_unknown_decode_mode_is_refused_with_the_choices(tiny_model_dir: Path) -> None:
    from ret2_plugin import load_encoder

    with pytest.raises(ValueError, match="image_decode must be one of 'exact', 'fast'"):
        load_encoder(tiny_model_dir, device="cpu", image_decode="draft")
