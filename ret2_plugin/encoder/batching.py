"""Turn a batch of `Item`s into model inputs with image decoding + preprocessing off the main thread.

Decoding JPEGs and resizing/normalising pixels is mostly GIL-free work (Pillow, numpy), so a small
thread pool spreads it across cores while the caller's thread tokenizes. Used by the
sentence-transformers module (`ReT2Encoder.preprocess`) and by the streaming API.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ret2_plugin.items import Item, Side
from ret2_plugin.processing import ImageLoadError, ReT2Processor
from ret2_plugin.processing.images import load_image, target_size


def default_workers() -> int:
    """Image threads: one per core, at most 8 (decode work saturates memory bandwidth beyond that)."""
    return max(1, min(8, os.cpu_count() or 1))


def _chunks(n: int, parts: int) -> list[range]:
    parts = max(1, min(parts, n))
    step = -(-n // parts)
    return [range(i, min(i + step, n)) for i in range(0, n, step)]


def decode_images(
    items: Sequence[Item],
    *,
    root: str | Path | None = None,
    executor: Executor | None = None,
    workers: int = 1,
    target: tuple[int, int] | None = None,
    fast: bool = False,
) -> list[Image.Image | None | ImageLoadError]:
    """Decode every item's image; a failure is returned in place (an `ImageLoadError`), not raised.
    With `target` (`processing.images.target_size` of the image processor) huge images are reduced
    towards the model resolution as they are read, so memory does not grow with source resolution;
    `fast`: JPEGs decode at the DCT scale nearest to `target` (`image_decode="fast"`)."""

    def one(item: Item) -> Image.Image | None | ImageLoadError:
        if not item.has_image:
            return None
        try:
            return load_image(item.image, root=root, target=target, fast=fast)
        except ImageLoadError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - any loader failure (plugins too) is this item's error
            return ImageLoadError(item.image, f"{type(exc).__name__}: {exc}")

    if executor is None or workers <= 1 or sum(item.has_image for item in items) <= 1:
        return [one(item) for item in items]
    from ret2_plugin.plugins import load_plugins

    load_plugins()  # register the image loaders before the pool threads look them up
    return list(executor.map(one, items))


def prepare_batch(
    processor: ReT2Processor,
    items: Sequence[Item],
    side: Side,
    *,
    images: Sequence[Image.Image | None] | None = None,
    executor: Executor | None = None,
    workers: int = 1,
    root: str | Path | None = None,
    fast_decode: bool = False,
) -> dict[str, Any]:
    """Model inputs for `items`; raises the first `ImageLoadError` (naming the input position).
    `fast_decode`: see `decode_images(fast=)`."""
    if images is None:
        target = target_size(processor.image_processor)
        decoded = decode_images(items, root=root, executor=executor, workers=workers, target=target, fast=fast_decode)
        for position, image in enumerate(decoded):
            if isinstance(image, ImageLoadError):
                raise ImageLoadError(items[position].image, f"{image.reason} (batch position {position})") from image
        images = decoded  # type: ignore[assignment]
    texts = [processor.text_of(item, side) for item in items]
    present = [i for i, img in enumerate(images) if img is not None]
    chunks = _chunks(len(present), workers) if present else []
    if executor is not None and workers > 1 and len(present) > 1:
        # pixel chunks run on the pool while this thread tokenizes
        futures = [executor.submit(processor.pixel_values, [images[present[i]] for i in chunk]) for chunk in chunks]
        batch = processor.tokenize(texts)
        real = torch.cat([f.result() for f in futures])
    else:
        batch = processor.tokenize(texts)
        real = processor.pixel_values([images[i] for i in present]) if present else None
    batch["pixel_values"] = _fill(processor, real, present, len(items))
    batch["text_mask"] = torch.tensor([1.0 if t else 0.0 for t in texts])
    batch["image_mask"] = torch.tensor([0.0 if img is None else 1.0 for img in images])
    return batch


_PLACEHOLDERS: weakref.WeakKeyDictionary[Any, torch.Tensor] = weakref.WeakKeyDictionary()


def _placeholder(processor: ReT2Processor) -> torch.Tensor:
    """The processed black placeholder of an item without image: the same for every item, so computed once."""
    cached = _PLACEHOLDERS.get(processor)
    if cached is None:
        cached = processor.pixel_values([None])[0]
        _PLACEHOLDERS[processor] = cached
    return cached


def _fill(processor: ReT2Processor, real: torch.Tensor | None, present: list[int], n: int) -> torch.Tensor:
    """`[n, C, H, W]` pixels: processed images where present, the cached placeholder elsewhere."""
    placeholder = _placeholder(processor)
    if real is not None and len(present) == n:
        return real
    out = placeholder.unsqueeze(0).repeat(n, *([1] * placeholder.ndim))
    if real is not None:
        out[torch.tensor(present)] = real.to(out.dtype)
    return out


class LazyPool:
    """A thread pool created on first use (once, even under concurrent callers) and dropped when
    pickled (multi-process encoding)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor | None:
        if self.workers <= 1:
            return None
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="ret2-images")
        return self._executor

    def shutdown(self) -> None:
        """Stop the pool's threads (queued work is cancelled); a later use starts a new pool."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"workers": self.workers, "_executor": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
