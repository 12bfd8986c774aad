"""Bad inputs fail with a ValueError / ImageLoadError naming the input and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ret2_plugin.processing import ImageLoadError

pytestmark = pytest.mark.unit


def test_missing_image_file(st_model, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.png")
    with pytest.raises(ValueError, match=r"nope\.png.*not found"):
        st_model.encode(["fine text", missing])
    with pytest.raises(ImageLoadError, match=r"nope\.png.*file not found"):
        st_model.encode([{"text": "joint", "image": missing}])


def test_corrupt_image(st_model, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(ImageLoadError, match=r"broken\.png.*(not an image|truncated)"):
        st_model.encode(["ok", str(bad)])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty string"),
        ("   ", "empty string"),
        ({"text": ""}, "no text and no image"),
        ({"text": "x", "caption": "y"}, "unsupported keys"),
        (object(), "unsupported input type object"),
        ({"text": 3}, "'text' must be a string"),
    ],
)
def test_unusable_inputs(st_model, raw, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        st_model.encode(["good text", raw])
    assert "batch position" in str(info.value)
