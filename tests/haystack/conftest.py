"""A tiny multimodal corpus for the Haystack tests: text-only, image-only (file and ByteStream) and joint
documents, plus files that must fail (missing, corrupt, truncated)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack.dataclasses import ByteStream
from PIL import Image

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220)}


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("haystack-corpus")
    (root / "img").mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", (32, 24), colour).save(root / "img" / f"{name}.png")
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (40, 1))
    Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], axis=-1)).save(root / "img" / "gradient.png")
    (root / "img" / "corrupt.png").write_bytes(b"this is not a png at all")
    whole = (root / "img" / "gradient.png").read_bytes()
    (root / "img" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root.parent / f"{root.name}-secret.png").write_bytes((root / "img" / "red.png").read_bytes())
    return root


@pytest.fixture
def corpus_docs(corpus_dir: Path) -> list[Document]:
    """Six good documents: two text-only, two image-only (path, blob), two joint. Paths are relative to
    `corpus_dir` (use `root_path=corpus_dir`)."""
    blue = png_bytes(Image.open(corpus_dir / "img" / "blue.png"))
    return [
        Document(id="t-heron", content="a great blue heron standing in the reeds", meta={"kind": "text"}),
        Document(id="t-stamp", content="an old postage stamp with a portrait", meta={"kind": "text"}),
        Document(id="i-red", meta={"kind": "image", "file_path": "img/red.png"}),
        Document(id="i-blue", blob=ByteStream(blue, mime_type="image/png"), meta={"kind": "image"}),
        Document(id="j-green", content="a green square", meta={"kind": "joint", "file_path": "img/green.png"}),
        Document(id="j-gradient", content="a colour gradient", meta={"kind": "joint", "file_path": "img/gradient.png"}),
    ]
