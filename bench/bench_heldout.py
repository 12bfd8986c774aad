"""Held-out documents: zero-shot vs fine-tuned Recall@5 on documents no training query points to.

The example corpus's split is by document (`examples/data/queries_heldout.jsonl` holds every query of
143 documents never used as training positives). This script splits those 143 documents again, by a
seeded shuffle, into a validation half (model selection and early stopping) and a test half (the
reported figures), so the reported test score never picked the checkpoint. Every evaluation ranks
the whole 717-document corpus.

The zero-shot model is the starter architecture before any training on this corpus: the pretrained
all-MiniLM-L6-v2 text tower with an untrained fusion and a from-scratch vision tower (no pretrained
image tower can be installed offline). The fine-tuned model is `ret2 train`'s defaults plus the
given overrides. Prints JSON: settings, zero-shot and fine-tuned metrics on the test half (overall and
per query kind), and Recall@5 on a sample of training queries (the train/test gap).

    python bench/bench_heldout.py --out runs/heldout [--steps 300] [--set augment=true ...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"


def split_heldout(out: Path, seed: int, train_sample: int) -> dict[str, Path]:
    rows = [json.loads(line) for line in (DATA / "queries_heldout.jsonl").read_text().splitlines() if line.strip()]
    docs = sorted({r["positives"][0] for r in rows})
    random.Random(seed).shuffle(docs)
    val_docs = set(docs[: len(docs) // 2])
    files = {}
    for name, keep in (
        ("val", lambda r: r["positives"][0] in val_docs),
        ("test", lambda r: r["positives"][0] not in val_docs),
    ):
        path = out / f"queries_{name}.jsonl"
        for r in rows:  # image paths are relative to examples/data
            if "image" in r:
                r["image"] = str((DATA / r["image"]).resolve()) if not Path(r["image"]).is_absolute() else r["image"]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows if keep(r)))
        files[name] = path
    train = [json.loads(line) for line in (DATA / "queries_train.jsonl").read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(train)
    for r in train:
        if "image" in r:
            r["image"] = str((DATA / r["image"]).resolve())
    files["train_sample"] = out / "queries_train_sample.jsonl"
    files["train_sample"].write_text("".join(json.dumps(r) + "\n" for r in train[:train_sample]))
    return files


def evaluate_dir(model_dir: Path, queries: Path) -> dict[str, Any]:
    """Metrics overall and per query kind (`meta.kind`), the corpus encoded once."""
    import torch

    from ret2_plugin.trainers.data import TrainingData
    from ret2_plugin.trainers.evaluation import encode_items, exact_search, retrieval_metrics
    from ret2_plugin.trainers.model_io import load_for_training

    model, processor, _ = load_for_training(model_dir)
    data = TrainingData.load(queries, DATA / "corpus.jsonl")
    cpu = torch.device("cpu")
    docs = encode_items(model, processor, data.corpus, side="document", source="corpus", device=cpu, batch_size=64)
    qs = encode_items(model, processor, data.queries, side="query", source=str(queries), device=cpu, batch_size=64)
    doc_ids = [data.corpus[i].id for i in docs.indices]
    ranked = [[doc_ids[j] for j in row] for row in exact_search(qs.embeddings, docs.embeddings, 10).tolist()]
    kinds = [(data.queries[i].meta or {}).get("kind", "?") for i in qs.indices]
    relevant = [set(data.queries[i].positives) for i in qs.indices]
    out = {}
    for kind in ("all", "text", "image", "text+image"):
        rows = [n for n, k in enumerate(kinds) if kind in ("all", k)]
        if rows:
            metrics = retrieval_metrics([ranked[n] for n in rows], [relevant[n] for n in rows])
            out[kind] = {**{k: round(v, 4) for k, v in metrics.items() if k != "ndcg@10"}, "num_queries": len(rows)}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-sample", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="TrainConfig override")
    args = parser.parse_args(argv)

    from ret2_plugin.app.starter import untrained_starter
    from ret2_plugin.trainers.config import TrainConfig, parse_overrides
    from ret2_plugin.trainers.loop import train

    args.out.mkdir(parents=True, exist_ok=True)
    files = split_heldout(args.out, args.seed, args.train_sample)
    zero = args.out / "zero-shot"
    model, processor = untrained_starter(args.seed)
    model.save_pretrained(zero)
    processor.save_pretrained(zero)

    settings: dict[str, Any] = dict(
        model=str(zero),
        queries=str(DATA / "queries_train.jsonl"),
        corpus=str(DATA / "corpus.jsonl"),
        eval_queries=str(files["val"]),
        output_dir=str(args.out / "run"),
        max_steps=args.steps,
        batch_size=32,
        lr=1e-3,
        backbone_lr_scale=1.0,
        eval_every=max(args.steps // 6, 1),
        num_workers=0,
        seed=args.seed,
        overwrite=True,
    )
    settings.update(parse_overrides(args.set))
    started = time.time()
    cached = (
        args.out / f"zero_shot-seed{args.seed}-sample{args.train_sample}.json"
    )  # the zero-shot model is fixed by the seed
    if cached.is_file():
        zero_shot = json.loads(cached.read_text())
    else:
        zero_shot = {
            "test": evaluate_dir(zero, files["test"]),
            "train_sample": evaluate_dir(zero, files["train_sample"])["all"],
        }
        cached.write_text(json.dumps(zero_shot, indent=2) + "\n")
    report: dict[str, Any] = {"settings": settings, "zero_shot": zero_shot}
    print(json.dumps({"zero_shot": zero_shot}), file=sys.stderr, flush=True)
    final = train(TrainConfig(**settings))
    summary = json.loads((args.out / "run" / "train_report.json").read_text())
    report["training"] = {
        k: summary[k] for k in ("step", "total_steps", "stopped_early", "best", "model_is", "seconds")
    }
    report["fine_tuned"] = {
        "test": evaluate_dir(final, files["test"]),
        "train_sample": evaluate_dir(final, files["train_sample"])["all"],
    }
    zs, ft = report["zero_shot"]["test"]["all"]["recall@5"], report["fine_tuned"]["test"]["all"]["recall@5"]
    report["test_recall@5_ratio"] = round(ft / zs, 2) if zs else None
    report["train_test_gap_recall@5"] = round(report["fine_tuned"]["train_sample"]["recall@5"] - ft, 4)
    report["seconds"] = round(time.time() - started, 1)
    print(json.dumps(report, indent=2))
    (args.out / "heldout_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
