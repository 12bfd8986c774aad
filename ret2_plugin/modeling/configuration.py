"""One configuration for the whole ReT family: ReT v1 exactly, and the ReT-2 reading as a preset.

ReT v1: separate query/document fusion modules, 12-16 tapped layers, K latent tokens projected to
128-d and scored by late interaction. ReT-2 (our reading of the paper): one shared fusion module,
three tapped layers per backbone (early / middle / late), a single pooled embedding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Official ReT layer strategies (indices into hidden_states[1:], i.e. block outputs).
LAYER_STRATEGIES: dict[str, dict[str, tuple[int, ...]]] = {
    "clip_vit_b": {"text": tuple(range(12)), "vision": tuple(range(12))},
    "clip_vit_l": {"text": tuple(range(12)), "vision": tuple(range(0, 24, 2))},
    "openclip_vit_h": {
        "text": tuple(range(1, 24, 2)),
        "vision": (0, 2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 31),
    },
    "openclip_vit_g": {
        "text": (*range(0, 30, 2), 31),
        "vision": tuple(range(2, 48, 3)),
    },
}


def three_taps(num_layers: int) -> list[int]:
    """ReT-2's early / middle / late taps for a tower with `num_layers` blocks."""
    if num_layers < 1:
        raise ValueError("a backbone needs at least one layer")
    return sorted({0, (num_layers - 1) // 2, num_layers - 1}) if num_layers >= 3 else list(range(num_layers))


def is_local_path(name: str | None) -> bool:
    """True for a name that points into this machine's file system (not a hub id)."""
    if not name:
        return False
    from pathlib import Path

    path = Path(name).expanduser()
    return path.is_absolute() or name.startswith((".", "~")) or path.exists()


def num_layers_of(backbone_config: dict[str, Any]) -> int:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if key in backbone_config:
            return int(backbone_config[key])
    raise ValueError(f"cannot tell the number of layers of backbone config {backbone_config.get('model_type')!r}")


@dataclass
class ReT2Config:
    """Everything needed to rebuild a model without downloading anything.

    `text_config` / `vision_config` are Hugging Face config dicts (with `model_type`); the
    `*_name_or_path` fields say where tokenizer / image processor come from when they are not saved
    beside the weights.
    """

    text_config: dict[str, Any] = field(default_factory=dict)
    vision_config: dict[str, Any] = field(default_factory=dict)
    text_model_name_or_path: str | None = None
    vision_model_name_or_path: str | None = None
    text_layers: list[int] = field(default_factory=list)
    vision_layers: list[int] = field(default_factory=list)
    layer_strategy: str | None = None
    hidden_size: int = 1024
    num_queries: int = 32
    num_attention_heads: int | None = None  # official: hidden_size // 64
    intermediate_size: int | None = None  # official: 4 * hidden_size
    late_proj_output_size: int | None = 128
    use_pooler_features: bool = False
    share_query_document: bool = False
    dropout_p: float = 0.05
    attention_dropout: float = 0.05
    activation_fn: str = "gelu"
    input_gate_bias_prior: float = 0.0
    forget_gate_bias_prior: float = 0.0
    use_tanh: bool = False
    is_text_frozen: bool = True
    is_vision_frozen: bool = True
    max_text_length: int | None = None  # None: the tokenizer's own limit (77 for CLIP)
    model_family: str = "ret2"  # "ret" (v1) or "ret2": informational, for model cards

    def __post_init__(self) -> None:
        if self.layer_strategy and not (self.text_layers or self.vision_layers):
            if self.layer_strategy not in LAYER_STRATEGIES:
                raise ValueError(f"unknown layer_strategy {self.layer_strategy!r}; known: {sorted(LAYER_STRATEGIES)}")
            self.text_layers = list(LAYER_STRATEGIES[self.layer_strategy]["text"])
            self.vision_layers = list(LAYER_STRATEGIES[self.layer_strategy]["vision"])
        if self.text_config and self.vision_config and not (self.text_layers or self.vision_layers):
            self.text_layers = three_taps(num_layers_of(self.text_config))
            self.vision_layers = three_taps(num_layers_of(self.vision_config))
        if len(self.text_layers) != len(self.vision_layers):
            raise ValueError(
                f"text_layers {self.text_layers} and vision_layers {self.vision_layers} must have the same length "
                "(step l reads text layer t_l and vision layer v_l)"
            )
        for name, layers, cfg in (
            ("text", self.text_layers, self.text_config),
            ("vision", self.vision_layers, self.vision_config),
        ):
            if cfg and layers and max(layers) >= num_layers_of(cfg):
                raise ValueError(
                    f"{name} layer {max(layers)} does not exist: the {name} tower has {num_layers_of(cfg)} layers"
                )
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.heads} attention heads")

    @property
    def heads(self) -> int:
        return self.num_attention_heads or max(1, self.hidden_size // 64)

    @property
    def mlp_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def multi_vector(self) -> bool:
        """True for ReT v1 late interaction ([K, D] per item), False for one vector per item."""
        return not self.use_pooler_features

    @property
    def embedding_dim(self) -> int:
        return self.late_proj_output_size or self.hidden_size

    @property
    def num_steps(self) -> int:
        return len(self.text_layers)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def portable_dict(self) -> dict[str, Any]:
        """`to_dict` without local filesystem paths: what a saved model's files may name. A backbone
        given as a local folder (absolute, `~`/`.`-relative or existing path) is recorded as unknown
        (None / ""), hub ids stay; a saved folder carries its own tokenizer / image-processor files."""
        data = self.to_dict()
        for key in ("text_model_name_or_path", "vision_model_name_or_path"):
            if is_local_path(data[key]):
                data[key] = None
        for key in ("text_config", "vision_config"):
            if is_local_path(data[key].get("_name_or_path")):
                data[key] = {**data[key], "_name_or_path": ""}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReT2Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ReT2Config keys: {unknown}")
        return cls(**data)

    # ---- presets -------------------------------------------------------------------------------
    @classmethod
    def ret_v1(cls, text_config: dict[str, Any], vision_config: dict[str, Any], **overrides: Any) -> ReT2Config:
        """ReT (CVPR 2025): separate query/document fusion, K x 128 late-interaction output.

        Pass `layer_strategy` (an official preset) or explicit `text_layers` / `vision_layers`;
        otherwise every text layer is tapped, paired with evenly spaced vision layers.
        """
        defaults: dict[str, Any] = dict(
            share_query_document=False, use_pooler_features=False, late_proj_output_size=128, model_family="ret"
        )
        if "layer_strategy" not in overrides and "text_layers" not in overrides:
            n_text, n_vis = num_layers_of(text_config), num_layers_of(vision_config)
            steps = min(n_text, n_vis)
            defaults["text_layers"] = [round(i * (n_text - 1) / max(steps - 1, 1)) for i in range(steps)]
            defaults["vision_layers"] = [round(i * (n_vis - 1) / max(steps - 1, 1)) for i in range(steps)]
        return cls(text_config=text_config, vision_config=vision_config, **{**defaults, **overrides})

    @classmethod
    def ret2(cls, text_config: dict[str, Any], vision_config: dict[str, Any], **overrides: Any) -> ReT2Config:
        """ReT-2 reading: shared encoder, 3 taps per backbone, single pooled vector, trainable towers."""
        defaults: dict[str, Any] = dict(
            share_query_document=True,
            use_pooler_features=True,
            is_text_frozen=False,
            is_vision_frozen=False,
            model_family="ret2",
        )
        if not {"layer_strategy", "text_layers", "vision_layers"} & set(overrides):
            defaults["text_layers"] = three_taps(num_layers_of(text_config))
            defaults["vision_layers"] = three_taps(num_layers_of(vision_config))
        return cls(text_config=text_config, vision_config=vision_config, **{**defaults, **overrides})
