"""On-disk layout of a FAISS index directory, and crash-safe writes.

    <dir>/manifest.json          names the current generation's files, plus dim, similarity, counts ...
    <dir>/index.<gen>.faiss      the FAISS index (IndexIDMap2)
    <dir>/payload.<gen>.sqlite   ids, text, image, meta, content hashes and the exact vectors
    <dir>/.lock                  advisory lock held while saving

A save writes the new generation's files under new names (temp file, fsync, rename), and only then
atomically replaces the manifest. A crash at any point before that leaves the previous manifest naming
the previous, untouched files: the old index stays loadable. Files of other generations are removed
after the manifest is replaced (or on the next save, if a crash left them behind). Saves take an
advisory lock and number the new generation past the one on disk, so concurrent writers never mix
files. Under that lock a save checks that the generation on disk is still the one the instance loaded,
so a second writer gets a `ConcurrentWriteError` instead of silently dropping the first one's save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX advisory locks; elsewhere saves are not serialised between processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import faiss

from ret2_plugin.atomic import fsync_dir, fsync_file
from ret2_plugin.index import IndexStorageError

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = "ret2-faiss/1"
_GENERATION_FILE = re.compile(r"^(index\.\d+\.faiss|payload\.\d+\.sqlite)(\.tmp(-journal|-wal|-shm)?)?$")


class IndexCorruptedError(IndexStorageError):
    """The index directory is damaged or inconsistent (missing files, checksum mismatch, counts or ids
    disagree)."""


class ConcurrentWriteError(IndexStorageError):
    """Another instance saved the index after this one loaded it; saving now would drop that save."""


class IndexWriteError(IndexStorageError):
    """A save failed (disk full, file size limit, I/O error); the previous generation is intact."""


def manifest_stamp(directory: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, inode, size) of the manifest, None if absent: a cheap "has a save happened?" check."""
    try:
        st = os.stat(directory / MANIFEST)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino, st.st_size


def index_name(generation: int) -> str:
    return f"index.{generation}.faiss"


def payload_name(generation: int) -> str:
    return f"payload.{generation}.sqlite"


@contextlib.contextmanager
def save_lock(directory: Path) -> Iterator[None]:
    """Serialise saves of one directory between processes (so two never write the same generation)."""
    with open(directory / LOCK, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _publish(tmp: Path, final: Path) -> str:
    """fsync, checksum and rename `tmp` to `final`; returns the file's sha256."""
    fsync_file(tmp)
    digest = file_sha256(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return digest


@contextlib.contextmanager
def _writing(tmp: Path, final: Path) -> Iterator[None]:
    """Turn any failure while writing `tmp` into an `IndexWriteError` naming `final`, and remove `tmp`."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, (OSError, RuntimeError, sqlite3.Error)) and not isinstance(exc, IndexStorageError):
            lines = str(exc).strip().splitlines()
            reason = (
                exc.strerror
                if isinstance(exc, OSError) and exc.strerror
                else lines[-1]
                if lines
                else type(exc).__name__
            )
            raise IndexWriteError(f"saving {final} failed ({reason}); the previous saved generation is intact") from exc
        raise


def write_index(index: faiss.Index, path: Path) -> str:
    """Write a (CPU) FAISS index to `path` atomically; returns its sha256."""
    tmp = path.with_name(path.name + ".tmp")
    with _writing(tmp, path):
        faiss.write_index(index, str(tmp))
        return _publish(tmp, path)


def write_payload(connection: sqlite3.Connection, path: Path) -> str:
    """Copy the working SQLite database to `path` atomically (SQLite backup API, then rename); returns
    its sha256."""
    tmp = path.with_name(path.name + ".tmp")
    with _writing(tmp, path):
        tmp.unlink(missing_ok=True)
        target = sqlite3.connect(tmp)
        try:
            connection.backup(target)
        finally:
            target.close()
        return _publish(tmp, path)


def _manifest_digest(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Atomically replace the manifest: this is the commit point of a save. The manifest carries a
    checksum of its own content and one per generation file (`checksums`), verified on open."""
    path = directory / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    manifest = {**manifest, "manifest_sha256": _manifest_digest(manifest)}
    with _writing(tmp, path):
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        _publish(tmp, path)


def verify_checksum(path: Path, manifest: dict[str, Any]) -> None:
    """Compare `path` with the checksum the manifest recorded for it (manifests written before
    checksums existed have none: nothing to compare)."""
    expected = (manifest.get("checksums") or {}).get(path.name)
    if expected is None or not path.exists():
        return
    try:
        found = file_sha256(path)
    except OSError as exc:
        raise IndexCorruptedError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if found != expected:
        raise IndexCorruptedError(
            f"{path} is damaged: its sha256 {found[:16]}... differs from {expected[:16]}... recorded in {MANIFEST} "
            f"(restore the index from a backup, or delete it and re-run `ret2 index`)"
        )


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest, or None if the directory holds no index. Raises IndexCorruptedError if damaged."""
    path = directory / MANIFEST
    if not path.exists():
        leftovers = (
            [p.name for p in directory.iterdir() if _GENERATION_FILE.match(p.name)] if directory.is_dir() else []
        )
        if leftovers:
            raise IndexCorruptedError(
                f"{directory} holds FAISS index files {sorted(leftovers)} but no {MANIFEST}; it is damaged "
                f"(restore it from a backup or delete the directory to start again)"
            )
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptedError(f"{path} is unreadable or not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorruptedError(f"{path} is not a ret2 FAISS manifest (expected format {FORMAT!r})")
    missing = [
        k
        for k in ("dim", "multi_vector", "similarity", "generation", "index_file", "payload_file")
        if k not in manifest
    ]
    if missing:
        raise IndexCorruptedError(f"{path} lacks the keys {missing}")
    if "manifest_sha256" in manifest and manifest["manifest_sha256"] != _manifest_digest(manifest):
        raise IndexCorruptedError(f"{path} is damaged: its content does not match its recorded checksum")
    return manifest


def read_index(path: Path, manifest: dict[str, Any] | None = None) -> faiss.Index:
    if not path.exists():
        raise IndexCorruptedError(f"index file {path} named by the manifest is missing")
    if manifest is not None:
        verify_checksum(path, manifest)
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptedError(f"index file {path} cannot be read by FAISS: {exc}") from exc


def clean_leftovers(directory: Path) -> None:
    """On open: remove temp files and generation files the manifest does not name (left by a save
    that crashed or failed). Only when no save is running (the save lock is free), so another
    process's save in progress is never disturbed; skipped where the lock cannot be taken (read-only)."""
    if fcntl is None:
        return
    try:
        handle = open(directory / LOCK, "a+b")  # noqa: SIM115 - closed below
    except OSError:
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a save is running
        try:
            manifest = read_manifest(directory)
            if manifest is not None:
                remove_stale(directory, {manifest["index_file"], manifest["payload_file"]})
        except (IndexCorruptedError, OSError):
            pass  # reported by the load itself; never delete anything from a directory we cannot read
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_stale(directory: Path, keep: set[str]) -> None:
    """Delete generation files (and temp files) that the current manifest does not name."""
    for path in directory.iterdir():
        if _GENERATION_FILE.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
    (directory / (MANIFEST + ".tmp")).unlink(missing_ok=True)
