"""The shared record rules the Elasticsearch write path uses, and the deadline arithmetic (no node)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ret2_plugin.index import MAX_ID_BYTES, IndexRecord, check_record_fields
from ret2_plugin.integrations.elasticsearch.bulk import RecordEncoder
from ret2_plugin.integrations.elasticsearch.layout import LayoutEncoder
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
    for bad, reason in (
        (np.zeros(3), "zero vector"),
        (np.array([1.0, np.nan, 0.0]), "NaN"),
        (np.ones(4), r"shape \(4,\)"),
    ):
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


def test_every_backend_refuses_a_600_byte_id_with_the_same_reason(tmp_path):
    from ret2_plugin.integrations.faiss import FaissBackend
    from ret2_plugin.integrations.memory import InMemoryBackend

    records = [IndexRecord("ok", np.ones(4, np.float32)), IndexRecord("x" * 600, np.ones(4, np.float32))]
    want = [("x" * 600, "id is 600 bytes long (UTF-8); ids may have at most 512 bytes")]
    try:
        memory = InMemoryBackend.open("memory-unit-long-id", dim=4)
        report = memory.add(records)
        assert (report.written, report.failed) == (1, want)
    finally:
        InMemoryBackend.drop("memory-unit-long-id")
    report = FaissBackend.open(str(tmp_path / "ix"), dim=4).add(records)
    assert (report.written, report.failed) == (1, want)
    for encoder in _encoders(4):  # Elasticsearch: layout v1 (older indexes) and v2 (every new index)
        with pytest.raises(ValueError, match="600 bytes long"):
            encoder.source(records[1])


def _encoders(dim: int) -> list[RecordEncoder]:
    return [
        RecordEncoder(dim=dim, multi_vector=False, normalise_vectors=True),
        LayoutEncoder(dim=dim, multi_vector=False, similarity="cosine"),
    ]


@pytest.mark.parametrize("encoder", _encoders(3), ids=["v1", "v2"])
def test_both_layouts_refuse_bad_records_with_the_shared_reasons(encoder):
    for bad, reason in (
        (np.zeros(3), "zero vector"),
        (np.array([1.0, np.nan, 0.0]), "NaN"),
        (np.ones(4), r"shape \(4,\)"),
    ):
        with pytest.raises(ValueError, match=reason):
            encoder.source(IndexRecord("a", bad))
    with pytest.raises(ValueError, match="meta is not JSON-serialisable"):
        encoder.source(IndexRecord("a", np.ones(3), meta={"s": {1, 2}}))
    with pytest.raises(ValueError, match="text must be a string or None"):
        encoder.source(IndexRecord("a", np.ones(3), text=5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="query shape"):
        encoder.vector_for_query(np.ones(2))


@pytest.mark.parametrize("key", ["content", "id", "embedding", "blob", "content_hash", "file_path", "tokens"])
def test_layout_v2_refuses_meta_keys_that_are_document_fields(key):
    encoder = LayoutEncoder(dim=3, multi_vector=False, similarity="cosine")
    with pytest.raises(ValueError, match=rf"meta key\(s\) \['{key}'\] are document fields .*rename them"):
        encoder.source(IndexRecord("a", np.ones(3), meta={key: 1, "fine": 2}))


def test_layout_v2_document_fields_blob_and_embedding_round_trip():
    encoder = LayoutEncoder(dim=3, multi_vector=False, similarity="cosine")
    written = [3.0, 0.0, 4.0]
    blob = {"data": b"\x89PNG\x00\xff", "mime_type": "image/png", "meta": {"w": 2}}
    record = IndexRecord(
        "a",
        np.array(written),
        text="a heron",
        image="img/a.png",
        content_hash="h",
        meta={"file_path": "img/a.png", "k": [1, "x"]},
        extra={"blob": blob, "embedding": written},
    )
    source = encoder.source(record)
    assert source["id"] == "a" and source["content"] == "a heron" and source["file_path"] == "img/a.png"
    assert source["k"] == [1, "x"] and source["content_hash"] == "h" and "meta" not in source  # meta flattened
    assert source["blob"] == {"data": list(blob["data"]), "mime_type": "image/png", "meta": {"w": 2}}  # Haystack's form
    assert source["embedding"] == written  # as written: the ES cosine field normalises internally
    back = encoder.record("a", source)
    assert (back.text, back.image, back.content_hash, back.meta) == ("a heron", "img/a.png", "h", {"k": [1, "x"]})
    assert back.extra == {"blob": blob, "embedding": written}
    np.testing.assert_allclose(back.embedding, written)
    without = encoder.source(IndexRecord("b", np.array([0.0, 2.0, 0.0], np.float32)))
    assert without["embedding"] == [0.0, 2.0, 0.0] and "blob" not in without and "content" not in without
    for extra, reason in (({"other": 1}, "extra must be a dict"), ({"blob": {"data": "text"}}, "blob must be a dict")):
        with pytest.raises(ValueError, match=reason):
            encoder.source(IndexRecord("c", np.ones(3), extra=extra))
