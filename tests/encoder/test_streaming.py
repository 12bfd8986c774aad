"""`iter_embeddings`: same vectors as `encode`, per-item error reports, bounded prefetch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ret2_plugin.encoder import iter_embeddings
from ret2_plugin.items import Item

pytestmark = pytest.mark.unit


def _corpus(image_dir: Path) -> list[Item]:
    images = sorted(image_dir.glob("*.png"))
    items = []
    for i in range(11):
        image = str(images[i % len(images)])
        kind = i % 3
        items.append(Item(id=f"d{i}", text=f"document {i}" if kind != 1 else None, image=image if kind != 0 else None))
    return items


@pytest.mark.parametrize("side", ["document", "query"])
def test_stream_equals_encode(st_model, image_dir: Path, side: str) -> None:
    items = _corpus(image_dir)
    if side == "query":
        items = [Item(id=i.id, text=i.text, image=i.image, instruction="Find this") for i in items]
    batches = list(iter_embeddings(st_model, iter(items), side=side, batch_size=4, num_workers=2))
    assert [len(b.items) for b in batches] == [4, 4, 3] and all(not b.errors for b in batches)
    got = np.concatenate([b.embeddings for b in batches])
    raw = [
        {"text": i.text, "image": i.image, "instruction": i.instruction}
        if i.instruction
        else {k: v for k, v in (("text", i.text), ("image", i.image)) if v is not None}
        for i in items
    ]
    method = st_model.encode_query if side == "query" else st_model.encode_document
    np.testing.assert_allclose(got, method(raw, normalize_embeddings=True), atol=1e-5)
    assert [i.id for b in batches for i in b.items] == [i.id for i in items]


def test_corrupt_image_is_reported_and_the_rest_encoded(st_model, image_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    items = _corpus(image_dir)[:4]
    items.insert(2, Item(id="bad", text="caption", image=str(bad)))
    items.append(Item(id="gone", image=str(tmp_path / "missing.png")))
    batches = list(iter_embeddings(st_model, items, batch_size=3, num_workers=2))
    errors = [e for b in batches for e in b.errors]
    named = [(item.id, "broken.jpg" in reason or "missing.png" in reason) for item, reason in errors]
    assert named == [("bad", True), ("gone", True)]
    good = [i for b in batches for i in b.items]
    assert [i.id for i in good] == ["d0", "d1", "d2", "d3"]
    got = np.concatenate([b.embeddings for b in batches])
    expected = next(iter_embeddings(st_model, _corpus(image_dir)[:4], batch_size=4, num_workers=1)).embeddings
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # a batch in which every item failed still comes back, with an empty embeddings array
    only_bad = list(iter_embeddings(st_model, [Item(id="x", image=str(bad))], batch_size=2))
    assert only_bad[0].embeddings.shape == (0, st_model.get_embedding_dimension()) and len(only_bad[0].errors) == 1


def test_multi_vector_stream(mv_model, image_dir: Path) -> None:
    items = _corpus(image_dir)[:5]
    got = np.concatenate([b.embeddings for b in iter_embeddings(mv_model, items, batch_size=2)])
    config = mv_model[0].model.config
    assert got.shape == (5, config.num_queries, config.embedding_dim)
    raw = [{k: v for k, v in (("text", i.text), ("image", i.image)) if v is not None} for i in items]
    np.testing.assert_allclose(got, np.stack(mv_model.encode_document(raw, convert_to_numpy=True)), atol=1e-5)


def test_prefetch_is_bounded_and_stopping_early_stops_the_reader(st_model) -> None:
    pulled = []

    def endless() -> Iterator[Item]:
        i = 0
        while True:
            pulled.append(i)
            yield Item(id=str(i), text=f"text {i}")
            i += 1

    stream = iter_embeddings(st_model, endless(), batch_size=2, prefetch=2)
    first = next(stream)
    assert len(first.items) == 2
    stream.close()  # must not hang, and the reader must not run ahead unboundedly
    assert len(pulled) <= 2 * (2 + 3)


def test_bad_arguments(st_model) -> None:
    with pytest.raises(ValueError, match="side"):
        next(iter_embeddings(st_model, [Item(text="x")], side="passage"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="load_encoder"):
        next(iter_embeddings(object(), [Item(text="x")]))


def test_stream_applies_the_saved_document_prompt(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ret2_plugin import load_encoder

    load_encoder(tiny_model_dir, device="cpu", prompts={"document": "passage about"}).save(str(tmp_path / "p"))
    model = load_encoder(tmp_path / "p", device="cpu")
    assert model.prompts["document"] == "passage about"
    items = [Item(id="a", text="a red tile"), Item(id="b", text="the sea at night")]
    batches = list(iter_embeddings(model, items, batch_size=2))
    got = np.concatenate([b.embeddings for b in batches])
    np.testing.assert_allclose(
        got, model.encode_document([i.text for i in items], normalize_embeddings=True), atol=1e-5
    )
    plain = model.encode_document([i.text for i in items], prompt="", normalize_embeddings=True)
    assert not np.allclose(got, plain, atol=1e-4)  # the prompt really changed the vectors
    assert [i.text for b in batches for i in b.items] == ["a red tile", "the sea at night"]  # items as given


def test_stream_runs_later_modules_and_truncate_dim(tiny_model_dir: Path, image_dir: Path, tmp_path: Path) -> None:
    import torch
    from sentence_transformers.base.modules import Dense, Normalize

    from ret2_plugin import load_encoder
    from ret2_plugin.encoder.prefetch import ReT2SentenceTransformer

    base = load_encoder(tiny_model_dir, device="cpu")
    torch.manual_seed(0)
    dense = Dense(base.get_embedding_dimension(), 12)
    ReT2SentenceTransformer(modules=[base[0], dense, Normalize()], device="cpu").save(str(tmp_path / "d"))
    model = load_encoder(tmp_path / "d", device="cpu", truncate_dim=8)  # Dense / Normalize are allowed
    items = _corpus(image_dir)[:5]
    got = np.concatenate([b.embeddings for b in iter_embeddings(model, items, batch_size=2, num_workers=2)])
    assert got.shape == (5, 8)
    raw = [{k: v for k, v in (("text", i.text), ("image", i.image)) if v is not None} for i in items]
    np.testing.assert_allclose(got, model.encode_document(raw, normalize_embeddings=True), atol=1e-5)


def test_stream_resolves_raw_relative_images_against_image_root(tiny_model_dir: Path, image_dir: Path) -> None:
    from ret2_plugin import load_encoder

    model = load_encoder(tiny_model_dir, device="cpu", image_root=str(image_dir))
    batch = next(iter_embeddings(model, ["red.png", {"text": "a tile", "image": "blue.png"}], batch_size=2))
    assert not batch.errors and batch.items[0].image == "red.png"
    expected = model.encode_document(["red.png", {"text": "a tile", "image": "blue.png"}], normalize_embeddings=True)
    np.testing.assert_allclose(batch.embeddings, expected, atol=1e-5)


def test_stream_puts_the_model_in_eval_mode(tiny_model_dir: Path) -> None:
    from ret2_plugin import load_encoder

    model = load_encoder(tiny_model_dir, device="cpu")
    model.train()
    list(iter_embeddings(model, [Item(text="x")]))
    assert not model.training and not model[0].model.training


def test_stream_shuts_its_image_threads_down(st_model, image_dir: Path) -> None:
    import threading

    before = set(threading.enumerate())
    images = [Item(id=str(i), image=str(p)) for i, p in enumerate(sorted(image_dir.glob("*.png")))]
    running: list[threading.Thread] = []

    def stream() -> Iterator[object]:
        yield from images[:2]  # one batch of two images: decoded on the stream's own pool
        running.extend(t for t in threading.enumerate() if t not in before and t.name.startswith("ret2-images"))
        yield object()

    # the error's traceback keeps the generator's frame (and its pool) alive: the threads must stop anyway
    with pytest.raises(ValueError, match="unsupported input type") as info:
        list(iter_embeddings(st_model, stream(), batch_size=2, num_workers=2))
    assert running
    for thread in running:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in running) and info.value is not None
