"""`ReT2Model`: shared backbones + query/document fusion modules (one shared module for ReT-2)."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ret2_plugin.atomic import atomic_path, atomic_write_json
from ret2_plugin.items import Side
from ret2_plugin.modeling.backbones import (
    backbone_config_dict,
    build_backbone,
    hidden_size_of,
    load_pretrained_backbone,
    text_hidden_states,
    vision_hidden_states,
)
from ret2_plugin.modeling.configuration import ReT2Config
from ret2_plugin.modeling.fusion import ReTFusion

CONFIG_NAME = "ret2_config.json"
WEIGHTS_NAME = "model.safetensors"
# Set while `from_pretrained` builds a model whose weights come from a checkpoint right after.
_DEFER_PARAMETERS: contextvars.ContextVar[bool] = contextvars.ContextVar("ret2_defer_parameters", default=False)


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Parameters registered meanwhile live on the meta device (no memory, no random init cost);
    buffers stay real (towers rebuild non-persistent ones such as `position_ids` that no checkpoint has)."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


@contextmanager
def deferred_weights() -> Iterator[None]:
    """`ReT2Model(...)` built meanwhile gets meta parameters; `load_weights` then takes the checkpoint's
    tensors as the parameters (`assign=True`): no random init, no second copy of the weights, and
    safetensors' memory-mapped tensors are paged in only when first used."""
    token = _DEFER_PARAMETERS.set(True)
    try:
        yield
    finally:
        _DEFER_PARAMETERS.reset(token)


