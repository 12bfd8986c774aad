"""Inference fast paths equal the reference computation: tapped-block hooks vs `output_hidden_states`,
the batched cell vs nn.MultiheadAttention, meta-device loading vs a plain state-dict copy."""

from __future__ import annotations

import pytest
import torch

from ret2_plugin import ReT2Config, ReT2Model
from ret2_plugin.modeling import ReTCell
from ret2_plugin.modeling.backbones import build_backbone, text_hidden_states, vision_hidden_states
from ret2_plugin.modeling.cell import additive_padding_mask
from ret2_plugin.presets import clip_tower_configs

pytestmark = pytest.mark.unit


def _towers() -> tuple[dict, dict]:
    return clip_tower_configs(width=32, layers=6, heads=2, image_size=32, patch_size=8)


def _batch(n: int = 3, seq: int = 9) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    mask = torch.ones(n, seq, dtype=torch.long)
    mask[1, 4:] = 0
    return {
        "input_ids": torch.randint(1, 49406, (n, seq)),
        "attention_mask": mask,
        "pixel_values": torch.randn(n, 3, 32, 32),
        "text_mask": torch.tensor([1.0, 1.0, 0.0]),
        "image_mask": torch.tensor([1.0, 0.0, 1.0]),
    }


@pytest.mark.parametrize("tower", ["text", "vision", "bert"])
def test_tapped_hooks_equal_output_hidden_states(tower: str) -> None:
    text, vision = _towers()
    if tower == "bert":
        text = dict(
            model_type="bert",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=5,
            num_attention_heads=2,
            vocab_size=200,
        )
    model = build_backbone(vision if tower == "vision" else text).eval()
    batch = _batch()
    if tower == "bert":
        batch["input_ids"] = batch["input_ids"] % 200
    layers = [0, 2, 3]  # stops after block 3 of 5-6
    with torch.inference_mode():
        if tower == "vision":
            full, tapped = (
                vision_hidden_states(model, batch["pixel_values"]),
                vision_hidden_states(model, batch["pixel_values"], layers),
            )
        else:
            args = (model, batch["input_ids"], batch["attention_mask"])
            full, tapped = text_hidden_states(*args), text_hidden_states(*args, layers)
    assert isinstance(tapped, dict) and sorted(tapped) == layers
    for i in layers:
        torch.testing.assert_close(tapped[i], full[i], rtol=0, atol=0)
    with torch.enable_grad():  # with autograd on, the plain path (hooks would re-fire in checkpointed backward)
        assert isinstance(
            vision_hidden_states(model, batch["pixel_values"], layers)
            if tower == "vision"
            else text_hidden_states(model, batch["input_ids"], batch["attention_mask"], layers),
            tuple,
        )


def _cell(**overrides) -> ReTCell:
    text, vision = _towers()
    config = ReT2Config.ret_v1(
        text,
        vision,
        hidden_size=64,
        num_queries=4,
        input_gate_bias_prior=0.5,
        forget_gate_bias_prior=-0.5,
        dropout_p=0.0,
        attention_dropout=0.0,
        **overrides,
    )
    torch.manual_seed(0)
    return ReTCell(config)


@pytest.mark.parametrize("use_tanh", [False, True])
def test_inference_cell_equals_training_cell(use_tanh: bool) -> None:
    cell = _cell(use_tanh=use_tanh)
    n = 3
    state, text, vision = torch.randn(n, 4, 64), torch.randn(n, 7, 64), torch.randn(n, 5, 64)
    attention = torch.ones(n, 7)
    attention[0, 3:] = 0
    padding = additive_padding_mask(attention, torch.float32)
    m_t, m_v = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])
    with torch.no_grad():
        reference = cell.train()(state, text, padding, vision, m_t, m_v)  # dropout 0: the nn.MultiheadAttention path
        fast = cell.eval()(state, text, padding, vision, m_t, m_v)
        torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)
        # the batched weights follow in-place updates of their sources (e.g. an optimiser step)
        cell.text_forget_gate_w.weight.add_(0.3)
        cell.sa.in_proj_weight.mul_(1.1)
        changed = cell(state, text, padding, vision, m_t, m_v)
        assert not torch.allclose(changed, fast)
        torch.testing.assert_close(changed, cell.train()(state, text, padding, vision, m_t, m_v), rtol=0, atol=1e-5)


def test_fast_forward_equals_reference_forward(tmp_path) -> None:
    """Whole model: hooks + fast cell (inference mode) vs output_hidden_states + MultiheadAttention."""
    text, vision = _towers()
    config = ReT2Config.ret_v1(
        text,
        vision,
        hidden_size=64,
        num_queries=4,
        text_layers=[0, 2, 4],
        vision_layers=[1, 2, 3],
        dropout_p=0.0,
        attention_dropout=0.0,
    )
    torch.manual_seed(0)
    model = ReT2Model(config)
    batch = _batch()
    with torch.no_grad():
        model.train()  # frozen towers stay in eval; fusion takes the reference path
        reference = model.forward_features("document", **batch)
    with torch.inference_mode():
        fast = model.eval().forward_features("document", **batch)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)


def test_from_pretrained_builds_on_meta_and_assigns(tmp_path) -> None:
    text, vision = _towers()
    torch.manual_seed(0)
    model = ReT2Model(ReT2Config.ret2(text, vision, hidden_size=64, num_queries=4)).eval()
    model.save_pretrained(tmp_path)
    loaded = ReT2Model.from_pretrained(tmp_path)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(p.requires_grad for p in loaded.fusion_parameters())
    batch = _batch()
    with torch.inference_mode():
        torch.testing.assert_close(
            loaded.forward_features("query", **batch), model.forward_features("query", **batch), rtol=0, atol=0
        )
    # A plain (non-deferred) model still copies into its own parameters.
    other = ReT2Model(model.config)
    before = other.query_fusion.late_proj.weight
    other.load_weights(model.own_state_dict())
    assert other.query_fusion.late_proj.weight is before
    torch.testing.assert_close(before, model.query_fusion.late_proj.weight)


def test_deferred_load_refuses_missing_weights(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    text, vision = _towers()
    model = ReT2Model(ReT2Config.ret2(text, vision, hidden_size=64, num_queries=4))
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("query_fusion.ret_cell.mlp_ln.weight")
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="missing"):
        ReT2Model.from_pretrained(tmp_path)


def test_tapped_hooks_are_per_thread() -> None:
    import threading

    text, _ = _towers()
    model = build_backbone(text).eval()
    batch = _batch()
    with torch.inference_mode():
        expected = text_hidden_states(model, batch["input_ids"], batch["attention_mask"])
    results: dict[int, object] = {}

    def work(i: int) -> None:
        with torch.inference_mode():
            for _ in range(3):
                ids, mask = batch["input_ids"][: i + 1], batch["attention_mask"][: i + 1]
                results[i] = text_hidden_states(model, ids, mask, [1, 3 + i % 2])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, got in results.items():
        assert sorted(got) == [1, 3 + i % 2]
        for layer, tensor in got.items():
            torch.testing.assert_close(tensor, expected[layer][: i + 1], rtol=0, atol=1e-6)
