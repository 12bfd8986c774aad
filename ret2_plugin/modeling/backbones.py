"""Backbones: any Hugging Face text or vision tower that returns hidden states.

Built from a config dict (no download: tests and our own checkpoints) or loaded with pretrained
weights from a local directory or hub id. CLIP text/vision towers, BERT-family text towers
(MiniLM), ViT-family and SigLIP vision towers all fit: we only need `hidden_states`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
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


class _EnoughLayers(Exception):
    """Raised by the hook on the last tapped block: the rest of the tower is not needed."""


def block_stack(model: nn.Module) -> nn.ModuleList | None:
    """The tower's stack of transformer blocks (the longest ModuleList named `layers` / `layer` / ...)."""
    best: nn.ModuleList | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in {
            "layers",
            "layer",
            "h",
            "blocks",
            "resblocks",
        }:
            if best is None or len(module) > len(best):
                best = module
    return best


_REQUEST = threading.local()  # the current thread's capture: (block list, wanted layers, caught dict)


class _TapHook:
    """Forward hook of block `index`: idle unless THIS thread asked `_tapped` for this block list
    (hooks are shared by every thread using the model: concurrent encodes must not see each other's
    captures)."""

    def __init__(self, blocks: nn.ModuleList, index: int) -> None:
        self.blocks, self.index = blocks, index

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        request = getattr(_REQUEST, "value", None)
        if request is None or request[0] is not self.blocks or self.index not in request[1]:
            return
        request[2][self.index] = output[0] if isinstance(output, (tuple, list)) else output
        if self.index == max(request[1]):
            raise _EnoughLayers


def _install_tap_hooks(blocks: nn.ModuleList) -> None:
    """One permanent `_TapHook` per block (installed once per tower)."""
    if getattr(blocks, "_ret2_tap_hooks", False):
        return
    for i, block in enumerate(blocks):
        block.register_forward_hook(_TapHook(blocks, i))
    blocks._ret2_tap_hooks = True


def _tapped(model: nn.Module, layers: Sequence[int], run: Callable[[], Any]) -> Mapping[int, torch.Tensor] | None:
    """Outputs of blocks `layers` only, caught by forward hooks; the tower stops after the last one
    (no final norm, no pooler, no unused blocks, no tuple of every hidden state). Inference only
    (no autograd: a checkpointed block would re-run its hook during backward); None when the tower's
    blocks cannot be found, and the caller falls back to `output_hidden_states`."""
    blocks = block_stack(model)
    if torch.is_grad_enabled() or blocks is None or not layers or max(layers) >= len(blocks):
        return None
    _install_tap_hooks(blocks)
    caught: dict[int, torch.Tensor] = {}
    previous = getattr(_REQUEST, "value", None)
    _REQUEST.value = (blocks, frozenset(layers), caught)
    try:
        run()
    except _EnoughLayers:
        pass
    finally:
        _REQUEST.value = previous
    return caught if len(caught) == len(set(layers)) else None


def text_hidden_states(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int] | None = None
) -> Sequence[torch.Tensor] | Mapping[int, torch.Tensor]:
    """Block outputs of a text tower (index i = block i, embedding output dropped). With `layers`,
    under no_grad / inference_mode, only those blocks' outputs (a mapping) and the tower stops early."""
    if layers is not None:
        tapped = _tapped(model, layers, lambda: model(input_ids=input_ids, attention_mask=attention_mask))
        if tapped is not None:
            return tapped
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return tuple(out.hidden_states[1:])


def vision_hidden_states(
    model: nn.Module, pixel_values: torch.Tensor, layers: Sequence[int] | None = None
) -> Sequence[torch.Tensor] | Mapping[int, torch.Tensor]:
    """Block outputs of a vision tower, all tokens (CLS + patches); `layers` as for `text_hidden_states`."""
    if layers is not None:
        tapped = _tapped(model, layers, lambda: model(pixel_values=pixel_values))
        if tapped is not None:
            return tapped
    out = model(pixel_values=pixel_values, output_hidden_states=True)
    return tuple(out.hidden_states[1:])
