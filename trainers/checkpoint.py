"""Checkpoints: atomic, keep-last-N (the best one is always kept), resumable exactly.

A checkpoint is a directory `checkpoints/step-00000123/` holding
- `model/`: the model and processor in the encoder format (`load_encoder` reads it);
- `trainer.safetensors`: loss parameters (temperature) and every rank's RNG states (`rng.rank{r}.*`);
- `optimizer.pt`: optimizer, scheduler and grad-scaler state (read back with `weights_only=True`);
- `trainer_state.json`: step, data position (epoch, batch in epoch), best metric, history.
It is written into a hidden temp directory, fsynced and renamed into place, so a crash never leaves a
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

from ret2_plugin.atomic import fsync_dir, fsync_file

from . import distributed as du

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


def all_rng_states(device: torch.device | None = None) -> list[dict[str, torch.Tensor]]:
    """Every rank's RNG states in rank order (a collective: call it on all ranks). Ranks draw
    different dropout masks and augmentations, so an exact resume needs each rank's own state."""
    mine = {k: v.tolist() for k, v in rng_state().items()}
    return [{k: torch.tensor(v, dtype=torch.uint8) for k, v in s.items()} for s in du.all_gather_json(mine, device)]


def rng_for_rank(tensors: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """The `rng.*` states that rank `rank` saved (for `set_rng_state`). Checkpoints from before
    per-rank states hold only rank 0's (`rng.cpu`): every rank gets those."""
    prefix = f"rng.rank{rank}."
    own = {"rng." + k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if own:
        return own
    if any(k.startswith("rng.rank") for k in tensors):
        raise ValueError(f"the checkpoint holds no RNG state for rank {rank}")
    return {k: v for k, v in tensors.items() if k.startswith("rng.")}


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder` (itself included), so a rename of it is durable."""
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


def replace_dir(src: Path, dst: Path) -> None:
    """Move the complete folder `src` to `dst`: an existing `dst` is renamed aside first and deleted
    only once `src` is in place (put back if that rename fails), so a crash never loses both."""
    fsync_tree(src)
    aside = None
    if dst.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".old-{dst.name}-", dir=dst.parent)) / dst.name
        os.replace(dst, aside)
    try:
        os.replace(src, dst)
    except BaseException:
        if aside is not None:
            os.replace(aside, dst)
            shutil.rmtree(aside.parent, ignore_errors=True)
        raise
    fsync_dir(dst.parent)
    if aside is not None:
        shutil.rmtree(aside.parent, ignore_errors=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    model: Any,
    processor: Any,
    extra_tensors: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    state: dict[str, Any],
    rng_states: list[dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write checkpoint `step` under `root` atomically and return its directory. `rng_states`: one
    dict per rank (`all_rng_states()`); default: this process's only."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        model.save_pretrained(str(tmp / "model"))
        processor.save_pretrained(str(tmp / "model"))
        ranks = {
            f"rng.rank{r}.{k[len('rng.') :]}": v
            for r, s in enumerate(rng_states or [rng_state()])
            for k, v in s.items()
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in {**extra_tensors, **ranks}.items()}
        save_file(tensors, str(tmp / "trainer.safetensors"))
        torch.save(optim_state, tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2, sort_keys=True) + "\n")
        replace_dir(tmp, final)  # re-saving a step (e.g. after a resume) swaps the old one out safely
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
