"""A real signal to a real `ret2 train` process: it finishes the step it is in, writes a resumable
checkpoint and a summary, exits 130 (SIGINT) / 143 (SIGTERM) without a traceback, and the run
continues from there with `--resume auto`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ret2_plugin.trainers.config import TrainConfig
from ret2_plugin.trainers.loop import Trainer

pytestmark = pytest.mark.unit


def _wait_for_training(proc: subprocess.Popen[str], metrics: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.communicate()[1][-3000:]}")
        if metrics.is_file() and metrics.read_text().strip():
            return
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not start in time")


@pytest.mark.parametrize(("name", "whole_group", "code"), [("SIGINT", True, 130), ("SIGTERM", False, 143)])
def test_signal_saves_a_resumable_checkpoint(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, name: str, whole_group: bool, code: int
) -> None:
    out = tmp_path / "run"
    settings = dict(
        model=str(tiny_model_dir),
        queries=str(synthetic_data["queries"]),
        corpus=str(synthetic_data["corpus"]),
        output_dir=str(out),
        batch_size=4,
        max_steps=100000,
        num_workers=1,
        log_every=1,
        plot=False,
        seed=1,
        save_every_minutes=None,
    )
    config = tmp_path / "train.yaml"
    config.write_text(TrainConfig(**settings).to_yaml())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C reaches the whole process group (DataLoader workers included); `kill` reaches the trainer only
    proc = subprocess.Popen(
        [sys.executable, "-m", "ret2_plugin.app.cli", "train", "--config", str(config), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        _wait_for_training(proc, out / "metrics.jsonl")
        sig = getattr(signal, name)
        os.killpg(proc.pid, sig) if whole_group else os.kill(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr and f"interrupted by {name}" in stdout and "--resume auto" in stdout

    report = json.loads((out / "train_report.json").read_text())
    assert report["interrupted"] == name and not report["finished"] and report["step"] >= 1
    step = report["step"]
    assert report["steps_this_run"] == step and Path(report["checkpoint"]).name == f"step-{step:08d}"
    state = json.loads((out / "checkpoints" / f"step-{step:08d}" / "trainer_state.json").read_text())
    assert state["step"] == step

    resumed = Trainer(TrainConfig(**{**settings, "num_workers": 0, "resume": "auto", "progress": False}))
    assert resumed.step == step
    summary = resumed.train(stop_at_step=step + 1)
    assert summary["start_step"] == step and summary["steps_this_run"] == 1
