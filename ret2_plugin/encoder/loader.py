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

from ret2_plugin.encoder.safety import OUR_MODULE, SAFE_ST_MODULES, UnsafeModelError, check_st_folder
from ret2_plugin.encoder.st_module import ReT2Encoder
from ret2_plugin.precision import apply as apply_precision
from ret2_plugin.precision import canonical as canonical_precision
from ret2_plugin.processing.images import check_image_decode

__all__ = ["SAFE_ST_MODULES", "UnsafeModelError", "load_encoder"]

_OUR_MODULE = f"{ReT2Encoder.__module__}.{ReT2Encoder.__name__}"
assert _OUR_MODULE == OUR_MODULE


def _st_class(multi_vector: bool) -> Any:
    """sentence-transformers' classes with background batch preparation in `encode` (see prefetch.py)."""
    from ret2_plugin.encoder.prefetch import ReT2MultiVectorEncoder, ReT2SentenceTransformer

    return ReT2MultiVectorEncoder if multi_vector else ReT2SentenceTransformer


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


def saved_prompts(folder: str | Path) -> dict[str, str]:
    """The prompts a sentence-transformers folder saved (`config_sentence_transformers.json`), else {}:
    what `encode_query` / `encode_document` would apply, for code holding the bare ReT2Model (the
    trainer's evaluation)."""
    path = Path(folder) / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    return {str(k): str(v) for k, v in prompts.items()}


def load_encoder(
    path_or_id: str | Path,
    device: str | None = None,
    precision: str = "fp32",
    *,
    image_workers: int | None = None,
    image_root: str | None = None,
    image_decode: str = "exact",
    **kwargs: Any,
) -> Any:
    """Load a ReT model as a `SentenceTransformer` (single vector, L2-normalised like the official
    code) or `MultiVectorEncoder` (ReT v1, each token vector L2-normalised).

    `precision` (`ret2_plugin.precision`): "fp32", "fp16", "bf16" (the weights' dtype; half precisions
    are meant for CUDA; aliases float32 / float16 / bfloat16) or "int8" (CPU dynamic quantisation). `image_workers` threads decode and preprocess images (default: one per core, at most 8);
    `image_root` confines relative image paths to a folder. `image_decode="fast"` decodes JPEGs at the
    DCT scale nearest to the model's input size (about 2x faster preprocessing of photos; pixels differ
    slightly from the exact path, see docs/performance.md; default "exact"). Other keyword arguments (`prompts`,
    `default_prompt_name`, `similarity_fn_name`, ...) go to the sentence-transformers constructor.
    Plain `encode` uses the document side; use `encode_query` / `encode_document` for retrieval.

    Safe by default: no code shipped in the folder runs. A sentence-transformers folder may hold only
    our module then Dense / Normalize, whose configs may name only torch.nn activations
    (`UnsafeModelError` otherwise); `trust_remote_code=True` (the caller's choice) lifts that for the
    modules after ours. Hugging Face loaders never get `trust_remote_code=True`.
    """
    precision = canonical_precision(precision)
    from ret2_plugin.modeling.official import resolve_checkpoint_dir

    folder = Path(path_or_id)
    if not folder.is_dir():
        folder = resolve_checkpoint_dir(path_or_id)
    module_options = {"image_workers": image_workers, "image_root": image_root, "image_decode": image_decode}
    check_image_decode(image_decode)
    if (folder / "modules.json").is_file():
        # vetted before anything is imported; our module always comes from this package (never from
        # the folder), and Dense / Normalize load with trust_remote_code=False unless the caller opts in
        trust = bool(kwargs.pop("trust_remote_code", False))
        check_st_folder(folder, trust_remote_code=trust)
        model = _with_normalize(
            _st_class(_multi_vector_of(folder))._load_with_module_classes(
                str(folder), {OUR_MODULE: ReT2Encoder}, device=device, trust_remote_code=trust, **kwargs
            )
        )
        encoder = model[0]
        if isinstance(encoder, ReT2Encoder):
            if image_workers is not None:
                encoder._pool.workers = max(1, int(image_workers))
            if image_root is not None:
                encoder.image_root = image_root
            encoder.image_decode = image_decode
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
