"""FAISS integrity: checksums verified on open, failed saves (real file-size limit), leftover cleanup."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ret2_plugin.integrations.faiss import FaissBackend, IndexCorruptedError, files
from tests.faiss.helpers import records, unit

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _saved(loc: Path, n: int = 200, dim: int = 16) -> np.ndarray:
    data = unit(n, dim)
    backend = FaissBackend.open(str(loc), dim=dim)
    backend.add(records(data))
    backend.close()
    return data


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("which", ["index_file", "payload_file"])
def test_bit_flip_in_a_generation_file_is_refused_naming_the_file(tmp_path: Path, which: str) -> None:
    loc = tmp_path / "ix"
    data = _saved(loc)
    manifest = json.loads((loc / "manifest.json").read_text())
    target = loc / manifest[which]
    _flip(target, target.stat().st_size // 2)  # inside the vectors: FAISS alone would read it happily
    with pytest.raises(IndexCorruptedError, match=rf"{target.name} is damaged: its sha256"):
        FaissBackend.open(str(loc))
    _flip(target, target.stat().st_size // 2)  # flipped back: loads and searches correctly again
    with FaissBackend.open(str(loc)) as backend:
        assert backend.search(data[7], top_k=1)[0].id == "d7"


def test_flip_inside_the_vectors_without_checksums_would_give_garbage(tmp_path: Path) -> None:
    """Why the checksum matters: the same flip with the checksums stripped loads and returns wrong scores."""
    loc = tmp_path / "ix"
    data = _saved(loc)
    manifest = json.loads((loc / "manifest.json").read_text())
    target = loc / manifest["index_file"]
    raw = bytearray(target.read_bytes())
    vectors = np.frombuffer(data.tobytes(), np.uint8)
    start = bytes(raw).find(data[0].tobytes())  # where d0's vector lies in the file
    assert start > 0 and vectors.size
    raw[start + 3] ^= 0x40  # exponent bit of d0's first component
    target.write_bytes(bytes(raw))
    stripped = {k: v for k, v in manifest.items() if k not in ("checksums", "manifest_sha256")}
    (loc / "manifest.json").write_text(json.dumps(stripped))
    with FaissBackend.open(str(loc)) as backend:
        assert abs(backend.search(data[0], top_k=1)[0].score) > 2  # a cosine above 2: garbage
    (loc / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptedError, match=manifest["index_file"]):
        FaissBackend.open(str(loc))


def test_edited_manifest_is_refused(tmp_path: Path) -> None:
    loc = tmp_path / "ix"
    _saved(loc)
    manifest = json.loads((loc / "manifest.json").read_text())
    manifest["n_docs"] = 7
    (loc / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptedError, match="manifest.json is damaged"):
        FaissBackend.open(str(loc))


def test_leftovers_of_a_crashed_save_are_cleaned_on_open(tmp_path: Path) -> None:
    loc = tmp_path / "ix"
    _saved(loc)
    junk = [
        "index.9.faiss.tmp",
        "payload.9.sqlite.tmp",
        "payload.9.sqlite.tmp-journal",
        "index.9.faiss",
        "manifest.json.tmp",
    ]
    for name in junk:
        (loc / name).write_bytes(b"half written")
    (loc / "notes.txt").write_text("not ours")
    FaissBackend.open(str(loc)).close()
    manifest = files.read_manifest(loc)
    assert sorted(os.listdir(loc)) == sorted(
        [".lock", manifest["index_file"], "manifest.json", "notes.txt", manifest["payload_file"]]
    )


def test_leftovers_are_kept_while_another_process_is_saving(tmp_path: Path) -> None:
    loc = tmp_path / "ix"
    _saved(loc)
    (loc / "index.1.faiss.tmp").write_bytes(b"being written by someone else")
    with open(loc / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # as a saving process holds it
        FaissBackend.open(str(loc)).close()
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    assert (loc / "index.1.faiss.tmp").exists()


FULL_DISK = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from ret2_plugin.integrations.faiss import FaissBackend, files
    from tests.faiss.helpers import records, unit

    loc, limit = sys.argv[1], int(sys.argv[2])
    backend = FaissBackend.open(loc)
    backend.add(records(unit(2000, 16, seed=1), prefix="new"))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # files may not grow past `limit` bytes
    try:
        backend.persist()
    except files.IndexWriteError as exc:
        print("IndexWriteError:", exc)
    """
)


def test_save_past_the_file_size_limit_fails_cleanly(tmp_path: Path) -> None:
    """A real write failure (RLIMIT_FSIZE: the kernel refuses the bytes, as on a full disk): a clear
    error naming the file, no temp file left, the previous generation intact."""
    loc = tmp_path / "ix"
    _saved(loc)
    before = sorted(os.listdir(loc))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(loc), "60000"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "IndexWriteError: saving" in proc.stdout and "File too large" in proc.stdout, proc.stdout
    assert "previous saved generation is intact" in proc.stdout
    assert sorted(os.listdir(loc)) == before  # no .tmp left behind
    with FaissBackend.open(str(loc)) as backend:
        assert backend.count() == 200 and not backend.get(["new0"])
    assert files.read_manifest(loc)["generation"] == 1