class ReT2Model(nn.Module):
    """The ReT encoder family. `forward_features` returns un-normalised features:
    `[N, K, D]` (multi-vector, ReT v1) or `[N, D]` (single vector, ReT-2)."""

    def __init__(
        self,
        config: ReT2Config,
        text_backbone: nn.Module | None = None,
        vision_backbone: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if _DEFER_PARAMETERS.get():
            token = _DEFER_PARAMETERS.set(False)
            try:
                with _parameters_on_meta():
                    self._build(config, text_backbone, vision_backbone)
            finally:
                _DEFER_PARAMETERS.reset(token)
        else:
            self._build(config, text_backbone, vision_backbone)
        self.apply_freezing()

    def _build(self, config: ReT2Config, text_backbone: nn.Module | None, vision_backbone: nn.Module | None) -> None:
        self.config = config
        self.text_backbone = text_backbone if text_backbone is not None else build_backbone(config.text_config)
        self.vision_backbone = vision_backbone if vision_backbone is not None else build_backbone(config.vision_config)
        text_hidden, vision_hidden = hidden_size_of(self.text_backbone), hidden_size_of(self.vision_backbone)
        self.query_fusion = ReTFusion(config, text_hidden, vision_hidden)
        self.document_fusion = (
            self.query_fusion if config.share_query_document else ReTFusion(config, text_hidden, vision_hidden)
        )

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def from_backbones(
        cls, text: str, vision: str | dict[str, Any], preset: Literal["ret2", "ret_v1"] = "ret2", **overrides: Any
    ) -> ReT2Model:
        """New fusion modules on top of pretrained towers (`text` / `vision`: local dir or hub id;
        `vision` may also be a config dict for a randomly initialised tower)."""
        text_model = load_pretrained_backbone(text, "text")
        if isinstance(vision, dict):
            vision_model, vision_path = build_backbone(vision), None
        else:
            vision_model, vision_path = load_pretrained_backbone(vision, "vision"), vision
        make = ReT2Config.ret2 if preset == "ret2" else ReT2Config.ret_v1
        config = make(
            backbone_config_dict(text_model),
            backbone_config_dict(vision_model),
            text_model_name_or_path=text,
            vision_model_name_or_path=vision_path,
            **overrides,
        )
        return cls(config, text_model, vision_model)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str | torch.device = "cpu") -> ReT2Model:
        """Our format (`ret2_config.json` + `model.safetensors`), an official ReT checkpoint
        directory (`config.json` with `model_type: "retriever"`), or a hub id of either."""
        from ret2_plugin.modeling.official import is_official_checkpoint, load_official, resolve_checkpoint_dir

        folder = resolve_checkpoint_dir(path)
        if (folder / CONFIG_NAME).is_file():
            config = ReT2Config.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
            with deferred_weights():
                model = cls(config)
            model.load_weights(load_file(str(folder / WEIGHTS_NAME), device=str(map_location)))
            return model.eval()
        if is_official_checkpoint(folder):
            with deferred_weights():
                return load_official(folder, cls, map_location=map_location).eval()
        raise FileNotFoundError(
            f"{folder} is not a ret2-plugin model ({CONFIG_NAME}) nor an official ReT checkpoint (config.json with model_type 'retriever')"
        )

    # ---- persistence -----------------------------------------------------------------------------
    def own_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict without the tied copy of a shared fusion module."""
        state = self.state_dict()
        if self.config.share_query_document:
            state = {k: v for k, v in state.items() if not k.startswith("document_fusion.")}
        return state

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Strict load of `own_state_dict` keys: a missing or unexpected key is an error."""
        expected = set(self.own_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"weights do not fit the config: missing {missing[:8]}, unexpected {unexpected[:8]}")
        own = dict(self.named_parameters())
        if not any(p.is_meta for p in own.values()):
            self.load_state_dict(state, strict=False)
            return
        # Built under `deferred_weights`: the checkpoint's tensors become the parameters (dtype kept as built).
        state = {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v for k, v in state.items()}
        self.load_state_dict(state, strict=False, assign=True)
        left = [name for name, t in [*self.named_parameters(), *self.named_buffers()] if t.is_meta]
        if left:
            raise ValueError(f"weights left unset after loading: {left[:8]}")

    def save_pretrained(self, path: str | Path) -> None:
        """Write config JSON + safetensors; each file atomically."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.own_state_dict().items()}
        with atomic_path(folder / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "library": "ret2-plugin"})
        atomic_write_json(folder / CONFIG_NAME, self.config.portable_dict())  # no local paths

    # ---- training helpers ------------------------------------------------------------------------
    def apply_freezing(self) -> None:
        self.text_backbone.requires_grad_(not self.config.is_text_frozen)
        self.vision_backbone.requires_grad_(not self.config.is_vision_frozen)

    def train(self, mode: bool = True) -> ReT2Model:
        super().train(mode)
        if self.config.is_text_frozen:
            self.text_backbone.eval()
        if self.config.is_vision_frozen:
            self.vision_backbone.eval()
        return self

    def fusion_parameters(self) -> list[nn.Parameter]:
        fusion = list(self.query_fusion.parameters())
        if not self.config.share_query_document:
            fusion += list(self.document_fusion.parameters())
        return fusion

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.text_backbone.parameters()) + list(self.vision_backbone.parameters())

    # ---- inference -------------------------------------------------------------------------------
    def fusion(self, side: Side) -> ReTFusion:
        if side == "query":
            return self.query_fusion
        if side in ("document", "passage"):
            return self.document_fusion
        raise ValueError(f"side must be 'query' or 'document', got {side!r}")

    def forward_features(
        self,
        side: Side = "query",
        *,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor,
        text_mask: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features before L2 normalisation. A tower whose modality is absent from the whole batch
        (mask all zero) is skipped: its contribution is gated to exactly zero anyway."""
        fusion = self.fusion(side)
        n = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_mask = torch.ones(n, device=input_ids.device) if text_mask is None else text_mask
        image_mask = torch.ones(n, device=input_ids.device) if image_mask is None else image_mask
        if bool(text_mask.any()):
            texts = text_hidden_states(self.text_backbone, input_ids, attention_mask, fusion.text_layers)
        else:
            texts, attention_mask = self._absent(n, self.text_backbone, max(fusion.text_layers), pixel_values), None
        if bool(image_mask.any()):
            visions = vision_hidden_states(self.vision_backbone, pixel_values, fusion.vision_layers)
        else:
            visions = self._absent(n, self.vision_backbone, max(fusion.vision_layers), pixel_values)
        return fusion(texts, attention_mask, visions, text_mask, image_mask)

    def forward(self, side: Side = "query", **inputs: torch.Tensor) -> torch.Tensor:
        return self.forward_features(side, **inputs)

    @staticmethod
    def _absent(n: int, tower: nn.Module, last: int, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dtype = next(tower.parameters()).dtype
        zeros = torch.zeros(n, 1, hidden_size_of(tower), dtype=dtype, device=like.device)
        return (zeros,) * (last + 1)
