"""Component contracts that need no model: serialisation, secrets, path confinement, retriever filters,
score threshold and the writer's failure reporting (over the in-memory backend, through the registry)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from haystack import Document
from haystack.document_stores.types import FilterPolicy
from haystack.utils import Secret

from haystack_integrations.components.embedders.ret2 import ReT2DocumentEmbedder, ReT2QueryEmbedder
from haystack_integrations.components.retrievers.ret2 import ReT2Retriever
from haystack_integrations.components.writers.ret2 import ReT2DocumentWriter
from ret2_plugin.integrations.haystack.images import DocumentImageError, resolve_file_path
from ret2_plugin.integrations.memory import InMemoryBackend

pytestmark = pytest.mark.unit


def _unit(*v: float) -> list[float]:
    a = np.asarray(v, dtype=np.float32)
    return (a / np.linalg.norm(a)).tolist()


@pytest.fixture
def memory_location(request: pytest.FixtureRequest) -> Iterator[str]:
    location = f"haystack-unit-{request.node.name}"
    yield location
    InMemoryBackend.drop(location)


@pytest.fixture
def populated(memory_location: str) -> str:
    writer = ReT2DocumentWriter(backend="memory", location=memory_location)
    docs = [
        Document(
            id="red",
            content="red",
            embedding=_unit(1, 0, 0),
            meta={"kind": "colour", "warm": True, "file_path": "red.png"},
        ),
        Document(id="green", content="green", embedding=_unit(0, 1, 0), meta={"kind": "colour", "warm": False}),
        Document(id="tree", content="tree", embedding=_unit(0.3, 1, 0), meta={"kind": "plant", "warm": False}),
    ]
    assert writer.run(docs)["documents_written"] == 3
    return memory_location


def test_types_name_the_haystack_integrations_namespace() -> None:
    assert (
        ReT2DocumentEmbedder(model="m").to_dict()["type"]
        == "haystack_integrations.components.embedders.ret2.ReT2DocumentEmbedder"
    )
    assert (
        ReT2QueryEmbedder(model="m").to_dict()["type"]
        == "haystack_integrations.components.embedders.ret2.ReT2QueryEmbedder"
    )
    assert (
        ReT2Retriever(location="x").to_dict()["type"]
        == "haystack_integrations.components.retrievers.ret2.ReT2Retriever"
    )
    assert (
        ReT2DocumentWriter(location="x").to_dict()["type"]
        == "haystack_integrations.components.writers.ret2.ReT2DocumentWriter"
    )


def test_init_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        ReT2DocumentEmbedder("model")  # type: ignore[misc]
    with pytest.raises(TypeError):
        ReT2Retriever("memory", "x")  # type: ignore[misc]


@pytest.mark.parametrize(
    "component",
    [
        ReT2DocumentEmbedder(
            model="some/model",
            device="cpu",
            root_path="/data",
            batch_size=4,
            progress_bar=False,
            raise_on_failure=True,
            image_decode="fast",
        ),
        ReT2QueryEmbedder(model="some/model", instruction="Find the bird.", normalize_embeddings=False),
        ReT2Retriever(
            backend="memory",
            location="loc",
            filters={"field": "meta.k", "operator": "==", "value": 1},
            top_k=3,
            filter_policy="merge",
            score_threshold=0.2,
        ),
        ReT2DocumentWriter(backend="memory", location="loc", similarity="cosine"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_to_dict_from_dict_round_trip(component: object) -> None:
    data = component.to_dict()  # type: ignore[attr-defined]
    clone = type(component).from_dict(data)  # type: ignore[attr-defined]
    assert clone.to_dict() == data
    assert data["init_parameters"]  # parameters are recorded, not defaults silently


def test_document_embedder_records_and_checks_the_decode_mode() -> None:
    assert ReT2DocumentEmbedder(model="m").to_dict()["init_parameters"]["image_decode"] == "exact"
    with pytest.raises(ValueError, match="image_decode must be one of"):
        ReT2DocumentEmbedder(model="m", image_decode="turbo")


def test_retriever_filter_policy_round_trips_as_enum() -> None:
    clone = ReT2Retriever.from_dict(ReT2Retriever(location="x", filter_policy=FilterPolicy.MERGE).to_dict())
    assert clone.filter_policy is FilterPolicy.MERGE


def test_env_secret_serialises_as_env_var_name_and_resolves_at_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RET2_TEST_ES_PASSWORD", "s3cr3t-value")
    retriever = ReT2Retriever(
        backend="elasticsearch",
        location="idx",
        backend_options={"password": Secret.from_env_var("RET2_TEST_ES_PASSWORD"), "hosts": "http://h"},
    )
    data = retriever.to_dict()
    assert data["init_parameters"]["backend_options"]["password"] == {
        "type": "env_var",
        "env_vars": ["RET2_TEST_ES_PASSWORD"],
        "strict": True,
    }
    assert "s3cr3t-value" not in repr(data)
    clone = ReT2Retriever.from_dict(data)
    assert isinstance(clone.backend_options["password"], Secret)
    assert clone.backend_options["password"].resolve_value() == "s3cr3t-value"


def test_token_secret_refuses_to_serialise() -> None:
    retriever = ReT2Retriever(
        backend="elasticsearch", location="idx", backend_options={"api_key": Secret.from_token("tok-123")}
    )
    with pytest.raises(ValueError, match="Cannot serialize token-based secret"):
        retriever.to_dict()
    writer = ReT2DocumentWriter(
        backend="elasticsearch", location="idx", backend_options={"api_key": Secret.from_token("tok-123")}
    )
    with pytest.raises(ValueError, match="Cannot serialize token-based secret"):
        writer.to_dict()


@pytest.mark.parametrize("key", ["password", "api_key", "basic_auth", "bearer_auth"])
def test_clear_text_credentials_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match=f"{key}.*Secret"):
        ReT2Retriever(backend="elasticsearch", location="idx", backend_options={key: "hunter2"})


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.png").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(b"")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    assert resolve_file_path("ok.png", root) == str((root / "ok.png").resolve())
    assert resolve_file_path(str(root / "ok.png"), root) == str((root / "ok.png").resolve())
    for bad in ("../outside.png", str(tmp_path / "outside.png"), "link.png", "sub/../../outside.png", "http://x/y.png"):
        with pytest.raises(DocumentImageError, match="refused|not allowed"):
            resolve_file_path(bad, root)
    assert resolve_file_path("../outside.png") == "../outside.png"  # without a root, paths are used as given


def test_query_embedder_validates_inputs_before_loading_a_model() -> None:
    embedder = ReT2QueryEmbedder(model="/does/not/exist")
    with pytest.raises(ValueError, match="needs text, an image, or both"):
        embedder.run()
    with pytest.raises(TypeError, match="image must be"):
        embedder.run(text="x", image=123)  # type: ignore[arg-type]
    assert embedder._encoder is None


def test_retriever_returns_documents_with_scores_and_meta(populated: str) -> None:
    docs = ReT2Retriever(backend="memory", location=populated, top_k=2).run(query_embedding=_unit(1, 0.1, 0))[
        "documents"
    ]
    assert [d.id for d in docs] == ["red", "tree"]
    assert docs[0].content == "red" and docs[0].meta == {"kind": "colour", "warm": True, "file_path": "red.png"}
    assert docs[0].score > docs[1].score
    assert docs[0].embedding is None


def test_retriever_filter_policies(populated: str) -> None:
    cool = {"field": "meta.warm", "operator": "==", "value": False}
    colours = {"field": "meta.kind", "operator": "==", "value": "colour"}
    query = _unit(1, 0.2, 0)
    replace = ReT2Retriever(backend="memory", location=populated, filters=cool)
    assert [d.id for d in replace.run(query_embedding=query)["documents"]] == ["tree", "green"]
    assert [d.id for d in replace.run(query_embedding=query, filters=colours)["documents"]] == ["red", "green"]
    merge = ReT2Retriever(backend="memory", location=populated, filters=cool, filter_policy="merge")
    assert [d.id for d in merge.run(query_embedding=query, filters=colours)["documents"]] == ["green"]
    assert [d.id for d in merge.run(query_embedding=query)["documents"]] == ["tree", "green"]


def test_retriever_top_k_and_score_threshold(populated: str) -> None:
    retriever = ReT2Retriever(backend="memory", location=populated, top_k=3, score_threshold=0.5)
    docs = retriever.run(query_embedding=_unit(0, 1, 0))["documents"]
    assert [d.id for d in docs] == ["green", "tree"]  # red scores 0
    assert all(d.score >= 0.5 for d in docs)
    assert len(retriever.run(query_embedding=_unit(0, 1, 0), top_k=1)["documents"]) == 1


def test_retriever_run_async_matches_run(populated: str) -> None:
    retriever = ReT2Retriever(backend="memory", location=populated)
    sync = retriever.run(query_embedding=_unit(0, 1, 0.2))["documents"]
    result = asyncio.run(retriever.run_async(query_embedding=_unit(0, 1, 0.2)))["documents"]
    assert [(d.id, d.score) for d in result] == [(d.id, d.score) for d in sync]


def test_retriever_unknown_backend_lists_registered() -> None:
    with pytest.raises(KeyError, match="registered index backends: .*memory"):
        ReT2Retriever(backend="nope", location="x").warm_up()


def test_writer_reports_documents_it_cannot_write(memory_location: str) -> None:
    writer = ReT2DocumentWriter(backend="memory", location=memory_location)
    docs = [
        Document(id="ok", content="fine", embedding=_unit(1, 0, 0)),
        Document(id="no-embedding", content="not embedded"),
        Document(id="wrong-dim", content="bad", embedding=[1.0, 0.0]),
        Document(id="nan", content="bad", embedding=[float("nan"), 0.0, 1.0]),
    ]
    result = writer.run(docs)
    assert result["documents_written"] == 1
    reasons = {d.id: d.meta["write_error"] for d in result["failed_documents"]}
    assert set(reasons) == {"no-embedding", "wrong-dim", "nan"}
    assert "no embedding" in reasons["no-embedding"] and "dim" in reasons["wrong-dim"] and "NaN" in reasons["nan"]
    assert InMemoryBackend.open(memory_location).count() == 1


def test_retriever_merge_policy_normalises_shorthand_filters(populated: str) -> None:
    query = _unit(1, 0.2, 0)
    merge = ReT2Retriever(backend="memory", location=populated, filters={"warm": False}, filter_policy="merge")
    assert [d.id for d in merge.run(query_embedding=query, filters={"kind": "colour"})["documents"]] == ["green"]
    canonical = ReT2Retriever(
        backend="memory",
        location=populated,
        filter_policy="merge",
        filters={"field": "meta.kind", "operator": "==", "value": "colour"},
    )
    assert [d.id for d in canonical.run(query_embedding=query, filters={"warm": False})["documents"]] == ["green"]
    assert merge.to_dict()["init_parameters"]["filters"] == {"warm": False}  # serialised as given


def test_retriever_run_refuses_top_k_below_one(populated: str) -> None:
    retriever = ReT2Retriever(backend="memory", location=populated, top_k=3)
    for top_k in (0, -2):
        with pytest.raises(ValueError, match="top_k must be >= 1"):
            retriever.run(query_embedding=_unit(0, 1, 0), top_k=top_k)


@pytest.mark.parametrize("hosts", ["https://elastic:hunter2@es:9200", ["http://es1:9200", "elastic:hunter2@es2:9200"]])
def test_hosts_with_a_password_are_refused(hosts: object) -> None:
    with pytest.raises(ValueError, match="password") as info:
        ReT2DocumentWriter(backend="elasticsearch", location="idx", backend_options={"hosts": hosts})
    assert "hunter2" not in str(info.value)
    assert ReT2Retriever(
        backend="elasticsearch", location="idx", backend_options={"hosts": "https://es:9200"}
    ).to_dict()


def test_writer_close_releases_the_backend(memory_location: str) -> None:
    writer = ReT2DocumentWriter(backend="memory", location=memory_location)
    assert writer.run([Document(id="a", content="a", embedding=_unit(1, 0, 0))])["documents_written"] == 1
    assert writer._index is not None
    writer.close()
    assert writer._index is None
    writer.close()  # idempotent
    assert writer.run([Document(id="b", content="b", embedding=_unit(0, 1, 0))])["documents_written"] == 1
    assert InMemoryBackend.open(memory_location).count() == 2
