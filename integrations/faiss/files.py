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

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = "ret2-faiss/1"
_GENERATION_FILE = re.compile(r"^(index\.\d+\.faiss|payload\.\d+\.sqlite)(\.tmp)?$")


class IndexCorruptedError(RuntimeError):
    """The index directory is damaged or inconsistent (missing files, counts or ids disagree)."""


class ConcurrentWriteError(RuntimeError):
    """Another instance saved the index after this one loaded it; saving now would drop that save."""


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


def _publish(tmp: Path, final: Path) -> None:
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_index(index: faiss.Index, path: Path) -> None:
    """Write a (CPU) FAISS index to `path` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    faiss.write_index(index, str(tmp))
    _publish(tmp, path)


def write_payload(connection: sqlite3.Connection, path: Path) -> None:
    """Copy the working SQLite database to `path` atomically (SQLite backup API, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    target = sqlite3.connect(tmp)
    try:
        connection.backup(target)
    finally:
        target.close()
    _publish(tmp, path)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Atomically replace the manifest: this is the commit point of a save."""
    path = directory / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    _publish(tmp, path)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest, or None if the directory holds no index. Raises IndexCorruptedError if damaged."""
    path = directory / MANIFEST
    if not path.exists():
        leftovers = [p.name for p in directory.iterdir() if _GENERATION_FILE.match(p.name)] if directory.is_dir() else []
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
    missing = [k for k in ("dim", "multi_vector", "similarity", "generation", "index_file", "payload_file") if k not in manifest]
    if missing:
        raise IndexCorruptedError(f"{path} lacks the keys {missing}")
    return manifest


def read_index(path: Path) -> faiss.Index:
    if not path.exists():
        raise IndexCorruptedError(f"index file {path} named by the manifest is missing")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorruptedError(f"index file {path} cannot be read by FAISS: {exc}") from exc


def remove_stale(directory: Path, keep: set[str]) -> None:
    """Delete generation files (and temp files) that the current manifest does not name."""
    for path in directory.iterdir():
        if _GENERATION_FILE.match(path.name) and path.name not in keep:
            path.unlink(missing_ok=True)
    (directory / (MANIFEST + ".tmp")).unlink(missing_ok=True)
