"""Small data builders shared by the FAISS backend tests."""

from __future__ import annotations

import numpy as np

from ret2_plugin.index import IndexRecord


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def records(vectors: np.ndarray, prefix: str = "d", **meta_fns) -> list[IndexRecord]:
    """One record per vector, id f"{prefix}{i}", meta {"i": i, "group": i % 3} plus `meta_fns`."""
    out = []
    for i, v in enumerate(vectors):
        meta = {"i": i, "group": i % 3, **{k: fn(i) for k, fn in meta_fns.items()}}
        out.append(
            IndexRecord(f"{prefix}{i}", v, text=f"text {i}", image=f"img/{i}.png", meta=meta, content_hash=f"h{i}")
        )
    return out


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int, prefix: str = "d") -> list[str]:
    scores = vectors @ query
    return [f"{prefix}{i}" for i in np.argsort(-scores, kind="stable")[:k]]
