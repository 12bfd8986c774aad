"""Durability of the FAISS backend: round trips, interrupted saves, corrupted directories, reopen checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ret2_plugin.index import IndexMismatchError, IndexRecord
from ret2_plugin.integrations.faiss import ConcurrentWriteError, FaissBackend, IndexCorruptedError, files, gpu
from tests.faiss.helpers import records, unit

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def _ids(backend: FaissBackend, query: np.ndarray, k: int = 10) -> list[str]:
    return [h.id for h in backend.search(query, top_k=k)]


@pytest.mark.parametrize(
    "index_type,multi", [("Flat", False), ("HNSW32", False), ("IVF8,PQ8x4", False), ("HNSW32", True)]
)
def test_round_trip(tmp_path, index_type, multi):
    loc = str(tmp_path / "ix")
    data = unit(600, 16, seed=1)
    vectors = data.reshape(200, 3, 16) if multi else data
    backend = FaissBackend.open(
        loc,
        dim=16,
        multi_vector=multi,
        index_type=index_type,
        info={"model": "tiny"},
        train_min=240,
        ef_search=40,
        exact_threshold=0,
    )
    backend.add(records(vectors))
    backend.delete(["d3", "d4"])
    query = vectors[10]
    before = backend.search(query, top_k=10, filters={"group": 1})
    backend.close()
    again = FaissBackend.open(loc, exact_threshold=0)
    assert (again.dim, again.multi_vector, again.info, again.index_type) == (16, multi, {"model": "tiny"}, index_type)
    assert again.active_index_type == backend.active_index_type and again.settings.ef_search == 40
    assert again.count() == len(vectors) - 2 and again.get(["d3"]) == []
    after = again.search(query, top_k=10, filters={"group": 1})
    assert [(h.id, h.meta) for h in after] == [(h.id, h.meta) for h in before]
    np.testing.assert_allclose([h.score for h in after], [h.score for h in before], rtol=1e-5)
    again.add([IndexRecord("new", vectors[0] * -1)])  # keys keep increasing after a reopen
    assert again.count() == len(vectors) - 1 and again.get(["d0"])[0].text == "text 0"
    again.close()
    names = sorted(os.listdir(loc))
    assert names == [".lock", "index.2.faiss", "manifest.json", "payload.2.sqlite"]  # older generations cleaned up


def _saved(loc: str, n: int = 40) -> tuple[FaissBackend, np.ndarray]:
    data = unit(n + 20, 8, seed=2)
    backend = FaissBackend.open(loc, dim=8)
    backend.add(records(data[:n]))
    backend.persist()
    return backend, data


@pytest.mark.parametrize("broken", ["write_index", "write_payload", "write_manifest"])
def test_failed_save_leaves_previous_index_loadable(tmp_path, monkeypatch, broken):
    loc = str(tmp_path / "ix")
    backend, data = _saved(loc)
    backend.add([IndexRecord(f"late{i}", v) for i, v in enumerate(data[40:])])
    backend.delete(["d0"])
    real = getattr(files, broken)

    def fail(*args, **kwargs):
        if broken == "write_manifest":  # a torn temp manifest, then the failure
            (Path(loc) / "manifest.json.tmp").write_text('{"format": "ret2-fai')
        else:
            real(*args, **kwargs)  # the new file is complete, but the save dies before committing
        raise OSError("disk full")

    monkeypatch.setattr(files, broken, fail)
    with pytest.raises(OSError, match="disk full"):
        backend.persist()
    old = FaissBackend.open(loc)
    assert old.count() == 40 and old.get(["d0"]) and not old.get(["late0"])
    assert _ids(old, data[7], 1) == ["d7"]
    old.close()
    monkeypatch.setattr(files, broken, real)
    backend.persist()  # the same backend can retry once the problem is gone
    backend.close()
    new = FaissBackend.open(loc)
    assert new.count() == 59 and not new.get(["d0"]) and new.get(["late0"])


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from ret2_plugin.index import IndexRecord
    from ret2_plugin.integrations.faiss import FaissBackend, files

    loc, where = sys.argv[1], sys.argv[2]
    x = np.random.default_rng(0).normal(size=(60, 8)).astype("float32")
    b = FaissBackend.open(loc, dim=8, index_type="HNSW32")
    b.add([IndexRecord(f"d{i}", x[i]) for i in range(40)])
    b.persist()
    b.add([IndexRecord(f"late{i}", x[40 + i]) for i in range(20)])
    b.delete(["d1"])
    real = getattr(files, where)

    def die(*args, **kwargs):
        if where == "write_manifest":
            (files.Path(loc) / "manifest.json.tmp").write_text('{"half": ')
        else:
            path = args[1]
            real(*args, **kwargs)
            with open(path, "r+b") as f:  # a torn file under the final name
                f.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(files, where, die)
    b.persist()
    print("not killed")
    """
)


