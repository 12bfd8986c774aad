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

from ret2_plugin.encoder.st_module import ReT2Encoder

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Team vocabulary (canonical name <- accepted spellings); "int8" = CPU dynamic quantisation of Linear layers.
_PRECISION_NAMES = {"fp32": "fp32", "float32": "fp32", "fp16": "fp16", "float16": "fp16", "bf16": "bf16",
                    "bfloat16": "bf16", "int8": "int8"}
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def apply_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Put a loaded model (a `ReT2Model` or the sentence-transformers wrapper) in `precision`:
    "fp32" / "fp16" / "bf16" cast the weights; "int8" swaps every `nn.Linear` (backbones, adapters,
    cell projections) for PyTorch's CPU dynamic-int8 one (weights int8, activations quantised per
    batch; inference only; CPU only). Opt-in fast modes: outputs are close to fp32, not equal."""
    name = _PRECISION_NAMES.get(str(precision).lower())
    if name is None:
        raise ValueError(f"precision must be one of {sorted(_PRECISION_NAMES)}, got {precision!r}")
    if name in _DTYPES:
        return model.to(_DTYPES[name]) if name != "fp32" else model
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"precision 'int8' is CPU dynamic quantisation; the model is on {sorted(devices)}")
    from torch.ao.quantization import quantize_dynamic

    model.eval()
    quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model
_OUR_MODULE = f"{ReT2Encoder.__module__}.{ReT2Encoder.__name__}"
# sentence-transformers modules allowed after ours. Only these: others (Transformer, Router, ...) forward
# trust_remote_code to Hugging Face loaders, which would run `auto_map` code shipped in the folder.
SAFE_ST_MODULES = frozenset(
    f"sentence_transformers.{prefix}{name}"
    for name in ("Dense", "Normalize")
    for prefix in (f"base.modules.{name.lower()}.", "base.modules.", "models.")
)


def _st_class(multi_vector: bool) -> type:
    """sentence-transformers' classes with background batch preparation in `encode` (see prefetch.py)."""
    from ret2_plugin.encoder.prefetch import ReT2MultiVectorEncoder, ReT2SentenceTransformer

    return ReT2MultiVectorEncoder if multi_vector else ReT2SentenceTransformer


def _foreign_modules(folder: Path) -> list[str]:
    """The module types of a sentence-transformers folder that are neither ours (first) nor in
    `SAFE_ST_MODULES` (after ours); empty when the folder is safe to load with trust_remote_code."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [str(m.get("type", "")) for m in modules]
    except (OSError, json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise ValueError(f"{folder}/modules.json is unreadable: {exc}") from exc
    if not types:
        return ["<no modules>"]
    head = [] if types[0] == _OUR_MODULE else [types[0]]
    return head + [t for t in types[1:] if t not in SAFE_ST_MODULES]


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

    `precision`: "fp32" (default), "fp16", "bf16" (weights' dtype; aliases float32 / float16 /
    bfloat16) or "int8" (CPU dynamic quantisation of the Linear layers, inference only); see
    `apply_precision` and the README for their speed and Recall@k. `image_workers` threads decode and preprocess images (default: one per core, at most 8);
    `image_root` confines relative image paths to a folder. Other keyword arguments (`prompts`,
    `default_prompt_name`, `similarity_fn_name`, ...) go to the sentence-transformers constructor.
    Plain `encode` uses the document side; use `encode_query` / `encode_document` for retrieval.
    """
    if str(precision).lower() not in _PRECISION_NAMES:
        raise ValueError(f"precision must be one of {sorted(_PRECISION_NAMES)}, got {precision!r}")
    from ret2_plugin.modeling.official import resolve_checkpoint_dir

    folder = Path(path_or_id)
    if not folder.is_dir():
        folder = resolve_checkpoint_dir(path_or_id)
    module_options = {"image_workers": image_workers, "image_root": image_root}
    if (folder / "modules.json").is_file():
        foreign = _foreign_modules(folder)
        if foreign and not kwargs.get("trust_remote_code"):
            raise ValueError(
                f"{folder} is a sentence-transformers folder with modules other than {_OUR_MODULE} followed by "
                f"{sorted(SAFE_ST_MODULES)}: {foreign}; load it with sentence-transformers directly "
                "(trust_remote_code=True if you trust it)"
            )
        kwargs.setdefault("trust_remote_code", True)  # only our module, Dense and Normalize are imported
        model = _st_class(_multi_vector_of(folder))(str(folder), device=device, **kwargs)
        encoder = model[0]
        if isinstance(encoder, ReT2Encoder):
            if image_workers is not None:
                encoder._pool.workers = max(1, int(image_workers))
            if image_root is not None:
                encoder.image_root = image_root
    else:
        encoder = ReT2Encoder.from_model_dir(folder, **module_options)
        model = _st_class(encoder.multi_vector)(modules=[encoder], device=device, **kwargs)
    apply_precision(model, precision)
    return model
