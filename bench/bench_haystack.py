"""Benchmark of the Haystack components; prints one JSON object. Not part of the test run.

1. `ReT2DocumentEmbedder.run` vs the raw encoder (`encode_document` on the same text / image-path /
   joint inputs): documents per second and the ratio (goal: component / raw >= 0.9, i.e. the component's
   image resolution, batching and Document rebuilding cost little next to the model).
2. `ReT2Retriever.run` latency (p50 / p95) over the in-memory backend, through the plugin registry.

Model: `--model DIR` or, by default, the tiny random preset (fast; measures overhead, not quality).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_haystack.py --n 256
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


def make_corpus(folder: Path, n: int) -> list[Any]:
    from haystack import Document
    from PIL import Image

    rng = np.random.default_rng(0)
    docs = []
    for i in range(n):
        kind = i % 3
        meta: dict[str, Any] = {"kind": ["text", "image", "joint"][kind]}
        if kind:
            pixels = rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
            meta["file_path"] = f"{i}.png"
        content = None if kind == 1 else f"document {i} about topic {i % 17}"
        docs.append(Document(id=str(i), content=content, meta=meta))
    return docs


def raw_inputs(docs: list[Any], folder: Path) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        item: dict[str, Any] = {}
        if d.content:
            item["text"] = d.content
        if "file_path" in d.meta:
            item["image"] = str(folder / d.meta["file_path"])
        out.append(item)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: tiny random preset)")
    parser.add_argument("--n", type=int, default=256, help="documents")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from ret2_plugin import load_encoder
    from ret2_plugin.integrations.haystack import ReT2DocumentEmbedder, ReT2DocumentWriter, ReT2Retriever
    from ret2_plugin.integrations.memory import InMemoryBackend

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            from ret2_plugin.presets import build_preset

            model = str(build_preset("tiny-clip-ret2", folder / "model"))
        docs = make_corpus(folder, args.n)
        encoder = load_encoder(model, device="cpu")
        embedder = ReT2DocumentEmbedder(
            model=model, device="cpu", root_path=str(folder), batch_size=args.batch_size, progress_bar=False
        )
        embedder.warm_up()
        inputs = raw_inputs(docs, folder)
        encoder.encode_document(inputs[: args.batch_size], batch_size=args.batch_size)  # warm caches
        raw_times, comp_times = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            encoder.encode_document(
                inputs, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
            raw_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            result = embedder.run(docs)
            comp_times.append(time.perf_counter() - start)
        assert not result["failed_documents"]

        location = "bench-haystack"
        ReT2DocumentWriter(backend="memory", location=location).run(result["documents"])
        retriever = ReT2Retriever(backend="memory", location=location, top_k=10)
        queries = [d.embedding for d in result["documents"][: args.queries]]
        retriever.run(query_embedding=queries[0])
        latencies = []
        for q in queries:
            start = time.perf_counter()
            retriever.run(query_embedding=q, filters={"field": "meta.kind", "operator": "!=", "value": "text"})
            latencies.append((time.perf_counter() - start) * 1000)
        InMemoryBackend.drop(location)

    raw_rate, comp_rate = args.n / min(raw_times), args.n / min(comp_times)
    print(
        json.dumps(
            {
                "bench": "haystack",
                "model": "tiny-clip-ret2 (random)" if args.model is None else args.model,
                "documents": args.n,
                "batch_size": args.batch_size,
                "threads": os.environ.get("OMP_NUM_THREADS"),
                "raw_encoder_docs_per_s": round(raw_rate, 1),
                "document_embedder_docs_per_s": round(comp_rate, 1),
                "component_over_raw": round(comp_rate / raw_rate, 3),
                "goal_component_over_raw": 0.9,
                "retriever_memory_p50_ms": round(float(np.percentile(latencies, 50)), 3),
                "retriever_memory_p95_ms": round(float(np.percentile(latencies, 95)), 3),
                "retriever_queries": len(latencies),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
