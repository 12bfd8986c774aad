"""Streaming corpus encoding: flat memory, background prefetch, per-item error reports.

`iter_embeddings` pulls items lazily from any iterable (e.g. `read_jsonl`), and a background thread
decodes + preprocesses the next `prefetch` batches (image work spread over a thread pool) while the
calling thread runs the model on the current one. At most `prefetch + 1` batches exist at any time,
so memory stays flat however large the corpus. A bad image never sinks its batch: the item is
reported as `(item, reason)` in that batch's `errors` and the rest are encoded. Vectors equal
`encode_query` / `encode_document`'s: the model's saved prompt for the side is applied, and the whole
sentence-transformers module stack (e.g. Dense / Normalize after ours) and its `truncate_dim` run.

    for batch in iter_embeddings(encoder, read_jsonl(path, errors), side="document", batch_size=64):
        backend.add(records_for(batch.items, batch.embeddings))
        report(batch.errors)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from ret2_plugin.encoder.batching import LazyPool, Side, decode_images, prepare_batch
from ret2_plugin.encoder.inputs import to_item, with_prompt
from ret2_plugin.encoder.st_module import ReT2Encoder
from ret2_plugin.items import Item
from ret2_plugin.processing import ImageLoadError
from ret2_plugin.processing.images import target_size
from ret2_plugin.workers import Prefetcher


class EncodedBatch(NamedTuple):
    """One streamed batch: the encoded items (input order), their float32 embeddings
    (`[n, D]` single vector, `[n, K, D]` multi-vector; row i belongs to items[i]) and the items that
    could not be encoded with the reason (`(item, reason)`). Unpacks as a 3-tuple."""

    items: list[Item]
    embeddings: np.ndarray
    errors: list[tuple[Item, str]]


# the prompt names encode_query / encode_document look up in the model's `prompts`, in order
_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


def _module_of(encoder: Any) -> ReT2Encoder:
    if isinstance(encoder, ReT2Encoder):
        return encoder
    first = encoder[0] if hasattr(encoder, "__getitem__") else None
    if isinstance(first, ReT2Encoder):
        return first
    raise TypeError(f"expected a model from load_encoder or a ReT2Encoder module, got {type(encoder).__name__}")


def _has_ret2_module(encoder: Any) -> bool:
    try:
        _module_of(encoder)
    except TypeError:
        return False
    return True


def _iter_generic(
    encoder: Any, items: Iterable[Any], side: Side, batch_size: int, normalize: bool, root: Any
) -> Iterator[EncodedBatch]:
    from ret2_plugin.encoder.generic import generic_batches
    from ret2_plugin.encoder.shape import embedding_dim, is_multi_vector

    if not all(callable(getattr(encoder, name, None)) for name in ("encode_query", "encode_document")):
        raise TypeError(
            "expected a model from load_encoder, its ReT2Encoder module, or a sentence-transformers compatible "
            f"encoder (encode_query / encode_document), got {type(encoder).__name__}"
        )
    multi = is_multi_vector(encoder)
    for good, vectors, errors in generic_batches(
        encoder, _batches(items, batch_size, root), side, normalize=normalize, multi_vector=multi, root=root
    ):
        if vectors is None:
            vectors = np.zeros((0, embedding_dim(encoder)), dtype=np.float32)
        yield EncodedBatch(good, vectors, errors)


def _side_prompt(encoder: Any, side: Side) -> str | None:
    """The prompt `encode_query` / `encode_document` apply by default (None for a bare module)."""
    prompts = getattr(encoder, "prompts", None) or {}
    for name in _PROMPT_NAMES[side]:
        if name in prompts:
            return prompts[name]
    default = getattr(encoder, "default_prompt_name", None)
    return prompts.get(default) if default else None


def _batches(items: Iterable[Any], batch_size: int, root: Any = None) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for position, raw in enumerate(items):
        batch.append(raw if isinstance(raw, Item) else to_item(raw, position, root=root))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _prepare(
    module: ReT2Encoder, batch: list[Item], side: Side, pool: LazyPool, root: Any, prompt: str | None = None
) -> tuple[list[Item], Any, list[tuple[Item, str]]]:
    """Decode (per-item errors kept aside) and build the tensors of the items that survived (the
    prompt applied to the model's copy only: the items handed back stay as given)."""
    target = target_size(module.processor.image_processor)  # huge images reduced as they are read
    fast = module.image_decode == "fast"
    decoded = decode_images(batch, root=root, executor=pool.executor, workers=pool.workers, target=target, fast=fast)
    good, images, errors = [], [], []
    for item, image in zip(batch, decoded):
        if isinstance(image, ImageLoadError):
            errors.append((item, str(image)))
        else:
            good.append(item)
            images.append(image)
    features = None
    if good:
        prompted = [with_prompt(item, prompt, side) for item in good]
        try:
            features = prepare_batch(
                module.processor, prompted, side, images=images, executor=pool.executor, workers=pool.workers
            )
        except Exception:  # noqa: BLE001 - find the item(s) that cannot be prepared; the rest go on
            keep = []
            for index, (item, image) in enumerate(zip(prompted, images)):
                try:
                    prepare_batch(module.processor, [item], side, images=[image])
                    keep.append(index)
                except Exception as exc:  # noqa: BLE001
                    errors.append((good[index], f"cannot prepare: {type(exc).__name__}: {exc}"))
            good, prompted, images = [good[i] for i in keep], [prompted[i] for i in keep], [images[i] for i in keep]
            if good:
                features = prepare_batch(
                    module.processor, prompted, side, images=images, executor=pool.executor, workers=pool.workers
                )
    return good, features, errors


def iter_embeddings(
    encoder: Any,
    items: Iterable[Item],
    *,
    side: Side = "document",
    batch_size: int = 32,
    num_workers: int | None = None,
    prefetch: int = 2,
    normalize: bool = True,
    image_root: str | None = None,
) -> Iterator[EncodedBatch]:
    """Encode a (possibly huge) stream of items batch by batch; see the module docstring.

    Args:
        encoder: what `load_encoder` returns (its prompts, later modules and `truncate_dim` apply), or
            its bare `ReT2Encoder` module (no prompt, no later modules).
        items: `Item`s (raw inputs as `encode` takes them are converted; those that cannot be raise).
        side: "query" (instructions applied, query fusion) or "document".
        batch_size: items per model call.
        num_workers: threads decoding / preprocessing images (default: the module's setting).
        prefetch: batches prepared ahead of the model (bounded queue: memory stays flat).
        normalize: L2-normalise single vectors (multi-vector tokens are always normalised).
        image_root: confine relative image paths to this folder (default: the module's setting).

    Yields:
        `EncodedBatch(items, embeddings, errors)`; a batch whose items all failed has an empty
        `[0, ...]` embeddings array and only errors.
    """
    if side not in ("query", "document"):
        raise ValueError(f"side must be 'query' or 'document', got {side!r}")
    if batch_size <= 0 or prefetch <= 0:
        raise ValueError("batch_size and prefetch must be positive")
    if not _has_ret2_module(encoder):  # a plugin's encoder: its own encode_query / encode_document
        yield from _iter_generic(encoder, items, side, batch_size, normalize, image_root)
        return
    module = _module_of(encoder)
    stack = None if encoder is module else encoder  # the sentence-transformers model, all modules
    prompt = _side_prompt(stack, side)
    truncate_dim = getattr(stack, "truncate_dim", None)
    (stack or module).eval()
    pool = LazyPool(module.image_workers if num_workers is None else num_workers)
    root = module.image_root if image_root is None else image_root
    prepared = Prefetcher(
        (_prepare(module, batch, side, pool, root, prompt) for batch in _batches(items, batch_size, root)),
        depth=prefetch,
        name="ret2-prefetch",
    )
    width = (stack or module).get_embedding_dimension()
    dim = (module.model.config.num_queries, width) if module.multi_vector else (width,)
    try:
        for good, features, errors in prepared:
            if features is None:
                yield EncodedBatch([], np.zeros((0, *dim), dtype=np.float32), errors)
                continue
            with torch.inference_mode():
                out = stack(features, task=side) if stack is not None else module.forward(features, task=side)
            emb = out["token_embeddings"] if module.multi_vector else out["sentence_embedding"]
            if not module.multi_vector:
                if truncate_dim is not None:
                    emb = emb[..., :truncate_dim]
                if normalize:
                    emb = F.normalize(emb, p=2, dim=-1)
            yield EncodedBatch(good, emb.float().cpu().numpy(), errors)
    finally:
        prepared.close()
        pool.shutdown()
