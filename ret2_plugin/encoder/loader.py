"""`load_encoder`: any ReT model location -> a sentence-transformers model.

Accepts a folder saved by sentence-transformers (has `modules.json`), our plain model folder
(`ret2_config.json` + `model.safetensors` + tokenizer / image-processor files, as the trainer and
`build_preset` write it), an official ReT checkpoint folder (`config.json`, `model_type: "retriever"`)
or a hub id of either (resolved offline-first by `ret2_plugin.modeling`). Single-vector models come
back as a `SentenceTransformer`, multi-vector (ReT v1) ones as a `MultiVectorEncoder` (subclasses
whose `encode` prepares the next batches in the background; see `prefetch.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ret2_plugin.encoder.safety import OUR_MODULE, SAFE_ST_MODULES, UnsafeModelError, check_st_folder
from ret2_plugin.encoder.st_module import ReT2Encoder

__all__ = ["SAFE_ST_MODULES", "UnsafeModelError", "load_encoder"]

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_OUR_MODULE = f"{ReT2Encoder.__module__}.{ReT2Encoder.__name__}"
assert _OUR_MODULE == OUR_MODULE


def _st_class(multi_vector: bool) -> type:
    """sentence-transformers' classes with background batch preparation in `encode` (see prefetch.py)."""
    from ret2_plugin.encoder.prefetch import ReT2MultiVectorEncoder, ReT2SentenceTransformer

    return ReT2MultiVectorEncoder if multi_vector else ReT2SentenceTransformer


def _multi_vector_of(folder: Path) -> bool:
    from ret2_plugin.modeling import CONFIG_NAME, ReT2Config

    config_path = folder / CONFIG_NAME
    if config_path.is_file():
        return ReT2Config.from_dict(json.loads(config_path.read_text(encoding="utf-8"))).multi_vector
    return False


def load_encoder(
    path_or_id: str | Path,
    device: str | None = None,
    precision: str = "float32",
    *,
    image_workers: int | None = None,
    image_root: str | None = None,
    **kwargs: Any,
) -> Any:
    """Load a ReT model as a `SentenceTransformer` (single vector) or `MultiVectorEncoder` (ReT v1).

    `precision` is the weights' dtype ("float32", "float16", "bfloat16"; half precisions are meant for
    CUDA). `image_workers` threads decode and preprocess images (default: one per core, at most 8);
    `image_root` confines relative image paths to a folder. Other keyword arguments (`prompts`,
    `default_prompt_name`, `similarity_fn_name`, ...) go to the sentence-transformers constructor.
    Plain `encode` uses the document side; use `encode_query` / `encode_document` for retrieval.

    Safe by default: no code shipped in the folder runs. A sentence-transformers folder may hold only
    our module then Dense / Normalize, whose configs may name only torch.nn activations
    (`UnsafeModelError` otherwise); `trust_remote_code=True` (the caller's choice) lifts that for the
    modules after ours. Hugging Face loaders never get `trust_remote_code=True`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    from ret2_plugin.modeling.official import resolve_checkpoint_dir

    folder = Path(path_or_id)
    if not folder.is_dir():
        folder = resolve_checkpoint_dir(path_or_id)
    module_options = {"image_workers": image_workers, "image_root": image_root}
    if (folder / "modules.json").is_file():
        # vetted before anything is imported; our module always comes from this package (never from
        # the folder), and Dense / Normalize load with trust_remote_code=False unless the caller opts in
        trust = bool(kwargs.pop("trust_remote_code", False))
        check_st_folder(folder, trust_remote_code=trust)
        model = _st_class(_multi_vector_of(folder))._load_with_module_classes(
            str(folder), {OUR_MODULE: ReT2Encoder}, device=device, trust_remote_code=trust, **kwargs
        )
        encoder = model[0]
        if isinstance(encoder, ReT2Encoder):
            if image_workers is not None:
                encoder._pool.workers = max(1, int(image_workers))
            if image_root is not None:
                encoder.image_root = image_root
    else:
        encoder = ReT2Encoder.from_model_dir(folder, **module_options)
        model = _st_class(encoder.multi_vector)(modules=[encoder], device=device, **kwargs)
    if precision != "float32":
        model.to(PRECISIONS[precision])
    return model
