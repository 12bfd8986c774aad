"""Named model presets that build offline (no hub): tiny CLIP-shaped models for tests and benchmarks.

`build_preset("tiny-clip-ret2", out_dir)` writes a complete model directory (weights, config,
tokenizer, image processor) that `ReT2Model.from_pretrained` and `load_encoder` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ret2_plugin.modeling import ReT2Config, ReT2Model
from ret2_plugin.processing import ReT2Processor, clip_tokenizer


def clip_tower_configs(
    *, width: int = 64, layers: int = 4, heads: int = 4, image_size: int = 32, patch_size: int = 8
) -> tuple[dict[str, Any], dict[str, Any]]:
    """CLIP-shaped text and vision tower configs using the real CLIP vocabulary size."""
    text = dict(
        model_type="clip_text_model",
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        vocab_size=49408,
        max_position_embeddings=77,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    vision = dict(
        model_type="clip_vision_model",
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    return text, vision


def clip_image_processor(image_size: int) -> Any:
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def tiny_clip_model(preset: str = "ret2", *, seed: int = 0, **sizes: Any) -> tuple[ReT2Model, ReT2Processor]:
    """A randomly initialised CLIP-shaped model + processor (ReT-2 or ReT v1 preset)."""
    fusion = {k: sizes.pop(k) for k in ("hidden_size", "num_queries", "late_proj_output_size") if k in sizes}
    text, vision = clip_tower_configs(**sizes)
    torch.manual_seed(seed)
    make = ReT2Config.ret2 if preset == "ret2" else ReT2Config.ret_v1
    config = make(text, vision, **{"hidden_size": 64, "num_queries": 8, "late_proj_output_size": 32, **fusion})
    model = ReT2Model(config).eval()
    processor = ReT2Processor(clip_tokenizer(), clip_image_processor(vision["image_size"]))
    return model, processor


PRESETS = {
    "tiny-clip-ret2": lambda: tiny_clip_model("ret2"),
    "tiny-clip-ret-v1": lambda: tiny_clip_model("ret_v1"),
}


def build_preset(name: str, out_dir: str | Path) -> Path:
    """Build a named preset into `out_dir` and return it."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    model, processor = PRESETS[name]()
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
