"""Which parameters train, in which group, at which learning rate; AdamW and warmup + cosine.

Backbones are frozen, partially unfrozen (the last N transformer blocks plus the final norms) or
fully trained; they get `lr * backbone_lr_scale` (0 freezes them). The fusion modules (adapters, recurrent cell,
heads) and a learnable temperature get `lr`. Biases and norm weights (1-D tensors) get no weight decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

_FINAL_NORMS = ("final_layer_norm", "post_layernorm", "post_layer_norm", "layernorm_post", "ln_f", "final_norm")


def block_list(backbone: nn.Module) -> nn.ModuleList | None:
    """The backbone's stack of transformer blocks: the longest ModuleList named like `layers`/`layer`/`h`."""
    best: nn.ModuleList | None = None
    for name, module in backbone.named_modules():
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


def set_backbone_mode(backbone: nn.Module | None, mode: str, last_n: int = 2) -> int:
    """Freeze / partially unfreeze / unfreeze a backbone; return the number of trainable parameters."""
    if backbone is None:
        return 0
    if mode not in {"frozen", "partial", "full"}:
        raise ValueError(f"backbone mode must be frozen, partial or full, got {mode!r}")
    for p in backbone.parameters():
        p.requires_grad_(mode == "full")
    if mode == "partial":
        blocks = block_list(backbone)
        if blocks is None:
            raise ValueError(f"cannot find the transformer blocks of {type(backbone).__name__} to unfreeze partially")
        for block in list(blocks)[-last_n:]:
            for p in block.parameters():
                p.requires_grad_(True)
        for name, p in backbone.named_parameters():
            if any(part in _FINAL_NORMS for part in name.split(".")):
                p.requires_grad_(True)
    return sum(p.numel() for p in backbone.parameters() if p.requires_grad)


def param_groups(
    model: nn.Module, extra: Iterable[nn.Parameter], *, lr: float, backbone_lr_scale: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups: (fusion | backbone) x (decay | no decay), plus `extra` (loss parameters, no decay)."""
    backbone_ids: set[int] = set()
    for attr in ("text_backbone", "vision_backbone"):
        tower = getattr(model, attr, None)
        if tower is not None:
            backbone_ids.update(id(p) for p in tower.parameters())
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        kind = "backbone" if id(p) in backbone_ids else "fusion"
        groups.setdefault((kind, p.ndim >= 2), []).append(p)
    out = []
    for (kind, decay), params in sorted(groups.items()):
        scale = backbone_lr_scale if kind == "backbone" else 1.0
        if scale == 0:  # freeze them: no gradient computed or all-reduced for parameters never stepped
            for p in params:
                p.requires_grad_(False)
            continue
        out.append(
            {
                "params": params,
                "lr": lr * scale,
                "weight_decay": weight_decay if decay else 0.0,
                "name": f"{kind}{'' if decay else '_no_decay'}",
            }
        )
    extra = [p for p in extra if p.requires_grad]
    if extra:
        out.append({"params": extra, "lr": lr, "weight_decay": 0.0, "name": "loss"})
    if not out:
        raise ValueError("nothing to train: every parameter is frozen")
    return out


def build_optimizer(
    groups: list[dict[str, Any]], *, lr: float, betas: tuple[float, float], eps: float, device: torch.device
) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one launch per step on CUDA; torch's fused CPU kernel otherwise)."""
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 to the group's lr, then cosine decay to `min_lr_ratio * lr`."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        progress = min(max(progress, 0.0), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
