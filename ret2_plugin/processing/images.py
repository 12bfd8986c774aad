"""Image loading with validation: every failure names the source and the reason.

Built-in loaders (files, bytes, URLs) are registered as plugins; `load_image` tries plugin loaders
first. Decompression bombs are refused (Pillow's limit, raised to an error), truncated files are not
silently padded, and with `root` set a path must stay inside it.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
MAX_DATA_URI_BYTES = 32 * 1024 * 1024  # decoded size cap of a data: URI image
ALLOW_NETWORK_ENV = "RET2_ALLOW_NETWORK"


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the source and the reason."""

    def __init__(self, source: Any, reason: str) -> None:
        self.source, self.reason = _describe(source), reason
        super().__init__(f"image {self.source}: {reason}")


def _describe(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return repr(str(source))
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def confine(path: str | Path, root: str | Path | None, *, what: str = "the image root") -> Path:
    """THE path-confinement rule (used by the encoder, `ret2 index --image-root` and the Haystack
    components): relative paths are joined to `root`, symlinks are resolved, and anything that ends up
    outside `root` is refused with `ImageLoadError`. Without a root the path is returned unchanged."""
    path = Path(path)
    if root is None:
        return path
    try:
        root_resolved = Path(root).expanduser().resolve()
        resolved = (root_resolved / path).resolve() if not path.is_absolute() else path.resolve()
    except (OSError, RuntimeError) as exc:  # too-long names, symlink loops
        raise ImageLoadError(path, f"path cannot be resolved: {exc}") from exc
    if not resolved.is_relative_to(root_resolved):
        raise ImageLoadError(path, f"path escapes {what} {str(root_resolved)!r}; refused")
    return resolved


def decode_data_uri(uri: str, *, max_bytes: int | None = None) -> bytes:
    """`data:image/<type>;base64,<payload>` -> the image bytes, refusing anything else, malformed
    base64 and payloads over `max_bytes` (default `MAX_DATA_URI_BYTES`) before decoding them."""
    limit = MAX_DATA_URI_BYTES if max_bytes is None else max_bytes
    shown = uri[:40] + "..." if len(uri) > 40 else uri
    header, sep, payload = uri.partition(",")
    if not sep or not header.lower().startswith("data:image/") or not header.lower().endswith(";base64"):
        raise ImageLoadError(shown, "only base64 'data:image/...;base64,' URIs are supported")
    if len(payload) * 3 // 4 > limit:
        raise ImageLoadError(shown, f"data URI carries more than {limit} bytes (about {len(payload) * 3 // 4})")
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageLoadError(shown, f"malformed base64 data in the data URI: {exc}") from exc
    if not data:
        raise ImageLoadError(shown, "the data URI carries no image data")
    return data


def _decode(data: io.BytesIO | Path, source: Any) -> Image.Image:
    """Decode and validate. The pixel limit is checked on the header, before any decoding (no
    process-wide warning filters: this runs on decoding threads)."""
    limit = Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS
    try:
        with Image.open(data) as img:
            if img.width * img.height > limit:
                raise ImageLoadError(source, f"larger than the decompression-bomb limit ({img.width}x{img.height} > {limit} pixels)")
            img.load()
            return img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(source, f"larger than the decompression-bomb limit ({limit} pixels): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(source, "not an image (unrecognised format)") from exc
    except OSError as exc:
        raise ImageLoadError(source, f"unreadable or truncated image: {exc}") from exc


def load_local_image(source: Any, root: str | Path | None = None) -> Image.Image | None:
    """Plugin loader for local paths (str / Path that are not URLs)."""
    if isinstance(source, Path) or (isinstance(source, str) and not source.startswith(("http://", "https://", "data:"))):
        path = confine(source, root)
        try:
            if not path.is_file():
                raise ImageLoadError(source, "file not found")
        except OSError as exc:  # e.g. a name over 255 bytes
            raise ImageLoadError(source, f"unusable path: {exc.strerror or exc}") from exc
        return _decode(path, source)
    return None


def load_image_bytes(source: Any, root: str | Path | None = None) -> Image.Image | None:
    """Plugin loader for raw bytes, Haystack `ByteStream`-like objects (`.data`) and
    `data:image/...;base64,` URIs (size-capped, see `decode_data_uri`)."""
    if isinstance(source, str) and source.startswith("data:"):
        return _decode(io.BytesIO(decode_data_uri(source)), source[:40] + "...")
    data = getattr(source, "data", source)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _decode(io.BytesIO(bytes(data)), source)
    return None


def load_url_image(source: Any, root: str | Path | None = None) -> Image.Image | None:
    """Plugin loader for http(s) URLs; refused unless RET2_ALLOW_NETWORK=1 (offline by default)."""
    if not (isinstance(source, str) and source.startswith(("http://", "https://"))):
        return None
    if os.environ.get(ALLOW_NETWORK_ENV) != "1":
        raise ImageLoadError(source, f"URL images need network use enabled ({ALLOW_NETWORK_ENV}=1)")
    import urllib.request

    try:
        with urllib.request.urlopen(source, timeout=30) as response:  # noqa: S310 (http/https only)
            return _decode(io.BytesIO(response.read()), source)
    except OSError as exc:
        raise ImageLoadError(source, f"download failed: {exc}") from exc


def _takes_root(loader: Any) -> bool:
    try:
        parameters = inspect.signature(loader).parameters
    except (TypeError, ValueError):
        return False
    return "root" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def load_image(source: Any, *, root: str | Path | None = None) -> Image.Image:
    """PIL images and numpy arrays pass through (as RGB); anything else goes through the registered
    image loaders (plugins first). Raises `ImageLoadError`."""
    if isinstance(source, Image.Image):
        return source if source.mode == "RGB" else source.convert("RGB")
    if isinstance(source, np.ndarray):
        try:
            return Image.fromarray(source).convert("RGB")
        except (TypeError, ValueError) as exc:
            raise ImageLoadError(source, f"array of shape {source.shape} / {source.dtype} is not an image") from exc
    from ret2_plugin.plugins import image_loaders

    for loader in image_loaders():
        image = loader(source, root=root) if _takes_root(loader) else loader(source)
        if image is not None:
            return image
    raise ImageLoadError(source, "no image loader understands this source")
