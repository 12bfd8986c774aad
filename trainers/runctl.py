"""Run control: who owns the output directory, and what SIGINT / SIGTERM do during training.

- An output directory that holds an earlier run (checkpoints, metrics, a model) is never reused
  silently: continue it with `resume` or clear it with `overwrite`.
- During `Trainer.train`, SIGINT and SIGTERM only raise a flag: the loop finishes the step it is in,
  writes a resumable checkpoint and a summary, and returns (`ret2 train` exits 130 / 143 without a
  traceback). A second SIGINT interrupts at once (KeyboardInterrupt, nothing more is saved).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

# what a run writes into output_dir; `overwrite` removes exactly these
RUN_ARTEFACTS = (
    "checkpoints",
    "model",
    "metrics.jsonl",
    "train_report.json",
    "training_curves.png",
    "validation_report.json",
    "mined_negatives.json",
)
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


def earlier_run(out: Path) -> list[str]:
    """The run artefacts already in `out` (empty: nothing to protect)."""
    return [name for name in RUN_ARTEFACTS if (out / name).exists()]


def check_output_dir(out: Path, *, resume: str | None, overwrite: bool) -> None:
    """Refuse to start a fresh run over an earlier one unless told to resume or overwrite."""
    found = earlier_run(out)
    if found and not resume and not overwrite:
        raise FileExistsError(
            f"output_dir {out} holds an earlier run ({', '.join(found)}): continue it with "
            "`--resume auto`, or start over with `--overwrite` (deletes it), or pick another output_dir"
        )


def clear_output_dir(out: Path) -> list[str]:
    """Delete the earlier run's artefacts (each moved aside first, so none is left half-deleted)."""
    removed = []
    for name in earlier_run(out):
        path = out / name
        aside = Path(tempfile.mkdtemp(prefix=f".del-{name}-", dir=out))
        os.replace(path, aside / name)
        shutil.rmtree(aside, ignore_errors=True)
        removed.append(name)
    return removed


class StopSignals:
    """Context manager: SIGINT / SIGTERM set `received` ("SIGINT" / "SIGTERM") instead of killing the
    process. Installed only in the main thread (Python delivers signals there); restored on exit."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = self.received or name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