@pytest.mark.parametrize("where", ["write_index", "write_payload", "write_manifest"])
def test_process_killed_mid_save_leaves_previous_index(tmp_path, where):
    loc = str(tmp_path / "ix")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, loc, where], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr + proc.stdout
    backend = FaissBackend.open(loc)
    assert backend.count() == 40 and backend.get(["d1"]) and not backend.get(["late0"])
    x = np.random.default_rng(0).normal(size=(60, 8)).astype("float32")
    assert _ids(backend, x[12], 1) == ["d12"]
    backend.add([IndexRecord("after", x[50])])
    backend.close()  # the next save cleans up the dead process's leftovers
    assert sorted(os.listdir(loc)) == [".lock", "index.2.faiss", "manifest.json", "payload.2.sqlite"]


def test_corrupted_directories_give_clear_errors(tmp_path):
    loc = tmp_path / "ix"
    backend, data = _saved(str(loc))
    good = tmp_path / "good"
    shutil.copytree(loc, good)
    old_payload = (loc / "payload.1.sqlite").read_bytes()
    backend.add(records(data[40:], prefix="x"))
    backend.close()
    manifest = json.loads((loc / "manifest.json").read_text())

    # with checksums (every manifest written now): the damaged file is named, nothing is loaded
    (loc / manifest["payload_file"]).write_bytes(old_payload)  # payload of another generation
    with pytest.raises(IndexCorruptedError, match=rf"{manifest['payload_file']} is damaged: its sha256"):
        FaissBackend.open(str(loc))
    # without them (a manifest written before checksums existed) the structural checks still catch it
    unchecked = {k: v for k, v in manifest.items() if k not in ("checksums", "manifest_sha256")}
    (loc / "manifest.json").write_text(json.dumps(unchecked))
    with pytest.raises(IndexCorruptedError, match="inconsistent.*payload store holds 40 documents, manifest says 60"):
        FaissBackend.open(str(loc))

    (loc / manifest["payload_file"]).write_bytes(b"not a database at all" * 100)
    with pytest.raises(IndexCorruptedError, match="not a valid ret2 payload store"):
        FaissBackend.open(str(loc))

    index_file = loc / manifest["index_file"]
    index_file.write_bytes(index_file.read_bytes()[:100])
    with pytest.raises(IndexCorruptedError, match="cannot be read by FAISS"):
        FaissBackend.open(str(loc))
    (loc / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptedError, match=rf"{manifest['index_file']} is damaged"):
        FaissBackend.open(str(loc))
    index_file.unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        FaissBackend.open(str(loc))

    (loc / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptedError, match="not valid JSON"):
        FaissBackend.open(str(loc))
    (loc / "manifest.json").unlink()
    with pytest.raises(IndexCorruptedError, match="no manifest.json"):
        FaissBackend.open(str(loc), dim=8)

    # the copy taken before all this still loads
    assert FaissBackend.open(str(good)).count() == 40


def test_reopen_refuses_mismatches(tmp_path):
    loc = str(tmp_path / "ix")
    FaissBackend.open(loc, dim=8, index_type="HNSW32").close()
    for kwargs, field in [
        ({"dim": 16}, "dim"),
        ({"dim": 8, "multi_vector": True}, "multi_vector"),
        ({"dim": 8, "similarity": "dot_product"}, "similarity"),
        ({"index_type": "Flat"}, "index_type"),
    ]:
        with pytest.raises(IndexMismatchError, match=field):
            FaissBackend.open(loc, **kwargs)
    FaissBackend.open(loc, dim=8).close()  # matching arguments are fine
    with pytest.raises(ValueError, match="pass dim="):
        FaissBackend.open(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="similarity"):
        FaissBackend.open(str(tmp_path / "other"), dim=8, similarity="l2")
    with pytest.raises(ValueError, match="cannot build"):
        FaissBackend.open(str(tmp_path / "other"), dim=8, index_type="IVF8,PQ3")


