"""What the loop runs on: the train module (model + loss), DDP wrapping, activation checkpointing,
and the device / precision a config resolves to. Kept apart from `loop` so the run reads on its own."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed as du
from .config import TrainConfig
from .losses import ContrastiveLoss, LossOutput


class TrainModule(nn.Module):
    """Model + loss in one module, so DDP sees every trainable parameter (temperature included)."""

    def __init__(self, model: nn.Module, loss: ContrastiveLoss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(
        self,
        query_inputs: dict[str, torch.Tensor],
        doc_inputs: dict[str, torch.Tensor],
        query_positive_ids: torch.Tensor,
        doc_ids: torch.Tensor,
    ) -> LossOutput:
        q = self.model.forward_features(side="query", **query_inputs)
        d = self.model.forward_features(side="document", **doc_inputs)
        return self.loss(q, d, query_positive_ids, doc_ids)


def wrap_ddp(
    module: nn.Module, device: torch.device, *, find_unused_parameters: bool = True
) -> DistributedDataParallel:
    """DDP around the train module. Unused parameters are expected: a batch without images skips the
    vision tower, and towers have weights (final norms, pooler) that the tapped layers never reach."""
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


def enable_checkpointing(tower: nn.Module) -> bool:
    """Activation checkpointing on a Hugging Face tower (non-reentrant); False if it has none."""
    if hasattr(tower, "activation_checkpointing_enable"):  # transformers >= 5.x name
        tower.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        return True
    if hasattr(tower, "gradient_checkpointing_enable"):
        tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return True
    return False


def resolve_device(config: TrainConfig) -> torch.device:
    if config.device:
        return torch.device(config.device)
    return torch.device(f"cuda:{du.local_rank()}") if torch.cuda.is_available() else torch.device("cpu")


def resolve_precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
