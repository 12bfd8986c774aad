"""Tiny synthetic queries + corpus (distinct colour images and texts) for fast trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

COLORS = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
]
WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "piano",
    "candle",
    "forest",
    "rocket",
    "violin",
    "desert",
    "anchor",
    "bridge",
    "lemon",
    "castle",
    "feather",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def synthetic_data(tmp_path: Path) -> dict[str, Path]:
    """16 documents (text + image), 32 queries (text-only and image-only), positives by id."""
    from PIL import Image

    img_dir = tmp_path / "img"
    img_dir.mkdir()
    corpus, queries = [], []
    for i, (color, word) in enumerate(zip(COLORS, WORDS)):
        Image.new("RGB", (32, 32), color).save(img_dir / f"d{i}.png")
        corpus.append({"id": f"d{i}", "text": f"a {word}", "image": f"img/d{i}.png"})
        queries.append({"id": f"qt{i}", "text": word, "positives": [f"d{i}"], "instruction": "Find the item."})
        queries.append(
            {"id": f"qi{i}", "image": f"img/d{i}.png", "positives": [f"d{i}"], "negatives": [f"d{(i + 1) % 16}"]}
        )
    return {
        "corpus": write_jsonl(tmp_path / "corpus.jsonl", corpus),
        "queries": write_jsonl(tmp_path / "queries.jsonl", queries),
        "root": tmp_path,
    }
