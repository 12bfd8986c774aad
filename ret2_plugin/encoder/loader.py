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

from ret2_plugin.encoder.st_module import ReT2Encoder
from ret2_plugin.precision import apply as apply_precision
from ret2_plugin.precision import canonical as canonical_precision

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


def _with_normalize(model: Any) -> Any:
    """Single-vector ReT models return L2-normalised vectors, as the official `get_ret_features`
    does: a sentence-transformers `Normalize` module follows ours (added when a folder has nothing
    after our module; folders we save then carry it in `modules.json`)."""
    from sentence_transformers.base.modules import Normalize

    if len(model) == 1 and isinstance(model[0], ReT2Encoder) and not model[0].multi_vector:
        model.append(Normalize())
    return model


def _multi_vector_of(folder: Path) -> bool:
    from ret2_plugin.modeling import CONFIG_NAME, ReT2Config

    config_path = folder / CONFIG_NAME
    if config_path.is_file():
        return ReT2Config.from_dict(json.loads(config_path.read_text(encoding="utf-8"))).multi_vector
    return False


def load_encoder(
    path_or_id: str | Path,
    device: str | None = None,
    precision: str = "fp32",
    *,
    image_workers: int | None = None,
    image_root: str | None = None,
    **kwargs: Any,
) -> Any:
    """Load a ReT model as a `SentenceTransformer` (single vector, L2-normalised like the official
    code) or `MultiVectorEncoder` (ReT v1, each token vector L2-normalised).

    `precision` (`ret2_plugin.precision`): "fp32", "fp16", "bf16" (the weights' dtype; half precisions
    are meant for CUDA; aliases float32 / float16 / bfloat16) or "int8" (CPU dynamic quantisation). `image_workers` threads decode and preprocess images (default: one per core, at most 8);
    `image_root` confines relative image paths to a folder. Other keyword arguments (`prompts`,
    `default_prompt_name`, `similarity_fn_name`, ...) go to the sentence-transformers constructor.
    Plain `encode` uses the document side; use `encode_query` / `encode_document` for retrieval.
    """
    precision = canonical_precision(precision)
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
        model = _with_normalize(_st_class(_multi_vector_of(folder))(str(folder), device=device, **kwargs))
        encoder = model[0]
        if isinstance(encoder, ReT2Encoder):
            if image_workers is not None:
                encoder._pool.workers = max(1, int(image_workers))
            if image_root is not None:
                encoder.image_root = image_root
    else:
        encoder = ReT2Encoder.from_model_dir(folder, **module_options)
        model = _with_normalize(_st_class(encoder.multi_vector)(modules=[encoder], device=device, **kwargs))
    if precision != "fp32":
        apply_precision(model, precision, device=model.device)
    return model


def write_sentence_transformers_folder(folder: str | Path) -> Path:
    """Complete a plain model folder (`ret2_config.json` + weights + tokenizer / image-processor files,
    as `ReT2Model.save_pretrained` + `ReT2Processor.save_pretrained` write it) in place into a
    sentence-transformers folder (`modules.json`, module config, `Normalize` for single-vector models,
    model card), so that `SentenceTransformer(folder, trust_remote_code=True)` loads it; the weights
    are unchanged. Sentence-transformers writes some files in place: call it on a temporary folder that
    is then renamed into place (as the trainer's export and the model store do)."""
    folder = Path(folder)
    model = load_encoder(folder, device="cpu")
    model.save(str(folder))
    return folder

