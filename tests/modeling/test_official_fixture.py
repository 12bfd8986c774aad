"""Checkpoints written by the official ReT code itself (tests/fixtures/official-ret-tiny, see its README):
they load, and give the official features, for both sides and both variants."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ret2_plugin import ReT2Model
from ret2_plugin.modeling.official import CheckpointKeyError

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official-ret-tiny"
VARIANTS = ("multivector", "pooled")


def _inputs(variant: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(FIXTURE / variant / "inputs.npz").items()}


@pytest.fixture(scope="module", params=VARIANTS)
def loaded(request: pytest.FixtureRequest) -> tuple[str, ReT2Model]:
    return request.param, ReT2Model.from_pretrained(FIXTURE / request.param / "checkpoint")


def test_official_layout_is_what_the_fixture_holds() -> None:
    keys = load_file(str(FIXTURE / "multivector" / "checkpoint" / "model.safetensors")).keys()
    assert any(k.startswith("query_model.text_model.text_model.") for k in keys)
    assert any(k.startswith("query_model.vision_model.vision_model.") for k in keys)
    assert not any(k.startswith(("passage_model.text_model.", "passage_model.vision_model.")) for k in keys)


def test_config_of_the_official_checkpoint(loaded) -> None:
    variant, model = loaded
    cfg = model.config
    assert cfg.multi_vector == (variant == "multivector")
    assert cfg.text_layers == list(range(12)) and cfg.vision_layers == list(range(0, 24, 2))
    assert (cfg.hidden_size, cfg.num_queries, cfg.embedding_dim, cfg.heads) == (64, 4, 24, 1)
    assert not cfg.share_query_document and model.query_fusion is not model.document_fusion


@pytest.mark.parametrize("side", ["query", "passage"])
def test_features_equal_the_official_ones(loaded, side: str) -> None:
    """Raw `ret_features` of the official query / passage models on the same tensors, <= 1e-5 (fp32, CPU)."""
    variant, model = loaded
    inputs = _inputs(variant)
    expected = np.load(FIXTURE / variant / "expected.npz")
    ours_side = "query" if side == "query" else "document"
    with torch.inference_mode():
        got = model.forward_features(ours_side, **inputs)
    assert got.shape == expected[side].shape
    np.testing.assert_allclose(got.numpy(), expected[side], atol=1e-5, rtol=0)
    normalized = torch.nn.functional.normalize(got, p=2, dim=-1).numpy()
    np.testing.assert_allclose(normalized, expected[f"{side}_normalized"], atol=1e-5, rtol=0)


def test_every_weight_comes_from_the_checkpoint(loaded) -> None:
    """Nothing is left at its random initialisation: each checkpoint tensor is where the mapping says."""
    variant, model = loaded
    checkpoint = load_file(str(FIXTURE / variant / "checkpoint" / "model.safetensors"))
    ours = model.own_state_dict()
    assert len(ours) == len(checkpoint)
    torch.testing.assert_close(
        ours["text_backbone.embeddings.token_embedding.weight"],
        checkpoint["query_model.text_model.text_model.embeddings.token_embedding.weight"],
        atol=0,
        rtol=0,
    )
    torch.testing.assert_close(
        ours["document_fusion.ret_cell.query_hidden_states"],
        checkpoint["passage_model.ret_cell.query_hidden_states"],
        atol=0,
        rtol=0,
    )
    torch.testing.assert_close(
        ours["query_fusion.late_proj.weight"], checkpoint["query_model.late_proj.weight"], atol=0, rtol=0
    )


def _copy_with(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE / "multivector" / "checkpoint", folder)
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    (folder / "model.safetensors").chmod(0o644)
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_a_key_that_maps_nowhere_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, lambda s: s.update({"query_model.extra_head.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointKeyError, match=r"map to no weight.*query_model\.extra_head\.weight"):
        ReT2Model.from_pretrained(folder)


def test_a_missing_weight_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, lambda s: s.pop("passage_model.ret_cell.sa_ln.weight"))
    with pytest.raises(CheckpointKeyError, match=r"does not set: document_fusion\.ret_cell\.sa_ln\.weight"):
        ReT2Model.from_pretrained(folder)


def test_a_missing_backbone_weight_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, lambda s: s.pop("query_model.text_model.text_model.final_layer_norm.bias"))
    with pytest.raises(CheckpointKeyError, match=r"text_backbone\.final_layer_norm\.bias"):
        ReT2Model.from_pretrained(folder)


def test_a_shape_mismatch_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = _copy_with(tmp_path, lambda s: s.update({"query_model.late_proj.weight": torch.zeros(5, 64)}))
    with pytest.raises(CheckpointKeyError, match=r"query_model\.late_proj\.weight"):
        ReT2Model.from_pretrained(folder)


def test_tied_passage_backbone_copies(tmp_path: Path) -> None:
    """Passage copies of the shared towers load when equal to the query side's, and are refused otherwise."""
    key = "query_model.vision_model.vision_model.post_layernorm.weight"
    copy = key.replace("query_model.", "passage_model.")
    same = _copy_with(tmp_path / "same", lambda s: s.update({copy: s[key].clone()}))
    ReT2Model.from_pretrained(same)
    differ = _copy_with(tmp_path / "differ", lambda s: s.update({copy: s[key] + 1}))
    with pytest.raises(CheckpointKeyError, match=r"differ from the shared.*" + copy.replace(".", r"\.")):
        ReT2Model.from_pretrained(differ)


def test_separate_query_passage_backbones_are_refused_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE / "multivector" / "checkpoint", folder)
    config = json.loads((folder / "config.json").read_text())
    config["share_text_models"] = False
    (folder / "config.json").chmod(0o644)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotImplementedError, match="separate query/passage backbones"):
        ReT2Model.from_pretrained(folder)


def test_shared_query_passage_checkpoint(tmp_path: Path) -> None:
    """`share_query_passage_models`: the official save writes no passage_model keys; one fusion module."""
    folder = _copy_with(tmp_path, lambda s: [s.pop(k) for k in [k for k in s if k.startswith("passage_model.")]])
    config = json.loads((folder / "config.json").read_text())
    config["share_query_passage_models"] = True
    (folder / "config.json").chmod(0o644)
    (folder / "config.json").write_text(json.dumps(config))
    model = ReT2Model.from_pretrained(folder)
    assert model.document_fusion is model.query_fusion
    inputs = _inputs("multivector")
    expected = np.load(FIXTURE / "multivector" / "expected.npz")["query"]
    with torch.inference_mode():
        np.testing.assert_allclose(model.forward_features("document", **inputs).numpy(), expected, atol=1e-5, rtol=0)
