"""ReT2Model: masks, batch invariance, output modes, presets, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from ret2_plugin import ReT2Config, ReT2Model, ReT2Processor
from ret2_plugin.items import Item
from ret2_plugin.modeling import LAYER_STRATEGIES, three_taps
from ret2_plugin.presets import clip_tower_configs, tiny_clip_model

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def v1() -> tuple[ReT2Model, ReT2Processor]:
    return tiny_clip_model("ret_v1")


@pytest.fixture(scope="module")
def ret2() -> tuple[ReT2Model, ReT2Processor]:
    return tiny_clip_model("ret2")


def _items() -> list[Item]:
    return [
        Item(text="a red square on a plain background", image=Image.new("RGB", (40, 30), "red")),
        Item(text="blue"),
        Item(image=Image.new("RGB", (20, 20), "green")),
        Item(text="an instruction-led query", instruction="Find the picture."),
    ]


def test_output_shapes_by_mode(v1, ret2) -> None:
    for (model, processor), expected in ((v1, (4, 8, 32)), (ret2, (4, 32))):
        batch = processor(_items(), side="query")
        out = model.forward_features("query", **batch)
        assert tuple(out.shape) == expected
        assert model.config.multi_vector == (len(expected) == 3)


def test_missing_image_ignores_pixels_entirely(v1) -> None:
    model, processor = v1
    batch = processor([Item(text="only text"), Item(text="also text", image=Image.new("RGB", (8, 8)))], side="document")
    batch["image_mask"] = torch.tensor([0.0, 0.0])
    a = model.forward_features("document", **batch)
    noisy = dict(batch, pixel_values=torch.randn_like(batch["pixel_values"]) * 5)
    b = model.forward_features("document", **noisy)
    assert torch.equal(a, b)


def test_missing_text_ignores_tokens_entirely(ret2) -> None:
    model, processor = ret2
    batch = processor([Item(image=Image.new("RGB", (8, 8), "red")), Item(image=Image.new("RGB", (8, 8), "blue"))])
    a = model.forward_features("document", **batch)
    other_text = processor([Item(text="lorem ipsum dolor", image=Image.new("RGB", (8, 8), "red"))] * 2)
    b = model.forward_features(
        "document",
        **dict(other_text, pixel_values=batch["pixel_values"], text_mask=torch.zeros(2), image_mask=torch.ones(2)),
    )
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("side", ["query", "document"])
def test_batch_invariance(v1, side: str) -> None:
    model, processor = v1
    items = _items()
    together = model.forward_features(side, **processor(items, side=side))
    for i, item in enumerate(items):
        alone = model.forward_features(side, **processor([item], side=side))
        torch.testing.assert_close(alone[0], together[i], atol=1e-5, rtol=1e-5)


def test_query_and_document_sides_differ_for_v1_and_match_for_ret2(v1, ret2) -> None:
    for (model, processor), same in ((v1, False), (ret2, True)):
        batch = processor(_items()[:2], side="document")
        q = model.forward_features("query", **batch)
        d = model.forward_features("document", **batch)
        assert torch.equal(q, d) is same
    with pytest.raises(ValueError, match="side"):
        ret2[0].forward_features("passenger", **ret2[1](_items()[:1]))


def test_save_load_round_trip(tmp_path: Path, v1) -> None:
    model, processor = v1
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = ReT2Model.from_pretrained(tmp_path)
    reloaded_processor = ReT2Processor.from_pretrained(tmp_path)
    batch = processor(_items(), side="query")
    torch.testing.assert_close(reloaded_processor(_items(), side="query"), batch)
    assert torch.equal(model.forward_features("query", **batch), reloaded.forward_features("query", **batch))
    assert not list(tmp_path.glob("*.tmp"))


def test_shared_model_saves_the_fusion_once(tmp_path: Path, ret2) -> None:
    from safetensors import safe_open

    ret2[0].save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert any(k.startswith("query_fusion.") for k in keys)
    assert not any(k.startswith("document_fusion.") for k in keys)


def test_weights_that_do_not_fit_are_refused(tmp_path: Path, ret2) -> None:
    ret2[0].save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "ret2_config.json").read_text())
    cfg["num_queries"] = 3
    (tmp_path / "ret2_config.json").write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError, match="size mismatch for query_fusion.ret_cell.query_hidden_states"):
        ReT2Model.from_pretrained(tmp_path)


def test_layer_presets_and_ret2_taps() -> None:
    assert LAYER_STRATEGIES["clip_vit_l"]["vision"] == tuple(range(0, 24, 2))
    assert LAYER_STRATEGIES["openclip_vit_g"]["text"][-2:] == (28, 31)
    assert LAYER_STRATEGIES["openclip_vit_g"]["vision"] == tuple(range(2, 48, 3))
    assert three_taps(12) == [0, 5, 11]
    text, vision = clip_tower_configs(layers=6)
    cfg = ReT2Config.ret2(text, vision)
    assert (cfg.text_layers, cfg.vision_layers, cfg.share_query_document, cfg.multi_vector) == (
        [0, 2, 5],
        [0, 2, 5],
        True,
        False,
    )
    with pytest.raises(ValueError, match="does not exist"):
        ReT2Config(text_config=text, vision_config=vision, layer_strategy="clip_vit_b", hidden_size=64)
    with pytest.raises(ValueError, match="same length"):
        ReT2Config(text_config=text, vision_config=vision, text_layers=[0, 1], vision_layers=[0], hidden_size=64)
    with pytest.raises(ValueError, match="unknown layer_strategy"):
        ReT2Config(layer_strategy="vit_zz")


def test_config_dict_round_trip_rejects_unknown_keys() -> None:
    text, vision = clip_tower_configs()
    cfg = ReT2Config.ret_v1(text, vision, hidden_size=64)
    assert ReT2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ReT2Config keys"):
        ReT2Config.from_dict({**cfg.to_dict(), "bogus": 1})


def test_frozen_backbones_get_no_gradients(ret2) -> None:
    text, vision = clip_tower_configs()
    model = ReT2Model(ReT2Config.ret_v1(text, vision, hidden_size=64, num_queries=4))
    assert not any(p.requires_grad for p in model.text_backbone.parameters())
    assert all(p.requires_grad for p in model.fusion_parameters())
    model.train()
    assert not model.text_backbone.training and model.query_fusion.training


def test_ret2_preset_honours_an_explicit_layer_strategy() -> None:
    text, vision = clip_tower_configs(layers=24)
    cfg = ReT2Config.ret2(text, vision, layer_strategy="clip_vit_l", hidden_size=64)
    assert cfg.text_layers == list(range(12)) and cfg.vision_layers == list(range(0, 24, 2))
