"""`FaissBackend`: the embedded default index (a directory holding a FAISS index + SQLite payload).

Writes (`add`, `delete`) change the in-memory FAISS index and the in-memory SQLite copy together and
become durable on `persist()` / `close()` (see `files.py` for the crash-safe save). Index types are
FAISS factory strings; `index_type=None` ("auto") starts exact and upgrades to HNSW32, then IVF-PQ,
as the corpus grows (`factory.default_index_type`). An IVF type asked for explicitly is trained once
enough vectors exist (`factory.min_train_size`, or `train_min=`): until then the index is an exact
flat one, so results are exact, never missing. HNSW cannot remove vectors: replaced or deleted
documents are tombstoned (excluded from every search by a selector) and compacted by a rebuild when
they exceed a fifth of the index. One lock serialises the methods of an instance (thread-safe).

Several instances may open one directory (processes, or a reader beside a writer). An instance
with no unsaved writes picks up the latest saved generation on its next read or write. A writer
whose save would overwrite a generation another instance saved after it loaded gets a
`ConcurrentWriteError` instead (nothing is lost: the other save stays; reopen and redo the writes).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from ret2_plugin.filters import normalize_filters
from ret2_plugin.index import SIMILARITIES, IndexNotFoundError, IndexRecord, WriteReport, check_ids

from . import factory, files
from .keys import doc_keys, faiss_ids
from .reads import FaissReads
from .search import SearchSettings
from .store import PayloadStore
from .validate import Row, check_consistency, check_fits, prepare_record

_BATCH = 1024


class FaissBackend(FaissReads):
    """FAISS index + SQLite payload store in one directory; see the module docstring."""

    name: ClassVar[str] = "faiss"

    def __init__(
        self,
        directory: Path,
        manifest: dict[str, Any],
        index: faiss.Index,
        store: PayloadStore,
        options: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.dim: int = manifest["dim"]
        self.multi_vector: bool = manifest["multi_vector"]
        self.similarity: str = manifest["similarity"]
        self.use_gpu: bool = options.pop("use_gpu", True)
        self.settings = SearchSettings(
            ef_search=options.pop("ef_search", None) or manifest.get("ef_search", factory.DEFAULT_EF_SEARCH),
            nprobe=options.pop("nprobe", None) or manifest.get("nprobe", factory.DEFAULT_NPROBE),
            exact_threshold=options.pop("exact_threshold", 2048),
            refine_factor=options.pop("refine_factor", 4),
            candidates=options.pop("candidates", 64),
        )
        if options:
            raise TypeError(f"faiss backend got unknown options {sorted(options)}")
        self._closed = False
        self._lock = threading.RLock()
        self._adopt(manifest, index, store)

    def _adopt(self, manifest: dict[str, Any], index: faiss.Index, store: PayloadStore) -> None:
        """Take a loaded generation as this instance's state (at open, and when a reader reloads)."""
        self.index_type: str = manifest["index_type"]  # what was asked for ("auto" or a factory string)
        self.active_index_type: str = manifest["active_index"]  # what the FAISS index is right now
        self.generation: int = manifest["generation"]
        self._info = dict(manifest.get("info") or {})
        self.train_min: int | None = manifest.get("train_min")
        self.index = index
        self.store = store
        ids = faiss.vector_to_array(index.id_map) if index.ntotal else np.empty(0, np.int64)
        live = faiss_ids(*store.keys_and_ntok(), self.multi_vector)
        self._tombstones: set[int] = set(np.setdiff1d(ids, live).tolist())
        in_index = int(doc_keys(ids, self.multi_vector).max()) + 1 if ids.size else 0
        self._next_key = max(in_index, store.next_key())  # rows without embedding hold keys FAISS never saw
        self._tomb_sel: faiss.IDSelector | None = None
        self._search_index: tuple[faiss.Index, bool] | None = None
        self._n_docs = store.count()
        self._dirty = False
        self._manifest_stat = files.manifest_stamp(self.directory)

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        location: str,
        *,
        dim: int | None = None,
        multi_vector: bool = False,
        similarity: str = "cosine",
        info: dict[str, Any] | None = None,
        index_type: str | None = None,
        train_min: int | None = None,
        **options: Any,
    ) -> FaissBackend:
        """Create the index directory `location` (needs `dim`) or reopen it (checking it fits).

        Options: `ef_search`, `nprobe` (search knobs, saved), `exact_threshold`, `refine_factor`,
        `candidates` (multi-vector token hits per query token), `use_gpu` (default True: used if any).
        """
        directory = Path(location)
        loaded = cls._load(directory, dim, multi_vector, similarity, index_type)
        if loaded is None:
            return cls._create(directory, dim, multi_vector, similarity, info, index_type, train_min, options)
        files.clean_leftovers(directory)
        backend = cls(directory, *loaded, options)
        if train_min is not None:
            backend.train_min = train_min
        return backend

    @staticmethod
    def _load(
        directory: Path, dim: int | None, multi_vector: bool, similarity: str, index_type: str | None
    ) -> tuple[dict[str, Any], faiss.Index, PayloadStore] | None:
        """The saved generation (manifest, index, payload store), checked; None if there is no index."""
        for attempt in range(3):  # a concurrent save may replace the files between our reads: retry
            manifest = files.read_manifest(directory)
            if manifest is None:
                return None
            check_fits(directory, manifest, dim, multi_vector, similarity, index_type)
            try:
                index = files.read_index(directory / manifest["index_file"], manifest)
                files.verify_checksum(directory / manifest["payload_file"], manifest)
                store = PayloadStore.load(directory / manifest["payload_file"], manifest["dim"])
            except files.IndexCorruptedError:
                if attempt < 2 and files.read_manifest(directory) != manifest:
                    continue
                raise
            check_consistency(directory, manifest, index, store)
            return manifest, index, store
        raise AssertionError("unreachable")

    @classmethod
    def _create(
        cls,
        directory: Path,
        dim: int | None,
        multi_vector: bool,
        similarity: str,
        info: dict[str, Any] | None,
        index_type: str | None,
        train_min: int | None,
        options: dict[str, Any],
    ) -> FaissBackend:
        if dim is None:
            raise IndexNotFoundError(f"FAISS index {directory} does not exist; pass dim= to create it")
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(
                f"similarity {similarity!r} is not supported by the faiss backend; use one of {SIMILARITIES}"
            )
        requested = index_type or factory.AUTO
        if requested != factory.AUTO:
            factory.validate_index_type(requested, dim)
        json.dumps(info or {})  # fail now, not at the first save, if info cannot be saved
        active = factory.FLAT if requested == factory.AUTO or factory.min_train_size(requested) else requested
        manifest = {
            "dim": dim,
            "multi_vector": multi_vector,
            "similarity": similarity,
            "index_type": requested,
            "active_index": active,
            "generation": -1,
            "info": dict(info or {}),
            "train_min": train_min,
        }
        backend = cls(directory, manifest, factory.build_index(active, dim), PayloadStore.create(dim), options)
        directory.mkdir(parents=True, exist_ok=True)
        backend.persist()  # the directory is a valid (empty) index from now on
        return backend

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    # --- writes --------------------------------------------------------------------------------

    def add(self, records: Iterable[IndexRecord]) -> WriteReport:
        """Upsert; bad records (wrong shape, NaN, unserialisable meta ...) are reported, not raised."""
        with self._lock:
            self._check_open()
            self._refresh()  # write on top of the latest saved generation if we have nothing unsaved
            report = WriteReport()
            batch: dict[str, Row] = {}
            accepted = 0
            for record in records:
                row = prepare_record(record, self.dim, self.multi_vector, self.similarity)
                if isinstance(row, str):
                    report.failed.append((str(getattr(record, "id", "?")), row))
                    continue
                batch[record.id] = row  # a later duplicate in the same batch wins, like sequential upserts
                accepted += 1
                if len(batch) >= _BATCH:
                    report, batch, accepted = report.merge(self._write(batch, accepted)), {}, 0
            if batch:
                report = report.merge(self._write(batch, accepted))
            self._maybe_upgrade()
            return report

    def _write(self, batch: dict[str, Row], accepted: int) -> WriteReport:
        old = self.store.keys_for(list(batch))
        rows = []
        for doc_id, (text, image, meta, chash, vectors, extra) in batch.items():
            key, self._next_key = self._next_key, self._next_key + 1
            rows.append((key, doc_id, text, image, meta, chash, vectors, extra))
        try:
            with self.store.db:  # one transaction: rolled back if FAISS fails below
                self.store.upsert(rows)
                old_vec = [(k, n) for k, n in old.values() if n > 0]  # documents without embedding are not in FAISS
                if old_vec:
                    self._remove_from_index(np.asarray([k for k, _ in old_vec]), np.asarray([n for _, n in old_vec]))
                with_vec = [r for r in rows if r[6].shape[0] > 0]
                if with_vec:
                    ntok = np.asarray([r[6].shape[0] for r in with_vec])
                    ids = faiss_ids(np.asarray([r[0] for r in with_vec]), ntok, self.multi_vector)
                    self.index.add_with_ids(np.concatenate([r[6] for r in with_vec]), ids)
        except Exception as exc:
            self._rebuild(self.active_index_type)  # put FAISS back in line with the rolled-back store
            return WriteReport(0, [(doc_id, f"write failed: {type(exc).__name__}: {exc}") for doc_id in batch])
        self._touch()
        return WriteReport(accepted, [])

    def _remove_from_index(self, keys: np.ndarray, ntok: np.ndarray) -> None:
        ids = faiss_ids(keys, ntok, self.multi_vector)
        if factory.family(self.active_index_type) == "hnsw":  # HNSW has no remove_ids
            self._tombstones.update(ids.tolist())
            self._tomb_sel = None
        else:
            self.index.remove_ids(factory.selector(ids))

    def delete(self, ids: Sequence[str] | None = None, *, filters: dict[str, Any] | None = None) -> int:
        """Delete the documents with these ids and those matching `filters`; returns how many."""
        with self._lock:
            self._check_open()
            self._refresh()
            doomed = dict(self.store.keys_for(check_ids(ids)).values())
            canonical = normalize_filters(filters)
            if canonical:
                doomed.update(zip(*(a.tolist() for a in self.store.matching_keys(canonical))))
            if not doomed:
                return 0
            keys = np.asarray(list(doomed), dtype=np.int64)
            ntoks = np.asarray(list(doomed.values()), dtype=np.int64)
            try:
                with self.store.db:
                    self.store.delete(keys.tolist())
                    if (ntoks > 0).any():  # documents without embedding are not in FAISS
                        self._remove_from_index(keys[ntoks > 0], ntoks[ntoks > 0])
            except Exception:
                self._rebuild(self.active_index_type)
                raise
            self._touch()
            self._maybe_compact()
            return len(doomed)

    def _touch(self) -> None:
        self._dirty = True
        self._search_index = None
        self._n_docs = self.store.count()

    # --- index type management -----------------------------------------------------------------

    def _target_type(self) -> str:
        if self.index_type == factory.AUTO:
            return factory.default_index_type(self.store.total_vectors(), self.dim)
        return self.index_type

    def _train_min(self, index_type: str) -> int:
        if self.train_min is not None and index_type == self.index_type:
            return max(self.train_min, factory.max_centroids(index_type))  # FAISS's hard minimum
        return factory.min_train_size(index_type)

    def _maybe_upgrade(self) -> None:
        target = self._target_type()
        auto_downgrade = self.index_type == factory.AUTO and factory.tier(target) <= factory.tier(
            self.active_index_type
        )
        if (
            target != self.active_index_type
            and not auto_downgrade
            and self.store.total_vectors() >= self._train_min(target)
        ):
            self._rebuild(target)
        else:
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        if len(self._tombstones) > max(1000, self.index.ntotal // 5):
            self._rebuild(self.active_index_type)

    def rebuild(self, index_type: str | None = None) -> None:
        """Rebuild the FAISS index from the stored vectors, optionally as another type (saved on persist).

        Also the way to retrain an IVF index on a sample of the whole corpus after it has grown."""
        with self._lock:
            self._check_open()
            self._refresh()
            if index_type is not None:
                if index_type != factory.AUTO:
                    factory.validate_index_type(index_type, self.dim)
                self.index_type = index_type
            target = self._target_type()
            self._rebuild(target if self.store.total_vectors() >= self._train_min(target) else factory.FLAT)

    def _rebuild(self, index_type: str) -> None:
        index = factory.build_index(index_type, self.dim)
        if not index.is_trained:
            factory.train(index, self.store.sample_vectors(factory.train_sample_size(index_type)))
        for keys, vectors in self.store.iter_vectors():
            ntok = np.asarray([v.shape[0] for v in vectors])
            index.add_with_ids(np.concatenate(vectors), faiss_ids(keys, ntok, self.multi_vector))
        self.index, self.active_index_type = index, index_type
        self._tombstones.clear()
        self._tomb_sel = None
        self._touch()

    # --- durability ----------------------------------------------------------------------------

    def persist(self) -> None:
        """Save a new generation (index file, then payload DB, then the manifest naming them)."""
        with self._lock, files.save_lock(self.directory):
            self._check_open()
            on_disk = files.read_manifest(self.directory)
            if on_disk is not None and on_disk["generation"] != self.generation:
                if self._dirty:
                    raise files.ConcurrentWriteError(
                        f"FAISS index {self.directory} was saved by another writer (generation {on_disk['generation']}) "
                        f"after this instance loaded generation {self.generation}; saving would drop its writes, so "
                        f"this instance's unsaved writes were NOT saved. Reopen the index and redo them."
                    )
                self._reload()  # nothing of ours to save: catch up instead of overwriting the newer save
                return
            if (
                on_disk is not None
                and not self._dirty
                and (on_disk.get("ef_search"), on_disk.get("nprobe"), on_disk.get("train_min"))
                == (self.settings.ef_search, self.settings.nprobe, self.train_min)
            ):
                return  # nothing new: a new generation would only make other writers' saves conflict
            generation = max(self.generation, on_disk["generation"] if on_disk else -1) + 1
            index_file, payload_file = files.index_name(generation), files.payload_name(generation)
            checksums = {
                index_file: files.write_index(self.index, self.directory / index_file),
                payload_file: files.write_payload(self.store.db, self.directory / payload_file),
            }
            files.write_manifest(
                self.directory,
                {
                    "format": files.FORMAT,
                    "generation": generation,
                    "dim": self.dim,
                    "multi_vector": self.multi_vector,
                    "similarity": self.similarity,
                    "index_type": self.index_type,
                    "active_index": self.active_index_type,
                    "info": self._info,
                    "train_min": self.train_min,
                    "ef_search": self.settings.ef_search,
                    "nprobe": self.settings.nprobe,
                    "n_docs": self._n_docs,
                    "n_vectors": int(self.index.ntotal),
                    "n_tombstones": len(self._tombstones),
                    "index_file": index_file,
                    "payload_file": payload_file,
                    "checksums": checksums,
                },
            )
            self.generation = generation
            self._dirty = False
            self._manifest_stat = files.manifest_stamp(self.directory)
            files.remove_stale(self.directory, {index_file, payload_file})

    # --- several instances on one directory ----------------------------------------------------

    def _refresh(self) -> None:
        """An instance with no unsaved writes reloads when another instance saved a newer generation
        (before a read, and before a first write so that it builds on the latest save).
        Cheap when nothing changed: one stat of the manifest (read only when the stat differs)."""
        if self._dirty:
            return
        stat = files.manifest_stamp(self.directory)
        if stat == self._manifest_stat:
            return
        manifest = files.read_manifest(self.directory)
        if manifest is not None and manifest["generation"] != self.generation:
            self._reload()
        else:
            self._manifest_stat = stat

    def _reload(self) -> None:
        stat = files.manifest_stamp(self.directory)
        loaded = self._load(self.directory, self.dim, self.multi_vector, self.similarity, None)
        if loaded is None:
            raise files.IndexCorruptedError(f"FAISS index {self.directory} has disappeared (no {files.MANIFEST})")
        old = self.store
        self._adopt(*loaded)
        self._manifest_stat = stat
        old.close()

    def close(self) -> None:
        """Persist pending writes and release the store; idempotent. If the save fails (e.g.
        `ConcurrentWriteError`) the error is raised and the instance is closed all the same."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._dirty:
                    self.persist()
            finally:
                self.store.close()
                self._closed = True

    def __enter__(self) -> FaissBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"FAISS index {self.directory} is closed")
