"""The shared record rules the Elasticsearch write path uses, and the deadline arithmetic (no node)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ret2_plugin.index import MAX_ID_BYTES, IndexRecord, check_record_fields
from ret2_plugin.integrations.elasticsearch.bulk import RecordEncoder
from ret2_plugin.integrations.elasticsearch.sender import Deadline, DeadlineExceeded, bounded

pytestmark = pytest.mark.unit


def test_id_limit_counts_utf8_bytes_not_characters():
    check_record_fields(IndexRecord("€" * 170, np.ones(2)))  # 510 bytes
    with pytest.raises(ValueError, match=f"513 bytes long .*at most {MAX_ID_BYTES} bytes"):
        check_record_fields(IndexRecord("€" * 171, np.ones(2)))
    with pytest.raises(ValueError, match="not valid Unicode"):
        check_record_fields(IndexRecord("a\ud800b", np.ones(2)))
    with pytest.raises(ValueError, match="non-empty string"):
        check_record_fields(IndexRecord("", np.ones(2)))
    with pytest.raises(ValueError, match="text must be a string or None, got int"):
        check_record_fields(IndexRecord("ok", np.ones(2), text=5))  # type: ignore[arg-type]


def test_record_encoder_applies_the_shared_embedding_and_meta_rules():
    encoder = RecordEncoder(dim=3, multi_vector=False, normalise_vectors=True)
    source = encoder.source(IndexRecord("a", np.array([3.0, 0.0, 4.0]), meta={"k": 1}, content_hash="h"))
    np.testing.assert_allclose(source["embedding"], [0.6, 0.0, 0.8], rtol=1e-6)
    assert source["meta"] == {"k": 1} and source["content_hash"] == "h"
    for bad, reason in ((np.zeros(3), "zero vector"), (np.array([1.0, np.nan, 0.0]), "NaN"), (np.ones(4), r"shape \(4,\)")):
        with pytest.raises(ValueError, match=reason):
            encoder.source(IndexRecord("a", bad))
    with pytest.raises(ValueError, match="meta is not JSON-serialisable"):
        encoder.source(IndexRecord("a", np.ones(3), meta={"s": {1, 2}}))
    with pytest.raises(ValueError, match="query shape"):
        encoder.vector_for_query(np.ones(2))


def test_deadline_cuts_request_timeouts_and_refuses_when_spent():
    assert Deadline(None).timeout(30) == 30 and not Deadline(None).expired()
    deadline = Deadline(0.3)
    assert 0.05 <= deadline.timeout(30) <= 0.3
    assert deadline.timeout(0.1) == pytest.approx(0.1)
    time.sleep(0.35)
    assert deadline.expired()
    with pytest.raises(DeadlineExceeded, match="deadline of 0.3 s passed"):
        bounded(object(), deadline, 30)
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="deadline must be"):
            Deadline(bad)  # type: ignore[arg-type]
