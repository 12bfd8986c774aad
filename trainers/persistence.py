"""What a run leaves on disk: atomic checkpoints, exact resume, the exported final model and the
summary / report. A mixin of `loop.Trainer`, so the loop module holds the run itself."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ret2_plugin.atomic import atomic_write_json
from ret2_plugin.encoder.loader import write_sentence_transformers_folder
from ret2_plugin.items import ItemError

from . import checkpoint as ckpt
from . import distributed as du
from .config import TrainConfig
from .logging import MetricsLogger, plot_metrics
from .losses import ContrastiveLoss
from .validate import ValidationReport

# settings a resume must share with the checkpoint (they fix the data order and the lr schedule)
RESUME_KEYS = (
    "batch_size",
    "grad_accum_steps",
    "num_epochs",
    "max_steps",
    "world_size",
    "augment",
    "mine_hard_negatives",
)


class PersistenceMixin:
    """Checkpoint, resume, export and report for `Trainer` (which sets every attribute named here)."""

    config: TrainConfig
    out: Path
    device: torch.device
    precision: str
    rank: int
    world: int
    model: Any
    processor: Any
    loss_fn: ContrastiveLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    metrics: MetricsLogger
    validation: ValidationReport
    errors: dict[tuple[str, int, str | None, str], ItemError]
    checkpointed: list[str]
    step: int
    epoch: int
    batch_in_epoch: int
    start_step: int
    total_steps: int
    best: dict[str, Any] | None
    last_eval: dict[str, Any] | None
    bad_evals: int
    stopped_early: bool
    last_save: float

    def _report(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Write `train_report.json` (finished or not) and refresh the curves."""
        if du.is_main_process():
            atomic_write_json(self.out / "train_report.json", summary)
        self._plot()
        du.barrier()
        return summary

    def _plot(self) -> None:
        if self.config.plot and du.is_main_process():
            plot_metrics(self.metrics.read(), self.out / "training_curves.png")

    def _checkpoint_dir(self, step: int) -> Path:
        return self.out / "checkpoints" / f"step-{step:08d}"

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.world,
            "best": self.best,
            "bad_evals": self.bad_evals,
            "total_steps": self.total_steps,
            "config": self.config.model_dump(mode="json"),
        }

    def _save(self) -> None:
        rng_states = ckpt.all_rng_states(self.device)  # a collective: every rank hands rank 0 its own
        if du.is_main_process():
            optim_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
            }
            extra = {f"loss.{k}": v for k, v in self.loss_fn.state_dict().items()}
            path = ckpt.save_checkpoint(
                self.out / "checkpoints",
                self.step,
                model=self.model,
                processor=self.processor,
                extra_tensors=extra,
                optim_state=optim_state,
                state=self._trainer_state(),
                rng_states=rng_states,
            )
            protect = {self.out / "checkpoints" / f"step-{self.best['step']:08d}"} if self.best else set()
            ckpt.prune_checkpoints(self.out / "checkpoints", self.config.keep_last, protect | {path})
        self.last_save = time.monotonic()
        du.barrier()
        self._plot()

    def _resume(self, where: str) -> None:
        from ret2_plugin.modeling import ReT2Model

        path = ckpt.latest_checkpoint(self.out / "checkpoints") if where == "auto" else Path(where)
        if path is None:
            return  # "auto" with nothing saved yet: a fresh start
        state, tensors, optim_state = ckpt.load_checkpoint(path)
        self._check_resumable(path, state)
        self.model.load_weights(ReT2Model.from_pretrained(path / "model").own_state_dict())
        self.model.to(self.device)
        self.loss_fn.load_state_dict({k[len("loss.") :]: v for k, v in tensors.items() if k.startswith("loss.")})
        self.optimizer.load_state_dict(optim_state["optimizer"])
        self.scheduler.load_state_dict(optim_state["scheduler"])
        self.scaler.load_state_dict(optim_state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best = state.get("best")
        self.bad_evals = int(state.get("bad_evals", 0))
        ckpt.set_rng_state(ckpt.rng_for_rank(tensors, self.rank))
        self.metrics.truncate_after(self.step)

    def _check_resumable(self, path: Path, state: dict[str, Any]) -> None:
        """Refuse a resume whose settings would change the data order or the schedule."""
        saved = {**state.get("config", {}), "world_size": state.get("world_size", self.world)}
        now = {**self.config.model_dump(mode="json"), "world_size": self.world}
        changed = [f"{k} was {saved[k]!r}, now {now[k]!r}" for k in RESUME_KEYS if k in saved and saved[k] != now[k]]
        if changed:
            raise ValueError(
                f"cannot resume from {path}: {'; '.join(changed)} (resuming needs the same settings; "
                "start a new output_dir to train with other ones)"
            )

    def _export_final(self) -> Path:
        """`output_dir/model`: the best evaluated checkpoint (when selected) or the last weights."""
        target = self.out / "model"
        if du.is_main_process():
            tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=self.out))
            try:
                if self.config.select_best and self.best is not None:
                    src = self.out / "checkpoints" / f"step-{self.best['step']:08d}" / "model"
                    shutil.copytree(src, tmp, dirs_exist_ok=True)
                else:
                    self.model.save_pretrained(tmp)
                    self.processor.save_pretrained(tmp)
                write_sentence_transformers_folder(tmp)  # loads in plain sentence-transformers too
                ckpt.replace_dir(tmp, target)  # the old model stays until the new one is in place
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        du.barrier()
        return target

    def _summary(
        self,
        start: float,
        last_loss: float,
        *,
        finished: bool,
        model_dir: Path | None = None,
        interrupted: str | None = None,
    ) -> dict[str, Any]:
        """`steps_this_run` counts the steps this call ran (after a resume: not those before it);
        `model_is` says whether `model_dir` holds the best evaluated checkpoint or the last weights."""
        errors = list(self.errors.values())
        model_is = None
        if model_dir is not None:
            model_is = "best" if self.config.select_best and self.best is not None else "last"
        return {
            "finished": finished,
            "interrupted": interrupted,
            "stopped_early": self.stopped_early,
            "start_step": self.start_step,
            "steps_this_run": self.step - self.start_step,
            "checkpoint": str(self._checkpoint_dir(self.step)),
            "model_is": model_is,
            "validation": {k: v for k, v in self.validation.to_dict().items() if k != "errors"},
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "world_size": self.world,
            "device": str(self.device),
            "precision": self.precision,
            "final_loss": last_loss,
            "best": self.best,
            "last_eval": self.last_eval,
            "model_dir": str(model_dir) if model_dir else None,
            "seconds": round(time.time() - start, 2),
            "gradient_checkpointing": self.checkpointed,
            "num_errors": len(errors),
            "errors": [e.to_dict() for e in errors[:100]],
        }
