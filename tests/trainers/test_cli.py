"""`ret2 train` / `ret2 eval` / `ret2 convert-data` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ret2_plugin.app.cli import main

pytestmark = pytest.mark.unit


def test_train_then_eval_then_load_encoder(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        f"model: {tiny_model_dir}\nqueries: {synthetic_data['queries']}\ncorpus: {synthetic_data['corpus']}\n"
        f"output_dir: {tmp_path / 'run'}\nbatch_size: 4\nmax_steps: 50\nnum_workers: 0\nplot: false\n"
    )
    # flags override the YAML: 2 steps, not 50; --set reaches any field
    code = main(
        [
            "train",
            "--config",
            str(cfg),
            "--max-steps",
            "2",
            "--set",
            "eval_queries=" + str(synthetic_data["queries"]),
            "--set",
            "log_every=1",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["finished"] and summary["last_eval"]["num_queries"] == 32
    model_dir = summary["model_dir"]
    assert (Path(model_dir) / "model.safetensors").is_file()

    assert (
        main(
            [
                "eval",
                "--model",
                model_dir,
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
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["recall@1"] <= metrics["recall@5"] <= metrics["recall@10"] <= 1
    assert metrics["recall@5"] == pytest.approx(summary["last_eval"]["recall@5"])  # same weights, same numbers

    from ret2_plugin import load_encoder

    encoder = load_encoder(model_dir, device="cpu")
    assert encoder.encode(["a tiger"]).shape[0] == 1


def test_train_refuses_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: m\nqueries: q\ncorpus: c\noutput_dir: o\nbatch_sise: 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "batch_sise" in capsys.readouterr().err


def test_convert_data_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "pool.jsonl"
    src.write_text(
        json.dumps({"did": "1:1", "txt": "a cat", "modality": "text"}) + "\n" + json.dumps({"did": "1:2"}) + "\n"
    )
    assert main(["convert-data", "mbeir-corpus", str(src), str(tmp_path / "out.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 1 and report["errors"][0]["reason"] == "neither text nor image"
    assert main(["convert-data", "mbeir-corpus", str(src), str(tmp_path / "out.jsonl"), "--strict"]) == 1


def test_train_command_destroys_the_process_group(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )  # as torchrun would
    try:
        code = main(
            [
                "train",
                "--model",
                str(tiny_model_dir),
                "--queries",
                str(synthetic_data["queries"]),
                "--corpus",
                str(synthetic_data["corpus"]),
                "--output-dir",
                str(tmp_path / "run"),
                "--batch-size",
                "4",
                "--max-steps",
                "1",
                "--workers",
                "0",
                "--set",
                "plot=false",
                "--json",
            ]
        )
        assert code == 0 and json.loads(capsys.readouterr().out)["finished"]
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
