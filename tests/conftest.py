"""Shared fixtures: offline environment, tiny models saved to temp dirs, the Elasticsearch node."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("RET2_LOAD_PLUGINS", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

try:  # the Elasticsearch node fixture (started only by tests that use it)
    from tests.es_node import es_node  # noqa: F401,E402
except ImportError:  # pragma: no cover - module being written
    pass


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny CLIP-shaped ReT-2 model (shared encoder, 3 taps, single vector) + processor."""
    from ret2_plugin.presets import build_preset

    return build_preset("tiny-clip-ret2", tmp_path_factory.mktemp("tiny-ret2"))


@pytest.fixture(scope="session")
def tiny_v1_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny CLIP-shaped ReT v1 model (separate query/document fusion, K x d output)."""
    from ret2_plugin.presets import build_preset

    return build_preset("tiny-clip-ret-v1", tmp_path_factory.mktemp("tiny-ret-v1"))


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """A few small distinct PNG images (red, green, blue, a gradient) in a temp dir."""
    import numpy as np
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name, color in (("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (40, 30), color).save(folder / f"{name}.png")
    gradient = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
    Image.fromarray(np.stack([gradient, gradient.T, 255 - gradient], axis=-1)).save(folder / "gradient.png")
    return folder
