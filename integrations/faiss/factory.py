"""FAISS index types: default choice by corpus size, construction, training and search parameters.

Every index is an `IndexIDMap2` around a FAISS factory string with inner-product metric (cosine on
L2-normalised vectors), so our int64 keys are the FAISS ids and `remove_ids` / id selectors work the
same for every type. Families: "flat" (exact), "hnsw" (graph, tunable `efSearch`), "ivf" (inverted
lists, optionally PQ / OPQ compressed, tunable `nprobe`, needs training).
"""

from __future__ import annotations

import math
import re

import faiss
import numpy as np

AUTO = "auto"
FLAT = "Flat"
DEFAULT_EF_SEARCH = 128
DEFAULT_NPROBE = 32
# Auto tiers: exact below FLAT_MAX vectors, HNSW32 below HNSW_MAX, IVF-PQ (OPQ from OPQ_MIN) above.
FLAT_MAX = 50_000
HNSW_MAX = 2_000_000
OPQ_MIN = 20_000_000
TRAIN_POINTS_PER_CENTROID = 30  # FAISS warns below 39; 30 keeps k-means stable in practice
MAX_TRAIN_POINTS_PER_CENTROID = 256
MAX_TRAIN_SAMPLE = 262_144  # k-means / PQ training time grows linearly with the sample: cap it

_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"(?<!O)PQ(\d+)(?:x(\d+))?")
_OPQ = re.compile(r"OPQ(\d+)")


def family(index_type: str) -> str:
    """'flat', 'hnsw', 'ivf' or 'other' for a factory string."""
    if "IVF" in index_type:
        return "ivf"
    if index_type.startswith("HNSW"):
        return "hnsw"
    if index_type == FLAT:
        return "flat"
    return "other"


def tier(index_type: str) -> int:
    """Order used by the auto mode, which only ever upgrades (flat < hnsw < ivf)."""
    return {"flat": 0, "hnsw": 1, "ivf": 2}.get(family(index_type), 1)


def _pq_m(dim: int) -> int:
    """Sub-quantizers for PQ: about 8 dims each, and it must divide `dim`."""
    target = max(1, dim // 8)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def default_index_type(n: int, dim: int) -> str:
    """The factory string we recommend for `n` vectors of `dim` dims.

    Exact search is fast enough (a few ms per query) below FLAT_MAX; HNSW32 gives the best speed and
    recall trade-off while the full-precision vectors fit in memory; beyond that IVF-PQ compresses to
    about `dim / 8` bytes per vector (with an OPQ rotation for the largest corpora).
    """
    if n < FLAT_MAX:
        return FLAT
    if n < HNSW_MAX:
        return "HNSW32"
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    m = _pq_m(dim)
    base = f"IVF{nlist},PQ{m}"
    return f"OPQ{m},{base}" if n >= OPQ_MIN else base


def validate_index_type(index_type: str, dim: int) -> None:
    """Fail early, with the reason, on a factory string FAISS cannot build for `dim`."""
    try:
        faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"FAISS cannot build index_type {index_type!r} for dim={dim}: {exc}") from exc


def max_centroids(index_type: str) -> int:
    """The largest k-means FAISS runs to train `index_type` (0 if it needs no training): FAISS
    refuses to train on fewer vectors than that."""
    if family(index_type) != "ivf":
        return 0
    centroids = int(_IVF.search(index_type).group(1))
    pq = _PQ.search(index_type)
    if pq:
        centroids = max(centroids, 2 ** int(pq.group(2) or 8))
    if _OPQ.search(index_type):
        centroids = max(centroids, 256)  # the OPQ rotation trains an 8-bit PQ of its own
    return centroids


def min_train_size(index_type: str) -> int:
    """How many vectors must exist before `index_type` is trained (0 if it needs no training)."""
    return TRAIN_POINTS_PER_CENTROID * max_centroids(index_type)


def train_sample_size(index_type: str) -> int:
    """How many vectors to train on (a random sample of the stored ones)."""
    need = min_train_size(index_type)
    if need == 0:
        return 0
    return max(need, min(max_centroids(index_type) * MAX_TRAIN_POINTS_PER_CENTROID, MAX_TRAIN_SAMPLE))


def build_index(index_type: str, dim: int) -> faiss.IndexIDMap2:
    """An empty, untrained id-mapped index with inner-product metric."""
    inner = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    _no_polysemous_training(inner)
    return faiss.IndexIDMap2(inner)  # faiss's Python wrapper keeps a reference to `inner`


def _no_polysemous_training(index: faiss.Index) -> None:
    """Factory PQ indexes train polysemous codes by default (a slow annealing; `np` suffix turns it
    off): we never use polysemous search, so skip it (PQ training 7 s -> 0.2 s on 1,500 x 32)."""
    base = faiss.downcast_index(index)
    if isinstance(base, faiss.IndexPreTransform):
        base = faiss.downcast_index(base.index)
    if hasattr(base, "do_polysemous_training"):
        base.do_polysemous_training = False


def train(index: faiss.Index, sample: np.ndarray) -> None:
    """Train `index` on `sample` (k-means for IVF, codebooks for PQ / OPQ)."""
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))


def search_parameters(
    index_type: str, *, ef_search: int, nprobe: int, sel: faiss.IDSelector | None = None
) -> faiss.SearchParameters:
    """Search parameters for an index of `index_type` with the tuning knobs and an optional id selector.

    Parameters are always passed explicitly because FAISS's defaults in a SearchParameters object
    (efSearch=16, nprobe=1) would otherwise override what is set on the index. FAISS clips nprobe
    to the number of lists.
    """
    fam = family(index_type)
    if fam == "hnsw":
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(ef_search)
    elif fam == "ivf":
        params = faiss.SearchParametersIVF()
        params.nprobe = int(nprobe)
    else:
        params = faiss.SearchParameters()
    if sel is not None:
        params.sel = sel
    return params


def ids_array(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64))


def selector(ids: np.ndarray) -> faiss.IDSelectorBatch:
    """A pre-filter selector over our int64 ids (hash set: O(1) membership per visited vector)."""
    arr = ids_array(ids)
    sel = faiss.IDSelectorBatch(arr)
    sel.__dict__["_ids"] = arr  # keep the buffer alive while FAISS holds the pointer
    return sel
