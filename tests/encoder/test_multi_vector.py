"""ReT v1 late interaction through sentence-transformers' MultiVectorEncoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import MultiVectorEncoder

from ret2_plugin.index import maxsim
from ret2_plugin.items import Item
from tests.encoder.conftest import reference

pytestmark = pytest.mark.unit


def test_v1_is_a_multi_vector_encoder_with_k_by_d_tokens(mv_model, image_dir: Path) -> None:
    config = mv_model[0].model.config
    assert isinstance(mv_model, MultiVectorEncoder) and config.multi_vector
    raw = ["a red tile", str(image_dir / "red.png"), {"text": "a gradient", "image": str(image_dir / "gradient.png")}]
    out = mv_model.encode_document(raw, convert_to_numpy=True)
    assert [o.shape for o in out] == [(config.num_queries, config.embedding_dim)] * 3
    for tokens in out:
        np.testing.assert_allclose(np.linalg.norm(tokens, axis=1), 1.0, atol=1e-5)
    items = [
        Item(text="a red tile"),
        Item(image=str(image_dir / "red.png")),
        Item(text="a gradient", image=str(image_dir / "gradient.png")),
    ]
    for side, method in (("document", mv_model.encode_document), ("query", mv_model.encode_query)):
        got = np.stack(method(raw, convert_to_numpy=True))
        ref = torch.cat([reference(mv_model, [item], side) for item in items]).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_query_and_document_sides_differ(mv_model) -> None:
    q = mv_model.encode_query(["a red tile"], convert_to_numpy=True)[0]
    d = mv_model.encode_document(["a red tile"], convert_to_numpy=True)[0]
    assert not np.allclose(q, d, atol=1e-4)


def _maxsim_reference(q: np.ndarray, d: np.ndarray) -> float:
    return float(sum(max(float(np.dot(qt, dt)) for dt in d) for qt in q))


def test_maxsim_scores_match_a_numpy_reference(mv_model, image_dir: Path) -> None:
    queries = mv_model.encode_query(["red", {"text": "colourful", "image": str(image_dir / "gradient.png")}])
    docs = mv_model.encode_document(["a red tile", str(image_dir / "blue.png"), str(image_dir / "gradient.png")])
    scores = mv_model.similarity(queries, docs).cpu().numpy()
    q_np = [q.cpu().numpy() for q in queries]
    d_np = [d.cpu().numpy() for d in docs]
    expected = np.array([[_maxsim_reference(q, d) for d in d_np] for q in q_np])
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    # the index layer's maxsim agrees too (what FAISS / Elasticsearch backends rank by)
    np.testing.assert_allclose(maxsim(q_np[0], np.stack(d_np)), expected[0], atol=1e-4)


def test_mixed_list_equals_each_item_alone(mv_model, image_dir: Path) -> None:
    raw = ["text only", str(image_dir / "green.png"), {"text": "joint", "image": str(image_dir / "red.png")}]
    together = np.stack(mv_model.encode_document(raw, convert_to_numpy=True, batch_size=3))
    alone = np.stack([mv_model.encode_document([r], convert_to_numpy=True)[0] for r in raw])
    np.testing.assert_allclose(together, alone, atol=1e-5)
