"""Elasticsearch under faults, against real nodes: a rejected request is bisected, a killed node gives a
summary and a resumable run, a stalled node is bounded by the deadline, a timeout is reconciled.

The kill / pause tests use a node of their own (`own_node`), never the shared session node; the two that
kill and restart it are marked slow.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ret2_plugin.index import IndexRecord, WriteReport
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from ret2_plugin.integrations.elasticsearch.sender import (
    BulkSender,
    BulkSettings,
    Deadline,
    DeadlineExceeded,
    Doc,
    ElasticsearchUnavailable,
)
from tests.elasticsearch.conftest import unit_vectors
from tests.es_node import ESNode, ESNodeError, start_node

pytestmark = pytest.mark.integration
LONG_ID = "x" * 600


def _records(vectors: np.ndarray, prefix: str = "d") -> Iterator[IndexRecord]:
    for i, vector in enumerate(vectors):
        yield IndexRecord(f"{prefix}{i}", vector, text=f"text {i}", content_hash=f"h{i}")


# -- on the shared session node ------------------------------------------------------------------


def test_600_byte_id_among_valid_documents_fails_alone(es_options, index_name):
    vectors = unit_vectors(21, 8)
    records = list(_records(vectors))
    records[7] = IndexRecord(LONG_ID, vectors[7])
    backend = ElasticsearchBackend.open(index_name, dim=8, chunk_size=50, **es_options)
    report = backend.add(records)
    assert report.written == 20 and report.unknown == []
    assert report.failed == [(LONG_ID, "id is 600 bytes long (UTF-8); ids may have at most 512 bytes")]
    assert backend.count() == 20
    assert {r.id for r in backend.get([f"d{i}" for i in range(21)])} == {f"d{i}" for i in range(21)} - {"d7"}


def test_request_level_rejection_is_bisected_to_the_offender(es_client, es_options, index_name):
    """What ES itself does with a 600-byte id (a 400 for the WHOLE bulk) when no validation ran first."""
    ElasticsearchBackend.open(index_name, dim=8, **es_options)
    docs = [
        Doc(
            f"d{i}", json.dumps({"embedding": unit_vectors(1, 8, seed=i)[0].tolist(), "content_hash": f"h{i}"}), f"h{i}"
        )
        for i in range(13)
    ]
    docs[9] = Doc(LONG_ID, docs[9].body, None)
    report = WriteReport()
    BulkSender(es_client, index_name, BulkSettings(chunk_size=100), deadline=Deadline(60), where="test").send(
        docs, report
    )
    assert report.written == 12 and report.unknown == []
    [(failed_id, reason)] = report.failed
    assert failed_id == LONG_ID
    assert "HTTP 400" in reason and "512" in reason  # ES's own words: "... must be no longer than 512 bytes"
    es_client.indices.refresh(index=index_name)
    assert es_client.count(index=index_name)["count"] == 12


def test_timed_out_writes_found_by_mget_are_written_not_failed(es_client, es_options, index_name):
    """Every bulk times out (refresh=wait_for, refreshes 2 min apart, 1.5 s request timeout) although ES
    stores the documents: only the mget reconciliation can tell, and it must say "written"."""
    backend = ElasticsearchBackend.open(
        index_name, dim=8, refresh="wait_for", request_timeout=1.5, chunk_size=10, bulk_max_retries=0, **es_options
    )
    es_client.indices.put_settings(index=index_name, settings={"index": {"refresh_interval": "120s"}})
    started = time.monotonic()
    report = backend.add(_records(unit_vectors(20, 8)))
    assert (report.written, report.failed, report.unknown) == (20, [], [])
    assert time.monotonic() - started < 30
    assert backend.content_hashes(["d0", "d19"]) == {"d0": "h0", "d19": "h19"}


# -- on a node of our own: killed, restarted, paused -------------------------------------------------


@pytest.fixture(scope="module")
def own_node() -> Iterator[ESNode]:
    if os.environ.get("RET2_ES_URL"):
        pytest.skip("kills and pauses a node: needs one this session starts (RET2_ES_URL is set)")
    try:
        node = start_node()
    except ESNodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def node(own_node: ESNode) -> Iterator[ESNode]:
    """The own node, running again after each test (resumed if paused, restarted if killed)."""
    yield own_node
    own_node.resume()
    assert own_node.process is not None
    if own_node.process.poll() is not None:
        own_node.restart()


def _backend(node: ESNode, name: str, **options: Any) -> ElasticsearchBackend:
    return ElasticsearchBackend.open(name, dim=8, **node.backend_options(), **options)


@pytest.mark.slow  # a SIGKILL and a restart of the node: a minute or two
def test_node_killed_mid_add_reports_what_was_written_and_resumes(node, index_name):
    vectors = unit_vectors(200, 8)
    backend = _backend(node, index_name, chunk_size=20, bulk_max_retries=2, initial_backoff=0.1)

    def stream() -> Iterator[IndexRecord]:
        for i, record in enumerate(_records(vectors)):
            if i == 101:  # chunks d0..d99 are acknowledged; d100..d119 go to a dead node
                node.kill()
            yield record

    started = time.monotonic()
    with pytest.raises(ElasticsearchUnavailable, match="stopped answering") as caught:
        backend.add(stream())
    assert time.monotonic() - started < 30
    report = caught.value.report
    assert report.written == 100 and report.failed == []
    assert [i for i, _ in report.unknown] == [f"d{i}" for i in range(100, 120)]
    node.restart()
    again = _backend(node, index_name)
    assert again.count() == 100  # every acknowledged write survived SIGKILL (translog fsync per request)
    assert again.add(_records(vectors)).written == 200
    assert again.count() == 200


def test_paused_node_past_the_deadline(node, index_name):
    vectors = unit_vectors(30, 8)
    backend = _backend(node, index_name, chunk_size=10, deadline=6)
    paused_at: list[float] = []

    def stream() -> Iterator[IndexRecord]:
        for i, record in enumerate(_records(vectors)):
            if i == 11:  # d0..d9 acknowledged; d10..d19 go to a stalled node
                node.pause()
                paused_at.append(time.monotonic())
            yield record

    with pytest.raises(DeadlineExceeded, match="deadline of 6 s passed") as caught:
        backend.add(stream())
    assert time.monotonic() - paused_at[0] < 8  # bounded by the deadline, not 30 s x 4 attempts
    report = caught.value.report
    assert report.written == 10 and report.failed == []
    assert [i for i, _ in report.unknown] == [f"d{i}" for i in range(10, 20)]  # unknown, not failed
    assert all("deadline" in why for _, why in report.unknown)
    node.resume()
    again = _backend(node, index_name)  # a new run: a new deadline; upserts never duplicate
    assert again.add(_records(vectors)).written == 30
    assert again.count() == 30


def test_stalled_node_without_deadline_gives_up_after_bounded_retries(node, index_name):
    backend = _backend(node, index_name, chunk_size=10, request_timeout=1, bulk_max_retries=1, initial_backoff=0.1)
    node.pause()
    try:
        started = time.monotonic()
        with pytest.raises(ElasticsearchUnavailable, match="stopped answering") as caught:
            backend.add(_records(unit_vectors(5, 8)))
        assert time.monotonic() - started < 15  # 2 attempts x (bulk + mget) x 1 s, not 30 s x 4 per request
        report = caught.value.report
        assert (report.written, report.failed) == (0, [])
        assert [i for i, _ in report.unknown] == [f"d{i}" for i in range(5)]
    finally:
        node.resume()


def test_timeout_is_reconciled_not_called_a_failure(node, index_name):
    vectors = unit_vectors(30, 8)
    backend = _backend(
        node, index_name, chunk_size=10, request_timeout=2, initial_backoff=0.5, bulk_max_retries=6, deadline=90
    )

    def stream() -> Iterator[IndexRecord]:
        for i, record in enumerate(_records(vectors)):
            if i == 11:
                node.pause()
                threading.Timer(5.0, node.resume).start()  # stalls for longer than the request timeout
            yield record

    report = backend.add(stream())
    assert (report.written, report.failed, report.unknown) == (30, [], [])
    assert backend.count() == 30
    assert sorted(backend.content_hashes([f"d{i}" for i in range(30)]).values()) == sorted(f"h{i}" for i in range(30))


@pytest.mark.slow  # a SIGKILL and a restart of the node: a minute or two
def test_cli_node_killed_mid_run_then_rerun_resumes(
    node, tiny_model_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ret2_plugin.app.cli import main

    monkeypatch.setenv("ELASTICSEARCH_USERNAME", node.username)
    monkeypatch.setenv("ELASTICSEARCH_PASSWORD", node.password)
    lines = [json.dumps({"id": f"t{i}", "text": f"document number {i} about topic {i % 7}"}) + "\n" for i in range(400)]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(lines))
    fifo = tmp_path / "stream.jsonl"  # the corpus arrives through a pipe: the node dies between two parts
    os.mkfifo(fifo)
    name = "ret2-test-killed-cli"
    client = node.client()
    client.indices.delete(index=name, ignore_unavailable=True)

    def feed() -> None:
        with open(fifo, "w") as pipe:
            pipe.writelines(lines[:300])
            pipe.flush()
            deadline = time.monotonic() + 120
            while not client.exists(index=name, id="t255") and time.monotonic() < deadline:  # first 256 written
                time.sleep(0.1)
            node.kill()
            pipe.writelines(lines[300:])

    feeder = threading.Thread(target=feed)
    feeder.start()
    args = [
        "--backend",
        "elasticsearch",
        "--index",
        name,
        "--es-url",
        node.url,
        "--model",
        str(tiny_model_dir),
        "--json",
        "--option",
        "initial_backoff=0.1",
        "--option",
        "bulk_max_retries=1",
    ]
    code = main(["index", str(fifo), *args])
    feeder.join(timeout=60)
    out, err = capsys.readouterr()
    assert code == 2
    [error] = [line for line in err.splitlines() if line.startswith("ret2: ")]  # one line, no traceback
    assert "Traceback" not in err and error.startswith("ret2: error: ")
    assert "Elasticsearch" in error and "indexed 256, unchanged 0, failed 0" in error and "run again to resume" in error
    assert json.loads(out)["indexed"] == 256

    node.restart()
    assert main(["index", str(corpus), *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["unchanged"], summary["indexed"], summary["failed"], summary["count"]) == (
        256,
        144,
        0,
        400,
    )  # nothing re-embedded
    client = node.client()
    client.indices.refresh(index=name)
    ids = [
        h["_id"] for h in client.search(index=name, query={"match_all": {}}, size=1000, source=False)["hits"]["hits"]
    ]
    assert len(ids) == 400 and set(ids) == {f"t{i}" for i in range(400)}
    client.indices.delete(index=name)
