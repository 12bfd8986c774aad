"""End to end against the OFFICIAL ReT code: raw items (strings, image paths, joint dicts; RGBA,
greyscale, palette PNG / JPEG; missing image; missing text) through an official checkpoint folder
with its tokenizer and image-processor files give what the official `get_ret_features` returns.

Fixture: tests/fixtures/official-ret-e2e, written by tests/fixtures/make_official_e2e.py running the
official code (see that script); `expected.npz` holds the official outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sentence_transformers import MultiVectorEncoder, SentenceTransformer

from ret2_plugin import load_encoder

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "official-ret-e2e"
ITEMS = json.loads((FIXTURE / "items.json").read_text(encoding="utf-8"))
TOLERANCE = 1e-4


def raw_input(item: dict[str, Any], side: str) -> Any:
    """The item as a user hands it to encode_*: a string, an image path, or a dict."""
    image = str(FIXTURE / item["image"]) if item.get("image") else None
    if side == "query" and item.get("instruction"):
        return {
            k: v for k, v in {"text": item.get("text"), "image": image, "instruction": item["instruction"]}.items() if v
        }
    if item.get("text") and image:
        return {"text": item["text"], "image": image}
    return item.get("text") or image


def encode(model: Any, side: str, inputs: list[Any], batch_size: int = 4) -> np.ndarray:
    method = model.encode_query if side == "query" else model.encode_document
    out = method(inputs, batch_size=batch_size, convert_to_numpy=True)
    return np.stack([np.asarray(o) for o in out]) if isinstance(out, list) else np.asarray(out)


@pytest.fixture(scope="module", params=["multivector", "pooled"])
def variant(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, load_encoder(FIXTURE / request.param / "checkpoint", device="cpu")


@pytest.mark.parametrize("side", ["query", "document"])
def test_raw_items_give_the_official_features(variant, side: str) -> None:
    name, model = variant
    expected = np.load(FIXTURE / name / "expected.npz")["query" if side == "query" else "passage"]
    got = encode(model, side, [raw_input(item, side) for item in ITEMS])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("side", ["query", "document"])
def test_mixed_list_equals_item_by_item(variant, side: str) -> None:
    name, model = variant
    inputs = [raw_input(item, side) for item in ITEMS]
    together = encode(model, side, inputs, batch_size=len(inputs))
    alone = encode(model, side, inputs, batch_size=1)  # each item in a batch of its own
    np.testing.assert_allclose(together, alone, atol=1e-6, rtol=0)
    single = np.load(FIXTURE / name / "expected.npz")["query_single" if side == "query" else "passage_single"]
    np.testing.assert_allclose(alone, single, atol=TOLERANCE, rtol=0)


def test_pooled_vectors_are_normalised_without_a_flag(variant) -> None:
    name, model = variant
    got = encode(model, "document", [raw_input(item, "document") for item in ITEMS])
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)
    if name == "pooled":
        assert isinstance(model, SentenceTransformer) and type(model[-1]).__name__ == "Normalize"
    else:
        assert isinstance(model, MultiVectorEncoder)


def test_converted_folder_loads_in_plain_sentence_transformers(variant, tmp_path: Path) -> None:
    """`ret2 convert` output: SentenceTransformer / MultiVectorEncoder(dir, trust_remote_code=True) and
    load_encoder give the official vectors; no absolute local path in what was written."""
    from ret2_plugin.app.cli import main

    name, _ = variant
    out = tmp_path / "converted"
    assert main(["convert", str(FIXTURE / name / "checkpoint"), str(out), "--json"]) == 0
    cls = MultiVectorEncoder if name == "multivector" else SentenceTransformer
    expected = np.load(FIXTURE / name / "expected.npz")
    for model in (cls(str(out), trust_remote_code=True, device="cpu"), load_encoder(out, device="cpu")):
        for side, key in (("query", "query"), ("document", "passage")):
            got = encode(model, side, [raw_input(item, side) for item in ITEMS])
            np.testing.assert_allclose(got, expected[key], atol=TOLERANCE, rtol=0)
    for file in out.iterdir():
        if file.suffix in (".json", ".md", ".txt"):
            text = file.read_text(encoding="utf-8")
            assert str(tmp_path) not in text and str(FIXTURE) not in text, file.name


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize(
    "folder",
    [
        FIXTURE / "multivector" / "checkpoint",
        FIXTURE / "pooled" / "checkpoint",
        FIXTURE.parent / "official-ret-tiny" / "multivector" / "checkpoint",  # CLIP's special ids, 500-token vocab
    ],
)
def test_loading_an_official_checkpoint_is_quiet(folder: Path) -> None:
    from transformers.utils import logging as hf_logging

    from ret2_plugin import ReT2Model

    hf_logging.warning_once.cache_clear()  # warnings already shown by earlier tests must show again
    handler = _Records()
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    try:
        if (folder / "tokenizer_config.json").is_file():
            load_encoder(folder, device="cpu")
        else:
            ReT2Model.from_pretrained(folder)
    finally:
        root.removeHandler(handler)
    spurious = [m for m in handler.messages if "to instantiate a model of type" in m or "within the vocabulary" in m]
    assert not spurious, spurious


def _fake_hub_repo(cache: Path, repo_id: str, files: list[Path], edit_config=None) -> None:  # type: ignore[no-untyped-def]
    """A snapshot in the Hugging Face cache layout, as `huggingface_hub` leaves it after a download."""
    import shutil

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True)
    for file in files:
        shutil.copyfile(file, snapshot / file.name)
    if edit_config is not None:
        config = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
        edit_config(config)
        (snapshot / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)


def test_hub_ids_load_offline_from_the_hugging_face_cache(tmp_path: Path) -> None:
    """`ret2 convert <hub id>` with HF_HUB_OFFLINE=1 and a cache holding (a) an official checkpoint with
    its tokenizer / image-processor files and (b) one without them, as the published ReT checkpoints
    are, whose backbone names (`text_config._name_or_path`) resolve to a cached CLIP repo."""
    import subprocess
    import sys

    cache = tmp_path / "hub"
    full = FIXTURE / "pooled" / "checkpoint"
    _fake_hub_repo(cache, "aimagelab/ReT-tiny-pooled", sorted(full.iterdir()))
    bare = FIXTURE / "multivector" / "checkpoint"

    def name_backbones(config: dict) -> None:
        for side in ("query_config", "passage_config"):
            config[side]["text_config"]["_name_or_path"] = "openai/clip-tiny-test"
            config[side]["vision_config"]["_name_or_path"] = "openai/clip-tiny-test"

    _fake_hub_repo(
        cache, "aimagelab/ReT-tiny-multivector", [bare / "config.json", bare / "model.safetensors"], name_backbones
    )
    processor_files = [p for p in sorted(bare.iterdir()) if p.name not in ("config.json", "model.safetensors")]
    clip_config = tmp_path / "config.json"
    official = json.loads((bare / "config.json").read_text(encoding="utf-8"))["query_config"]
    clip_config.write_text(
        json.dumps(
            {"model_type": "clip", "text_config": official["text_config"], "vision_config": official["vision_config"]}
        ),
        encoding="utf-8",
    )
    _fake_hub_repo(cache, "openai/clip-tiny-test", [*processor_files, clip_config])

    env = {
        **__import__("os").environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp_path / "hf"),
    }
    script = (
        "import sys; from ret2_plugin.app.cli import main; "
        "sys.exit(main(['convert', 'aimagelab/ReT-tiny-pooled', sys.argv[1]]) "
        "or main(['convert', 'aimagelab/ReT-tiny-multivector', sys.argv[2]]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "a"), str(tmp_path / "b")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for out, variant in ((tmp_path / "a", "pooled"), (tmp_path / "b", "multivector")):
        model = load_encoder(out, device="cpu")
        expected = np.load(FIXTURE / variant / "expected.npz")
        for side, key in (("query", "query"), ("document", "passage")):
            got = encode(model, side, [raw_input(item, side) for item in ITEMS])
            np.testing.assert_allclose(got, expected[key], atol=TOLERANCE, rtol=0)
    assert "within the vocabulary" not in done.stderr and "to instantiate a model of type" not in done.stderr
