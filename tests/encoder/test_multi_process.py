"""Multi-process encoding: the module survives the trip to spawned workers (rebuilt from config + weights)."""

from __future__ import annotations

import copy

import numpy as np
import pytest


@pytest.mark.unit
def test_copied_module_gives_identical_vectors(st_model, image_dir) -> None:
    raw = ["a red tile", str(image_dir / "red.png")]
    clone = copy.deepcopy(st_model)  # deepcopy goes through the same __reduce__ as the worker pickling
    assert clone[0] is not st_model[0]
    np.testing.assert_array_equal(clone.encode_query(raw), st_model.encode_query(raw))


@pytest.mark.slow
def test_multi_process_pool_matches_single_process(st_model, image_dir) -> None:
    raw = ["a cat", str(image_dir / "red.png"), {"text": "joint", "image": str(image_dir / "blue.png")}, "dog", "bird"]
    together = st_model.encode_query(raw, device=["cpu", "cpu"], chunk_size=2, normalize_embeddings=True)
    np.testing.assert_allclose(together, st_model.encode_query(raw, normalize_embeddings=True), atol=1e-5)
