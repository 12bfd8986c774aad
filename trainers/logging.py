"""Metrics log (JSON Lines, one record per logged step or evaluation) and the end-of-run plot.

Each record is flushed as it is written, so a crashed run keeps its history; on resume, records
beyond the resumed step are dropped so that the log matches the weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ret2_plugin.atomic import atomic_path, atomic_write_text


class MetricsLogger:
    def __init__(self, path: str | Path, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Keep only records up to `step` (used when resuming)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in self.read() if line.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **record}, sort_keys=True) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_metrics(records: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Loss (left) and eval recall / MRR (right) against the step, as a PNG. None if nothing to plot."""
    train = [r for r in records if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in records if r.get("kind") == "eval"]
    if not train and not evals:
        return None
    from ret2_plugin.extras import require

    matplotlib = require("matplotlib", "`plot: true` (training curves)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("contrastive loss")
    ax_loss.set_title("loss")
    ax_loss.grid(alpha=0.3)
    for key in ("recall@1", "recall@5", "recall@10", "mrr@10"):
        pts = [(r["step"], r[key]) for r in evals if key in r]
        if pts:
            ax_eval.plot(*zip(*pts), marker="o", label=key)
    ax_eval.set_xlabel("step")
    ax_eval.set_ylim(0, 1)
    ax_eval.set_title("held-out retrieval")
    ax_eval.grid(alpha=0.3)
    if evals:
        ax_eval.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
