"""The ReT recurrent cell: one step of K latent tokens reading one text layer and one vision layer.

Parameter and buffer names follow the official checkpoint layout (`ret_cell.*`) so weights map 1:1.
Semantics (see shared/docs/ret-model.md section 2): self- and cross-attentions read the SAME
normalised state; cross-attention outputs enter only through input gates; modality masks zero the
input gates and the forget-gate projections of a missing modality.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ret2_plugin.modeling.configuration import ReT2Config


def sinusoidal_table(rows: int, width: int) -> torch.Tensor:
    """Rows 0..rows-1 of a [width, width] sin/cos table: even columns sin, odd columns cos."""
    position = torch.arange(width, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(1, width, width)
    table[..., 0::2] = torch.sin(position * div_term)
    table[..., 1::2] = torch.cos(position * div_term)
    return table[:, :rows, :].clone()


def additive_padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1/0 attention mask -> additive float mask (0 on real tokens, dtype's min on padding)."""
    return (1.0 - attention_mask.to(dtype)) * torch.finfo(dtype).min


class ReTCell(nn.Module):
    """h_l = cell(h_{l-1}, T_l, V_l); the same cell (same weights) is applied at every step."""

    def __init__(self, config: ReT2Config) -> None:
        super().__init__()
        hidden, heads = config.hidden_size, config.heads
        self.num_queries = config.num_queries
        self.num_heads = heads
        self.query_hidden_states = nn.Parameter(torch.empty(1, config.num_queries, hidden).normal_(0.0, 0.2))
        self.register_buffer("query_state_ids", sinusoidal_table(config.num_queries, hidden))
        attn = dict(embed_dim=hidden, num_heads=heads, dropout=config.attention_dropout, batch_first=True)
        self.sa = nn.MultiheadAttention(**attn)
        self.text_xa = nn.MultiheadAttention(**attn, bias=False)
        self.vision_xa = nn.MultiheadAttention(**attn, bias=False)
        activation = {"gelu": nn.GELU, "relu": nn.ReLU}.get(config.activation_fn)
        if activation is None:
            raise ValueError(f"unsupported activation_fn {config.activation_fn!r} (gelu or relu)")
        self.mlp = nn.Sequential(
            nn.Linear(hidden, config.mlp_size),
            nn.Dropout(config.dropout_p),
            activation(),
            nn.Linear(config.mlp_size, hidden),
            nn.Dropout(config.dropout_p),
        )
        self.text_input_gate_w = nn.Linear(hidden, hidden)
        self.vision_input_gate_w = nn.Linear(hidden, hidden)
        self.text_forget_gate_w = nn.Linear(hidden, hidden)
        self.vision_forget_gate_w = nn.Linear(hidden, hidden)
        self.xa_ln = nn.LayerNorm(hidden)
        self.text_ln = nn.LayerNorm(hidden)
        self.vision_ln = nn.LayerNorm(hidden)
        self.sa_ln = nn.LayerNorm(hidden)  # present in official checkpoints, never used
        self.mlp_ln = nn.LayerNorm(hidden)
        self.register_buffer("input_gate_bias_prior", torch.tensor(float(config.input_gate_bias_prior)))
        self.register_buffer("forget_gate_bias_prior", torch.tensor(float(config.forget_gate_bias_prior)))
        self.state_act = nn.Tanh() if config.use_tanh else nn.Identity()

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.query_hidden_states.expand(batch_size, -1, -1)

    def forward(
        self,
        state: torch.Tensor,
        text: torch.Tensor,
        text_padding: torch.Tensor | None,
        vision: torch.Tensor,
        text_mask: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """One step. `state` [N, K, H]; `text` [N, S, H] with additive `text_padding` [N, S];
        `vision` [N, P, H]; `text_mask` / `image_mask` [N] of 0/1 (sample has that modality)."""
        x = state + self.query_state_ids
        x_hat = self.xa_ln(x)
        residual = x + self.sa(x_hat, x_hat, x_hat, need_weights=False)[0]

        text_kv = self.text_ln(text)
        text_attn_mask = None
        if text_padding is not None:
            # Per-head [N*heads, K, S] additive mask, as the official cell builds it.
            text_attn_mask = (
                text_padding.unsqueeze(1).expand(-1, x.shape[1], -1).repeat_interleave(self.num_heads, dim=0)
            )
        c_text = self.text_xa(x_hat, text_kv, text_kv, attn_mask=text_attn_mask, need_weights=False)[0]
        vision_kv = self.vision_ln(vision)
        c_vision = self.vision_xa(x_hat, vision_kv, vision_kv, need_weights=False)[0]

        m_t = text_mask.to(x.dtype)[:, None, None]
        m_v = image_mask.to(x.dtype)[:, None, None]
        i_text = torch.sigmoid(self.text_input_gate_w(c_text) + self.input_gate_bias_prior) * m_t
        i_vision = torch.sigmoid(self.vision_input_gate_w(c_vision) + self.input_gate_bias_prior) * m_v
        forget = torch.sigmoid(
            self.text_forget_gate_w(c_text) * m_t
            + self.vision_forget_gate_w(c_vision) * m_v
            + self.forget_gate_bias_prior
        )
        fused = (
            self.state_act(residual) * forget
            + self.state_act(c_text) * i_text
            + self.state_act(c_vision) * i_vision
        )
        return fused + self.mlp(self.mlp_ln(fused))
