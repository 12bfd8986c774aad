"""Encoder fixtures: one loaded encoder per tiny model, shared by the module's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F


@pytest.fixture(scope="session")
def st_model(tiny_model_dir: Path):
    from ret2_plugin import load_encoder

    return load_encoder(tiny_model_dir, device="cpu", image_workers=2)


@pytest.fixture(scope="session")
def mv_model(tiny_v1_model_dir: Path):
    from ret2_plugin import load_encoder

    return load_encoder(tiny_v1_model_dir, device="cpu", image_workers=2)


def reference(model, items, side: str) -> torch.Tensor:
    """The model's own forward on the processor's tensors, L2-normalised along the last axis."""
    module = model[0]
    with torch.inference_mode():
        batch = module.processor(items, side=side)
        out = module.model.forward_features(side, **batch)
    return F.normalize(out.float(), p=2, dim=-1)
