"""The payload store: a small SQLite database beside the FAISS index.

One row per document: our string id, the int64 key FAISS knows it by, text, image reference, meta
(JSON), content hash, and the exact (normalised) vector(s) as a float32 blob. The exact vectors let
us re-score approximate (PQ) hits, search very selective filters exactly, re-rank multi-vector
candidates by MaxSim, and (re)train IVF indexes without re-encoding anything.

The database is worked on IN MEMORY (a copy of the saved file is loaded on open); `save` copies it to
a new file with SQLite's backup API. So SQLite writes, like FAISS writes, become durable on
`persist()` only, and the saved database always matches the saved index.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ret2_plugin.filters import matches
from ret2_plugin.index import extra_from_json

from .files import IndexCorruptedError
from .sqlfilter import Untranslatable, translate

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    key INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT,
    image TEXT,
    meta TEXT NOT NULL,
    content_hash TEXT,
    ntok INTEGER NOT NULL,
    vec BLOB NOT NULL,
    extra TEXT
);
"""
# `ntok` 0 = a document without embedding (filterable, not searchable). `extra`: Haystack's blob and
# the embedding as written (JSON), see `ret2_plugin.index.check_extra`. Stores saved before `extra`
# existed get the column on load.
_CHUNK = 500  # SQLite's bound-parameter limit is 999 on old builds


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class PayloadStore:
    """SQLite rows keyed by the int64 FAISS key; vectors stored as `[ntok, dim]` float32 blobs."""

    def __init__(self, connection: sqlite3.Connection, dim: int) -> None:
        self.db = connection
        self.dim = dim

    @classmethod
    def create(cls, dim: int) -> PayloadStore:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.executescript(SCHEMA)
        return cls(db, dim)

    @classmethod
    def load(cls, path: Path, dim: int) -> PayloadStore:
        """Copy the saved database at `path` into memory."""
        if not path.exists():
            raise IndexCorruptedError(f"payload database {path} named by the manifest is missing")
        db = sqlite3.connect(":memory:", check_same_thread=False)
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            source.backup(db)
            db.execute("SELECT key, id, text, image, meta, content_hash, ntok, vec FROM docs LIMIT 1").fetchall()
            if "extra" not in {row[1] for row in db.execute("PRAGMA table_info(docs)")}:
                db.execute("ALTER TABLE docs ADD COLUMN extra TEXT")
                db.commit()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise IndexCorruptedError(f"payload database {path} is not a valid ret2 payload store: {exc}") from exc
        finally:
            source.close()
        return cls(db, dim)

    def close(self) -> None:
        self.db.close()

    # --- reads ---------------------------------------------------------------------------------

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def total_vectors(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(ntok), 0) FROM docs").fetchone()[0])

    def next_key(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(key), -1) + 1 FROM docs").fetchone()[0])

    def keys_for(self, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """id -> (key, ntok) for the ids that exist."""
        found: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(list(ids)):
            marks = ",".join("?" * len(chunk))
            for doc_id, key, ntok in self.db.execute(
                f"SELECT id, key, ntok FROM docs WHERE id IN ({marks})", list(chunk)
            ):
                found[doc_id] = (key, ntok)
        return found

    def keys_and_ntok(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, token counts) of the documents that have vectors, in key order."""
        rows = self.db.execute("SELECT key, ntok FROM docs WHERE ntok > 0 ORDER BY key").fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        arr = np.asarray(rows, dtype=np.int64)
        return arr[:, 0], arr[:, 1]

    def rows(self, keys: Sequence[int], *, with_vectors: bool = False) -> dict[int, dict[str, Any]]:
        """key -> {id, text, image, meta, content_hash, ntok[, vec]} for the keys that exist."""
        cols = "key, id, text, image, meta, content_hash, ntok, extra" + (", vec" if with_vectors else "")
        out: dict[int, dict[str, Any]] = {}
        for chunk in _chunks([int(k) for k in keys]):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT {cols} FROM docs WHERE key IN ({marks})", list(chunk)):
                item = {
                    "id": row[1],
                    "text": row[2],
                    "image": row[3],
                    "meta": json.loads(row[4]),
                    "content_hash": row[5],
                    "ntok": row[6],
                    "extra": extra_from_json(row[7]),
                }
                if with_vectors:
                    item["vec"] = self._decode(row[8], row[6])
                out[row[0]] = item
        return out

    def vectors(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        """key -> `[ntok, dim]` exact vectors."""
        out: dict[int, np.ndarray] = {}
        for chunk in _chunks([int(k) for k in keys]):
            marks = ",".join("?" * len(chunk))
            for key, ntok, blob in self.db.execute(
                f"SELECT key, ntok, vec FROM docs WHERE key IN ({marks})", list(chunk)
            ):
                out[key] = self._decode(blob, ntok)
        return out

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """All (keys, vectors) in key order, a batch at a time (for rebuilding the FAISS index)."""
        cursor = self.db.execute("SELECT key, ntok, vec FROM docs WHERE ntok > 0 ORDER BY key")
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            yield np.asarray([r[0] for r in rows], dtype=np.int64), [self._decode(r[2], r[1]) for r in rows]

    def sample_vectors(self, size: int, seed: int = 0) -> np.ndarray:
        """Up to `size` stored vectors (tokens, for multi-vector) from randomly chosen documents."""
        keys, ntok = self.keys_and_ntok()
        if size <= 0 or keys.size == 0:
            return np.empty((0, self.dim), np.float32)
        docs = min(len(keys), max(1, -(-size // max(1, int(ntok.mean())))))
        chosen = np.sort(np.random.default_rng(seed).choice(keys, size=docs, replace=False))
        return np.concatenate(list(self.vectors(chosen.tolist()).values()))[:size]

    def matching_keys(self, canonical: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(keys, token counts) of the documents whose meta satisfies a canonical Haystack filter.

        Translated to SQL over the JSON meta when that is provably equivalent to
        `ret2_plugin.filters.matches` (see `sqlfilter`); otherwise `matches` is evaluated row by row.
        Either way the semantics, errors included, are those of every other backend.
        """
        try:
            where, params, hazards = translate(canonical)
        except Untranslatable:
            return self._matching_in_python(canonical)
        for path, types in hazards:
            marks = ",".join("?" * len(types))
            if self.db.execute(
                f"SELECT EXISTS(SELECT 1 FROM docs WHERE json_type(meta, ?) IN ({marks}))", [path, *types]
            ).fetchone()[0]:
                return self._matching_in_python(canonical)  # `matches` may raise on those rows: let it
        rows = self.db.execute(f"SELECT key, ntok FROM docs WHERE {where} ORDER BY key", params).fetchall()
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def _matching_in_python(self, canonical: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        rows = [
            (key, ntok)
            for key, ntok, meta, doc_id, text in self.db.execute(
                "SELECT key, ntok, meta, id, text FROM docs ORDER BY key"
            )
            if matches(canonical, json.loads(meta), id=doc_id, content=text)
        ]
        arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def _decode(self, blob: bytes, ntok: int) -> np.ndarray:
        return np.frombuffer(blob, dtype=np.float32).reshape(ntok, self.dim)

    # --- writes (inside the caller's transaction: `with store.db:`) -----------------------------

    def upsert(
        self, rows: Sequence[tuple[int, str, str | None, str | None, str, str | None, np.ndarray, str | None]]
    ) -> None:
        """rows: (key, id, text, image, meta_json, content_hash, vectors [ntok, dim], extra_json)."""
        self.db.executemany(
            "INSERT OR REPLACE INTO docs (key, id, text, image, meta, content_hash, ntok, vec, extra) VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (k, i, t, im, m, h, int(v.shape[0]), np.ascontiguousarray(v, np.float32).tobytes(), x)
                for k, i, t, im, m, h, v, x in rows
            ],
        )

    def delete(self, keys: Sequence[int]) -> None:
        for chunk in _chunks([int(k) for k in keys]):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"DELETE FROM docs WHERE key IN ({marks})", list(chunk))
