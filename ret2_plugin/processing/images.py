"""Image loading with validation: every failure names the source and the reason.

Built-in loaders (files, bytes, URLs) are registered as plugins; `load_image` tries plugin loaders
first. Decompression bombs are refused (Pillow's limit, raised to an error), truncated files are not
silently padded, and with `root` set a path must stay inside it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import inspect
import io
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
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


# ---- early reduction: bounded memory for huge images ---------------------------------------------
REDUCE_MARGIN = 4  # a reduced image keeps at least 4x the model's input size on each axis
REDUCE_ABOVE_PIXELS = 4096 * 4096  # only sources over ~16.8 Mpx are reduced: ordinary images stay bit-identical
DECODE_BUDGET_PIXELS = 128 * 1024 * 1024  # full-resolution pixels being decoded at once, over all threads
_TARGET: ContextVar[tuple[int, int] | None] = ContextVar("ret2_decode_target", default=None)
IMAGE_DECODE_MODES = ("exact", "fast")
_FAST: ContextVar[bool] = ContextVar("ret2_fast_decode", default=False)


def check_image_decode(mode: str) -> str:
    """`mode` if it is one of `IMAGE_DECODE_MODES`, else a ValueError naming them."""
    if mode not in IMAGE_DECODE_MODES:
        raise ValueError(f"image_decode must be one of {', '.join(map(repr, IMAGE_DECODE_MODES))}, got {mode!r}")
    return mode


def target_size(image_processor: Any) -> tuple[int, int] | None:
    """(width, height) the image processor resizes to, per axis, for early reduction: a shortest-edge
    resize to S gives (S, S) (each axis ends at least at S), a fixed resize (W, H); None when unknown
    (then images are decoded at full size)."""
    if not getattr(image_processor, "do_resize", True):
        return None
    size = getattr(image_processor, "size", None)
    get = (lambda k: size.get(k)) if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    if get("shortest_edge"):
        edge = int(get("shortest_edge"))
        return edge, edge
    if get("height") and get("width"):
        return int(get("width")), int(get("height"))
    return None


def reduction_factor(width: int, height: int, target: tuple[int, int] | None) -> int:
    """The integer factor a `width` x `height` source may be shrunk by before preprocessing: 1 (none)
    unless the source has more than `REDUCE_ABOVE_PIXELS` pixels; then as large as possible while
    keeping at least `REDUCE_MARGIN` x `target` on each axis."""
    if target is None or width * height <= REDUCE_ABOVE_PIXELS:
        return 1
    return max(1, min(width // (REDUCE_MARGIN * max(1, target[0])), height // (REDUCE_MARGIN * max(1, target[1]))))


def reduced_size(width: int, height: int, factor: int, target: tuple[int, int] | None) -> tuple[int, int]:
    """The size a `width` x `height` source is shrunk to for `factor`: the short side divided by `factor`
    (rounded up) and the long side scaled by the same ratio, adjusted by at most one pixel so that a
    shortest-edge resize to `target` computes the same long side (hence the same crop) as from the
    source. Keeps the geometry of the final preprocessed image the same as without reduction."""
    portrait = height > width
    short, long = (width, height) if portrait else (height, width)
    short2 = -(-short // factor)
    long2 = round(long * short2 / short)
    if target is not None and target[0] == target[1]:
        edge = target[0]
        wanted = int(edge * long / short)
        long2 = next((c for c in (long2, long2 - 1, long2 + 1) if int(edge * c / short2) == wanted), long2)
    return (short2, long2) if portrait else (long2, short2)


def reduce_image(
    image: Image.Image, target: tuple[int, int] | None, *, source_size: tuple[int, int] | None = None
) -> Image.Image:
    """`image` shrunk towards `target` (box filter, aspect ratio kept, see `reduced_size`); unchanged
    when it is not huge. `source_size`: the original size when `image` was already draft-decoded smaller."""
    width, height = source_size or image.size
    factor = reduction_factor(width, height, target)
    if factor < 2:
        return image
    if image.mode not in ("L", "LA", "RGB", "RGBA", "RGBa", "I", "F"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    size = reduced_size(width, height, factor, target)
    return image if image.size == size else image.resize(size, Image.Resampling.BOX)


def _release_memory() -> None:
    """Return freed heap memory to the OS (glibc `malloc_trim`): Pillow allocates a huge image in 16 MB
    blocks that glibc keeps in per-thread arenas after they are freed, so without this the RSS of every
    decoding thread would stay at its largest image. A no-op where glibc is not available."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


