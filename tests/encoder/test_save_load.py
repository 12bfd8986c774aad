"""Save -> reload (load_encoder and plain sentence-transformers), official checkpoints, model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import MultiVectorEncoder, SentenceTransformer

from ret2_plugin import load_encoder
from ret2_plugin.encoder import ReT2Encoder

pytestmark = pytest.mark.unit


def _raw(image_dir: Path) -> list:
    return ["a red tile", str(image_dir / "red.png"), {"text": "a gradient", "image": str(image_dir / "gradient.png")}]


def test_save_then_reload_gives_identical_vectors(st_model, image_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "st"
    st_model.save(str(folder))
    assert json.loads((folder / "modules.json").read_text())[0]["type"] == "ret2_plugin.encoder.st_module.ReT2Encoder"
    for name in (
        "ret2_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "ret2_model_card.json",
    ):
        assert (folder / name).is_file(), name
    raw = _raw(image_dir)
    before_q = st_model.encode_query(raw, normalize_embeddings=True)
    before_d = st_model.encode_document(raw, normalize_embeddings=True)
    for reloaded in (
        load_encoder(folder, device="cpu"),
        SentenceTransformer(str(folder), trust_remote_code=True, device="cpu"),
    ):
        assert isinstance(reloaded[0], ReT2Encoder)
        np.testing.assert_array_equal(reloaded.encode_query(raw, normalize_embeddings=True), before_q)
        np.testing.assert_array_equal(reloaded.encode_document(raw, normalize_embeddings=True), before_d)


def test_model_card_names_backbones_taps_and_output(st_model, tmp_path: Path) -> None:
    folder = tmp_path / "card"
    st_model.save(str(folder))
    card = (folder / "README.md").read_text()
    config = st_model[0].model.config
    assert "clip_text_model" in card and "clip_vision_model" in card
    assert f"text {config.text_layers}" in card
    assert f"single vector: {config.embedding_dim} dims" in card
    facts = json.loads((folder / "ret2_model_card.json").read_text())
    assert facts["vision_layers"] == config.vision_layers


def test_prompts_survive_save(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_encoder(tiny_model_dir, device="cpu", prompts={"query": "Find"})
    model.save(str(tmp_path / "p"))
    reloaded = load_encoder(tmp_path / "p", device="cpu")
    assert reloaded.prompts["query"] == "Find"
    np.testing.assert_array_equal(reloaded.encode_query(["a cat"]), model.encode_query(["a cat"]))


def test_multi_vector_save_reloads_as_multi_vector_encoder(mv_model, tmp_path: Path) -> None:
    folder = tmp_path / "mv"
    mv_model.save(str(folder))
    before = mv_model.encode_document(["a red tile"], convert_to_numpy=True)[0]
    for reloaded in (
        load_encoder(folder, device="cpu"),
        MultiVectorEncoder(str(folder), trust_remote_code=True, device="cpu"),
    ):
        assert isinstance(reloaded, MultiVectorEncoder)
        np.testing.assert_array_equal(reloaded.encode_document(["a red tile"], convert_to_numpy=True)[0], before)


def test_official_checkpoint_directory_loads(tmp_path: Path, image_dir: Path) -> None:
    import torch

    from ret2_plugin import ReT2Config, ReT2Model
    from ret2_plugin.presets import clip_image_processor, clip_tower_configs
    from ret2_plugin.processing import clip_tokenizer
    from tests.modeling.test_official import FUSION, write_official_checkpoint

    text, vision = clip_tower_configs(width=32, layers=12, heads=2)
    torch.manual_seed(5)
    source = ReT2Model(ReT2Config(text_config=text, vision_config=vision, layer_strategy="clip_vit_b", **FUSION)).eval()
    write_official_checkpoint(tmp_path, source, text, vision)
    clip_tokenizer().save_pretrained(str(tmp_path))
    clip_image_processor(32).save_pretrained(str(tmp_path))
    model = load_encoder(tmp_path, device="cpu")
    assert isinstance(model, MultiVectorEncoder)
    got = model.encode_query([{"text": "a red tile", "image": str(image_dir / "red.png")}], convert_to_numpy=True)[0]
    from ret2_plugin.items import Item

    with torch.inference_mode():
        batch = model[0].processor([Item(text="a red tile", image=str(image_dir / "red.png"))], side="query")
        ref = torch.nn.functional.normalize(source.forward_features("query", **batch), dim=-1)[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_foreign_sentence_transformers_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "evil.Module"}]))
    with pytest.raises(ValueError, match="modules other than"):
        load_encoder(tmp_path)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_encoder(tmp_path / "nope")


def test_registered_as_the_ret2_encoder_plugin() -> None:
    from ret2_plugin.plugins import get_encoder_loader

    assert get_encoder_loader("ret2") is load_encoder


def test_image_root_resolves_relative_paths_and_confines_them(tiny_model_dir: Path, image_dir: Path) -> None:
    from ret2_plugin.processing import ImageLoadError

    model = load_encoder(tiny_model_dir, device="cpu", image_root=str(image_dir))
    np.testing.assert_allclose(model.encode(["red.png"]), model.encode([str(image_dir / "red.png")]), atol=1e-6)
    with pytest.raises(ImageLoadError, match="escapes the image root"):
        model.encode([{"image": "../outside.png"}])


def test_training_data_reaches_the_card(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_encoder(tiny_model_dir, device="cpu")
    model[0].training_data = ["M2KR", "ViQuAE"]
    model.save(str(tmp_path / "t"))
    assert "**Training data:** M2KR, ViQuAE" in (tmp_path / "t" / "README.md").read_text()
    assert load_encoder(tmp_path / "t", device="cpu")[0].training_data == ["M2KR", "ViQuAE"]


@pytest.mark.parametrize(
    "extra", ["sentence_transformers.base.modules.transformer.Transformer", "sentence_transformers.base.modules.Router"]
)
def test_modules_that_could_run_folder_code_are_refused(st_model, tmp_path: Path, extra: str) -> None:
    folder = tmp_path / "st"
    st_model.save(str(folder))
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 1, "name": "1", "path": "1_Extra", "type": extra})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=rf"modules other than.*{extra.split('.')[-1]}"):
        load_encoder(folder, device="cpu")


def test_image_root_is_not_saved(tiny_model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    load_encoder(tiny_model_dir, device="cpu", image_root=str(image_dir)).save(str(tmp_path / "r"))
    assert "image_root" not in json.loads((tmp_path / "r" / "ret2_st_module.json").read_text())
    assert load_encoder(tmp_path / "r", device="cpu")[0].image_root is None


def test_hub_id_is_resolved_once_for_model_and_processor(tiny_model_dir: Path, monkeypatch) -> None:
    from ret2_plugin.modeling import official

    asked = []
    real = official.resolve_checkpoint_dir

    def offline_hub(path):  # stands in for the hub download: "org/tiny" is cached in tiny_model_dir
        asked.append(str(path))
        return tiny_model_dir if str(path) == "org/tiny" else real(path)

    monkeypatch.setattr(official, "resolve_checkpoint_dir", offline_hub)
    encoder = ReT2Encoder.from_model_dir("org/tiny")
    assert asked.count("org/tiny") == 1
    assert encoder.processor.tokenizer is not None and encoder.get_embedding_dimension() > 0


def test_module_config_holds_only_what_belongs_to_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    """image_workers / image_root are per machine: not listed in config_keys, not saved, given at load."""
    model = load_encoder(tiny_model_dir, device="cpu", image_workers=3, image_root=str(tmp_path))
    assert ReT2Encoder.config_keys == ["training_data"]
    model.save(str(tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "ret2_st_module.json").read_text()) == {"training_data": []}
    reloaded = load_encoder(tmp_path / "m", device="cpu", image_workers=2)
    assert reloaded[0].image_workers == 2 and reloaded[0].image_root is None
    assert not hasattr(model[0], "_card_owner")


def test_a_hand_written_readme_is_kept_and_ours_refreshed(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = load_encoder(tiny_model_dir, device="cpu")
    model.save(str(tmp_path / "a"))
    assert (tmp_path / "a" / "README.md").read_text() == model[0].model_card()
    (tmp_path / "a" / "README.md").write_text("# My own card\n")
    load_encoder(tmp_path / "a", device="cpu").save(str(tmp_path / "b"))
    assert (tmp_path / "b" / "README.md").read_text() == "# My own card\n"
    model.save(str(tmp_path / "c"))
    again = load_encoder(tmp_path / "c", device="cpu")  # loads our card as its README
    again[0].training_data = ["emoji-corpus"]
    again.save(str(tmp_path / "d"))
    assert "emoji-corpus" in (tmp_path / "d" / "README.md").read_text()  # our card, refreshed
