"""The ReT recurrent cell: one step of K latent tokens reading one text layer and one vision layer.

Parameter and buffer names follow the official checkpoint layout (`ret_cell.*`) so weights map 1:1.
Semantics (see shared/docs/ret-model.md section 2): self- and cross-attentions read the SAME
normalised state; cross-attention outputs enter only through input gates; modality masks zero the
input gates and the forget-gate projections of a missing modality.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
        if not self.training:
            return self._forward_inference(state, text, text_padding, vision, text_mask, image_mask)
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
            self.state_act(residual) * forget + self.state_act(c_text) * i_text + self.state_act(c_vision) * i_vision
        )
        return fused + self.mlp(self.mlp_ln(fused))

    # ---- inference fast path ---------------------------------------------------------------------
    def _fused_weights(self) -> dict[str, torch.Tensor] | None:
        """Inference-only concatenations of the small per-step projections (the queries of the three
        attentions; each modality's input and forget gates): one GEMM instead of three / two. Rebuilt
        when a source weight changes (training step, `.to()`, load); None when the gate layers are not
        plain Linear (e.g. dynamically quantised), which then run one by one."""
        gates = (self.text_input_gate_w, self.text_forget_gate_w, self.vision_input_gate_w, self.vision_forget_gate_w)
        if not all(type(g) is nn.Linear for g in gates):
            return None
        sources = (
            self.sa.in_proj_weight,
            self.sa.in_proj_bias,
            self.text_xa.in_proj_weight,
            self.vision_xa.in_proj_weight,
            *(t for g in gates for t in (g.weight, g.bias)),
        )
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources if t is not None)
        cached = self.__dict__.get("_fused_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        hidden = self.query_hidden_states.shape[-1]
        with torch.no_grad(), torch.inference_mode(False):
            sa_bias = self.sa.in_proj_bias
            if sa_bias is None:
                sa_bias = self.sa.in_proj_weight.new_zeros(3 * hidden)
            fused = {
                "q_w": torch.cat(
                    [
                        self.sa.in_proj_weight,
                        self.text_xa.in_proj_weight[:hidden],
                        self.vision_xa.in_proj_weight[:hidden],
                    ]
                ),
                "q_b": torch.cat([sa_bias, sa_bias.new_zeros(2 * hidden)]),
                "text_gates_w": torch.cat([gates[0].weight, gates[1].weight]),
                "text_gates_b": torch.cat([gates[0].bias, gates[1].bias]),
                "vision_gates_w": torch.cat([gates[2].weight, gates[3].weight]),
                "vision_gates_b": torch.cat([gates[2].bias, gates[3].bias]),
            }
        self.__dict__["_fused_cache"] = (key, fused)
        return fused

    def _attend(
        self, mha: nn.MultiheadAttention, q: torch.Tensor, kv_in: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The rest of `mha(q_in, kv_in, kv_in)` (no dropout) from its projected queries `q` [N, K, H]:
        ONE packed K/V projection and SDPA on [N, heads, L, d] views (no batch_first transposes, no
        per-head copies of the mask)."""
        n, k_len, hidden = q.shape
        heads, head_dim = self.num_heads, hidden // self.num_heads
        bias = mha.in_proj_bias
        kv = F.linear(kv_in, mha.in_proj_weight[hidden:], None if bias is None else bias[hidden:])
        kv = kv.view(n, kv_in.shape[1], 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        q = q.reshape(n, k_len, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)
        return mha.out_proj(out.transpose(1, 2).reshape(n, k_len, hidden))

    def _queries(self, x_hat: torch.Tensor, fused: dict[str, torch.Tensor] | None) -> list[torch.Tensor]:
        """[sa q, sa k, sa v, text q, vision q] of the normalised state."""
        hidden = x_hat.shape[-1]
        if fused is not None:
            return list(F.linear(x_hat, fused["q_w"], fused["q_b"]).split(hidden, dim=-1))
        sa = F.linear(x_hat, self.sa.in_proj_weight, self.sa.in_proj_bias).split(hidden, dim=-1)
        return [
            *sa,
            F.linear(x_hat, self.text_xa.in_proj_weight[:hidden]),
            F.linear(x_hat, self.vision_xa.in_proj_weight[:hidden]),
        ]

    def _forward_inference(
        self,
        state: torch.Tensor,
        text: torch.Tensor,
        text_padding: torch.Tensor | None,
        vision: torch.Tensor,
        text_mask: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Same function as the training path (equal to <= 1e-5), without dropout: the K/V side (every
        text token and image patch) is projected in one GEMM per attention, the K*N-row projections of
        the state are batched (see `_fused_weights`) and the padding mask is broadcast, not copied per head."""
        fused = self._fused_weights()
        x = state + self.query_state_ids
        x_hat = self.xa_ln(x)
        sa_q, sa_k, sa_v, text_q, vision_q = self._queries(x_hat, fused)
        n, k_len, hidden = x_hat.shape
        heads = (n, k_len, self.num_heads, hidden // self.num_heads)
        sa = F.scaled_dot_product_attention(*(t.reshape(heads).transpose(1, 2) for t in (sa_q, sa_k, sa_v)))
        residual = x + self.sa.out_proj(sa.transpose(1, 2).reshape(n, k_len, hidden))
        mask = None if text_padding is None else text_padding[:, None, None, :]
        c_text = self._attend(self.text_xa, text_q, self.text_ln(text), mask)
        c_vision = self._attend(self.vision_xa, vision_q, self.vision_ln(vision), None)
        m_t = text_mask.to(x.dtype)[:, None, None]
        m_v = image_mask.to(x.dtype)[:, None, None]
        if fused is not None:
            t_in, t_forget = F.linear(c_text, fused["text_gates_w"], fused["text_gates_b"]).split(hidden, dim=-1)
            v_in, v_forget = F.linear(c_vision, fused["vision_gates_w"], fused["vision_gates_b"]).split(hidden, dim=-1)
        else:
            t_in, t_forget = self.text_input_gate_w(c_text), self.text_forget_gate_w(c_text)
            v_in, v_forget = self.vision_input_gate_w(c_vision), self.vision_forget_gate_w(c_vision)
        i_text = torch.sigmoid(t_in + self.input_gate_bias_prior) * m_t
        i_vision = torch.sigmoid(v_in + self.input_gate_bias_prior) * m_v
        forget = torch.sigmoid(t_forget * m_t + v_forget * m_v + self.forget_gate_bias_prior)
        fused_state = (
            self.state_act(residual) * forget + self.state_act(c_text) * i_text + self.state_act(c_vision) * i_vision
        )
        return fused_state + self.mlp(self.mlp_ln(fused_state))
