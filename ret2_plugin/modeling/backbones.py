"""Backbones: any Hugging Face text or vision tower that returns hidden states.

Built from a config dict (no download: tests and our own checkpoints) or loaded with pretrained
weights from a local directory or hub id. CLIP text/vision towers, BERT-family text towers
(MiniLM), ViT-family and SigLIP vision towers all fit: we only need `hidden_states`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

# Multimodal checkpoints whose AutoModel is the two-tower model: take the tower we need.
_TOWER_TYPES = {
    "text": {"clip": "clip_text_model", "siglip": "siglip_text_model"},
    "vision": {"clip": "clip_vision_model", "siglip": "siglip_vision_model"},
}


def config_from_dict(data: dict[str, Any]) -> PretrainedConfig:
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ValueError("backbone config needs a 'model_type'")
    for key in ("transformers_version", "architectures", "_name_or_path"):
        data.pop(key, None)
    from ret2_plugin.modeling.quiet import unused_special_token_ids_quiet

    with unused_special_token_ids_quiet():  # ReT never uses a tower's special token ids
        return AutoConfig.for_model(model_type, **data)


def build_backbone(config: dict[str, Any]) -> PreTrainedModel:
    """A randomly initialised tower from its config dict."""
    cfg = config_from_dict(config)
    kwargs = {"add_pooling_layer": False} if cfg.model_type in ("bert", "vit", "roberta", "xlm-roberta") else {}
    model = AutoModel.from_config(cfg, trust_remote_code=False, **kwargs)
    return model


def load_pretrained_backbone(name_or_path: str, kind: str) -> PreTrainedModel:
    """Pretrained tower from a local directory or hub id; for two-tower checkpoints (CLIP, SigLIP)
    the `kind` ("text" / "vision") tower is taken."""
    cfg = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)  # never folder code
    tower_type = _TOWER_TYPES[kind].get(cfg.model_type)
    if tower_type is not None:
        from transformers import CLIPTextModel, CLIPVisionModel, SiglipTextModel, SiglipVisionModel

        cls = {
            "clip_text_model": CLIPTextModel,
            "clip_vision_model": CLIPVisionModel,
            "siglip_text_model": SiglipTextModel,
            "siglip_vision_model": SiglipVisionModel,
        }[tower_type]
        return cls.from_pretrained(name_or_path)
    kwargs = {"add_pooling_layer": False} if cfg.model_type in ("bert", "vit", "roberta", "xlm-roberta") else {}
    return AutoModel.from_pretrained(name_or_path, trust_remote_code=False, **kwargs)


def hidden_size_of(model: PreTrainedModel) -> int:
    return int(model.config.hidden_size)


def backbone_config_dict(model: PreTrainedModel) -> dict[str, Any]:
    data = model.config.to_dict()
    for key in ("transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype"):
        data.pop(key, None)
    return data


def text_hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Block outputs of a text tower (embedding output dropped: index i = block i+1)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return tuple(out.hidden_states[1:])


def vision_hidden_states(model: nn.Module, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Block outputs of a vision tower, all tokens (CLS + patches)."""
    out = model(pixel_values=pixel_values, output_hidden_states=True)
    return tuple(out.hidden_states[1:])
