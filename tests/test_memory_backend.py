"""The in-memory reference backend and the shared validation helpers of `ret2_plugin.index`:
normalisation, reopen checks, variable token counts, thread safety, no aliasing, and parity with FAISS."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from ret2_plugin.index import (
    SIMILARITIES,
    IndexMismatchError,
    IndexRecord,
    check_ids,
    check_meta,
    check_top_k,
    maxsim,
    prepare_embedding,
)
from ret2_plugin.integrations.faiss import FaissBackend
from ret2_plugin.integrations.memory import InMemoryBackend

pytestmark = pytest.mark.unit


@pytest.fixture
def loc(request: pytest.FixtureRequest) -> Iterator[str]:
    location = f"memory-unit-{request.node.name}"
    yield location
    InMemoryBackend.drop(location)


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- shared helpers ------------------------------------------------------------------------------


def test_prepare_embedding_copies_normalises_and_refuses_bad_vectors() -> None:
    v = np.array([3.0, 4.0], np.float32)
    out = prepare_embedding(v, dim=2, multi_vector=False, similarity="cosine")
    np.testing.assert_allclose(out, [0.6, 0.8], rtol=1e-6)
    assert out.dtype == np.float32 and not np.shares_memory(out, v) and v[0] == 3.0
    raw = prepare_embedding(v, dim=2, multi_vector=False, similarity="dot_product")
    np.testing.assert_array_equal(raw, v)
    assert not np.shares_memory(raw, v)
    tokens = prepare_embedding([[3.0, 4.0], [0.0, 2.0]], dim=2, multi_vector=True, similarity="cosine")
    np.testing.assert_allclose(np.linalg.norm(tokens, axis=1), [1.0, 1.0], rtol=1e-6)  # per token
    for bad, kw, reason in [
        (np.ones(3), {}, "shape \\(3,\\)"),
        (np.ones((1, 2)), {}, "multi_vector=False"),
        ([1.0, np.nan], {}, "NaN"),
        ([1.0, np.inf], {}, "inf"),
        (np.zeros(2), {}, "zero vector"),
        (np.zeros((0, 2)), {"multi_vector": True}, "empty token list"),
        ([[1.0, 2.0], [1.0]], {"multi_vector": True}, "not a numeric array"),
        (np.ones(2), {"similarity": "l2"}, "similarity 'l2'"),
    ]:
        args = {"dim": 2, "multi_vector": False, "similarity": "cosine", **kw}
        with pytest.raises(ValueError, match=reason):
            prepare_embedding(bad, **args)
    assert prepare_embedding(np.zeros(2), dim=2, multi_vector=False, similarity="dot_product").tolist() == [0, 0]
    assert SIMILARITIES == ("cosine", "dot_product")


def test_check_ids_top_k_and_meta() -> None:
    assert check_ids(("a", "b")) == ["a", "b"] and check_ids(None) == []
    for bad in ("ab", b"ab"):
        with pytest.raises(TypeError, match="sequence of ids"):
            check_ids(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="strings"):
        check_ids(["a", 1])  # type: ignore[list-item]
    assert check_top_k(3) == 3 and check_top_k(np.int64(2)) == 2
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="top_k"):
            check_top_k(bad)  # type: ignore[arg-type]
    assert check_meta(None) == "{}" and check_meta({"a": [1, "x"]}) == '{"a": [1, "x"]}'
    for bad in ({"s": {1, 2}}, {"n": float("nan")}, ["not", "a", "dict"]):
        with pytest.raises(ValueError, match="meta"):
            check_meta(bad)  # type: ignore[arg-type]


# --- the in-memory backend -----------------------------------------------------------------------


def test_cosine_normalises_stored_vectors_and_queries(loc: str) -> None:
    data = _rand(20, 8, seed=1)
    backend = InMemoryBackend.open(loc, dim=8)
    backend.add([IndexRecord(f"d{i}", v * (i + 1)) for i, v in enumerate(data)])  # norms differ wildly
    (rec,) = backend.get(["d7"])
    assert np.linalg.norm(rec.embedding) == pytest.approx(1.0, abs=1e-6)
    hits = backend.search(data[3] * 100, top_k=20)
    assert hits[0].id == "d3" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    np.testing.assert_allclose(sorted((h.score for h in hits), reverse=True), np.sort(unit @ unit[3])[::-1], atol=1e-5)


def test_dot_product_keeps_raw_vectors(loc: str) -> None:
    backend = InMemoryBackend.open(loc, dim=2, similarity="dot_product")
    backend.add(
        [IndexRecord("big", np.array([10.0, 0.0], np.float32)), IndexRecord("near", np.array([1.0, 1.0], np.float32))]
    )
    hits = backend.search(np.array([1.0, 0.5], np.float32), top_k=2)
    assert [(h.id, h.score) for h in hits] == [("big", 10.0), ("near", 1.5)]


def test_open_checks_similarity(loc: str) -> None:
    with pytest.raises(ValueError, match="similarity 'l2'"):
        InMemoryBackend.open(loc, dim=4, similarity="l2")
    InMemoryBackend.open(loc, dim=4, similarity="dot_product")
    with pytest.raises(IndexMismatchError, match="similarity"):
        InMemoryBackend.open(loc, dim=4, similarity="cosine")
    with pytest.raises(IndexMismatchError, match="dim=4"):
        InMemoryBackend.open(loc, dim=5, similarity="dot_product")
    assert InMemoryBackend.open(loc, dim=4, similarity="dot_product").similarity == "dot_product"
    assert InMemoryBackend.open(loc).similarity == "dot_product"  # reopening by name alone is fine


def test_multi_vector_documents_with_different_token_counts(loc: str) -> None:
    docs = [_rand(k, 8, seed=10 + k) for k in (1, 3, 5, 3)]
    query = _rand(4, 8, seed=9)
    backend = InMemoryBackend.open(loc, dim=8, multi_vector=True)
    assert backend.add([IndexRecord(f"m{i}", d) for i, d in enumerate(docs)]).written == 4
    hits = backend.search(query, top_k=10)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    expected = {
        f"m{i}": float(maxsim(q, (d / np.linalg.norm(d, axis=1, keepdims=True))[None])[0]) for i, d in enumerate(docs)
    }
    assert [h.id for h in hits] == sorted(expected, key=expected.get, reverse=True)
    for h in hits:
        assert h.score == pytest.approx(expected[h.id], rel=1e-5)
    report = backend.add([IndexRecord("empty", np.zeros((0, 8), np.float32))])
    assert report.written == 0 and "empty token list" in report.failed[0][1]


def test_stored_records_never_alias_caller_objects(loc: str) -> None:
    backend = InMemoryBackend.open(loc, dim=3, similarity="dot_product")
    vector, meta = np.array([1.0, 2.0, 3.0], np.float32), {"tags": ["a"]}
    backend.add([IndexRecord("x", vector, meta=meta)])
    vector[:] = 0
    meta["tags"].append("changed")
    (rec,) = backend.get(["x"])
    assert rec.embedding.tolist() == [1.0, 2.0, 3.0] and rec.meta == {"tags": ["a"]}
    rec.embedding[:] = 9
    rec.meta["tags"].append("changed")
    backend.search(np.ones(3, np.float32), top_k=1)[0].meta["tags"].append("changed")
    (again,) = backend.get(["x"])
    assert again.embedding.tolist() == [1.0, 2.0, 3.0] and again.meta == {"tags": ["a"]}


def test_bad_arguments_are_refused(loc: str) -> None:
    backend = InMemoryBackend.open(loc, dim=4)
    good = _rand(3, 4, seed=2)
    report = backend.add(
        [
            IndexRecord("a", good[0]),
            IndexRecord("b", good[1]),
            IndexRecord("set-meta", good[2], meta={"tags": {"x", "y"}}),
            IndexRecord("zero", np.zeros(4, np.float32)),
            IndexRecord("", good[2]),
        ]
    )
    assert report.written == 2
    reasons = dict(report.failed)
    assert (
        set(reasons) == {"set-meta", "zero", ""} and "JSON" in reasons["set-meta"] and "zero vector" in reasons["zero"]
    )
    for top_k in (0, -3):
        with pytest.raises(ValueError, match="top_k"):
            backend.search(good[0], top_k=top_k)
    with pytest.raises(ValueError, match="query shape"):
        backend.search(np.ones(5, np.float32))
    with pytest.raises(TypeError, match="sequence of ids"):
        backend.delete("ab")
    with pytest.raises(TypeError, match="sequence of ids"):
        backend.get("ab")
    assert backend.count() == 2 and [r.id for r in backend.get(["a", "b"])] == ["a", "b"]  # "a" and "b" survive


def test_concurrent_writes_and_reads(loc: str) -> None:
    backend = InMemoryBackend.open(loc, dim=8)
    data = _rand(64, 8, seed=3)
    backend.add([IndexRecord(f"seed{i}", data[i], meta={"i": i}) for i in range(20)])
    errors: list[BaseException] = []
    done = threading.Event()
    written = [0]

    def writer() -> None:  # churn: the store keeps its size, its dict keeps changing
        try:
            i = 0
            while not done.is_set() or i < 100:
                backend.add([IndexRecord(f"d{i}", data[i % 64], meta={"i": i})])
                backend.delete([f"d{i - 50}"])
                i += 1
            written[0] = i
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                backend.search(data[1], top_k=5, filters={"field": "meta.i", "operator": ">=", "value": 0})
                backend.count({"field": "meta.i", "operator": "==", "value": 0})
                backend.delete(filters={"field": "meta.i", "operator": "<", "value": -1})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to hit interleavings
    try:
        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join()
        done.set()
        threads[0].join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []  # before the per-store lock: "dictionary changed size during iteration"
    assert backend.count() == 20 + 50 and written[0] >= 100


@pytest.mark.parametrize("multi_vector", [False, True])
def test_same_results_as_faiss(loc: str, tmp_path, multi_vector: bool) -> None:
    rng = np.random.default_rng(5)
    if multi_vector:
        embeddings = [rng.normal(size=(int(rng.integers(1, 5)), 16)).astype(np.float32) * 3 for _ in range(60)]
        query = rng.normal(size=(3, 16)).astype(np.float32)
    else:
        embeddings = list(rng.normal(size=(60, 16)).astype(np.float32) * 3)
        query = rng.normal(size=16).astype(np.float32)
    records = [IndexRecord(f"d{i}", e, text=f"t{i}", meta={"group": i % 3, "i": i}) for i, e in enumerate(embeddings)]
    flt = {
        "operator": "AND",
        "conditions": [
            {"field": "meta.group", "operator": "!=", "value": 1},
            {"field": "meta.i", "operator": "<", "value": 50},
        ],
    }
    memory = InMemoryBackend.open(loc, dim=16, multi_vector=multi_vector)
    faiss_backend = FaissBackend.open(str(tmp_path / "ix"), dim=16, multi_vector=multi_vector, index_type="Flat")
    assert memory.add(records).written == faiss_backend.add(records).written == 60
    for filters in (None, flt):
        mine, theirs = (
            memory.search(query, top_k=15, filters=filters),
            faiss_backend.search(query, top_k=15, filters=filters),
        )
        assert [h.id for h in mine] == [h.id for h in theirs]
        np.testing.assert_allclose([h.score for h in mine], [h.score for h in theirs], rtol=1e-5, atol=1e-6)
        assert [(h.text, h.meta) for h in mine] == [(h.text, h.meta) for h in theirs]
        assert memory.count(filters) == faiss_backend.count(filters)
    for a, b in zip(memory.get(["d3", "d4"]), faiss_backend.get(["d3", "d4"])):
        np.testing.assert_allclose(a.embedding, b.embedding, rtol=1e-6)
