"""Official ReT checkpoint directories (config.json `retriever` + query_model./passage_model. keys)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ret2_plugin import ReT2Config, ReT2Model
from ret2_plugin.items import Item
from ret2_plugin.modeling.official import config_from_official
from ret2_plugin.presets import clip_image_processor, clip_tower_configs
from ret2_plugin.processing import ReT2Processor, clip_tokenizer

pytestmark = pytest.mark.unit

FUSION = dict(hidden_size=64, num_queries=4, late_proj_output_size=16, dropout_p=0.05, attention_dropout=0.05)


def _ret_config(text: dict, vision: dict) -> dict:
    return {
        "model_type": "ret",
        "text_config": {**text, "_name_or_path": "openai/clip-vit-base-patch32"},
        "vision_config": {**vision, "_name_or_path": "openai/clip-vit-base-patch32"},
        "layer_strategy": "clip_vit_b",
        "use_pooler_features": False,
        "activation_fn": "gelu",
        "input_gate_bias_prior": 0.5,
        "forget_gate_bias_prior": -0.5,
        "use_tanh": False,
        "is_text_frozen": True,
        "is_vision_frozen": True,
        **FUSION,
    }


def write_official_checkpoint(folder: Path, model: ReT2Model, text: dict, vision: dict) -> None:
    """Write `model`'s weights in the official layout, as aimagelab/ReT's save_pretrained does under
    transformers 4.x (see tests/fixtures/official-ret-tiny for checkpoints written by the official code)."""
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        if head == "text_backbone":  # transformers 4.x CLIPTextModel keys: text_model.<...>
            state[f"query_model.text_model.text_model.{rest}"] = value
        elif head == "vision_backbone":
            state[f"query_model.vision_model.vision_model.{rest}"] = value
        elif head == "query_fusion":
            state[f"query_model.{rest}"] = value
        elif head == "document_fusion":
            state[f"passage_model.{rest}"] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    config = {
        "model_type": "retriever",
        "query_config": _ret_config(text, vision),
        "passage_config": _ret_config(text, vision),
        "share_query_passage_models": False,
        "share_text_models": True,
        "share_vision_models": True,
        "fg_loss": True,
        "simmetric_loss": True,
    }
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReT2Model]:
    text, vision = clip_tower_configs(width=32, layers=12, heads=2)
    torch.manual_seed(3)
    source = ReT2Model(
        ReT2Config(
            text_config=text,
            vision_config=vision,
            layer_strategy="clip_vit_b",
            input_gate_bias_prior=0.5,
            forget_gate_bias_prior=-0.5,
            **FUSION,
        )
    ).eval()
    folder = tmp_path_factory.mktemp("official")
    write_official_checkpoint(folder, source, text, vision)
    clip_tokenizer().save_pretrained(str(folder))
    clip_image_processor(32).save_pretrained(str(folder))
    return folder, source


def test_config_mapping(official) -> None:
    folder, _ = official
    cfg = config_from_official(json.loads((folder / "config.json").read_text()))
    assert cfg.text_layers == list(range(12)) and cfg.vision_layers == list(range(12))
    assert cfg.multi_vector and not cfg.share_query_document and cfg.heads == 1
    assert cfg.input_gate_bias_prior == 0.5 and cfg.forget_gate_bias_prior == -0.5
    assert cfg.text_model_name_or_path == "openai/clip-vit-base-patch32"


def test_official_checkpoint_loads_to_identical_outputs(official) -> None:
    folder, source = official
    loaded = ReT2Model.from_pretrained(folder)
    processor = ReT2Processor.from_pretrained(folder)
    items = [Item(text="a photo of a cat", image=Image.new("RGB", (50, 40), "orange")), Item(text="just words")]
    for side in ("query", "document"):
        batch = processor(items, side=side)
        torch.testing.assert_close(
            loaded.forward_features(side, **batch), source.forward_features(side, **batch), atol=0, rtol=0
        )
    assert loaded.query_fusion.ret_cell.input_gate_bias_prior.item() == 0.5


def test_forward_composes_the_towers_as_the_official_model(official) -> None:
    """hidden_states[1:][l] -> adapter[l] -> cell, K tokens -> late_proj (no pooling for v1)."""
    folder, source = official
    processor = ReT2Processor.from_pretrained(folder)
    batch = processor([Item(text="two words", image=Image.new("RGB", (32, 32), "red"))], side="document")
    fusion = source.document_fusion
    texts = source.text_backbone(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
    ).hidden_states[1:]
    visions = source.vision_backbone(pixel_values=batch["pixel_values"], output_hidden_states=True).hidden_states[1:]
    padding = (1.0 - batch["attention_mask"].float()) * torch.finfo(torch.float32).min
    state = fusion.ret_cell.query_hidden_states.expand(1, -1, -1)
    for step in range(12):
        state = fusion.ret_cell(
            state,
            fusion.text_adapter[step](texts[step]),
            padding,
            fusion.vision_adapter[step](visions[step]),
            torch.ones(1),
            torch.ones(1),
        )
    expected = fusion.late_proj(state)
    torch.testing.assert_close(source.forward_features("document", **batch), expected)


def test_not_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(FileNotFoundError, match="not a ret2-plugin model"):
        ReT2Model.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ReT2Model.from_pretrained(tmp_path / "nope")


def test_missing_weights_file_is_a_clear_error(official, tmp_path: Path) -> None:
    folder, _ = official
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="safetensors"):
        ReT2Model.from_pretrained(tmp_path)


def test_hub_id_resolves_from_the_local_hub_cache_offline(official, tmp_path: Path, monkeypatch) -> None:
    """A hub id goes through huggingface_hub; offline, a previously downloaded snapshot is used."""
    import shutil

    folder, source = official
    snapshot = tmp_path / "hub" / "models--aimagelab--ReT-tiny" / "snapshots" / "0123abc"
    shutil.copytree(folder, snapshot)
    (tmp_path / "hub" / "models--aimagelab--ReT-tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--aimagelab--ReT-tiny" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    loaded = ReT2Model.from_pretrained("aimagelab/ReT-tiny")
    torch.testing.assert_close(
        loaded.state_dict()["query_fusion.late_proj.weight"], source.state_dict()["query_fusion.late_proj.weight"]
    )
    with pytest.raises(FileNotFoundError, match="could not be fetched"):
        ReT2Model.from_pretrained("aimagelab/not-cached")
