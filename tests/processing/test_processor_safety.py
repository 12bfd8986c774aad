"""ReT2Processor never runs code shipped in a model folder, whichever loader path reads it (our own
model folder, or an official checkpoint whose backbones' files sit next to it), and never reaches
transformers' interactive "run this code?" prompt."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import pytest

from ret2_plugin.processing.processor import ReT2Processor

pytestmark = pytest.mark.unit

OFFICIAL = Path(__file__).resolve().parents[1] / "fixtures" / "official-ret-tiny" / "pooled" / "checkpoint"


@pytest.fixture
def no_prompt(monkeypatch):
    asked: list[str] = []

    def refuse(*args, **kwargs):
        asked.append(str(args))
        return "n"

    monkeypatch.setattr(builtins, "input", refuse)
    yield
    assert not asked, f"interactive prompt reached: {asked}"


def _payload(marker: Path) -> str:
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\nclass Boom:\n    pass\n"


def _plant(folder: Path, kind: str, marker: Path) -> None:
    """An `auto_map` pointing at a module in the folder that leaves `marker` behind when imported."""
    if kind == "tokenizer":
        (folder / "tokenization_evil.py").write_text(_payload(marker))
        name, entry, key = "tokenizer_config.json", ["tokenization_evil.Boom", None], "AutoTokenizer"
        type_key = "tokenizer_class"
    else:
        (folder / "image_processing_evil.py").write_text(_payload(marker))
        name, entry, key = "preprocessor_config.json", "image_processing_evil.Boom", "AutoImageProcessor"
        type_key = "image_processor_type"
    config = json.loads((folder / name).read_text())
    config["auto_map"] = {key: entry}
    config[type_key] = "Boom"
    (folder / name).write_text(json.dumps(config))


@pytest.mark.parametrize("kind", ["tokenizer", "image_processor"])
@pytest.mark.parametrize("layout", ["model_dir", "official"])
def test_auto_map_in_processor_files_never_runs(tiny_model_dir: Path, tmp_path: Path, kind, layout, no_prompt) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    if layout == "official":  # an official checkpoint's config.json: the for_model path reads the folder
        if not OFFICIAL.is_dir():
            pytest.skip("official fixture missing")
        shutil.copy(OFFICIAL / "config.json", folder / "config.json")
        shutil.copy(OFFICIAL / "model.safetensors", folder / "model.safetensors")
    ReT2Processor.from_pretrained(folder)  # the clean folder loads through this path
    marker = tmp_path / "pwned"
    _plant(folder, kind, marker)
    with pytest.raises(ValueError, match="trust_remote_code|custom code"):
        ReT2Processor.from_pretrained(folder)
    assert not marker.exists()
