"""Training configuration: one pydantic model, loadable from YAML, overridable from the command line.

Unknown keys are refused (a typo in a YAML file must not be silently ignored). Overrides are
`key=value` strings read by the shared rule of `ret2_plugin.kv` (JSON when it parses, else the text:
`lr=3e-5`, `eval_every=null`, `precision=bf16`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BackboneMode = Literal["frozen", "partial", "full"]


class TrainConfig(BaseModel):
    """Everything `ret2 train` needs. Batch sizes are per rank and per micro-step."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # data and model
    model: str = Field(description="saved model directory (weights + processor) to start from")
    queries: str
    corpus: str
    output_dir: str
    eval_queries: str | None = None
    eval_corpus: str | None = None  # default: `corpus`
    num_hard_negatives: int = Field(0, ge=0)
    mine_hard_negatives: int = Field(
        0,
        ge=0,
        description="mine this many hard negatives per query from the corpus "
        "with the starting model (they feed num_hard_negatives, 1 when that is 0)",
    )
    num_workers: int = Field(2, ge=0)
    strict: bool = False  # any refused item stops the run before step 1
    overwrite: bool = False  # an output_dir holding an earlier run is cleared (else: resume or refuse)

    # generalisation
    augment: bool = False  # random resized crop + flip + colour jitter on training images (Pillow/torch)
    augment_min_scale: float = Field(0.6, gt=0, le=1)
    augment_flip: bool = True
    augment_jitter: float = Field(0.2, ge=0, lt=1)
    early_stopping_patience: int | None = Field(
        3, ge=1, description="stop after this many evaluations without improvement of best_metric (None: never)"
    )
    early_stopping_min_delta: float = Field(0.0, ge=0)

    # optimisation
    seed: int = 0
    batch_size: int = Field(32, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    num_epochs: float = Field(1.0, gt=0)
    lr: float = Field(1e-4, gt=0)
    backbone_lr_scale: float = Field(0.1, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int | None = Field(None, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    max_grad_norm: float | None = Field(1.0, gt=0)

    # loss
    temperature: float | None = Field(
        None, gt=0, description="None: 0.05 single-vector, 1.0 multi-vector (MaxSim sums K tokens)"
    )
    learnable_temperature: bool = False
    symmetric: bool = True

    # backbones: None follows the model config (is_text_frozen / is_vision_frozen)
    text_backbone: BackboneMode | None = None
    vision_backbone: BackboneMode | None = None
    unfreeze_last_n_layers: int = Field(2, ge=1)
    gradient_checkpointing: bool = False
    compile: bool = False

    # devices
    device: str | None = None  # None: cuda:LOCAL_RANK if available, else cpu
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA when supported, else fp32
    ddp_backend: str | None = None  # None: nccl on CUDA, gloo on CPU
    ddp_find_unused_parameters: bool = True  # towers skipped for text-only / image-only batches

    # evaluation, checkpoints, logging
    eval_every: int | None = Field(None, ge=1)  # None with eval_queries: 10 evaluations over the run
    eval_at_end: bool = True
    eval_batch_size: int = Field(64, ge=1)
    best_metric: str = "recall@5"
    select_best: bool = True  # the final model is the best evaluated checkpoint
    save_every: int | None = Field(None, ge=1)
    save_every_minutes: float | None = Field(10.0, gt=0, description="also checkpoint after this much training time")
    keep_last: int = Field(2, ge=1)
    resume: str | None = None  # "auto" (latest in output_dir) or a checkpoint directory
    log_every: int = Field(10, ge=1)
    progress: bool = True
    plot: bool = True

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value: Any) -> Any:
        """The shared vocabulary (`ret2_plugin.precision`): aliases float32 / float16 / bfloat16 too."""
        from ret2_plugin.precision import canonical

        return value if value == "auto" else canonical(value, training=True)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.best_metric not in {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"}:
            raise ValueError(f"best_metric {self.best_metric!r} is not one of recall@1/5/10, mrr@10, ndcg@10")
        if self.eval_every and not self.eval_queries:
            raise ValueError("eval_every needs eval_queries")
        if self.eval_corpus and not self.eval_queries:
            raise ValueError("eval_corpus is set but eval_queries is not: no evaluation split can be built")
        if self.resume and self.overwrite:
            raise ValueError(
                "resume and overwrite exclude each other (resume continues the run in output_dir, overwrite deletes it)"
            )
        return self

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML file (optional), apply overrides (already-typed values), validate."""
        data: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            if loaded is not None and not isinstance(loaded, dict):
                raise ValueError(f"{path}: a training config must be a YAML mapping")
            data.update(loaded or {})
        data.update({k: v for k, v in (overrides or {}).items()})
        return cls.model_validate(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=True)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["lr=3e-5", "eval-every=null"]` -> `{"lr": 3e-5, "eval_every": None}`: the shared KEY=VALUE
    rule of every `ret2` flag (`ret2_plugin.kv`: JSON when it parses, else the text)."""
    from ret2_plugin.kv import parse_pairs

    return parse_pairs(pairs, "--set", normalize_keys=True)