def test_closed_backend_refuses_work(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=4)
    backend.close()
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.add([IndexRecord("a", np.ones(4, np.float32))])


@pytest.mark.skipif(gpu.gpu_count() > 0, reason="checks the no-GPU branch")
def test_gpu_path_without_gpu_searches_on_cpu(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=8, index_type="Flat")
    backend.add(records(unit(20, 8)))
    index, on_gpu = gpu.to_search_device(backend.index, "Flat")
    assert index is backend.index and on_gpu is False and index.ntotal == 20
    assert gpu.to_cpu(index, on_gpu) is index
    assert _ids(backend, unit(20, 8)[4], 1) == ["d4"]


def test_unknown_option_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match="unknown options"):
        FaissBackend.open(str(tmp_path / "ix"), dim=4, ef_serch=10)
    assert not (tmp_path / "ix").exists()


def test_second_writer_gets_a_conflict_instead_of_dropping_the_first_save(tmp_path):
    loc = str(tmp_path / "ix")
    data = unit(2, 8, seed=30)
    FaissBackend.open(loc, dim=8).close()
    a, b = FaissBackend.open(loc), FaissBackend.open(loc)
    a.add([IndexRecord("x", data[0])])
    b.add([IndexRecord("y", data[1])])
    a.persist()
    with pytest.raises(ConcurrentWriteError, match="another writer"):
        b.persist()
    assert [r.id for r in FaissBackend.open(loc).get(["x", "y"])] == ["x"]  # x survived
    with pytest.raises(ConcurrentWriteError):
        b.close()  # close persists pending writes: same refusal, nothing overwritten
    b.close()  # closed all the same: closing again is a no-op
    redo = FaissBackend.open(loc)
    redo.add([IndexRecord("y", data[1])])
    redo.close()
    assert [r.id for r in FaissBackend.open(loc).get(["x", "y"])] == ["x", "y"]


def test_reader_opened_before_a_write_sees_it(tmp_path):
    loc = str(tmp_path / "ix")
    data = unit(3, 8, seed=31)
    writer = FaissBackend.open(loc, dim=8)
    writer.add([IndexRecord("x", data[0], meta={"k": 1})])
    writer.persist()
    reader = FaissBackend.open(loc)
    assert reader.count() == 1
    writer.add([IndexRecord("y", data[1], meta={"k": 2})])
    writer.persist()
    assert reader.count() == 2 and reader.count({"k": 2}) == 1
    assert _ids(reader, data[1], 1) == ["y"]
    writer.delete(["x"])
    writer.persist()
    assert [r.id for r in reader.get(["x", "y"])] == ["y"]
    reader.persist()  # nothing of its own to save: must not write its stale copy over the writer's save
    writer.add([IndexRecord("z", data[2])])
    writer.close()  # still the latest generation: no conflict
    assert sorted(r.id for r in FaissBackend.open(loc).get(["x", "y", "z"])) == ["y", "z"]
    reader.add([IndexRecord("w", unit(1, 8, seed=32)[0])])  # a first write catches up first: no conflict
    reader.close()
    assert sorted(r.id for r in FaissBackend.open(loc).get(["x", "y", "z", "w"])) == ["w", "y", "z"]


def test_writer_with_nothing_unsaved_builds_on_the_latest_save(tmp_path):
    loc = str(tmp_path / "ix")
    data = unit(2, 8, seed=33)
    FaissBackend.open(loc, dim=8).close()
    a, b = FaissBackend.open(loc), FaissBackend.open(loc)
    a.add([IndexRecord("x", data[0])])
    a.persist()
    b.add([IndexRecord("y", data[1])])  # b had nothing unsaved: it reloads x before writing y
    b.persist()
    assert [r.id for r in FaissBackend.open(loc).get(["x", "y"])] == ["x", "y"]
