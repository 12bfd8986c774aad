"""Images for the Haystack components: `meta["file_path"]` (optionally confined to a root folder) or a
`ByteStream` blob, turned into a PIL image by the image loaders registered through the plugin layer.

Path confinement is checked here, before any loader sees the path: a `file_path` that resolves
(symlinks included) outside `root_path` is refused, so documents cannot make the embedder read
arbitrary files.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from haystack.dataclasses import ByteStream, ImageContent
from PIL import Image


class DocumentImageError(ValueError):
    """An image path that is refused (outside `root_path`, empty, a URL under a root); loaders raise
    `ret2_plugin.processing.images.ImageLoadError` (also a ValueError) for unreadable images."""


def _is_url(value: str) -> bool:
    return "://" in value and value.split("://", 1)[0].lower() in {"http", "https"}


def resolve_file_path(file_path: str | Path, root_path: str | Path | None = None) -> str:
    """The path (or URL, or `data:` URI) a loader should open. With `root_path`, relative paths are
    joined to it and any result outside it is refused (`ret2_plugin.processing.images.confine`, the one
    confinement rule); URLs are refused too (they do not live under a root). `data:` URIs carry the
    image itself and touch no file, so they pass (decoded, size-capped, by the bytes loader)."""
    raw = str(file_path)
    if not raw:
        raise DocumentImageError("empty file_path")
    if raw.startswith("data:"):
        return raw
    if _is_url(raw):
        if root_path is not None:
            raise DocumentImageError(f"{raw!r}: URLs are not allowed when root_path is set")
        return raw
    if root_path is None:
        return str(Path(raw).expanduser())
    from ret2_plugin.processing.images import ImageLoadError, confine

    try:
        return str(confine(raw, root_path, what="root_path"))
    except ImageLoadError as exc:
        raise DocumentImageError(
            f"{raw!r}: {exc.reason} (resolves outside root_path)"
            if "escapes" in exc.reason
            else f"{raw!r}: {exc.reason}"
        ) from exc


def load_image(source: Any) -> Image.Image:
    """A PIL image from a path, URL, bytes or `ByteStream`, through the image loaders registered by the
    plugin layer (plugins first, built-ins last). Raises `ImageLoadError` naming the source and reason."""
    from ret2_plugin.processing.images import load_image as load_with_plugins  # lazy: keeps component import light

    return load_with_plugins(source)


def as_pil(image: Any) -> Image.Image:
    """A query image given as PIL image, path, `ByteStream` or Haystack `ImageContent` (base64) (no root
    confinement: the caller chose it)."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, ImageContent):
        image = ByteStream(data=base64.b64decode(image.base64_image), mime_type=image.mime_type)
    if isinstance(image, Path):
        image = str(image)
    if isinstance(image, str):
        image = resolve_file_path(image)
    return load_image(image)
