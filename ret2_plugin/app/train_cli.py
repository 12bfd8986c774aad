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
    "--model": ("model", str),
    "--queries": ("queries", str),
    "--corpus": ("corpus", str),
    "--output-dir": ("output_dir", str),
    "--eval-queries": ("eval_queries", str),
    "--eval-corpus": ("eval_corpus", str),
    "--batch-size": ("batch_size", int),
    "--grad-accum-steps": ("grad_accum_steps", int),
    "--max-steps": ("max_steps", int),
    "--epochs": ("num_epochs", float),
    "--lr": ("lr", float),
    "--precision": ("precision", str),
    "--device": ("device", str),
    "--workers": ("num_workers", int),
    "--eval-every": ("eval_every", int),
    "--save-every": ("save_every", int),
    "--resume": ("resume", str),
    "--seed": ("seed", int),
    "--hard-negatives": ("num_hard_negatives", int),
    "--temperature": ("temperature", float),
    "--mine-hard-negatives": ("mine_hard_negatives", int),
    "--patience": ("early_stopping_patience", int),
    "--save-every-minutes": ("save_every_minutes", float),
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
    for flag in ("strict", "overwrite", "augment"):
        if getattr(args, flag):
            out[flag] = True
    for tower in args.freeze or []:
        out[f"{tower}_backbone"] = "frozen"
    out.update(parse_overrides(args.set or []))
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.trainers import distributed as du
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.loop import Trainer
    from ret2_plugin.trainers.runctl import EXIT_CODES
    from ret2_plugin.trainers.validate import DataValidationError

    config = TrainConfig.load(args.config, _train_overrides(args))
    config.model = resolve_model(config.model)
    try:
        try:
            trainer = Trainer(config)  # checks the output dir and every item before step 1
        except DataValidationError as exc:
            for err in exc.errors[:50]:
                print(f"  {err.file}:{err.line} (id={err.id!r}): {err.reason}", file=sys.stderr)
            if not config.strict:
                raise
            print(f"ret2: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("ret2: interrupted before training started: nothing to save", file=sys.stderr)
            return EXIT_CODES["SIGINT"]
        if du.is_main_process() and not args.json:
            report = trainer.validation
            print(
                f"checked {sum(report.checked.values())} item(s) and {report.images_checked} image(s): "
                f"{len(report.errors)} refused",
                file=sys.stderr,
            )
            for line in report.lines(20):
                print(f"  {line}", file=sys.stderr)
        return _train_and_report(trainer, args)
    finally:
        du.destroy_process_group()


def _train_and_report(trainer: Any, args: argparse.Namespace) -> int:
    from ret2_plugin.trainers import distributed as du
    from ret2_plugin.trainers.runctl import EXIT_CODES

    summary = trainer.train()
    if not du.is_main_process():
        return 0
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_describe(summary))
        for err in summary["errors"][:20]:
            print(f"  skipped {err['file']}:{err['line']} (id={err['id']!r}): {err['reason']}", file=sys.stderr)
        if summary["num_errors"]:
            print(f"{summary['num_errors']} bad item(s) reported and skipped", file=sys.stderr)
    if summary["interrupted"]:
        return EXIT_CODES.get(summary["interrupted"], 1)
    return 1 if args.strict and summary["num_errors"] else 0


def _describe(summary: dict[str, Any]) -> str:
    """One honest line: steps run in this session, what `model_dir` holds, why the run ended."""
    steps = summary["steps_this_run"]
    where = (
        f" (steps {summary['start_step'] + 1}-{summary['step']} of {summary['total_steps']})"
        if summary["start_step"]
        else ""
    )
    head = f"trained {steps} step{'s' * (steps != 1)}{where} in {summary['seconds']}s, final loss {summary['final_loss']:.4f}"
    if summary["interrupted"]:
        return (
            f"{head}; interrupted by {summary['interrupted']}: checkpoint {summary['checkpoint']} "
            "(continue with --resume auto)"
        )
    best, last = summary.get("best") or {}, summary.get("last_eval") or {}
    tail = "; stopped early (no improvement)" if summary["stopped_early"] else ""
    if summary["model_is"] == "best" and best:
        return f"{head}; model saved to {summary['model_dir']}: best {best['metric']} {best['value']:.4f} at step {best['step']}{tail}"
    metric = best.get("metric") or "recall@5"
    evaluated = f" (last evaluation at step {last['step']}: {metric} {last[metric]:.4f})" if metric in last else ""
    if last:
        evaluated += (
            f"; its best {metric} {best['value']:.4f} (step {best['step']}) is not the saved model (select_best is off)"
            if best and best.get("step") != summary["step"]
            else ""
        )
    return f"{head}; model saved to {summary['model_dir']}: the last weights{evaluated}{tail}"


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.encoder import load_encoder
    from ret2_plugin.trainers.data import TrainingData
    from ret2_plugin.trainers.evaluation import evaluate

    path = resolve_model(args.model)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = load_encoder(path, device=str(device))  # the model as `ret2 search` serves it: prompts, modules
    data = TrainingData.load(args.queries, args.corpus)
    result = evaluate(
        encoder,
        None,
        data.queries,
        data.corpus,
        device=device,
        queries_file=args.queries,
        corpus_file=args.corpus,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    errors = [e.to_dict() for e in data.errors] + result.pop("errors")
    result.update(model=path, num_errors=len(errors), errors=errors)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            "  ".join(f"{k} {result[k]:.4f}" for k in ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"))
            + f"  ({result['num_queries']} queries, {result['num_documents']} documents)"
        )
        for err in errors[:20]:
            print(f"  skipped {err['file']}:{err['line']} (id={err['id']!r}): {err['reason']}", file=sys.stderr)
    return 1 if args.strict and errors else 0


def cmd_convert_data(args: argparse.Namespace) -> int:
    from ret2_plugin.trainers.convert import convert

    report = convert(args.format, args.input, args.output, image_root=args.image_root)
    print(
        json.dumps(report, indent=2)
        if args.json
        else f"wrote {report['written']} item(s) to {args.output}; {len(report['errors'])} skipped"
    )
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
    p.add_argument("--strict", action="store_true", help="refuse to train (exit 1) when any item is bad")
    p.add_argument("--overwrite", action="store_true", help="delete an earlier run in --output-dir and start over")
    p.add_argument("--augment", action="store_true", help="random crop / flip / colour jitter on training images")
    p.add_argument("--freeze", action="append", choices=["text", "vision"], help="freeze a tower (repeatable)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "eval", help="Recall@1/5/10, MRR@10, nDCG@10 of a model on queries + corpus (exact search)"
    )
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
    p.add_argument(
        "--image-root", help="folder the dataset's relative image paths are relative to (default: the input's folder)"
    )
    p.add_argument("--strict", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert_data)
