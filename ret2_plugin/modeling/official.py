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
        raise FileNotFoundError(f"{text!r} is not a local directory and could not be fetched from the hub: {exc}") from exc


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


def official_to_ours(key: str) -> str | None:
    """`query_model.text_model.X` -> `text_backbone.X`; `passage_model.ret_cell.X` ->
    `document_fusion.ret_cell.X`; None for keys we do not keep."""
    side, _, rest = key.partition(".")
    if side not in ("query_model", "passage_model"):
        return None
    if rest.startswith("text_model."):
        return "text_backbone." + rest[len("text_model.") :] if side == "query_model" else None
    if rest.startswith("vision_model."):
        return "vision_backbone." + rest[len("vision_model.") :] if side == "query_model" else None
    prefix = "query_fusion." if side == "query_model" else "document_fusion."
    return prefix + rest


def load_official(folder: Path, model_cls: Any, *, map_location: str | torch.device = "cpu") -> Any:
    """An official checkpoint as a `model_cls` (ReT2Model, passed in so this module does not import
    model.py, which imports this one)."""
    config = config_from_official(json.loads((folder / "config.json").read_text()))
    model = model_cls(config)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"no *.safetensors weights in {folder} (pytorch_model.bin is not loaded, for safety)")
    state: dict[str, torch.Tensor] = {}
    for file in weights:
        for key, tensor in load_file(str(file), device=str(map_location)).items():
            ours = official_to_ours(key)
            if ours is not None:
                state[ours] = tensor
    # Backbone towers may carry buffers the checkpoint omits (e.g. position_ids): keep ours.
    own = model.own_state_dict()
    for key, value in own.items():
        if key not in state and key.endswith("position_ids"):
            state[key] = value
    # Backbone keys absent from this transformers version's module (e.g. old buffers) are dropped.
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("text_backbone.", "vision_backbone."))}
    model.load_weights(state)
    return model
