"""The training loop: one code path for CPU, one GPU and `torchrun` multi-GPU / multi-node.

Per optimizer step: `grad_accum_steps` micro-batches (each its own contrastive batch, negatives
gathered from every rank), autocast (bf16 / fp16 with a grad scaler), clipping, AdamW, warmup +
cosine. Evaluation and best-checkpoint selection around it; checkpoints, exact resume and the final
export live in `persistence`, the train module / DDP / device helpers in `runtime`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ret2_plugin.atomic import atomic_write_json
from ret2_plugin.encoder.loader import saved_prompts
from ret2_plugin.extras import require
from ret2_plugin.items import ItemError
from ret2_plugin.precision import torch_dtype

from . import checkpoint as ckpt
from . import distributed as du
from . import mining
from .augment import Augmentation
from .config import TrainConfig
from .data import PairCollator, PairDataset, ResumableBatchSampler, TrainingData, make_loader, move_to
from .evaluation import evaluate
from .logging import MetricsLogger
from .losses import ContrastiveLoss
from .optim import build_optimizer, param_groups, set_backbone_mode, warmup_cosine
from .persistence import RESUME_KEYS as RESUME_KEYS  # re-exported: importable from `loop` as before
from .persistence import PersistenceMixin
from .runctl import StopSignals, check_output_dir, clear_output_dir
from .runtime import TrainModule, enable_checkpointing, resolve_device, resolve_precision, wrap_ddp
from .validate import DataValidationError, validate_run


class Trainer(PersistenceMixin):
    """`Trainer(config).train()` -> summary dict. `model` / `processor` may be passed in (tests).

    The constructor checks everything before step 1: the output directory (an earlier run needs
    `resume` or `overwrite`), every data line and image (`validate.validate_run`; `strict` refuses any
    bad item), then loads the model as serving does (`model_io.load_for_training`)."""

    def __init__(self, config: TrainConfig, *, model: Any = None, processor: Any = None) -> None:
        from .model_io import load_for_training

        self.config = cfg = config
        if cfg.plot:  # fail before step 1, not after the run: matplotlib is the `train` extra
            require("matplotlib", "`plot: true` (training curves)")
        du.init_from_env(cfg.ddp_backend)
        self.rank, self.world = du.rank(), du.world_size()
        self.device = resolve_device(cfg)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.precision = resolve_precision(cfg, self.device)
        self.amp_dtype = None if self.precision == "fp32" else torch_dtype(self.precision)
        self.out = Path(cfg.output_dir)
        torch.manual_seed(cfg.seed)
        check_output_dir(self.out, resume=cfg.resume, overwrite=cfg.overwrite)
        self.errors: dict[tuple[str, int, str | None, str], ItemError] = {}

        # every line, image and id checked before anything trains (and before the model loads)
        self.data, self.eval_data, self.validation = validate_run(
            cfg.queries,
            cfg.corpus,
            cfg.eval_queries,
            cfg.eval_corpus,
            image_workers=max(cfg.num_workers, 1) * 2,
            min_train_queries=cfg.batch_size * self.world,
        )
        self._add_errors(self.validation.errors)
        if du.is_main_process():
            if cfg.overwrite:
                clear_output_dir(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / "validation_report.json", self.validation.to_dict())
        du.barrier()
        if cfg.strict and self.validation.errors:
            raise DataValidationError(
                f"{len(self.validation.errors)} item(s) refused before training and strict is set: "
                f"nothing was trained (report: {self.out / 'validation_report.json'})",
                self.validation.errors,
            )

        self.prompts: dict[str, str] = {}
        if model is None or processor is None:
            loaded_model, loaded_processor, self.prompts = load_for_training(cfg.model)
            model, processor = model or loaded_model, processor or loaded_processor
        self.model, self.processor = model, processor
        self._configure_backbones()
        num_negatives = cfg.num_hard_negatives
        if cfg.mine_hard_negatives:
            self.model.to(self.device)
            self.data = self._mine(self.data)
            num_negatives = num_negatives or 1
        augment = Augmentation(cfg.augment_min_scale, cfg.augment_flip, cfg.augment_jitter) if cfg.augment else None
        self.dataset = PairDataset(self.data, num_hard_negatives=num_negatives, seed=cfg.seed, augment=augment)
        self.sampler = ResumableBatchSampler(
            len(self.dataset), cfg.batch_size, seed=cfg.seed, rank=self.rank, world_size=self.world
        )
        self.loader = make_loader(
            self.dataset,
            collate_fn=PairCollator(self.processor, self.prompts),
            batch_sampler=self.sampler,
            num_workers=cfg.num_workers,
            seed=cfg.seed,
            pin_memory=self.device.type == "cuda",
        )
        per_epoch = max(len(self.sampler) // cfg.grad_accum_steps, 1)
        self.total_steps = cfg.max_steps or max(math.ceil(cfg.num_epochs * per_epoch), 1)
        # with an eval split: evaluate 10 times over the run unless told otherwise
        self.eval_every = cfg.eval_every or (max(1, math.ceil(self.total_steps / 10)) if self.eval_data else None)

        multi = bool(self.model.config.multi_vector)
        temperature = cfg.temperature or (1.0 if multi else 0.05)
        self.loss_fn = ContrastiveLoss(
            temperature, learnable_temperature=cfg.learnable_temperature, symmetric=cfg.symmetric
        )
        self.model.to(self.device)
        self.loss_fn.to(self.device)
        groups = param_groups(
            self.model,
            self.loss_fn.parameters(),
            lr=cfg.lr,
            backbone_lr_scale=cfg.backbone_lr_scale,
            weight_decay=cfg.weight_decay,
        )
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = build_optimizer(groups, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps, device=self.device)
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * self.total_steps)
        self.scheduler = warmup_cosine(
            self.optimizer, total_steps=self.total_steps, warmup_steps=warmup, min_lr_ratio=cfg.min_lr_ratio
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

        module: nn.Module = TrainModule(self.model, self.loss_fn)
        if self.world > 1:
            module = wrap_ddp(module, self.device, find_unused_parameters=cfg.ddp_find_unused_parameters)
        self.module = torch.compile(module) if cfg.compile else module

        self.step = self.epoch = self.batch_in_epoch = 0
        self.best: dict[str, Any] | None = None
        self.last_eval: dict[str, Any] | None = None
        self.bad_evals = 0  # evaluations in a row without improvement (early stopping)
        self.start_step = 0
        self.stopped_early = False
        self.last_save = time.monotonic()
        self.metrics = MetricsLogger(self.out / "metrics.jsonl", enabled=du.is_main_process())
        if cfg.resume:
            self._resume(cfg.resume)

    # ---- setup -----------------------------------------------------------------------------------
    def _configure_backbones(self) -> None:
        cfg, mcfg = self.config, self.model.config
        text_mode = cfg.text_backbone or ("frozen" if mcfg.is_text_frozen else "full")
        vision_mode = cfg.vision_backbone or ("frozen" if mcfg.is_vision_frozen else "full")
        mcfg.is_text_frozen, mcfg.is_vision_frozen = text_mode == "frozen", vision_mode == "frozen"
        self.trainable_backbone = {
            "text": set_backbone_mode(self.model.text_backbone, text_mode, cfg.unfreeze_last_n_layers),
            "vision": set_backbone_mode(self.model.vision_backbone, vision_mode, cfg.unfreeze_last_n_layers),
        }
        self.checkpointed: list[str] = []
        if cfg.gradient_checkpointing:
            for name, mode in (("text", text_mode), ("vision", vision_mode)):
                tower = getattr(self.model, f"{name}_backbone")
                if mode != "frozen" and enable_checkpointing(tower):
                    self.checkpointed.append(name)

    def _mine(self, data: TrainingData) -> TrainingData:
        """Mined hard negatives (`mining`), computed once by rank 0 and read back on resume."""
        path = self.out / mining.FILE_NAME
        mined = mining.load(path, data) if self.config.resume else None
        if mined is None:
            if du.is_main_process():
                mined = mining.mine(
                    self.model,
                    self.processor,
                    data,
                    self.config.mine_hard_negatives,
                    device=self.device,
                    batch_size=self.config.eval_batch_size,
                    prompts=self.prompts,
                )
                mining.save(path, data, mined)
            du.barrier()
            mined = mined if mined is not None else mining.load(path, data)
        assert mined is not None
        return mining.with_negatives(data, mined)

    def _add_errors(self, errors: list[ItemError]) -> None:
        for e in errors:
            self.errors.setdefault((e.file, e.line, e.id, e.reason), e)

    # ---- data ------------------------------------------------------------------------------------
    def _batches(self) -> Iterator[dict[str, Any]]:
        """Endless micro-batches; `epoch` / `batch_in_epoch` always say how many were consumed."""
        while True:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            self.dataset.set_epoch(self.epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def _next_usable(self, batches: Iterator[dict[str, Any]]) -> dict[str, Any]:
        """Next batch that every rank can use (a batch whose items all failed is skipped everywhere)."""
        while True:
            batch = next(batches)
            self._add_errors(batch["errors"])
            empty = du.all_reduce_sum(torch.tensor(float(batch["size"] == 0), device=self.device))
            if float(empty) == 0:
                return batch

    # ---- one optimizer step ----------------------------------------------------------------------
    def _train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float]:
        cfg = self.config
        self.module.train()
        totals = {"loss": 0.0, "accuracy": 0.0}
        for micro in range(cfg.grad_accum_steps):
            batch = self._next_usable(batches)
            last = micro == cfg.grad_accum_steps - 1
            sync = contextlib.nullcontext() if last or self.world == 1 else self.module.no_sync()
            with sync:
                with torch.autocast(
                    self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
                ):
                    out = self.module(
                        move_to(batch["query_inputs"], self.device),
                        move_to(batch["doc_inputs"], self.device),
                        batch["query_positive_ids"].to(self.device),
                        batch["doc_ids"].to(self.device),
                    )
                self.scaler.scale(out.loss / cfg.grad_accum_steps).backward()
            totals["loss"] += float(out.global_loss) / cfg.grad_accum_steps
            totals["accuracy"] += float(out.accuracy) / cfg.grad_accum_steps
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm or float("inf"))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {**totals, "grad_norm": float(norm), "temperature": out.temperature}

    # ---- the run ---------------------------------------------------------------------------------
    def train(self, *, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to `total_steps` (or stop early at `stop_at_step`, leaving a checkpoint); return a summary."""
        start = time.time()
        self.start_step = self.step
        end = min(self.total_steps, stop_at_step or self.total_steps)
        with StopSignals() as signals:
            return self._run(start, end, signals)

    def _agree(self, flag: bool) -> bool:
        """True on every rank when it is True on any (signals and clocks are per process)."""
        if self.world == 1:
            return flag
        return float(du.all_reduce_sum(torch.tensor(float(flag), device=self.device))) > 0

    def _run(self, start: float, end: int, signals: StopSignals) -> dict[str, Any]:
        cfg = self.config
        batches = self._batches()
        bar = None
        if cfg.progress and du.is_main_process():
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True)
        window: list[dict[str, float]] = []
        tick = time.time()
        last_loss = float("nan")
        interrupted: str | None = None
        while self.step < end and not self._agree(signals.received is not None):
            stats = self._train_step(batches)
            window.append(stats)
            last_loss = stats["loss"]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['accuracy']:.2f}")
            if self.step % cfg.log_every == 0 or self.step == end:
                rate = len(window) / max(time.time() - tick, 1e-9)
                record = {k: sum(w[k] for w in window) / len(window) for k in ("loss", "accuracy", "grad_norm")}
                self.metrics.log(
                    {
                        "kind": "train",
                        "step": self.step,
                        "epoch": self.epoch,
                        **record,
                        "lr": max(self.scheduler.get_last_lr()),
                        "temperature": stats["temperature"],
                        "steps_per_s": rate,
                    }
                )
                window, tick = [], time.time()
            if self.eval_every and self.step % self.eval_every == 0 and self.step < self.total_steps:
                self._evaluate_and_maybe_save()
                patience = cfg.early_stopping_patience
                if patience and self.bad_evals >= patience:
                    self.stopped_early = True
                    break
            elif cfg.save_every and self.step % cfg.save_every == 0:
                self._save()
            elif cfg.save_every_minutes and self._agree(
                time.monotonic() - self.last_save >= cfg.save_every_minutes * 60
            ):
                self._save()
        if signals.received is not None or (self.step < end and not self.stopped_early):
            interrupted = signals.received or "a signal to another rank"
        if bar is not None:
            bar.close()
        finished = self.step >= self.total_steps or self.stopped_early
        if not finished or interrupted:
            if ckpt.latest_checkpoint(self.out / "checkpoints") != self._checkpoint_dir(self.step):
                self._save()
            self._gather_errors()
            return self._report(self._summary(start, last_loss, finished=False, interrupted=interrupted))
        if cfg.eval_at_end and self.eval_data is not None and not self.stopped_early:
            self._evaluate_and_maybe_save(final=True)
        elif ckpt.latest_checkpoint(self.out / "checkpoints") != self._checkpoint_dir(self.step):
            self._save()
        model_dir = self._export_final()
        self._gather_errors()
        return self._report(self._summary(start, last_loss, finished=True, model_dir=model_dir))

    # ---- evaluation ------------------------------------------------------------------------------
    def _evaluate_and_maybe_save(self, final: bool = False) -> None:
        improved = False
        if du.is_main_process():
            assert self.eval_data is not None
            # the serving path applies the prompts (the same ones the training collator applies)
            result = evaluate(
                self.model,
                self.processor,
                self.eval_data.queries,
                self.eval_data.corpus,
                device=self.device,
                queries_file=self.eval_data.queries_file,
                corpus_file=self.eval_data.corpus_file,
                batch_size=self.config.eval_batch_size,
                num_workers=self.config.num_workers,
                autocast_dtype=self.amp_dtype,
                prompts=self.prompts or saved_prompts(self.config.model),
            )
            self._add_errors([ItemError(**e) for e in result.pop("errors")])
            self.last_eval = {"step": self.step, **result}
            self.metrics.log({"kind": "eval", **self.last_eval})
            value = result[self.config.best_metric]
            improved = self.best is None or value > self.best["value"] + self.config.early_stopping_min_delta
        flag = du.all_reduce_sum(torch.tensor(float(improved), device=self.device))
        self.bad_evals = 0 if float(flag) > 0 else self.bad_evals + 1
        if float(flag) > 0 or final or (self.config.save_every and self.step % self.config.save_every == 0):
            if du.is_main_process() and float(flag) > 0:
                self.best = {
                    "metric": self.config.best_metric,
                    "value": self.last_eval[self.config.best_metric],
                    "step": self.step,
                }
            self._save()
        self._plot()

    def _gather_errors(self) -> None:
        """Image errors surface on the rank that loaded the item: collect them all for the report."""
        if self.world > 1:
            everyone = du.all_gather_json([e.to_dict() for e in self.errors.values()], self.device)
            self._add_errors([ItemError(**e) for rank_errors in everyone for e in rank_errors])


class TrainingInterrupted(Exception):
    """`train()` was stopped by SIGINT / SIGTERM; a resumable checkpoint was written (`summary`)."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__(
            f"training interrupted by {summary['interrupted']} at step {summary['step']}: checkpoint "
            f"{summary['checkpoint']} (continue with resume='auto')"
        )
        self.summary = summary


def train(config: TrainConfig) -> Path:
    """Run a whole training and return the directory of the final model (encoder format); a process
    group that the trainer joined here is destroyed at the end. Raises `TrainingInterrupted` when a
    signal stopped it (after saving a checkpoint)."""
    created = not du.is_distributed()
    try:
        summary = Trainer(config).train()
    finally:
        if created:
            du.destroy_process_group()
    if summary["interrupted"]:
        raise TrainingInterrupted(summary)
    return Path(summary["model_dir"])
