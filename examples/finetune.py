"""Fine-tune a ReT model on your own multimodal corpus, then evaluate it.

The data is two JSONL files: queries (text / image / both, optional instruction, `positives` by id)
and the corpus. Multi-GPU: run the same training through `torchrun --nproc-per-node N -m
ret2_plugin.app.cli train --config examples/train.yaml ...`.

    python examples/finetune.py --model DIR --output-dir runs/emoji [--steps 300]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ret2_plugin import load_encoder
from ret2_plugin.app.model_store import resolve_model
from ret2_plugin.trainers.config import TrainConfig
from ret2_plugin.trainers.loop import train

EXAMPLES = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model to start from: dir, hub id or preset (default: starter)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args(argv)

    config = TrainConfig.load(
        EXAMPLES / "train.yaml",
        overrides={
            "model": resolve_model(args.model),
            "output_dir": args.output_dir,
            "queries": str(EXAMPLES / "data" / "queries_train.jsonl"),
            "corpus": str(EXAMPLES / "data" / "corpus.jsonl"),
            "eval_queries": str(EXAMPLES / "data" / "queries_heldout.jsonl"),
            "max_steps": args.steps,
            "eval_every": args.eval_every,
        },
    )
    final = train(config)  # checkpoints, metrics.jsonl and a loss/recall plot in output_dir
    print(f"fine-tuned model: {final}")
    encoder = load_encoder(str(final))  # ready for `ret2 index --model`, Haystack, Elasticsearch
    print("embedding size:", encoder.get_embedding_dimension())
    return final


if __name__ == "__main__":
    main()
