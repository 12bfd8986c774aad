"""Fixtures for the Elasticsearch suite: one node per session (tests/es_node.py), a fresh index per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

# `es_node` (the session node) comes from tests/conftest.py, which imports it from tests/es_node.py.


@pytest.fixture(scope="session")
def es_client(es_node: Any) -> Iterator[Any]:
    client = es_node.client()
    yield client
    client.close()


@pytest.fixture
def es_options(es_node: Any) -> dict[str, Any]:
    """Connection options for `ElasticsearchBackend.open`."""
    return es_node.backend_options()


@pytest.fixture
def index_name(es_client: Any) -> Iterator[str]:
    """A unique index name; the index (and any `<name>-*` sibling) is deleted after the test."""
    name = f"ret2-test-{uuid.uuid4().hex[:10]}"
    yield name
    es_client.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
