"""Streaming for an encoder without a ReT model inside (a plugin's `register_encoders` encoder).

The encoder only has to be sentence-transformers compatible: `encode_query` / `encode_document`
over strings, PIL images or `{"text", "image"}` dicts. Items keep the meaning they have for ReT (a
query's instruction is prefixed, `"{instruction} {text}"`); images are decoded by our image loaders
(plugins', then the built-ins) so a bad image is reported for its item, and a batch the encoder
refuses is retried item by item so one bad input never sinks the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ret2_plugin.encoder.batching import Side
from ret2_plugin.items import Item
from ret2_plugin.processing import ImageLoadError, load_image


def _input(item: Item, side: Side, root: Any) -> Any:
    text = item.query_text() if side == "query" else item.text
    if item.image is None:
        return text or ""
    image = load_image(item.image, root=root)
    return {"text": text, "image": image} if text else image


def _encode(encoder: Any, inputs: list[Any], side: Side, normalize: bool, multi_vector: bool) -> np.ndarray:
    encode = encoder.encode_query if side == "query" else encoder.encode_document
    kwargs: dict[str, Any] = {"convert_to_numpy": True, "batch_size": max(1, len(inputs))}
    if normalize and not multi_vector:
        kwargs["normalize_embeddings"] = True
    return np.asarray(encode(inputs, **kwargs), dtype=np.float32)


def generic_batches(
    encoder: Any, batches: Iterator[list[Item]], side: Side, *, normalize: bool, multi_vector: bool, root: Any
) -> Iterator[tuple[list[Item], np.ndarray | None, list[tuple[Item, str]]]]:
    """(encoded items, their vectors or None when none survived, failures) per batch."""
    for batch in batches:
        good: list[Item] = []
        inputs: list[Any] = []
        errors: list[tuple[Item, str]] = []
        for item in batch:
            try:
                inputs.append(_input(item, side, root))
                good.append(item)
            except ImageLoadError as exc:
                errors.append((item, str(exc)))
        if not good:
            yield [], None, errors
            continue
        try:
            yield good, _encode(encoder, inputs, side, normalize, multi_vector), errors
            continue
        except Exception:  # find the culprit(s): encode one by one
            pass
        kept: list[Item] = []
        rows: list[np.ndarray] = []
        for item, value in zip(good, inputs):
            try:
                rows.append(_encode(encoder, [value], side, normalize, multi_vector)[0])
                kept.append(item)
            except Exception as exc:
                errors.append((item, f"the encoder refused it: {type(exc).__name__}: {exc}"))
        yield kept, (np.stack(rows) if rows else None), errors
