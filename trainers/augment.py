"""Training-time image augmentation with Pillow and torch only (no torchvision).

Random resized crop (area share in `[min_scale, 1]`, aspect ratio in `[3/4, 4/3]`, resized back to the
original size), horizontal flip (probability 1/2) and colour jitter (brightness, contrast, saturation
factors in `[1 - jitter, 1 + jitter]`). Every draw comes from the `torch.Generator` passed in, which
the dataset seeds per (seed, epoch, item): augmented batches are the same after a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image, ImageEnhance, ImageOps


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


@dataclass(frozen=True)
class Augmentation:
    """Settings; `__call__(image, generator)` returns a new image of the same size and mode."""

    min_scale: float = 0.6
    flip: bool = True
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def crop_box(self, width: int, height: int, gen: torch.Generator) -> tuple[int, int, int, int]:
        """A random box covering `min_scale`..1 of the area (10 tries, then the whole image)."""
        area = width * height
        for _ in range(10):
            target = area * _uniform(gen, self.min_scale, 1.0)
            ratio = math.exp(_uniform(gen, math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < w <= width and 0 < h <= height:
                left = int(torch.randint(width - w + 1, (1,), generator=gen))
                top = int(torch.randint(height - h + 1, (1,), generator=gen))
                return left, top, left + w, top + h
        return 0, 0, width, height

    def __call__(self, image: Image.Image, gen: torch.Generator) -> Image.Image:
        mode, size = image.mode, image.size
        out = image.convert("RGB") if mode not in ("RGB", "L") else image
        if self.min_scale < 1:
            out = out.resize(size, Image.Resampling.BILINEAR, box=self.crop_box(*size, gen))
        if self.flip and float(torch.rand((), generator=gen)) < 0.5:
            out = ImageOps.mirror(out)
        if self.jitter > 0:
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                out = enhance(out).enhance(_uniform(gen, 1 - self.jitter, 1 + self.jitter))
        return out if out.mode == mode or mode not in ("RGB", "L") else out.convert(mode)
