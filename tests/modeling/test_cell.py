"""The recurrent cell against a hand computation of ret-model.md section 2, written with plain
matrix products (no nn.MultiheadAttention), on small random tensors."""

from __future__ import annotations

import math

import pytest
import torch

from ret2_plugin.modeling import ReT2Config, ReTCell
from ret2_plugin.modeling.cell import additive_padding_mask, sinusoidal_table

pytestmark = pytest.mark.unit


def _config(**overrides) -> ReT2Config:
    base = dict(hidden_size=16, num_queries=3, num_attention_heads=2, dropout_p=0.0, attention_dropout=0.0)
    return ReT2Config(**{**base, **overrides})


def _mha(mha: torch.nn.MultiheadAttention, q, k, v, heads: int, additive=None) -> torch.Tensor:
    """Multi-head attention by hand from the module's packed weights."""
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, b_k, b_v = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (0, 0, 0)
    n, lq, h = q.shape
    d = h // heads

    def split(x):
        return x.view(n, -1, heads, d).transpose(1, 2)

    qh, kh, vh = split(q @ w_q.T + b_q), split(k @ w_k.T + b_k), split(v @ w_v.T + b_v)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(d)
    if additive is not None:
        scores = scores + additive[:, None, None, :]
    out = (scores.softmax(-1) @ vh).transpose(1, 2).reshape(n, lq, h)
    out = out @ mha.out_proj.weight.T
    return out + mha.out_proj.bias if mha.out_proj.bias is not None else out


def _by_hand(cell: ReTCell, state, text, attn, vision, m_t, m_v, use_tanh=False):
    ln = torch.nn.functional.layer_norm
    phi = torch.tanh if use_tanh else (lambda x: x)
    x = state + cell.query_state_ids
    x_hat = ln(x, (16,), cell.xa_ln.weight, cell.xa_ln.bias)
    r = x + _mha(cell.sa, x_hat, x_hat, x_hat, 2)
    t = ln(text, (16,), cell.text_ln.weight, cell.text_ln.bias)
    v = ln(vision, (16,), cell.vision_ln.weight, cell.vision_ln.bias)
    c_t = _mha(cell.text_xa, x_hat, t, t, 2, additive=additive_padding_mask(attn, torch.float32))
    c_v = _mha(cell.vision_xa, x_hat, v, v, 2)
    mt, mv = m_t[:, None, None], m_v[:, None, None]
    lin = torch.nn.functional.linear
    i_t = (
        torch.sigmoid(lin(c_t, cell.text_input_gate_w.weight, cell.text_input_gate_w.bias) + cell.input_gate_bias_prior)
        * mt
    )
    i_v = (
        torch.sigmoid(
            lin(c_v, cell.vision_input_gate_w.weight, cell.vision_input_gate_w.bias) + cell.input_gate_bias_prior
        )
        * mv
    )
    f = torch.sigmoid(
        mt * lin(c_t, cell.text_forget_gate_w.weight, cell.text_forget_gate_w.bias)
        + mv * lin(c_v, cell.vision_forget_gate_w.weight, cell.vision_forget_gate_w.bias)
        + cell.forget_gate_bias_prior
    )
    h = phi(r) * f + phi(c_t) * i_t + phi(c_v) * i_v
    return h + cell.mlp(ln(h, (16,), cell.mlp_ln.weight, cell.mlp_ln.bias))


@pytest.mark.parametrize("use_tanh", [False, True])
@pytest.mark.parametrize("priors", [(0.0, 0.0), (1.5, -2.0)])
def test_cell_matches_hand_computation(use_tanh: bool, priors: tuple[float, float]) -> None:
    torch.manual_seed(0)
    cell = ReTCell(_config(use_tanh=use_tanh, input_gate_bias_prior=priors[0], forget_gate_bias_prior=priors[1])).eval()
    for p in cell.parameters():  # make every term matter (default LN/biases are trivial)
        torch.nn.init.normal_(p, std=0.3)
    state = torch.randn(4, 3, 16)
    text, vision = torch.randn(4, 5, 16), torch.randn(4, 7, 16)
    attn = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    m_t, m_v = torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 1.0, 1.0])
    ours = cell(state, text, additive_padding_mask(attn, torch.float32), vision, m_t, m_v)
    expected = _by_hand(cell, state, text, attn, vision, m_t, m_v, use_tanh)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_positional_table_is_re_added_from_the_sin_cos_table() -> None:
    table = sinusoidal_table(4, 8)
    assert table.shape == (1, 4, 8)
    i, col = 3, 5  # odd column -> cos(pos * exp(-ln(10000) * 4 / 8))
    assert math.isclose(table[0, i, col].item(), math.cos(i * math.exp(-math.log(10000.0) * 4 / 8)), rel_tol=1e-6)
    assert math.isclose(table[0, i, 4].item(), math.sin(i * math.exp(-math.log(10000.0) * 4 / 8)), rel_tol=1e-6)


def test_masked_modality_does_not_influence_the_state() -> None:
    torch.manual_seed(1)
    cell = ReTCell(_config()).eval()
    state, text = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    no_image = torch.zeros(2)
    a = cell(state, text, None, torch.randn(2, 7, 16), torch.ones(2), no_image)
    b = cell(state, text, None, 100 * torch.randn(2, 7, 16), torch.ones(2), no_image)
    assert torch.equal(a, b)
    with_image = cell(state, text, None, torch.randn(2, 7, 16), torch.ones(2), torch.ones(2))
    assert not torch.allclose(a, with_image)


def test_sa_ln_exists_but_is_unused() -> None:
    torch.manual_seed(2)
    cell = ReTCell(_config()).eval()
    args = (torch.randn(1, 3, 16), torch.randn(1, 4, 16), None, torch.randn(1, 6, 16), torch.ones(1), torch.ones(1))
    before = cell(*args)
    torch.nn.init.normal_(cell.sa_ln.weight)
    assert torch.equal(before, cell(*args))
