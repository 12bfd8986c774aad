"""ReT2DocumentEmbedder and ReT2QueryEmbedder with a real tiny ReT-2 model: every modality, batching,
bad documents reported (never dropped silently), instructions, async, warm-up."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from haystack import Document
from haystack.dataclasses import ByteStream
from PIL import Image

from haystack_integrations.components.embedders.ret2 import ReT2DocumentEmbedder, ReT2QueryEmbedder
from ret2_plugin.integrations.haystack import DocumentEmbeddingError
from tests.haystack.conftest import png_bytes

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Any:
    from ret2_plugin import load_encoder

    return load_encoder(str(tiny_model_dir), device="cpu")


def _doc_vectors(encoder: Any, inputs: list[dict[str, Any]]) -> np.ndarray:
    return encoder.encode_document(inputs, normalize_embeddings=True, convert_to_numpy=True)


def test_document_embedder_embeds_every_modality(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document], encoder: Any
) -> None:
    embedder = ReT2DocumentEmbedder(
        model=str(tiny_model_dir), device="cpu", root_path=str(corpus_dir), progress_bar=False
    )
    result = embedder.run(corpus_docs)
    assert result["failed_documents"] == []
    docs = result["documents"]
    assert [d.id for d in docs] == [d.id for d in corpus_docs]
    assert [d.meta["embedding_source"] for d in docs] == ["text", "text", "image", "image", "text+image", "text+image"]
    assert all(d.embedding is None and "embedding_source" not in d.meta for d in corpus_docs)  # inputs untouched
    vectors = np.asarray([d.embedding for d in docs])
    assert vectors.shape == (6, encoder.get_embedding_dimension())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    img = lambda name: Image.open(corpus_dir / "img" / f"{name}.png")  # noqa: E731
    expected = _doc_vectors(
        encoder,
        [
            {"text": corpus_docs[0].content},
            {"text": corpus_docs[1].content},
            {"image": img("red")},
            {"image": img("blue")},
            {"text": "a green square", "image": img("green")},
            {"text": "a colour gradient", "image": img("gradient")},
        ],
    )
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in vectors}) == 6  # distinct inputs, distinct vectors


def test_text_that_looks_like_a_file_name_stays_text(tiny_model_dir: Path, encoder: Any) -> None:
    docs = ReT2DocumentEmbedder(model=str(tiny_model_dir), progress_bar=False).run(
        [Document(id="f", content="holiday.png")]
    )
    assert docs["failed_documents"] == []
    assert docs["documents"][0].meta["embedding_source"] == "text"
    np.testing.assert_allclose(
        docs["documents"][0].embedding, _doc_vectors(encoder, [{"text": "holiday.png"}])[0], atol=1e-5
    )


def test_non_image_blob_is_not_an_image_input(tiny_model_dir: Path, encoder: Any) -> None:
    doc = Document(id="pdf", content="converted text", blob=ByteStream(b"%PDF-1.7 ...", mime_type="application/pdf"))
    result = ReT2DocumentEmbedder(model=str(tiny_model_dir), progress_bar=False).run([doc])
    assert result["failed_documents"] == [] and result["documents"][0].meta["embedding_source"] == "text"
    np.testing.assert_allclose(
        result["documents"][0].embedding, _doc_vectors(encoder, [{"text": "converted text"}])[0], atol=1e-5
    )


def test_batches_give_the_same_vectors(tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document]) -> None:
    small = ReT2DocumentEmbedder(model=str(tiny_model_dir), root_path=str(corpus_dir), batch_size=2, progress_bar=False)
    large = ReT2DocumentEmbedder(
        model=str(tiny_model_dir), root_path=str(corpus_dir), batch_size=64, progress_bar=False
    )
    a = np.asarray([d.embedding for d in small.run(corpus_docs)["documents"]])
    b = np.asarray([d.embedding for d in large.run(corpus_docs)["documents"]])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_progress_bar_is_shown(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ReT2DocumentEmbedder(model=str(tiny_model_dir), progress_bar=True).run([Document(content="x")])
    assert "ReT2 embedding" in capsys.readouterr().err
    ReT2DocumentEmbedder(model=str(tiny_model_dir), progress_bar=False).run([Document(content="x")])
    assert "ReT2 embedding" not in capsys.readouterr().err


def _bad_docs(corpus_dir: Path) -> list[Document]:
    return [
        Document(id="good", content="fine", meta={"file_path": "img/red.png"}),
        Document(id="missing", content="caption", meta={"file_path": "img/nope.png"}),
        Document(id="corrupt", meta={"file_path": "img/corrupt.png"}),
        Document(id="truncated", meta={"file_path": "img/truncated.png"}),
        Document(id="escape", content="caption", meta={"file_path": f"../{corpus_dir.name}-secret.png"}),
        Document(id="empty", content="   "),
        Document(id="bad-blob", content="caption", blob=ByteStream(b"\x89PNG garbage")),
    ]


def test_bad_documents_are_reported_not_dropped(
    tiny_model_dir: Path, corpus_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = ReT2DocumentEmbedder(
        model=str(tiny_model_dir), root_path=str(corpus_dir), batch_size=3, progress_bar=False
    )
    with caplog.at_level(logging.WARNING):
        result = embedder.run(_bad_docs(corpus_dir))
    assert [d.id for d in result["documents"]] == ["good"]
    reasons = {d.id: d.meta["embedding_error"] for d in result["failed_documents"]}
    assert list(reasons) == ["missing", "corrupt", "truncated", "escape", "empty", "bad-blob"]
    assert "not found" in reasons["missing"]
    assert "not an image" in reasons["corrupt"]
    assert "truncated" in reasons["truncated"]
    assert "outside root_path" in reasons["escape"]
    assert "nothing to embed" in reasons["empty"]
    assert "not an image" in reasons["bad-blob"]
    assert all(d.embedding is None for d in result["failed_documents"])
    for doc_id in reasons:
        assert f"document {doc_id} not embedded" in caplog.text


def test_one_corrupt_image_does_not_cost_its_batch(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document]
) -> None:
    embedder = ReT2DocumentEmbedder(
        model=str(tiny_model_dir), root_path=str(corpus_dir), batch_size=2, progress_bar=False
    )
    clean = embedder.run(corpus_docs)["documents"]
    corrupt = Document(id="corrupt", content="caption", meta={"file_path": "img/corrupt.png"})
    result = embedder.run([*corpus_docs[:3], corrupt, *corpus_docs[3:]])
    assert [d.id for d in result["failed_documents"]] == ["corrupt"]
    assert "corrupt.png" in result["failed_documents"][0].meta["embedding_error"]
    assert [d.id for d in result["documents"]] == [d.id for d in clean]
    np.testing.assert_allclose([d.embedding for d in result["documents"]], [d.embedding for d in clean], atol=1e-5)


def test_raise_on_failure_names_every_failed_document(tiny_model_dir: Path, corpus_dir: Path) -> None:
    embedder = ReT2DocumentEmbedder(
        model=str(tiny_model_dir), root_path=str(corpus_dir), raise_on_failure=True, progress_bar=False
    )
    with pytest.raises(
        DocumentEmbeddingError, match=r"6 of 7 documents not embedded: missing: .*escape: .*outside root_path"
    ):
        embedder.run(_bad_docs(corpus_dir))


def test_document_embedder_rejects_non_documents(tiny_model_dir: Path) -> None:
    with pytest.raises(TypeError, match="list of Documents"):
        ReT2DocumentEmbedder(model=str(tiny_model_dir)).run("a string")  # type: ignore[arg-type]


def test_query_image_as_path_pil_or_bytestream(tiny_model_dir: Path, corpus_dir: Path, encoder: Any) -> None:
    embedder = ReT2QueryEmbedder(model=str(tiny_model_dir), device="cpu")
    path = corpus_dir / "img" / "gradient.png"
    pil = Image.open(path)
    by_path = embedder.run(image=str(path))["embedding"]
    by_pathlib = embedder.run(image=path)["embedding"]
    by_pil = embedder.run(image=pil)["embedding"]
    by_blob = embedder.run(image=ByteStream(png_bytes(pil), mime_type="image/png"))["embedding"]
    for other in (by_pathlib, by_pil, by_blob):
        np.testing.assert_allclose(by_path, other, atol=1e-5)
    expected = encoder.encode_query([{"image": pil}], normalize_embeddings=True, convert_to_numpy=True)[0]
    np.testing.assert_allclose(by_path, expected, atol=1e-5)
    joint = embedder.run(text="a colour gradient", image=pil)["embedding"]
    text = embedder.run(text="a colour gradient")["embedding"]
    assert not np.allclose(joint, by_pil, atol=1e-4) and not np.allclose(joint, text, atol=1e-4)
    assert isinstance(text, list) and all(isinstance(x, float) for x in text)


def test_query_instruction_is_applied_ret_style(tiny_model_dir: Path, corpus_dir: Path, encoder: Any) -> None:
    instruction = "Retrieve the document that names the colour."
    plain = ReT2QueryEmbedder(model=str(tiny_model_dir))
    instructed = ReT2QueryEmbedder(model=str(tiny_model_dir), instruction=instruction)
    a = instructed.run(text="which colour?")["embedding"]
    b = plain.run(text=f"{instruction} which colour?")["embedding"]  # "{instruction} {text}"
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a, plain.run(text="which colour?")["embedding"], atol=1e-4)
    image = Image.open(corpus_dir / "img" / "red.png")
    with_image = instructed.run(image=image)["embedding"]  # image-only query: the instruction is its text
    np.testing.assert_allclose(with_image, plain.run(text=instruction, image=image)["embedding"], atol=1e-5)


def test_query_image_errors_name_the_source(tiny_model_dir: Path, corpus_dir: Path) -> None:
    embedder = ReT2QueryEmbedder(model=str(tiny_model_dir))
    with pytest.raises(ValueError, match=r"corrupt\.png.*not an image"):
        embedder.run(image=str(corpus_dir / "img" / "corrupt.png"))
    with pytest.raises(ValueError, match=r"nope\.png.*not found"):
        embedder.run(text="x", image=str(corpus_dir / "img" / "nope.png"))


def test_warm_up_is_idempotent_and_async_matches_sync(
    tiny_model_dir: Path, corpus_dir: Path, corpus_docs: list[Document]
) -> None:
    doc_embedder = ReT2DocumentEmbedder(model=str(tiny_model_dir), root_path=str(corpus_dir), progress_bar=False)
    doc_embedder.warm_up()
    loaded = doc_embedder._encoder
    doc_embedder.warm_up()
    assert doc_embedder._encoder is loaded
    sync = doc_embedder.run(corpus_docs)["documents"]
    async_docs = asyncio.run(doc_embedder.run_async(corpus_docs))["documents"]
    np.testing.assert_allclose([d.embedding for d in sync], [d.embedding for d in async_docs], atol=1e-6)
    query_embedder = ReT2QueryEmbedder(model=str(tiny_model_dir))
    np.testing.assert_allclose(
        asyncio.run(query_embedder.run_async(text="heron"))["embedding"],
        query_embedder.run(text="heron")["embedding"],
        atol=1e-6,
    )


def test_multi_vector_models_are_refused_with_a_clear_error(tiny_v1_model_dir: Path) -> None:
    for component in (
        ReT2DocumentEmbedder(model=str(tiny_v1_model_dir)),
        ReT2QueryEmbedder(model=str(tiny_v1_model_dir)),
    ):
        with pytest.raises(ValueError, match="multi-vector .*ReT v1.*single-vector ReT-2"):
            component.warm_up()
        assert component._encoder is None


def test_haystack_3_conventions_image_content_device_and_meta_fields(
    tiny_model_dir: Path, corpus_dir: Path, encoder: Any
) -> None:
    """ImageContent queries, ComponentDevice, file_path_meta_field and meta_fields_to_embed, as in
    Haystack's own embedders."""
    import base64

    from haystack.dataclasses import ImageContent
    from haystack.utils import ComponentDevice

    path = corpus_dir / "img" / "gradient.png"
    query = ReT2QueryEmbedder(model=str(tiny_model_dir), device=ComponentDevice.from_str("cpu"))
    content = ImageContent(base64_image=base64.b64encode(path.read_bytes()).decode(), mime_type="image/png")
    np.testing.assert_allclose(
        query.run(image=content)["embedding"], query.run(image=str(path))["embedding"], atol=1e-5
    )
    data = query.to_dict()
    assert data["init_parameters"]["device"] == {"type": "single", "device": "cpu"}
    assert ReT2QueryEmbedder.from_dict(data).device == ComponentDevice.from_str("cpu")
    legacy = {**data, "init_parameters": {**data["init_parameters"], "device": "cpu"}}  # older pipelines: a string
    assert ReT2QueryEmbedder.from_dict(legacy).device == ComponentDevice.from_str("cpu")

    embedder = ReT2DocumentEmbedder(
        model=str(tiny_model_dir),
        device="cpu",
        root_path=str(corpus_dir),
        progress_bar=False,
        file_path_meta_field="image_path",
        meta_fields_to_embed=["title", "absent"],
    )
    docs = [
        Document(id="a", content="a colour gradient", meta={"title": "Ramp", "image_path": "img/gradient.png"}),
        Document(id="b", content="just text", meta={"file_path": "img/red.png"}),
    ]  # not the configured field
    out = embedder.run(docs)
    assert out["failed_documents"] == []
    got = {d.id: d for d in out["documents"]}
    assert got["a"].meta["embedding_source"] == "text+image" and got["b"].meta["embedding_source"] == "text"
    expected = _doc_vectors(
        encoder, [{"text": "Ramp\na colour gradient", "image": Image.open(path)}, {"text": "just text"}]
    )
    np.testing.assert_allclose([got["a"].embedding, got["b"].embedding], expected, atol=1e-5)
    assert ReT2DocumentEmbedder.from_dict(embedder.to_dict()).to_dict() == embedder.to_dict()
