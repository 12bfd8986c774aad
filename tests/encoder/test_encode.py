"""sentence-transformers `encode` on the single-vector ReT-2 model: equivalence with the model's own
forward, mixed-modality batches, input forms, prompts, precision and quantisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ret2_plugin.items import Item
from tests.encoder.conftest import reference

pytestmark = pytest.mark.unit


def _one_by_one(model, items: list[Item], side: str) -> np.ndarray:
    return torch.cat([reference(model, [item], side) for item in items]).numpy()


def test_modalities_advertised(st_model) -> None:
    assert st_model.supports("text") and st_model.supports("image") and st_model.supports(("image", "text"))
    assert st_model.get_embedding_dimension() == st_model[0].model.config.embedding_dim


@pytest.mark.parametrize("side", ["query", "document"])
def test_encode_equals_normalised_forward(st_model, image_dir: Path, side: str) -> None:
    red, grad = str(image_dir / "red.png"), str(image_dir / "gradient.png")
    raw = ["a red square", red, {"text": "a colourful gradient", "image": grad}]
    items = [Item(text="a red square"), Item(image=red), Item(text="a colourful gradient", image=grad)]
    method = st_model.encode_query if side == "query" else st_model.encode_document
    got = method(raw, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(got, _one_by_one(st_model, items, side), atol=1e-5)
    # plain encode is the document side
    if side == "document":
        np.testing.assert_allclose(st_model.encode(raw, normalize_embeddings=True), got, atol=1e-6)


def test_pooled_output_is_normalised_without_a_flag(st_model) -> None:
    """As the official `get_ret_features`: L2-normalised, even with normalize_embeddings=False (a
    `Normalize` module follows ours); the module itself still writes the raw pooled vector."""
    module = st_model[0]
    with torch.inference_mode():
        raw = module.model.forward_features("document", **module.processor([Item(text="plain words")]))
    assert abs(float(raw.norm()) - 1.0) > 1e-3  # the raw vector really is not unit length
    got = st_model.encode_document(["plain words"], normalize_embeddings=False)
    np.testing.assert_allclose(got, torch.nn.functional.normalize(raw, dim=-1).numpy(), atol=1e-6)
    features = module.prepare(["plain words"], task="document")
    with torch.inference_mode():
        np.testing.assert_allclose(
            module(features, task="document")["sentence_embedding"].numpy(), raw.numpy(), atol=1e-6
        )


def test_mixed_list_equals_each_item_alone(st_model, image_dir: Path) -> None:
    pil = Image.open(image_dir / "gradient.png").convert("RGB")
    raw = [
        "short text",
        str(image_dir / "blue.png"),
        {"text": "joint item with a longer description than the others", "image": str(image_dir / "green.png")},
        pil,
        np.asarray(Image.open(image_dir / "red.png").convert("RGB")),
        "another text",
    ]
    together = st_model.encode_document(raw, batch_size=4, normalize_embeddings=True)
    alone = np.stack([st_model.encode_document([r], normalize_embeddings=True)[0] for r in raw])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_input_forms_of_the_same_content_agree(st_model, image_dir: Path) -> None:
    path = image_dir / "gradient.png"
    pil = Image.open(path).convert("RGB")
    forms = [str(path), path, pil, np.asarray(pil), {"image": str(path)}, {"image": pil}]
    vectors = st_model.encode_document(forms, normalize_embeddings=True)
    for row in vectors[1:]:
        np.testing.assert_allclose(row, vectors[0], atol=1e-5)
    text_forms = st_model.encode_document(["a cat", {"text": "a cat"}, Item(text="a cat")], normalize_embeddings=True)
    np.testing.assert_allclose(text_forms[1], text_forms[0], atol=1e-6)
    np.testing.assert_allclose(text_forms[2], text_forms[0], atol=1e-6)


def test_chat_message_maps_to_the_joint_item(st_model, image_dir: Path) -> None:
    path = str(image_dir / "blue.png")
    message = {"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", "text": "a blue tile"}]}
    # a list starting with a message is ONE conversation for sentence-transformers; batch as [[msg], ...]
    got = st_model.encode_document([[message], "a text"], normalize_embeddings=True)
    joint = st_model.encode_document([{"text": "a blue tile", "image": path}], normalize_embeddings=True)
    np.testing.assert_allclose(got[0], joint[0], atol=1e-5)
    np.testing.assert_allclose(st_model.encode_document(message, normalize_embeddings=True), joint[0], atol=1e-5)
    # a system message is the ReT instruction on the query side
    system = {"role": "system", "content": "Find a picture of"}
    got_query = st_model.encode_query([[system, {"role": "user", "content": "a cat"}]], normalize_embeddings=True)
    np.testing.assert_allclose(
        got_query, st_model.encode_query(["Find a picture of a cat"], normalize_embeddings=True), atol=1e-5
    )


def test_joint_item_is_one_embedding_distinct_from_its_parts(st_model, image_dir: Path) -> None:
    path = str(image_dir / "red.png")
    vectors = st_model.encode_document(["a red tile", path, {"text": "a red tile", "image": path}])
    assert vectors.shape == (3, st_model.get_embedding_dimension())
    assert not np.allclose(vectors[2], vectors[0], atol=1e-4) and not np.allclose(vectors[2], vectors[1], atol=1e-4)


def test_query_prompt_is_the_reT_instruction_prefix(tiny_model_dir: Path, st_model) -> None:
    from ret2_plugin import load_encoder

    expected = st_model.encode_query(["Find a picture of a cat"], normalize_embeddings=True)
    by_prompt = st_model.encode_query(["a cat"], prompt="Find a picture of", normalize_embeddings=True)
    np.testing.assert_allclose(by_prompt, expected, atol=1e-6)
    # a trailing space in the prompt does not double the separator
    np.testing.assert_allclose(
        st_model.encode_query(["a cat"], prompt="Find a picture of "),
        st_model.encode_query(["Find a picture of a cat"]),
        atol=1e-6,
    )
    with_prompts = load_encoder(tiny_model_dir, device="cpu", prompts={"query": "Find a picture of"})
    np.testing.assert_allclose(with_prompts.encode_query(["a cat"], normalize_embeddings=True), expected, atol=1e-6)
    np.testing.assert_allclose(
        with_prompts.encode(["a cat"], prompt_name="query", task="query", normalize_embeddings=True),
        expected,
        atol=1e-6,
    )
    assert not np.allclose(st_model.encode_query(["a cat"], normalize_embeddings=True), expected, atol=1e-4)


def test_tensor_output_batch_size_and_quantisation(st_model) -> None:
    texts = [f"text number {i}" for i in range(7)]
    as_numpy = st_model.encode(texts, batch_size=3, normalize_embeddings=True)
    as_tensor = st_model.encode(texts, batch_size=7, convert_to_tensor=True, normalize_embeddings=True)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    np.testing.assert_allclose(as_tensor.numpy(), as_numpy, atol=1e-5)
    single = st_model.encode("text number 0", normalize_embeddings=True)
    assert single.shape == (st_model.get_embedding_dimension(),)
    binary = st_model.encode(texts, precision="ubinary")
    assert binary.dtype == np.uint8 and binary.shape == (7, st_model.get_embedding_dimension() // 8)


def test_bfloat16_weights_stay_close_to_float32(tiny_model_dir: Path, st_model, image_dir: Path) -> None:
    from ret2_plugin import load_encoder

    half = load_encoder(tiny_model_dir, device="cpu", precision="bfloat16")
    assert next(half[0].model.parameters()).dtype == torch.bfloat16
    raw = ["a red tile", str(image_dir / "red.png")]
    got = half.encode(raw, normalize_embeddings=True)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, st_model.encode(raw, normalize_embeddings=True), atol=5e-2)
    with pytest.raises(ValueError, match="precision"):
        load_encoder(tiny_model_dir, precision="int4")


def test_int8_quantises_linear_layers_and_stays_close(tiny_model_dir: Path, st_model, image_dir: Path) -> None:
    from ret2_plugin import load_encoder

    quick = load_encoder(tiny_model_dir, device="cpu", precision="int8")
    net = quick[0].model
    assert not any(type(m) is torch.nn.Linear for m in net.modules())  # every plain Linear was swapped
    assert any("quantized" in type(m).__module__ for m in net.modules())
    raw = ["a red tile", str(image_dir / "red.png"), "a blue circle"]
    got = quick.encode(raw, normalize_embeddings=True)
    ref = st_model.encode(raw, normalize_embeddings=True)
    cosine = (got * ref).sum(axis=-1)
    assert cosine.min() > 0.95, cosine
    assert not np.allclose(got, ref, atol=1e-6)  # really a different (quantised) computation
    assert (
        next(load_encoder(tiny_model_dir, device="cpu", precision="bf16")[0].model.parameters()).dtype == torch.bfloat16
    )


def test_prefetched_encode_serves_batches_and_matches(st_model, image_dir: Path, monkeypatch) -> None:
    from ret2_plugin.encoder.prefetch import BatchPrefetcher, ReT2SentenceTransformer

    assert isinstance(st_model, ReT2SentenceTransformer)
    served = []
    original = BatchPrefetcher.take

    def counting(self, batch, **kwargs):
        features = original(self, batch, **kwargs)
        served.append(features is not None)
        return features

    monkeypatch.setattr(BatchPrefetcher, "take", counting)
    images = sorted(str(p) for p in image_dir.glob("*.png"))
    raw = [*images, "one text", {"text": "joint", "image": images[0]}, "a longer text than the others here"]
    got = st_model.encode_query(raw, batch_size=2, normalize_embeddings=True, prompt="Find")
    assert served and all(served) and len(served) == 4
    alone = np.stack([st_model.encode_query([r], normalize_embeddings=True, prompt="Find")[0] for r in raw])
    np.testing.assert_allclose(got, alone, atol=1e-5)


def test_prefetched_encode_raises_the_bad_batch_error(st_model, tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    from ret2_plugin.processing import ImageLoadError

    with pytest.raises(ImageLoadError, match="broken.png"):
        st_model.encode(["a", "b", "c", str(bad), "e"], batch_size=2)


def test_concurrent_encodes_with_different_prompts_match_sequential_calls(st_model) -> None:
    import threading

    texts = [f"text {i} " + "word " * (i % 4) for i in range(40)]  # the same string objects in both calls
    prompts = ("Find", "Show me a picture of")
    expected = {p: st_model.encode_query(texts, batch_size=2, prompt=p) for p in prompts}
    for _ in range(4):
        barrier = threading.Barrier(2)
        got: dict[str, np.ndarray] = {}
        errors: list[BaseException] = []

        def run(prompt: str) -> None:
            try:
                barrier.wait()
                got[prompt] = st_model.encode_query(list(texts), batch_size=2, prompt=prompt)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors
        for prompt in prompts:
            np.testing.assert_allclose(got[prompt], expected[prompt], atol=1e-6)


def test_max_seq_length_setter_truncates_texts(tiny_model_dir: Path, tmp_path: Path) -> None:
    from ret2_plugin import load_encoder

    model = load_encoder(tiny_model_dir, device="cpu")
    pair = ["one two three four five six", "one two three seven eight nine"]
    assert not np.allclose(*model.encode(pair), atol=1e-4)
    model.max_seq_length = 5  # start token + 3 words + end token
    assert model.max_seq_length == 5 and model[0].model.config.max_text_length == 5
    np.testing.assert_allclose(*model.encode(pair), atol=1e-6)
    model.save(str(tmp_path / "m"))
    assert load_encoder(tmp_path / "m", device="cpu").max_seq_length == 5
