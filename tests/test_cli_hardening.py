"""`ret2 index` / `ret2 search` with bad items and failing storage: per-item errors, data: URIs,
--image-root, a moved corpus, damaged or contended indexes, a file-size limit, SIGKILL mid-run."""

from __future__ import annotations

import base64
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ret2_plugin.app.cli import main
from ret2_plugin.integrations.faiss import FaissBackend, files

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[1]
CLI = "import sys\nfrom ret2_plugin.app.cli import main\nsys.exit(main())"


def _png_uri(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _index(capsys, corpus: Path, index: Path, model: Path, *extra: str) -> tuple[int, dict, str]:
    code = main(["index", str(corpus), "--index", str(index), "--model", str(model), "--json", *extra])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip().startswith("{") else {}), captured.err


def test_bad_items_are_reported_one_by_one_and_the_rest_is_indexed(
    tmp_path: Path, image_dir: Path, tiny_model_dir: Path, capsys, monkeypatch
) -> None:
    from ret2_plugin.processing import images

    monkeypatch.setattr(images, "MAX_DATA_URI_BYTES", 4096)
    big = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(big, format="PNG")
    rows = [
        {"id": "ok-text", "text": "a plain sentence"},
        {"id": "long-name", "image": "x" * 300 + ".png"},  # over 255 bytes: ENAMETOOLONG
        {"id": "data-ok", "image": _png_uri((255, 0, 0)), "text": "red square"},
        {"id": "data-bad-b64", "image": "data:image/png;base64,@@@not-base64@@@"},
        {"id": "data-too-big", "image": "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()},
        {"id": "data-not-image", "image": "data:text/plain;base64,aGVsbG8="},
        {"id": "a-folder", "image": str(image_dir)},
        {"id": "ok-image", "image": "images/red.png"},
    ]
    corpus = _write(tmp_path / "corpus.jsonl", rows)
    code, summary, _ = _index(capsys, corpus, tmp_path / "ix", tiny_model_dir)
    assert code == 0
    failures = {f["id"]: f for f in summary["failures"]}
    assert set(failures) == {"long-name", "data-bad-b64", "data-too-big", "data-not-image", "a-folder"}
    for row_no, row in enumerate(rows, start=1):  # file:line and id of every failure
        if row["id"] in failures:
            assert (failures[row["id"]]["file"], failures[row["id"]]["line"]) == (str(corpus), row_no)
    assert "File name too long" in failures["long-name"]["reason"]
    assert "malformed base64" in failures["data-bad-b64"]["reason"]
    assert "more than 4096 bytes" in failures["data-too-big"]["reason"]
    assert "data URIs must be base64 images" in failures["data-not-image"]["reason"]
    assert "file not found" in failures["a-folder"]["reason"]
    assert summary["indexed"] == 3 and summary["count"] == 3
    code = main(["search", "--index", str(tmp_path / "ix"), "--image", str(image_dir / "red.png"), "-k", "3", "--json"])
    hits = json.loads(capsys.readouterr().out)["results"]
    assert {h["id"] for h in hits} == {"ok-text", "data-ok", "ok-image"}


def test_image_root_confines_image_paths(tmp_path: Path, image_dir: Path, tiny_model_dir: Path, capsys) -> None:
    root = tmp_path / "corpus"
    shutil.copytree(image_dir, root / "images")
    (root / "images" / "link.png").symlink_to(image_dir / "blue.png")  # inside by name, outside in fact
    rows = [
        {"id": "inside", "image": "images/red.png"},
        {"id": "escape", "image": "../images/green.png"},
        {"id": "absolute", "image": str(image_dir / "green.png")},
        {"id": "symlink", "image": "images/link.png"},
        {"id": "text", "text": "no image at all"},
    ]
    corpus = _write(root / "corpus.jsonl", rows)
    code, summary, _ = _index(capsys, corpus, tmp_path / "ix", tiny_model_dir, "--image-root", str(root / "images"))
    assert code == 0
    failures = {f["id"]: f["reason"] for f in summary["failures"]}
    assert set(failures) == {"escape", "absolute", "symlink"}
    assert all("escapes the image root" in reason for reason in failures.values())
    assert summary["indexed"] == 2
    code, summary, _ = _index(capsys, corpus, tmp_path / "ix2", tiny_model_dir)  # no root: all allowed
    assert summary["indexed"] == 5


def test_moved_corpus_is_not_re_embedded(tmp_path: Path, image_dir: Path, tiny_model_dir: Path, capsys) -> None:
    first = tmp_path / "here"
    shutil.copytree(image_dir, first / "images")
    _write(first / "corpus.jsonl", [{"id": c, "image": f"images/{c}.png", "text": c} for c in ("red", "green", "blue")])
    index = tmp_path / "ix"
    assert _index(capsys, first / "corpus.jsonl", index, tiny_model_dir)[1]["indexed"] == 3
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    code, summary, _ = _index(capsys, moved / "corpus.jsonl", index, tiny_model_dir)
    assert (summary["indexed"], summary["unchanged"]) == (0, 3)
    Image.new("RGB", (40, 30), (9, 9, 9)).save(moved / "images" / "blue.png")  # content changed: re-embedded
    code, summary, _ = _index(capsys, moved / "corpus.jsonl", index, tiny_model_dir)
    assert (summary["indexed"], summary["unchanged"]) == (1, 2)


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ret2: error: ") and "Traceback" not in err, err
    return lines[0]


def test_damaged_index_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    corpus = _write(tmp_path / "c.jsonl", [{"id": str(i), "text": f"sentence number {i}"} for i in range(20)])
    index = tmp_path / "ix"
    assert _index(capsys, corpus, index, tiny_model_dir)[0] == 0
    manifest = files.read_manifest(index)
    target = index / manifest["index_file"]
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    target.write_bytes(bytes(raw))
    code = main(["search", "--index", str(index), "--text", "sentence", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and not captured.out
    assert manifest["index_file"] in _one_line_error(captured.err)
    code, _, err = _index(capsys, corpus, index, tiny_model_dir)
    assert code == 2 and "is damaged" in _one_line_error(err)


def test_concurrent_writer_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path, capsys, monkeypatch) -> None:
    corpus = _write(tmp_path / "c.jsonl", [{"id": str(i), "text": f"sentence number {i}"} for i in range(8)])
    index = tmp_path / "ix"
    assert _index(capsys, corpus, index, tiny_model_dir)[0] == 0
    corpus2 = _write(tmp_path / "c2.jsonl", [{"id": f"n{i}", "text": f"another sentence {i}"} for i in range(8)])
    real_add = FaissBackend.add

    def add_while_another_process_saves(self, records):
        report = real_add(self, records)
        if not getattr(add_while_another_process_saves, "done", False):
            add_while_another_process_saves.done = True
            with FaissBackend.open(str(index)) as other:  # a second writer saves while ours has unsaved writes
                other.delete(["0"])
        return report

    monkeypatch.setattr(FaissBackend, "add", add_while_another_process_saves)
    code, _, err = _index(capsys, corpus2, index, tiny_model_dir)
    assert code == 2 and "was saved by another writer" in _one_line_error(err)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_file_size_limit_during_index_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A real write failure (the kernel refuses bytes past RLIMIT_FSIZE, as a full disk would)."""
    corpus = _write(tmp_path / "c.jsonl", [{"id": str(i), "text": f"sentence number {i} " * 20} for i in range(3000)])
    index = tmp_path / "ix"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "index",
            str(corpus),
            "--index",
            str(index),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--batch-size",
            "64",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = _one_line_error(proc.stderr)
    assert "saving" in line and "File too large" in line and "previous saved generation is intact" in line
    assert not [p for p in os.listdir(index) if ".tmp" in p]
    with FaissBackend.open(str(index)) as backend:  # the last good generation still opens
        assert backend.count() == 0


@pytest.mark.slow
def test_sigkill_mid_run_loses_at_most_one_chunk_and_a_rerun_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    n, every = 4000, 64
    corpus = _write(
        tmp_path / "c.jsonl",
        [{"id": f"{i:05d}", "text": f"sentence number {i} about topic {i % 17}"} for i in range(n)],
    )
    index = tmp_path / "ix"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-c",
        CLI,
        "index",
        str(corpus),
        "--index",
        str(index),
        "--model",
        str(tiny_model_dir),
        "--json",
        "--batch-size",
        "16",
        "--commit-every",
        str(every),
    ]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:  # wait for a few periodic commits
            manifest = files.read_manifest(index) if (index / "manifest.json").exists() else None
            if manifest is not None and manifest.get("n_docs", 0) >= 3 * every:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed; make the corpus larger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with FaissBackend.open(str(index)) as backend:  # consistent, checksums fine
        kept = backend.count()
    assert kept >= 3 * every and kept % every == 0 and kept < n  # whole chunks, nothing torn
    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert (summary["unchanged"], summary["indexed"], summary["count"]) == (kept, n - kept, n)


def test_image_decode_fast_reaches_the_stored_vectors(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    from ret2_plugin import load_encoder
    from ret2_plugin.processing.images import target_size
    from tests.processing.test_reduced_decoding import _photo_like

    exact_model = load_encoder(tiny_model_dir, device="cpu")
    target = target_size(exact_model[0].processor.image_processor)
    assert target is not None
    photo = tmp_path / "photo.jpg"
    _photo_like(4 * target[0] + 7, 3 * target[1] + 3).save(photo, quality=90)
    corpus = _write(tmp_path / "c.jsonl", [{"id": "photo", "image": str(photo)}])
    stored = {}
    for mode in ("exact", "fast"):
        code, summary, _ = _index(capsys, corpus, tmp_path / mode, tiny_model_dir, "--image-decode", mode)
        assert code == 0 and summary["indexed"] == 1
        backend = FaissBackend.open(tmp_path / mode)
        stored[mode] = np.asarray(backend.get(["photo"])[0].embedding, dtype=np.float32)
        backend.close()
    fast_model = load_encoder(tiny_model_dir, device="cpu", image_decode="fast")
    for mode, model in (("exact", exact_model), ("fast", fast_model)):
        expected = model.encode_document([str(photo)], normalize_embeddings=True)[0]
        np.testing.assert_allclose(stored[mode], expected, atol=1e-5)
    assert not np.allclose(stored["exact"], stored["fast"], atol=1e-6)


def test_image_decode_fast_is_refused_for_an_encoder_without_that_setting() -> None:
    from ret2_plugin.app.cli import _set_image_decode

    class PlainEncoder:  # e.g. a plugin encoder that decodes images its own way
        def encode(self, items: list) -> list:
            return items

    _set_image_decode(PlainEncoder(), "exact", "plain")  # the default asks nothing of it
    with pytest.raises(ValueError, match="--image-decode fast: encoder 'plain' has no image_decode setting"):
        _set_image_decode(PlainEncoder(), "fast", "plain")
