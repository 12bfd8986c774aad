"""Training: datasets, collators, losses, the loop, distributed helpers, evaluation; installed as `ret2_plugin.trainers`.

    from ret2_plugin.trainers import TrainConfig, Trainer
    summary = Trainer(TrainConfig.load("train.yaml", {"max_steps": 500})).train()

or `ret2 train --config train.yaml` (one process), `torchrun --nproc-per-node 8 -m ret2_plugin.app.cli train ...`
(multi-GPU). Modules: `config` (TrainConfig), `data` (JSONL -> batches, images decoded in DataLoader
workers), `losses` (symmetric InfoNCE, soft multi-positive), `distributed` (all-gather with grad),
`optim` (param groups, AdamW, warmup + cosine), `loop` (Trainer), `persistence` (its checkpoint / resume /
export / report methods), `runtime` (train module, DDP, device), `checkpoint`, `evaluation`
(Recall@k, MRR@10, nDCG@10), `logging` (JSONL + PNG), `convert` (M-BEIR / M2KR -> our JSONL),
`validate` (every line, image and id checked before step 1), `runctl` (output-dir ownership, SIGINT /
SIGTERM -> checkpoint + summary), `augment` (Pillow/torch image augmentation), `mining` (hard negatives
from the corpus), `model_io` (load as serving does: text limit, prompts, modules); the `ret2 train/eval`
commands live in `ret2_plugin.app.train_cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "TrainConfig": "ret2_plugin.trainers.config",
    "Trainer": "ret2_plugin.trainers.loop",
    "train": "ret2_plugin.trainers.loop",
    "ContrastiveLoss": "ret2_plugin.trainers.losses",
    "evaluate": "ret2_plugin.trainers.evaluation",
}

if TYPE_CHECKING:
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.evaluation import evaluate
    from ret2_plugin.trainers.loop import Trainer, train
    from ret2_plugin.trainers.losses import ContrastiveLoss

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import torch-heavy modules on first use, so `ret2 --help` stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ret2_plugin.trainers' has no attribute {name!r}")
