"""One side's fusion module: per-step adapters, the shared recurrent cell and the output head.

ReT v1 has one of these for queries and one for documents; ReT-2 shares one. Attribute names
(`text_adapter`, `vision_adapter`, `ret_cell`, `late_proj`) follow the official checkpoint layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ret2_plugin.modeling.cell import ReTCell, additive_padding_mask
from ret2_plugin.modeling.configuration import ReT2Config


class ReTFusion(nn.Module):
    def __init__(self, config: ReT2Config, text_hidden: int, vision_hidden: int) -> None:
        super().__init__()
        self.text_layers = list(config.text_layers)
        self.vision_layers = list(config.vision_layers)
        self.use_pooler_features = config.use_pooler_features
        self.text_adapter = nn.ModuleList(nn.Linear(text_hidden, config.hidden_size) for _ in self.text_layers)
        self.vision_adapter = nn.ModuleList(nn.Linear(vision_hidden, config.hidden_size) for _ in self.vision_layers)
        self.ret_cell = ReTCell(config)
        if config.late_proj_output_size:
            self.late_proj: nn.Module = nn.Linear(config.hidden_size, config.late_proj_output_size, bias=False)
        else:
            self.late_proj = nn.Identity()

    def forward(
        self,
        text_states: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
        attention_mask: torch.Tensor | None,
        vision_states: Sequence[torch.Tensor] | Mapping[int, torch.Tensor],
        text_mask: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Run the recurrence over the tapped layers; returns [N, K, D] or pooled [N, D]. The states
        are indexed by block number (every block's output, or a mapping of the tapped ones)."""
        first = vision_states[self.vision_layers[0]]
        padding = None if attention_mask is None else additive_padding_mask(attention_mask, first.dtype)
        state = self.ret_cell.initial_state(first.shape[0])
        for step, (t_idx, v_idx) in enumerate(zip(self.text_layers, self.vision_layers)):
            state = self.ret_cell(
                state,
                self.text_adapter[step](text_states[t_idx]),
                padding,
                self.vision_adapter[step](vision_states[v_idx]),
                text_mask,
                image_mask,
            )
        if self.use_pooler_features:
            state = state.mean(dim=1)
        return self.late_proj(state)
