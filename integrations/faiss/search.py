"""Query paths: ANN with a pre-filter selector, exact fallbacks, multi-vector MaxSim re-ranking.

Guarantees: a filter is applied BEFORE ranking (FAISS `IDSelectorBatch` in `SearchParameters`), and
`min(top_k, matching documents)` hits come back: when the pool is small (<= `exact_threshold` docs)
or the ANN search returns too few hits (HNSW with a very selective selector can run out of graph),
the pool is scored exactly from the stored vectors instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import faiss
import numpy as np

from ret2_plugin.index import maxsim

from .factory import family, search_parameters, selector
from .keys import doc_keys, faiss_ids
from .store import PayloadStore


@dataclass
class SearchSettings:
    ef_search: int
    nprobe: int
    exact_threshold: int  # pools of at most this many documents are scored exactly
    refine_factor: int  # IVF/PQ: fetch top_k * this candidates, re-score them exactly
    candidates: int  # multi-vector: token hits per query token (at least 4 * top_k)


def _top(keys: np.ndarray, scores: np.ndarray, top_k: int) -> list[tuple[int, float]]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [(int(keys[i]), float(scores[i])) for i in order]


def score_exact(query: np.ndarray, keys: np.ndarray, store: PayloadStore, multi_vector: bool) -> np.ndarray:
    """Exact scores of `keys` (dot product, or MaxSim grouped by token count) from stored vectors."""
    vectors = store.vectors(keys)
    if not multi_vector:
        return np.stack([vectors[int(key)][0] for key in keys]) @ query
    scores = np.full(len(keys), -np.inf, dtype=np.float32)
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(vectors[int(key)].shape[0], []).append(i)
    for members in groups.values():
        stacked = np.stack([vectors[int(keys[i])] for i in members])
        scores[members] = maxsim(query, stacked)
    return scores


def exact(
    query: np.ndarray, keys: np.ndarray, store: PayloadStore, multi_vector: bool, top_k: int
) -> list[tuple[int, float]]:
    """Brute-force ranking of the pool `keys`."""
    if len(keys) == 0:
        return []
    return _top(keys, score_exact(query, keys, store, multi_vector), top_k)


def widen_for_filter(settings: SearchSettings, fraction: float) -> SearchSettings:
    """Search wider under a selective pre-filter: with a fraction f of the documents selected, HNSW
    (and IVF) see fewer eligible neighbours per step, so recall drops (measured on 20k random vectors,
    efSearch=128: recall@10 0.99 at f=1/3 but 0.82 at f=1/100; 0.995 with efSearch=512). efSearch and
    nprobe grow by about 0.4/sqrt(f), at most 16x."""
    boost = min(16.0, max(1.0, 0.4 / math.sqrt(max(fraction, 1e-9))))
    return replace(settings, ef_search=int(settings.ef_search * boost), nprobe=int(settings.nprobe * boost))


def _run(
    index: faiss.Index,
    index_type: str,
    queries: np.ndarray,
    k: int,
    settings: SearchSettings,
    sel: faiss.IDSelector | None,
    on_gpu: bool,
) -> tuple[np.ndarray, np.ndarray]:
    k = max(1, min(k, index.ntotal, 2048 if on_gpu else index.ntotal))  # GPU k-selection caps at 2048
    params = search_parameters(index_type, ef_search=max(settings.ef_search, k), nprobe=settings.nprobe, sel=sel)
    if on_gpu and family(index_type) != "ivf":
        params = None  # GPU flat indexes take no search parameters (and never a selector)
    return index.search(queries, k, params=params)


def search(
    query: np.ndarray,
    *,
    top_k: int,
    index: faiss.Index,
    search_index: faiss.Index,
    on_gpu: bool,
    index_type: str,
    store: PayloadStore,
    multi_vector: bool,
    pool: tuple[np.ndarray, np.ndarray] | None,
    pool_size: int,
    total: int,
    tombstone_selector: faiss.IDSelector | None,
    settings: SearchSettings,
) -> list[tuple[int, float]]:
    """(key, score) best first. `pool` = (keys, token counts) allowed by a filter (None: every live document).

    `search_index` is `index` or its GPU copy; the GPU copy is used only without a selector.
    """
    if pool_size == 0 or index.ntotal == 0 or top_k <= 0:
        return []
    fam = family(index_type)
    exact_pool_ok = multi_vector or fam != "flat"
    pool_keys = (lambda: pool[0]) if pool is not None else (lambda: store.keys_and_ntok()[0])
    if exact_pool_ok and pool_size <= settings.exact_threshold:
        return exact(query, pool_keys(), store, multi_vector, top_k)
    if pool is not None:
        sel = selector(faiss_ids(pool[0], pool[1], multi_vector))
        settings = widen_for_filter(settings, pool_size / max(1, total))
    else:
        sel = tombstone_selector
    use = search_index if sel is None else index
    gpu = on_gpu and sel is None
    want = min(top_k, pool_size)
    if multi_vector:
        _, ids = _run(use, index_type, query, max(settings.candidates, 4 * top_k), settings, sel, gpu)
        candidates = np.unique(doc_keys(ids[ids >= 0], True))
        ranked = exact(query, candidates, store, True, top_k)
    elif fam in ("flat", "hnsw"):
        dists, ids = _run(use, index_type, query[None, :], top_k, settings, sel, gpu)
        ok = ids[0] >= 0
        ranked = [(int(k), float(d)) for k, d in zip(ids[0][ok], dists[0][ok])]
    else:  # compressed codes (PQ, SQ ...): approximate scores, re-scored exactly
        _, ids = _run(use, index_type, query[None, :], top_k * settings.refine_factor, settings, sel, gpu)
        ranked = exact(query, ids[0][ids[0] >= 0], store, False, top_k)
    if len(ranked) < want:  # e.g. HNSW ran out of graph under a very selective selector
        return exact(query, pool_keys(), store, multi_vector, top_k)
    return ranked
