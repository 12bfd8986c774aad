"""String ids -> int64 FAISS ids.

Each document gets an int64 `key` (a row of the payload store; a fresh key on every upsert, never
reused while FAISS may still hold it). Single-vector indexes use the key as the FAISS id. Multi-vector
(ReT v1 `[K, D]`) indexes store one FAISS vector per token with id `key << TOKEN_BITS | token`, so a
token hit maps back to its document by a shift.
"""

from __future__ import annotations

import numpy as np

TOKEN_BITS = 16
MAX_TOKENS = (1 << TOKEN_BITS) - 1


def faiss_ids(keys: np.ndarray, ntok: np.ndarray, multi_vector: bool) -> np.ndarray:
    """FAISS ids of the documents `keys` (with `ntok` tokens each)."""
    keys = np.asarray(keys, dtype=np.int64)
    if not multi_vector:
        return keys
    ntok = np.asarray(ntok, dtype=np.int64)
    if keys.size == 0:
        return keys
    base = np.repeat(keys << TOKEN_BITS, ntok)
    starts = np.repeat(np.cumsum(ntok) - ntok, ntok)
    return base + (np.arange(base.size, dtype=np.int64) - starts)


def doc_keys(ids: np.ndarray, multi_vector: bool) -> np.ndarray:
    """Document keys of FAISS ids (the inverse of `faiss_ids`, many-to-one for tokens)."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids >> TOKEN_BITS if multi_vector else ids