class _PixelBudget:
    """Bounds the full-resolution pixels decoded at once across the decoding threads (a huge image
    waits until enough budget is free; one image alone always proceeds)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self._cond:
                self.used -= pixels
                self._cond.notify_all()


_BUDGET = _PixelBudget(DECODE_BUDGET_PIXELS)


def decode_image(
    data: io.BytesIO | Path | Any,
    source: Any = None,
    *,
    target: tuple[int, int] | None = None,
    fast: bool | None = None,
) -> Image.Image:
    """Decode and validate one image (a path or file object), reduced towards the model resolution as
    it is read when it is huge (see `reduction_factor`): JPEGs decode at a DCT-scaled size (`draft`),
    other formats decode then `reduce` by an integer factor at once, under a process-wide budget of
    full-resolution pixels in flight. Ordinary images (<= `REDUCE_ABOVE_PIXELS`) are decoded exactly as
    before, unless `fast` (the encoder's `image_decode="fast"`): then a JPEG of any size decodes at the
    smallest DCT scale (1/2, 1/4 or 1/8) that still covers `target` on each axis, so the resize that
    follows never upsamples (faster, not bit-identical: see `docs/performance.md`). The pixel limit is
    checked on the header, before any decoding. Raises `ImageLoadError`."""
    source = data if source is None else source
    limit = Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS
    target = _TARGET.get() if target is None else target
    fast = _FAST.get() if fast is None else fast
    try:
        # Not `with Image.open(...)`: the early `close()` below followed by the context manager's exit
        # raises "Operation on closed image" on Pillow 11.0 (PNG); a second `close()` is harmless.
        img = Image.open(data)
        try:
            if img.width * img.height > limit:
                raise ImageLoadError(
                    source, f"larger than the decompression-bomb limit ({img.width}x{img.height} > {limit} pixels)"
                )
            size = img.size
            factor = reduction_factor(*size, target)
            if factor >= 2 and img.format == "JPEG":
                img.draft("RGB", reduced_size(*size, factor, target))  # DCT scaling: decodes at >= that size
            elif fast and target is not None and img.format == "JPEG":
                img.draft("RGB", target)  # >= target on each axis (libjpeg picks the scale)
            with _BUDGET.hold(img.width * img.height if factor >= 2 else 0):
                try:
                    img.load()
                    out = reduce_image(img, target, source_size=size) if factor >= 2 else img
                    return out.convert("RGB")
                finally:
                    if factor >= 2:
                        img.close()  # drop the full-resolution pixels now, then give them back to the OS
                        _release_memory()
        finally:
            img.close()
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(source, f"larger than the decompression-bomb limit ({limit} pixels): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(source, "not an image (unrecognised format)") from exc
    except OSError as exc:
        raise ImageLoadError(source, f"unreadable or truncated image: {exc}") from exc


_decode = decode_image  # the built-in loaders' name for it


def load_local_image(source: Any, root: str | Path | None = None) -> Image.Image | None:
    """Plugin loader for local paths (str / Path that are not URLs)."""
    if isinstance(source, Path) or (
        isinstance(source, str) and not source.startswith(("http://", "https://", "data:"))
    ):
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


def load_image(
    source: Any, *, root: str | Path | None = None, target: tuple[int, int] | None = None, fast: bool = False
) -> Image.Image:
    """PIL images and numpy arrays pass through (as RGB); anything else goes through the registered
    image loaders (plugins first). With `target` (the model's input size, see `target_size`) huge
    images are reduced towards it as they are decoded, and with `fast` JPEGs decode at the DCT scale
    nearest to it (see `decode_image`). Raises `ImageLoadError`."""
    if isinstance(source, Image.Image):
        source = reduce_image(source, target)
        return source if source.mode == "RGB" else source.convert("RGB")
    if isinstance(source, np.ndarray):
        try:
            return reduce_image(Image.fromarray(source), target).convert("RGB")
        except (TypeError, ValueError) as exc:
            raise ImageLoadError(source, f"array of shape {source.shape} / {source.dtype} is not an image") from exc
    from ret2_plugin.plugins import image_loaders

    token = _TARGET.set(target)  # read by `decode_image` in the built-in loaders, on this thread
    fast_token = _FAST.set(fast)
    try:
        for loader in image_loaders():
            image = loader(source, root=root) if _takes_root(loader) else loader(source)
            if image is not None:
                return reduce_image(image, target)  # plugin loaders may return full-size images
    finally:
        _FAST.reset(fast_token)
        _TARGET.reset(token)
    raise ImageLoadError(source, "no image loader understands this source")
