"""`ret2 train`, `ret2 eval` and `ret2 convert-data`: thin commands over the trainer library.

`ret2 train --config x.yaml --lr 3e-5 --set eval_every=200`: the YAML is read first, explicit flags
override it, `--set key=value` overrides anything. Multi-GPU: `torchrun --nproc-per-node 8 -m
ret2_plugin.app.cli train ...` (the trainer joins the process group from torchrun's environment).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# flag -> (TrainConfig field, type); only flags the user actually passes override the YAML
_FLAGS: dict[str, tuple[str, Any]] = {
    "--model": ("model", str), "--queries": ("queries", str), "--corpus": ("corpus", str),
    "--output-dir": ("output_dir", str), "--eval-queries": ("eval_queries", str), "--eval-corpus": ("eval_corpus", str),
    "--batch-size": ("batch_size", int), "--grad-accum-steps": ("grad_accum_steps", int), "--max-steps": ("max_steps", int),
    "--epochs": ("num_epochs", float), "--lr": ("lr", float), "--precision": ("precision", str),
    "--device": ("device", str), "--workers": ("num_workers", int), "--eval-every": ("eval_every", int),
    "--save-every": ("save_every", int), "--resume": ("resume", str), "--seed": ("seed", int),
    "--hard-negatives": ("num_hard_negatives", int), "--temperature": ("temperature", float),
}


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from ret2_plugin.trainers.config import parse_overrides

    out = {field: getattr(args, field) for field, _ in _FLAGS.values() if getattr(args, field, None) is not None}
    if args.gradient_checkpointing:
        out["gradient_checkpointing"] = True
    if args.compile:
        out["compile"] = True
    if args.json or args.no_progress:
        out["progress"] = False
    out.update(parse_overrides(args.set or []))
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.loop import Trainer

    from ret2_plugin.app.model_store import resolve_model

    from ret2_plugin.trainers import distributed as du

    config = TrainConfig.load(args.config, _train_overrides(args))
    config.model = resolve_model(config.model)
    try:
        return _train_and_report(Trainer(config), args)
    finally:
        du.destroy_process_group()


def _train_and_report(trainer: Any, args: argparse.Namespace) -> int:
    from ret2_plugin.trainers import distributed as du

    summary = trainer.train()
    if not du.is_main_process():
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        best = summary.get("best") or {}
        print(f"trained {summary['step']} steps in {summary['seconds']}s, final loss {summary['final_loss']:.4f}; "
              f"model saved to {summary['model_dir']}" + (f"; best {best.get('metric')} {best.get('value'):.4f} at step {best.get('step')}" if best else ""))
        for err in summary["errors"][:20]:
            print(f"  skipped {err['file']}:{err['line']} (id={err['id']!r}): {err['reason']}", file=sys.stderr)
        if summary["num_errors"]:
            print(f"{summary['num_errors']} bad item(s) reported and skipped", file=sys.stderr)
    return 1 if args.strict and summary["num_errors"] else 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.modeling import ReT2Model
    from ret2_plugin.processing import ReT2Processor

    from ret2_plugin.trainers.data import TrainingData
    from ret2_plugin.trainers.evaluation import evaluate

    path = resolve_model(args.model)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = ReT2Model.from_pretrained(path).to(device)
    processor = ReT2Processor.from_pretrained(path)
    data = TrainingData.load(args.queries, args.corpus)
    result = evaluate(model, processor, data.queries, data.corpus, device=device, queries_file=args.queries,
                      corpus_file=args.corpus, batch_size=args.batch_size, num_workers=args.workers)
    errors = [e.to_dict() for e in data.errors] + result.pop("errors")
    result.update(model=path, num_errors=len(errors), errors=errors)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("  ".join(f"{k} {result[k]:.4f}" for k in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"))
              + f"  ({result['num_queries']} queries, {result['num_documents']} documents)")
        for err in errors[:20]:
            print(f"  skipped {err['file']}:{err['line']} (id={err['id']!r}): {err['reason']}", file=sys.stderr)
    return 1 if args.strict and errors else 0


def cmd_convert_data(args: argparse.Namespace) -> int:
    from ret2_plugin.trainers.convert import convert

    report = convert(args.format, args.input, args.output, image_root=args.image_root)
    print(json.dumps(report, indent=2) if args.json else
          f"wrote {report['written']} item(s) to {args.output}; {len(report['errors'])} skipped")
    return 1 if args.strict and report["errors"] else 0


def add_train_commands(subparsers: Any) -> None:
    """Add `train`, `eval` and `convert-data` to the `ret2` command."""
    p = subparsers.add_parser("train", help="fine-tune a model on queries + corpus JSONL (torchrun for multi-GPU)")
    p.add_argument("--config", help="YAML training config (see ret2_plugin.trainers.config.TrainConfig)")
    for flag, (field, kind) in _FLAGS.items():
        p.add_argument(flag, dest=field, type=kind, default=None)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the training module")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config field (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when any item was bad")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="Recall@1/5/10, MRR@10, nDCG@10 of a model on queries + corpus (exact search)")
    p.add_argument("--model", required=True, help="model dir, hub id or preset")
    p.add_argument("--queries", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("convert-data", help="M-BEIR or ReT-M2KR jsonl -> ret2 queries/corpus JSONL")
    p.add_argument("format", choices=["mbeir-queries", "mbeir-corpus", "m2kr-queries", "m2kr-corpus"])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--image-root", help="folder the dataset's relative image paths are relative to (default: the input's folder)")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert_data)
