"""Opt-in fast modes: speed and retrieval quality of `precision="bf16"` / `"int8"` vs fp32 (JSON out).

Encodes the bundled example corpus and its held-out queries (`examples/data/`) with the same model
loaded through `load_encoder(..., precision=...)`, ranks by exact dot product and reports Recall@1/5/10
(overall and by query kind) with the change vs fp32, plus encode throughput (items/s, the precisions
interleaved over `--rounds`, best round) and the speed-up vs fp32.

`--fast-decode` adds the fp32 model with `image_decode="fast"` (JPEG DCT-scaled decoding) as the row
`fp32+fast-decode`. The example images are small PNGs, which that mode leaves alone: `--jpeg-size N`
first rewrites every corpus and query image as an N x N JPEG (bicubic, quality 90) in a temp dir, the
case the mode is for (photos larger than the model's input).

    python bench/bench_precision.py --model starter --rounds 2 > precision.json
    python bench/bench_precision.py --model starter --precisions fp32 --fast-decode --jpeg-size 640
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def as_jpegs(items: list[Any], folder: Path, size: int) -> list[Any]:
    """The items with each image file rewritten as a `size` x `size` JPEG (RGB as the model sees it)."""
    from PIL import Image

    out = []
    for item in items:
        if isinstance(item.image, (str, Path)):
            target = folder / (Path(str(item.image)).stem + ".jpg")
            if not target.exists():
                with Image.open(item.image) as image:
                    image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(target, quality=90)
            item = dataclasses.replace(item, image=str(target))
        out.append(item)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="starter", help="model dir, hub id or named preset (starter, starter-quick)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fast-decode", action="store_true", help='add fp32 with image_decode="fast"')
    parser.add_argument("--jpeg-size", type=int, default=0, help="rewrite the images as JPEGs of this size first")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.app.starter import EXAMPLES
    from ret2_plugin.encoder import iter_embeddings, load_encoder
    from ret2_plugin.items import read_jsonl
    from ret2_plugin.search import embed_queries, is_multi_vector
    from ret2_plugin.trainers.evaluation import retrieval_metrics

    errors: list[Any] = []
    corpus = list(read_jsonl(EXAMPLES / "corpus.jsonl", errors))
    queries = list(read_jsonl(EXAMPLES / "queries_heldout.jsonl", errors))
    workdir = tempfile.TemporaryDirectory()
    if args.jpeg_size:
        corpus, queries = (as_jpegs(items, Path(workdir.name), args.jpeg_size) for items in (corpus, queries))
    path = resolve_model(args.model)
    encoders = {p: load_encoder(path, device="cpu", precision=p) for p in args.precisions}
    if args.fast_decode:
        encoders["fp32+fast-decode"] = load_encoder(path, device="cpu", image_decode="fast")
    if any(is_multi_vector(e) for e in encoders.values()):
        raise SystemExit("bench_precision ranks single-vector models (dot product); pass a pooled model")

    def encode(encoder: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
        ids, docs = [], []
        for batch in iter_embeddings(encoder, corpus, side="document", batch_size=args.batch_size):
            ids += [item.id for item in batch.items]
            docs.append(batch.embeddings)
        return np.concatenate(docs), embed_queries(encoder, queries, batch_size=args.batch_size), ids

    best: dict[str, float] = {p: float("inf") for p in encoders}
    outputs: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    for _ in range(args.rounds):
        for precision, encoder in encoders.items():
            start = time.perf_counter()
            outputs[precision] = encode(encoder)
            best[precision] = min(best[precision], time.perf_counter() - start)

    items = len(corpus) + len(queries)
    kinds = sorted({str(q.meta.get("kind", "all")) for q in queries})
    relevants = [set(q.positives) for q in queries]
    results: dict[str, Any] = {}
    for precision, (docs, qvecs, ids) in outputs.items():
        docs = docs / np.linalg.norm(docs, axis=-1, keepdims=True)
        top = np.argsort(-(qvecs @ docs.T), axis=1)[:, :10]
        rankings = [[ids[j] for j in row] for row in top]
        by_kind = {}
        for kind in kinds:
            rows = [i for i, q in enumerate(queries) if str(q.meta.get("kind", "all")) == kind]
            by_kind[kind] = {
                k: round(v, 4)
                for k, v in retrieval_metrics([rankings[i] for i in rows], [relevants[i] for i in rows]).items()
            }
        results[precision] = {
            "encode_s": round(best[precision], 2),
            "items_per_s": round(items / best[precision], 1),
            "metrics": {k: round(v, 4) for k, v in retrieval_metrics(rankings, relevants).items()},
            "metrics_by_query_kind": by_kind,
        }
    base = results.get("fp32")
    if base:
        ref_docs = outputs["fp32"][0] / np.linalg.norm(outputs["fp32"][0], axis=-1, keepdims=True)
        for precision, row in results.items():
            row["speedup_vs_fp32"] = round(base["encode_s"] / row["encode_s"], 3)
            row["recall_change_vs_fp32"] = {
                k: round(row["metrics"][k] - base["metrics"][k], 4) for k in ("recall@1", "recall@5", "recall@10")
            }
            docs = outputs[precision][0] / np.linalg.norm(outputs[precision][0], axis=-1, keepdims=True)
            row["document_cosine_to_fp32"] = {
                "min": round(float((docs * ref_docs).sum(-1).min()), 4),
                "mean": round(float((docs * ref_docs).sum(-1).mean()), 4),
            }
    print(
        json.dumps(
            {
                "benchmark": "precision_modes",
                "model": path,
                "device": "cpu",
                "torch_threads": torch.get_num_threads(),
                "documents": len(corpus),
                "heldout_queries": len(queries),
                "rounds": args.rounds,
                "batch_size": args.batch_size,
                "input_errors": len(errors),
                "images": f"{args.jpeg_size}x{args.jpeg_size} JPEG (rewritten)"
                if args.jpeg_size
                else "as shipped (PNG)",
                "load_average_at_start": list(os.getloadavg()),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
