"""Checkpoints: atomic, keep-last-N (the best one is always kept), resumable exactly.

A checkpoint is a directory `checkpoints/step-00000123/` holding
- `model/`: the model and processor in the encoder format (`load_encoder` reads it);
- `trainer.safetensors`: loss parameters (temperature) and RNG states;
- `optimizer.pt`: optimizer, scheduler and grad-scaler state (read back with `weights_only=True`);
- `trainer_state.json`: step, data position (epoch, batch in epoch), best metric, history.
It is written into a hidden temp directory and renamed into place, so a crash never leaves a
half-written checkpoint where `latest_checkpoint` would find it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, torch.Tensor]:
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{i}"] = s
    return states


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model: Any,
    processor: Any,
    extra_tensors: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Write checkpoint `step` under `root` atomically and return its directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        model.save_pretrained(str(tmp / "model"))
        processor.save_pretrained(str(tmp / "model"))
        tensors = {k: v.detach().cpu().contiguous() for k, v in {**extra_tensors, **rng_state()}.items()}
        save_file(tensors, str(tmp / "trainer.safetensors"))
        torch.save(optim_state, tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2, sort_keys=True) + "\n")
        if final.exists():  # re-saving a step (e.g. after a resume): move the old one aside first
            aside = Path(tempfile.mkdtemp(prefix=f".old-step-{step:08d}-", dir=root))
            os.replace(final, aside / "ckpt")
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(root: str | Path, keep_last: int, protect: set[Path] | None = None) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints (never those in `protect`); return the deleted."""
    protect = {p.resolve() for p in (protect or set())}
    ckpts = list_checkpoints(root)
    doomed = [p for p in ckpts[: max(len(ckpts) - keep_last, 0)] if p.resolve() not in protect]
    for p in doomed:
        aside = p.with_name(f".del-{p.name}")
        os.replace(p, aside)  # vanish atomically from list_checkpoints, then delete
        shutil.rmtree(aside, ignore_errors=True)
    return doomed


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """Return `(state, tensors, optim_state)`; the model weights are in `path/model`."""
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE})")
    state = json.loads((path / STATE_FILE).read_text())
    tensors = load_file(str(path / "trainer.safetensors"))
    optim_state = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    return state, tensors, optim_state
