"""`to_item`: chat messages and data URIs."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ret2_plugin.encoder import to_item

pytestmark = pytest.mark.unit


def test_image_in_a_system_message_is_refused(image_dir: Path) -> None:
    system = {"role": "system", "content": [{"type": "image", "image": str(image_dir / "red.png")}, "Find"]}
    with pytest.raises(ValueError, match="system message carries an image"):
        to_item([system, {"role": "user", "content": "a cat"}], 3)


def test_data_uri_becomes_image_bytes(st_model, image_dir: Path) -> None:
    data = (image_dir / "red.png").read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    assert to_item(uri).image == data
    assert to_item({"text": "a tile", "image": uri}).image == data
    got = st_model.encode_document([uri, str(image_dir / "red.png")], normalize_embeddings=True)
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    assert to_item("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()).image == buffer.getvalue()


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("data:image/png;base64,!!not-base64!!", "malformed base64"),
        ("data:image/png;base64,", "no image data"),
        ("data:image/png,rawpixels", "only base64"),
    ],
)
def test_malformed_data_uri_is_a_clear_error(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"input 7 .*{reason}"):
        to_item({"image": uri}, 7)
