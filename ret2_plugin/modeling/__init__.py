"""The ReT model family in PyTorch: config, backbones, recurrent cell, fusion, checkpoints."""

from ret2_plugin.modeling.cell import ReTCell
from ret2_plugin.modeling.configuration import LAYER_STRATEGIES, ReT2Config, three_taps
from ret2_plugin.modeling.fusion import ReTFusion
from ret2_plugin.modeling.model import CONFIG_NAME, WEIGHTS_NAME, ReT2Model

__all__ = [
    "CONFIG_NAME",
    "LAYER_STRATEGIES",
    "WEIGHTS_NAME",
    "ReT2Config",
    "ReT2Model",
    "ReTCell",
    "ReTFusion",
    "three_taps",
]
