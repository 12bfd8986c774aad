"""Optional GPU search: with `faiss-gpu` and a CUDA device, flat and IVF indexes are cloned to the GPU.

The CPU index stays the source of truth (adds, deletes and saving always use it); the GPU copy is a
search cache rebuilt after writes. With no GPU the same code simply searches on CPU. HNSW has no GPU
implementation in FAISS, and GPU indexes do not take id selectors, so filtered searches stay on CPU.
"""

from __future__ import annotations

import faiss

from .factory import family


def gpu_count() -> int:
    """Number of CUDA devices FAISS can use (0 for faiss-cpu or a machine without a GPU)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def to_search_device(index: faiss.Index, index_type: str, *, use_gpu: bool = True) -> tuple[faiss.Index, bool]:
    """The index to search with and whether it lives on GPU.

    Guarded on `get_num_gpus() > 0`: `index_cpu_to_all_gpus` with no GPU returns an EMPTY index.
    """
    if not use_gpu or family(index_type) not in ("flat", "ivf") or index.ntotal == 0 or gpu_count() == 0:
        return index, False
    return faiss.index_cpu_to_all_gpus(index), True


def to_cpu(index: faiss.Index, on_gpu: bool) -> faiss.Index:
    """Bring a GPU index back to CPU (for saving); a CPU index is returned unchanged."""
    return faiss.index_gpu_to_cpu(index) if on_gpu else index
