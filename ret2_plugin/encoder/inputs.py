"""Raw sentence-transformers inputs -> `ret2_plugin.items.Item`.

Accepted per input (see `to_item`): an `Item`; a string (text, or an image path / URL / data URI as
sentence-transformers' `is_image_url_or_path` sees it); a `pathlib.Path`, PIL image, numpy / torch
image array or raw bytes (image); a dict `{"text": ..., "image": ...}` (joint: one embedding; either
key alone means the bare value; optional `"instruction"`); a chat message `{"role", "content"}` or a
list of them (text parts are joined with a space, at most one image part). Every refusal is a
`ValueError` naming the input position and the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ret2_plugin.items import Item, Side

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tiff", ".tif", ".webp")
_JOINT_KEYS = {"text", "image", "instruction", "id"}


def _is_image_reference(text: str, root: str | Path | None = None) -> bool:
    """A string meant as an image: data URI, image URL, or an existing image file (relative paths
    also against `root`, the encoder's image folder)."""
    from sentence_transformers.base.modality import is_image_url_or_path

    if is_image_url_or_path(text):
        return True
    # os.path.isfile, not Path.is_file: a name over 255 bytes is "not a file", not an OSError
    return root is not None and text.lower().endswith(_IMAGE_EXTENSIONS) and os.path.isfile(Path(root) / text)


def _decode_data_uri(uri: str, position: str) -> bytes:
    """`data:image/...;base64,<payload>` -> the image bytes (size-capped; then decoded by the bytes loader)."""
    from ret2_plugin.processing.images import ImageLoadError, decode_data_uri

    try:
        return decode_data_uri(uri)
    except ImageLoadError as exc:
        raise ValueError(f"{position}: {exc.reason}") from exc


def _looks_like_missing_image_path(text: str) -> bool:
    """One token ending in an image extension that is not a file: almost surely a mistyped path."""
    return bool(re.fullmatch(r"\S+", text)) and text.lower().endswith(_IMAGE_EXTENSIONS) and not os.path.isfile(text)


def _is_image_value(value: Any) -> bool:
    if isinstance(value, (Image.Image, Path, bytes, bytearray)):
        return True
    if isinstance(value, np.ndarray):
        return value.ndim in (2, 3)
    try:
        import torch

        if isinstance(value, torch.Tensor):
            return value.ndim == 3
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return False


def _image_of(value: Any, position: str) -> Any:
    """Normalise an image value (torch CHW/HWC tensors become numpy HWC uint8-compatible arrays)."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            array = value.detach().cpu().numpy()
            if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
                array = np.transpose(array, (1, 2, 0))
            if array.dtype != np.uint8:
                array = np.clip(array * 255.0 if array.max() <= 1.0 else array, 0, 255).astype(np.uint8)
            return array
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{position}: empty image reference")
        if value.startswith("data:"):
            return _decode_data_uri(value, position)
        return value
    if isinstance(value, Path):
        return str(value)
    if not _is_image_value(value):
        raise ValueError(f"{position}: unsupported image type {type(value).__name__}")
    return value


def _from_message_content(content: Any, position: str) -> tuple[str | None, Any]:
    if isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        raise ValueError(f"{position}: message content must be a string or a list of parts")
    texts: list[str] = []
    images: list[Any] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise ValueError(f"{position}: unsupported message part {type(part).__name__}")
        kind = part.get("type", "text" if "text" in part else "image" if "image" in part else None)
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind in ("image", "image_url"):
            value = part.get("image", part.get("image_url", part.get("url")))
            if isinstance(value, dict):  # OpenAI style {"image_url": {"url": ...}}
                value = value.get("url")
            images.append(value)
        else:
            raise ValueError(f"{position}: message part type {kind!r} is not supported (text and image only)")
    if len(images) > 1:
        raise ValueError(f"{position}: a message may carry at most one image, got {len(images)}")
    text = " ".join(t for t in texts if t) or None
    return text, (images[0] if images else None)


def _from_messages(messages: Any, position: str) -> Item:
    if isinstance(messages, dict):
        messages = [messages]
    texts: list[str] = []
    image: Any = None
    instruction: str | None = None
    for message in messages:
        if not (isinstance(message, dict) and "content" in message):
            raise ValueError(f"{position}: every message needs 'role' and 'content'")
        text, img = _from_message_content(message["content"], position)
        if message.get("role") == "system":  # a system message is the instruction (ReT's query prefix)
            if img is not None:
                raise ValueError(
                    f"{position}: the system message carries an image; a system message is the instruction (text only)"
                )
            instruction = " ".join(x for x in (instruction, text) if x) or None
            continue
        if text:
            texts.append(text)
        if img is not None:
            if image is not None:
                raise ValueError(f"{position}: the messages carry more than one image")
            image = img
    return _make(" ".join(texts) or None, image, position, instruction=instruction)


def _make(text: Any, image: Any, position: str, *, instruction: str | None = None, item_id: Any = None) -> Item:
    if text is not None and not isinstance(text, str):
        raise ValueError(f"{position}: 'text' must be a string, got {type(text).__name__}")
    if text is not None and not text.strip():
        text = None
    if image is not None:
        image = _image_of(image, position)
    if text is None and image is None:
        raise ValueError(f"{position}: empty input (no text and no image)")
    return Item(id=None if item_id is None else str(item_id), text=text, image=image, instruction=instruction)


def describe(raw: Any, limit: int = 60) -> str:
    """Short, log-safe description of a raw input for error messages."""
    if isinstance(raw, str):
        return repr(raw if len(raw) <= limit else raw[:limit] + "...")
    if isinstance(raw, Image.Image):
        return f"<PIL image {raw.size[0]}x{raw.size[1]}>"
    if isinstance(raw, np.ndarray):
        return f"<array {tuple(raw.shape)} {raw.dtype}>"
    if isinstance(raw, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v, 30)}" for k, v in raw.items()) + "}"
    return f"<{type(raw).__name__}>"


def to_item(raw: Any, position: int | str = 0, *, root: str | Path | None = None) -> Item:
    """One raw input -> `Item`; raises `ValueError` naming the input's position, itself and the reason."""
    if isinstance(raw, Item):
        return raw
    position = f"input {position} {describe(raw)}" if isinstance(position, int) else position
    if isinstance(raw, str):
        if not raw.strip():
            raise ValueError(f"{position}: empty string (no text and no image)")
        if _is_image_reference(raw, root):
            return Item(image=_decode_data_uri(raw, position) if raw.startswith("data:") else raw)
        if _looks_like_missing_image_path(raw):
            raise ValueError(f"{position}: image file {raw!r} not found")
        return Item(text=raw)
    if isinstance(raw, dict):
        if "role" in raw and "content" in raw:
            return _from_messages(raw, position)
        unknown = set(raw) - _JOINT_KEYS
        if unknown:
            raise ValueError(
                f"{position}: unsupported keys {sorted(map(str, unknown))}; expected 'text' and/or 'image'"
            )
        return _make(
            raw.get("text"), raw.get("image"), position, instruction=raw.get("instruction"), item_id=raw.get("id")
        )
    if isinstance(raw, list) and raw and all(isinstance(m, dict) and "role" in m for m in raw):
        return _from_messages(raw, position)
    if _is_image_value(raw):
        return Item(image=_image_of(raw, position))
    raise ValueError(
        f"{position}: unsupported input type {type(raw).__name__} "
        "(expected str, image, {'text': ..., 'image': ...} or chat messages)"
    )


def with_prompt(item: Item, prompt: str | None, side: Side) -> Item:
    """Apply a sentence-transformers prompt ReT-style: `"{prompt} {text}"` (one space, stripped).

    Query side: the prompt is prepended to the item's instruction (the processor then builds
    `"{instruction} {text}"`, as the official `get_ret_features` does). Document side: prepended to
    the text when there is text (the document encoder ignores instructions).
    """
    if not prompt or not prompt.strip():
        return item
    prompt = prompt.strip()
    from dataclasses import replace

    if side == "query":
        instruction = " ".join(x for x in (prompt, (item.instruction or "").strip()) if x)
        return replace(item, instruction=instruction)
    if item.has_text:
        return replace(item, text=f"{prompt} {item.text}".strip())
    return item


def to_items(raw_inputs: Sequence[Any], *, prompt: str | None = None, side: Side = "document") -> list[Item]:
    """Convert a batch; the first bad input raises (see `iter_embeddings` for per-item reporting)."""
    return [with_prompt(to_item(raw, i), prompt, side) for i, raw in enumerate(raw_inputs)]
