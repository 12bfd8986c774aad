"""Safe loading: no code shipped in a model folder runs, and the refusal says why.

Every malicious folder carries a `.py` that would write a marker file when imported; the tests assert
the marker never appears (and that transformers' interactive "run this code?" prompt is never reached).
"""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Dense
from torch import nn

from ret2_plugin import load_encoder
from ret2_plugin.encoder import ReT2Encoder
from ret2_plugin.encoder.safety import UnsafeModelError, resolve_activation

pytestmark = pytest.mark.unit


def _payload(marker: Path) -> str:
    """Python source that leaves `marker` behind when imported (what an attacker's code would do)."""
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\nclass Boom:\n    pass\n"


@pytest.fixture
def no_prompt(monkeypatch):
    """transformers asks "Do you wish to run the custom code? [y/N]" through `input` (and would turn an
    exception there into its own error): every call is recorded and must not happen."""
    asked: list[str] = []

    def refuse(*args, **kwargs):
        asked.append(str(args))
        return "n"

    monkeypatch.setattr(builtins, "input", refuse)
    yield
    assert not asked, f"interactive prompt reached: {asked}"


@pytest.fixture
def dense_folder(st_model, tmp_path: Path) -> Path:
    """Our module followed by a Dense layer (ReLU), saved by sentence-transformers."""
    dim = st_model.get_embedding_dimension()
    model = SentenceTransformer(modules=[st_model[0], Dense(dim, 8, activation_function=nn.ReLU())], device="cpu")
    folder = tmp_path / "dense"
    model.save(str(folder))
    return folder


def _dense_config(folder: Path) -> Path:
    modules = json.loads((folder / "modules.json").read_text())
    return folder / modules[1]["path"] / "config.json"


def test_dense_with_torch_activation_loads(dense_folder: Path, no_prompt) -> None:
    config = json.loads(_dense_config(dense_folder).read_text())
    assert config["activation_function"] == "torch.nn.modules.activation.ReLU"
    model = load_encoder(dense_folder, device="cpu")
    assert isinstance(model[0], ReT2Encoder) and isinstance(model[1].activation_function, nn.ReLU)
    assert model.encode(["a red tile"]).shape == (1, 8)


@pytest.mark.parametrize("where", ["root", "dense"])
def test_dense_activation_from_the_folder_is_refused_and_never_imported(
    dense_folder: Path, tmp_path: Path, where, no_prompt, monkeypatch
) -> None:
    marker = tmp_path / "pwned"
    code_dir = dense_folder if where == "root" else _dense_config(dense_folder).parent
    (code_dir / "evil_activation.py").write_text(_payload(marker))
    monkeypatch.syspath_prepend(str(code_dir))  # even importable, it must not be imported
    config_path = _dense_config(dense_folder)
    config = json.loads(config_path.read_text())
    config["activation_function"] = "evil_activation.Boom"
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnsafeModelError, match=r"evil_activation\.Boom.*not an allowed torch\.nn activation"):
        load_encoder(dense_folder, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["torch.hub.load", "os.system", "builtins.eval", "torch.nn.modules.linear.Linear", 42])
def test_only_argument_free_torch_nn_modules_are_allowed(name) -> None:
    with pytest.raises(UnsafeModelError, match="not an allowed torch.nn activation"):
        resolve_activation(name)


def test_allow_list_covers_what_sentence_transformers_writes() -> None:
    from sentence_transformers.util import fullname

    for module in (nn.Tanh(), nn.ReLU(), nn.GELU(), nn.Identity(), nn.Sigmoid()):
        assert resolve_activation(fullname(module)) is type(module)
    assert resolve_activation("torch.nn.Tanh") is nn.Tanh


def _add_tokenizer_auto_map(folder: Path, marker: Path) -> None:
    (folder / "tokenization_evil.py").write_text(_payload(marker))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.Boom", None]}
    config["tokenizer_class"] = "Boom"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def _add_image_processor_auto_map(folder: Path, marker: Path) -> None:
    (folder / "image_processing_evil.py").write_text(_payload(marker))
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["auto_map"] = {"AutoImageProcessor": "image_processing_evil.Boom"}
    config["image_processor_type"] = "Boom"
    (folder / "preprocessor_config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("kind", ["tokenizer", "image_processor"])
@pytest.mark.parametrize("layout", ["st_folder", "model_dir"])
@pytest.mark.parametrize("trust", [False, True])
def test_auto_map_code_never_runs_nor_prompts(
    st_model, tiny_model_dir: Path, tmp_path: Path, kind, layout, trust, no_prompt
) -> None:
    folder = tmp_path / "m"
    if layout == "st_folder":
        st_model.save(str(folder))
    else:
        shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "pwned"
    (_add_tokenizer_auto_map if kind == "tokenizer" else _add_image_processor_auto_map)(folder, marker)
    with pytest.raises(ValueError, match="trust_remote_code|custom code"):
        load_encoder(folder, device="cpu", trust_remote_code=trust)
    assert not marker.exists()


def test_with_trust_remote_code_our_module_still_comes_from_our_package(st_model, tmp_path: Path, no_prompt) -> None:
    folder = tmp_path / "shadow"
    st_model.save(str(folder))
    marker = tmp_path / "pwned"
    shadow = folder / "ret2_plugin" / "encoder"
    shadow.mkdir(parents=True)
    (shadow / "st_module.py").write_text(_payload(marker) + "ReT2Encoder = Boom\n")
    (folder / "st_module.py").write_text(_payload(marker) + "ReT2Encoder = Boom\n")
    model = load_encoder(folder, device="cpu", trust_remote_code=True)
    assert type(model[0]) is ReT2Encoder
    np.testing.assert_array_equal(model.encode(["a cat"]), st_model.encode(["a cat"]))
    assert not marker.exists()


def test_module_path_outside_the_folder_is_refused(st_model, tmp_path: Path) -> None:
    folder = tmp_path / "st"
    st_model.save(str(folder))
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 1, "name": "1", "path": "../../elsewhere", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsafeModelError, match="leaves the model folder"):
        load_encoder(folder, device="cpu")


def test_trust_remote_code_is_off_by_default_for_foreign_modules(st_model, tmp_path: Path) -> None:
    folder = tmp_path / "st"
    st_model.save(str(folder))
    marker = tmp_path / "pwned"
    (folder / "custom_module.py").write_text(_payload(marker))
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 1, "name": "1", "path": "", "type": "custom_module.Boom"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsafeModelError, match="could run code shipped with the model.*trust_remote_code=True"):
        load_encoder(folder, device="cpu")
    assert not marker.exists()
