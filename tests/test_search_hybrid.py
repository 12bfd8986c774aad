"""`ret2 search --hybrid` / `search(hybrid=True)` refuses clearly where it cannot run (the Elasticsearch
side is tested against the real node in tests/elasticsearch/test_es_cli.py)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.memory import InMemoryBackend
from ret2_plugin.search import search

pytestmark = pytest.mark.unit


def test_hybrid_needs_text_and_a_backend_with_bm25():
    location = f"hybrid-{uuid.uuid4().hex}"
    index = InMemoryBackend.open(location, dim=4)
    index.add([IndexRecord("a", np.ones(4, np.float32), text="x")])
    try:
        with pytest.raises(ValueError, match="has no BM25"):
            search(None, index, text="x", hybrid=True)
        with pytest.raises(ValueError, match="needs query text"):
            search(None, index, image="q.png", hybrid=True)
    finally:
        InMemoryBackend.drop(location)
