"""Benchmark the FAISS backend: build time, query latency (p50/p95) and recall@10 against exact search.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_faiss.py --n 100000 --dim 512 --queries 200

Index types: Flat (exact), HNSW32 (efSearch swept) and an IVF-PQ setting (nprobe swept; PQ hits are
re-scored exactly from the stored vectors, `refine_factor` candidates per hit, swept too when probing
every list is not enough). For each ANN type it
reports the fastest setting with recall@10 >= 0.95 and its speed-up over Flat. Datasets: "random"
(uniform on the sphere: the hard case for ANN, no structure to exploit) and "clustered" (a Gaussian
mixture, closer to real embeddings). Prints one JSON object. Not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time

import numpy as np

from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.faiss import FaissBackend


def make_data(kind: str, n: int, queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        x = rng.normal(size=(n + queries, dim)).astype(np.float32)
    else:
        centers = rng.normal(size=(max(10, n // 100), dim)).astype(np.float32)
        labels = rng.integers(0, len(centers), size=n + queries)
        x = centers[labels] + 0.35 * rng.normal(size=(n + queries, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def build(directory: str, data: np.ndarray, index_type: str, **options: object) -> tuple[FaissBackend, float]:
    start = time.perf_counter()
    backend = FaissBackend.open(directory, dim=data.shape[1], index_type=index_type, **options)
    for lo in range(0, len(data), 4096):
        report = backend.add(IndexRecord(f"d{i}", data[i]) for i in range(lo, min(lo + 4096, len(data))))
        assert not report.failed, report.failed[:3]
    return backend, time.perf_counter() - start


def measure(backend: FaissBackend, queries: np.ndarray, truth: list[set[str]]) -> dict[str, float]:
    latencies, recall = [], []
    for q, expected in zip(queries, truth):
        start = time.perf_counter()
        hits = backend.search(q, top_k=10)
        latencies.append(time.perf_counter() - start)
        recall.append(len({h.id for h in hits} & expected) / 10)
    ms = np.asarray(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "recall_at_10": round(float(np.mean(recall)), 4),
    }


def sweep(
    backend: FaissBackend, knob: str, values: list[int], queries: np.ndarray, truth: list[set[str]]
) -> list[dict]:
    rows = []
    for value in values:
        setattr(backend.settings, knob, value)
        rows.append({knob: value, **measure(backend, queries, truth)})
        if rows[-1]["recall_at_10"] >= 0.99:
            break
    return rows


def best(rows: list[dict], flat_p50: float) -> dict | None:
    good = [r for r in rows if r["recall_at_10"] >= 0.95]
    if not good:
        return None
    pick = min(good, key=lambda r: r["p50_ms"])
    return {**pick, "speedup_vs_flat_p50": round(flat_p50 / pick["p50_ms"], 2)}


def run(kind: str, args: argparse.Namespace) -> dict:
    data, queries = make_data(kind, args.n, args.queries, args.dim)
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        flat, seconds = build(f"{tmp}/flat", data, "Flat")
        truth = [{h.id for h in flat.search(q, top_k=10)} for q in queries]
        out["Flat"] = {"build_s": round(seconds, 2), **measure(flat, queries, [set(t) for t in truth])}
        flat.close()
        flat_p50 = out["Flat"]["p50_ms"]

        hnsw, seconds = build(f"{tmp}/hnsw", data, "HNSW32", exact_threshold=0)
        rows = sweep(hnsw, "ef_search", [16, 32, 64, 128, 256, 512, 1024, 2048, 4096], queries, truth)
        out["HNSW32"] = {"build_s": round(seconds, 2), "sweep": rows, "best_at_recall_0.95": best(rows, flat_p50)}
        hnsw.close()

        ivf_type = args.ivf or f"IVF{2 ** round(np.log2(np.sqrt(args.n)))},PQ{args.dim // 8}"
        ivf, seconds = build(
            f"{tmp}/ivf", data, ivf_type, exact_threshold=0, train_min=args.n, refine_factor=args.refine_factor
        )
        rows = sweep(ivf, "nprobe", [4, 8, 16, 32, 64, 128, 256], queries, truth)
        if rows[-1]["recall_at_10"] < 0.95:  # PQ-limited (all lists probed): re-score more candidates
            rows += [
                {"nprobe": ivf.settings.nprobe, **r} for r in sweep(ivf, "refine_factor", [25, 50, 100], queries, truth)
            ]
        out[ivf_type] = {
            "build_s": round(seconds, 2),
            "refine_factor_default": args.refine_factor,
            "sweep": rows,
            "best_at_recall_0.95": best(rows, flat_p50),
        }
        ivf.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--datasets", default="random,clustered")
    parser.add_argument("--ivf", default=None, help="IVF factory string (default IVF{~sqrt n},PQ{dim/8})")
    parser.add_argument("--refine-factor", type=int, default=10)
    args = parser.parse_args(argv)
    import os

    import faiss

    result = {
        "n": args.n,
        "dim": args.dim,
        "queries": args.queries,
        "top_k": 10,
        "faiss": faiss.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "latency": "per single query through FaissBackend.search, incl. payload fetch",
    }
    start = time.perf_counter()
    for kind in args.datasets.split(","):
        result[kind] = run(kind, args)
    result["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
