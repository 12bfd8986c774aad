"""Fast path for the Hugging Face Pillow image processors we use (CLIP, ViT): the same tensor, less work.

`CLIPImageProcessorPil` / `ViTImageProcessorPil` convert every image PIL -> numpy -> PIL around the
resize, rescale in float64 and normalise with transposes, one image at a time. Here the image stays a
PIL image through the processor's own convert-to-RGB, the same `Image.resize` (same filter, same size rounding)
and a PIL crop at the same offsets (zero fill where the crop is larger, as numpy padding does); then
one lookup table maps each uint8 value to exactly the float32 that rescale + normalise would compute,
written straight into a channels-first batch. The result is bit-identical to the processor's.

Any processor class or option this does not implement (subclasses, `do_pad`, `longest_edge` /
`max_height` sizes, non-PIL resample values, non-RGB images without `do_convert_rgb`, ...) returns
`None` and the caller runs the Hugging Face processor itself.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

_PIL_FILTERS = {int(f) for f in Image.Resampling}


@dataclass(frozen=True)
class _Plan:
    convert_rgb: bool
    shortest_edge: int | None  # resize the short side to this (long side: int(edge * long / short))
    fixed: tuple[int, int] | None  # or resize to (height, width)
    resample: int
    crop: tuple[int, int] | None  # center crop (height, width)
    lut: np.ndarray  # [3, 256] float32: uint8 value -> rescaled + normalised value, per channel


def _supported_classes() -> tuple[type, ...]:
    classes: list[type] = []
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        classes.append(CLIPImageProcessorPil)
    except ImportError:
        pass
    try:
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

        classes.append(ViTImageProcessorPil)
    except ImportError:
        pass
    return tuple(classes)


def _per_channel(value: Any) -> list[Any] | None:
    """Mean / std as `np_normalize` reads them: a collection of 3, or one number for every channel."""
    if isinstance(value, Collection):
        return list(value) if len(value) == 3 else None
    return [value] * 3


def _lut(options: dict[str, Any]) -> np.ndarray | None:
    """What `np_rescale` then `np_normalize` turn each uint8 value into, same operations, same dtypes."""
    do_rescale, do_normalize = bool(options.get("do_rescale")), bool(options.get("do_normalize"))
    if not (do_rescale or do_normalize):
        return None  # the processor would return uint8 pixels
    values = np.arange(256, dtype=np.uint8)
    x = (
        (values.astype(np.float64) * options["rescale_factor"]).astype(np.float32)
        if do_rescale
        else values.astype(np.float32)
    )
    if not do_normalize:
        return np.ascontiguousarray(np.broadcast_to(x, (3, 256)))
    mean, std = _per_channel(options.get("image_mean")), _per_channel(options.get("image_std"))
    if mean is None or std is None:
        return None
    mean32, std32 = np.array(mean, dtype=np.float32), np.array(std, dtype=np.float32)
    return np.ascontiguousarray((x[None, :] - mean32[:, None]) / std32[:, None])


def plan_for(image_processor: Any) -> _Plan | None:
    """The fast path's plan for this processor's current settings, or None where it does not apply."""
    if type(image_processor) not in _supported_classes():
        return None
    try:  # the options exactly as `preprocess` resolves and validates them
        options = {name: getattr(image_processor, name, None) for name in image_processor._valid_kwargs_names}
        options = image_processor._standardize_kwargs(**options)
        image_processor._validate_preprocess_kwargs(**options)
    except Exception:  # noqa: BLE001 - the Hugging Face call reports it
        return None
    if options.get("do_pad") or options.get("input_data_format") is not None or options.get("device") is not None:
        return None
    if options.get("data_format") not in (None, "channels_first"):
        return None
    shortest_edge = fixed = None
    resample = 0
    if options.get("do_resize"):
        size = options.get("size")
        if (
            size is None
            or (size.shortest_edge and size.longest_edge)
            or (not size.shortest_edge and size.max_height and size.max_width)
        ):
            return None
        if size.shortest_edge:
            shortest_edge = int(size.shortest_edge)
        elif size.height and size.width:
            fixed = (int(size.height), int(size.width))
        else:
            return None
        resample = options.get("resample")
        resample = Image.Resampling.BILINEAR if resample is None else resample
        if not isinstance(resample, int) or isinstance(resample, bool) or int(resample) not in _PIL_FILTERS:
            return None
    crop = None
    if options.get("do_center_crop"):
        crop_size = options.get("crop_size")
        if crop_size is None or not (crop_size.height and crop_size.width):
            return None
        crop = (int(crop_size.height), int(crop_size.width))
    lut = _lut(options)
    if lut is None:
        return None
    return _Plan(bool(options.get("do_convert_rgb")), shortest_edge, fixed, int(resample), crop, lut)


def _to_rgb(image: Image.Image, image_processor: Any) -> Image.Image:
    """The processor's own `convert_to_rgb`, whose meaning depends on the transformers version (5.21+
    composites transparency onto white, 5.18-5.20 drop it); a plain RGB image comes back unchanged from all."""
    if image.mode == "RGB" and image.info.get("transparency") is None:
        return image  # RGB -> RGB would only copy
    converted = image_processor.convert_to_rgb(image)  # a PIL image, or an (H, W, 3) uint8 array (later 5.x)
    return converted if isinstance(converted, Image.Image) else Image.fromarray(np.asarray(converted))


def _resized_size(plan: _Plan, width: int, height: int) -> tuple[int, int] | None:
    """(width, height) after the resize, rounded as `get_resize_output_image_size` (default_to_square=False)."""
    if plan.fixed is not None:
        return plan.fixed[1], plan.fixed[0]
    if plan.shortest_edge is None:
        return None
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(plan.shortest_edge * long / short)
    return (plan.shortest_edge, new_long) if width <= height else (new_long, plan.shortest_edge)


def _prepare(image: Image.Image, plan: _Plan, image_processor: Any) -> Image.Image | None:
    if plan.convert_rgb:
        image = _to_rgb(image, image_processor)
    elif image.mode != "RGB":
        return None  # the processor would keep the raw channels: let it decide
    size = _resized_size(plan, *image.size)
    if size is not None:
        image = image.resize(size, resample=plan.resample)
    if plan.crop is not None:
        crop_h, crop_w = plan.crop
        top, left = (image.height - crop_h) // 2, (image.width - crop_w) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
    return image


def fast_pixel_values(image_processor: Any, images: Sequence[Image.Image]) -> torch.Tensor | None:
    """`image_processor(images, return_tensors="pt")["pixel_values"]`, computed faster; None where the
    fast path does not apply (the caller then runs the processor)."""
    if not images or not all(isinstance(image, Image.Image) for image in images):
        return None
    plan = plan_for(image_processor)
    if plan is None:
        return None
    prepared = []
    for image in images:
        done = _prepare(image, plan, image_processor)
        if done is None:
            return None
        prepared.append(np.asarray(done))
    height, width = prepared[0].shape[:2]
    if any(array.shape != (height, width, 3) for array in prepared):
        return None  # mixed sizes cannot be stacked: the processor raises its own error
    out = np.empty((len(prepared), 3, height, width), dtype=np.float32)
    for i, array in enumerate(prepared):
        for channel in range(3):
            np.take(plan.lut[channel], array[..., channel], out=out[i, channel], mode="clip")
    return torch.from_numpy(out)
