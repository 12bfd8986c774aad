"""Official ReT checkpoints (aimagelab/ReT `save_pretrained` layout) -> `ReT2Model`.

Layout: `config.json` (`model_type: "retriever"`, `query_config` / `passage_config` of `model_type:
"ret"`, sharing flags) and `model.safetensors` with `query_model.*` / `passage_model.*` keys, the
backbones stored once under `query_model.{text,vision}_model.*`. Also resolves hub ids of the published
checkpoints (aimagelab/ReT-CLIP-ViT-L-14, ...) through `huggingface_hub` when network is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ret2_plugin.modeling.configuration import LAYER_STRATEGIES, ReT2Config

_FUSION_KEYS = (
    "late_proj_output_size",
    "use_pooler_features",
    "num_queries",
    "hidden_size",
    "dropout_p",
    "attention_dropout",
    "activation_fn",
    "input_gate_bias_prior",
    "forget_gate_bias_prior",
    "use_tanh",
    "layer_strategy",
)
_FETCH_PATTERNS = ["config.json", "*.safetensors", "*.json", "*.txt", "*.model"]


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """A local directory as is; anything else is treated as a hub id and downloaded (needs network)."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    text = str(path)
    if folder.exists() or text.startswith((".", "/")) or text.count("/") != 1:
        raise FileNotFoundError(f"model directory {text!r} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(text, allow_patterns=_FETCH_PATTERNS))
    except Exception as exc:  # offline, unknown id, auth: say which and why
        raise FileNotFoundError(
            f"{text!r} is not a local directory and could not be fetched from the hub: {exc}"
        ) from exc


def is_official_checkpoint(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "retriever"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def config_from_official(raw: dict[str, Any]) -> ReT2Config:
    """Map the official RetrieverConfig dict onto `ReT2Config` (one fusion config for both sides)."""
    query = raw["query_config"]
    shared = bool(raw.get("share_query_passage_models", False))
    passage = query if shared or not raw.get("passage_config") else raw["passage_config"]
    if not raw.get("share_text_models", True) or not raw.get("share_vision_models", True):
        raise NotImplementedError("official checkpoints with separate query/passage backbones are not supported")
    differing = [k for k in _FUSION_KEYS if query.get(k) != passage.get(k)]
    if differing:
        raise NotImplementedError(f"query and passage fusion configs differ in {differing}; not supported")
    strategy = query.get("layer_strategy", "clip_vit_b")
    if strategy not in LAYER_STRATEGIES:
        raise ValueError(f"unknown official layer_strategy {strategy!r}")
    text_config, vision_config = dict(query["text_config"]), dict(query["vision_config"])
    return ReT2Config(
        text_config=text_config,
        vision_config=vision_config,
        text_model_name_or_path=text_config.get("_name_or_path") or None,
        vision_model_name_or_path=vision_config.get("_name_or_path") or None,
        layer_strategy=strategy,
        hidden_size=query.get("hidden_size", 1024),
        num_queries=query.get("num_queries", 32),
        late_proj_output_size=query.get("late_proj_output_size", 128),
        use_pooler_features=query.get("use_pooler_features", False),
        share_query_document=shared,
        dropout_p=query.get("dropout_p", 0.05),
        attention_dropout=query.get("attention_dropout", 0.05),
        activation_fn=query.get("activation_fn", "gelu"),
        input_gate_bias_prior=query.get("input_gate_bias_prior", 0.0),
        forget_gate_bias_prior=query.get("forget_gate_bias_prior", 0.0),
        use_tanh=query.get("use_tanh", False),
        is_text_frozen=query.get("is_text_frozen", True),
        is_vision_frozen=query.get("is_vision_frozen", True),
        model_family="ret",
    )


_FUSION_PARTS = ("text_adapter.", "vision_adapter.", "ret_cell.", "late_proj.")
_TOWERS = {"text_model.": "text_backbone.", "vision_model.": "vision_backbone."}


class CheckpointKeyError(ValueError):
    """Checkpoint keys that map to no weight of the model, or model weights the checkpoint leaves unset."""


def official_to_ours(key: str, ours: set[str], *, shared: bool) -> str | None:
    """Explicit mapping of one official key onto a key of `ours` (our `own_state_dict` keys), or None.

    - `query_model.text_model.<tower key>` -> `text_backbone.<tower key>`; the official towers are
      transformers 4.x `CLIPTextModel` / `CLIPVisionModel`, whose keys carry the tower's own prefix
      (`text_model.` / `vision_model.`), which newer transformers versions no longer have: that prefix
      is dropped exactly when our tower lacks it.
    - `query_model.{text_adapter,vision_adapter,ret_cell,late_proj}.*` -> `query_fusion.*`;
      `passage_model.*` -> `document_fusion.*` (or `query_fusion.*` when the sides are shared).
    """
    side, _, rest = key.partition(".")
    if side not in ("query_model", "passage_model"):
        return None
    for official_prefix, our_prefix in _TOWERS.items():
        if rest.startswith(official_prefix):
            tower_key = rest[len(official_prefix) :]
            candidates = [our_prefix + tower_key]
            if tower_key.startswith(official_prefix):  # CLIPTextModel.text_model.* (transformers 4.x)
                candidates.append(our_prefix + tower_key[len(official_prefix) :])
            return next((c for c in candidates if c in ours), None)
    if not rest.startswith(_FUSION_PARTS):
        return None
    fusion = "query_fusion." if side == "query_model" or shared else "document_fusion."
    return fusion + rest if fusion + rest in ours else None


def map_official_state(
    checkpoint: dict[str, torch.Tensor], ours: dict[str, torch.Tensor], *, shared: bool
) -> dict[str, torch.Tensor]:
    """Official state dict -> ours, strictly: every checkpoint key must map onto a weight of the same
    shape, and every weight of ours must be set. Passage-side copies of the shared backbones (written
    by some versions) are accepted only when equal to the query side's. Raises `CheckpointKeyError`."""
    names = set(ours)
    state: dict[str, torch.Tensor] = {}
    unmapped, mismatched, conflicting = [], [], []
    # query_model first: a passage copy of a tied tower is then compared against it
    for key in sorted(checkpoint, key=lambda k: (not k.startswith("query_model."), k)):
        tensor = checkpoint[key]
        target = official_to_ours(key, names, shared=shared)
        if target is None:
            unmapped.append(key)
        elif tuple(tensor.shape) != tuple(ours[target].shape):
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {target} {tuple(ours[target].shape)}")
        elif target in state:
            if not torch.equal(state[target], tensor):
                conflicting.append(key)
        else:
            state[target] = tensor
    missing = sorted(names - set(state))
    problems = []
    if unmapped:
        problems.append(f"checkpoint keys that map to no weight of the model: {_names(unmapped)}")
    if mismatched:
        problems.append(f"shape mismatches: {_names(mismatched)}")
    if conflicting:
        problems.append(f"passage-side copies that differ from the shared query-side weights: {_names(conflicting)}")
    if missing:
        problems.append(f"model weights the checkpoint does not set: {_names(missing)}")
    if problems:
        raise CheckpointKeyError("official checkpoint does not fit its config: " + "; ".join(problems))
    return state


def _names(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def load_official(folder: Path, model_cls: Any, *, map_location: str | torch.device = "cpu") -> Any:
    """An official checkpoint directory (safetensors only) as a `model_cls` (ReT2Model, passed in so
    this module does not import model.py, which imports this one)."""
    config = config_from_official(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"no *.safetensors weights in {folder} (pytorch_model.bin is not loaded, for safety)")
    checkpoint: dict[str, torch.Tensor] = {}
    for file in weights:
        checkpoint.update(load_file(str(file), device=str(map_location)))
    model = model_cls(config)
    state = map_official_state(checkpoint, model.own_state_dict(), shared=config.share_query_document)
    model.load_weights(state)
    return model
