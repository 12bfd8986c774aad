"""The `deadline` option on a real node: it bounds each call (or one `run_deadline()` run), never the
life of the opened backend, so a store or retriever kept open for longer keeps working."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from ret2_plugin.integrations.elasticsearch.sender import DeadlineExceeded
from tests.elasticsearch.conftest import unit_vectors

pytestmark = pytest.mark.integration
DEADLINE = 2.0


def _records(vectors: np.ndarray, prefix: str) -> Iterator[IndexRecord]:
    for i, vector in enumerate(vectors):
        yield IndexRecord(f"{prefix}{i}", vector, text=f"text {i}", content_hash=f"h{i}")


def test_deadline_counts_from_each_call_not_from_open(es_options, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=8, deadline=DEADLINE, **es_options)
    vectors = unit_vectors(10, 8)
    assert backend.add(_records(vectors, "a")).written == 10
    time.sleep(DEADLINE + 0.5)  # longer than the deadline since open() and since the last call
    report = backend.add(_records(vectors, "b"))
    assert (report.written, report.failed, report.unknown) == (10, [], [])
    backend.persist()
    assert backend.content_hashes(["a0", "b9"]) == {"a0": "h0", "b9": "h9"}
    assert backend.count() == 20


def test_run_deadline_bounds_every_call_of_one_run(es_options, index_name):
    backend = ElasticsearchBackend.open(index_name, dim=8, deadline=DEADLINE, **es_options)
    vectors = unit_vectors(5, 8)
    with backend.run_deadline():
        assert backend.add(_records(vectors, "a")).written == 5
        time.sleep(DEADLINE + 0.5)
        with pytest.raises(DeadlineExceeded, match=f"deadline of {DEADLINE:g} s passed"):
            backend.content_hashes(["a0"])
        with pytest.raises(DeadlineExceeded) as caught:
            backend.add(_records(vectors, "b"))
        assert caught.value.report.written == 0
        with pytest.raises(DeadlineExceeded):
            backend.persist()
    # the run is over: the next call has a budget of its own
    assert backend.add(_records(vectors, "b")).written == 5
    assert backend.count() == 10
