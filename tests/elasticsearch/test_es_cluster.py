"""Scale-out on a real 3-node cluster: 3 shards x 1 replica, one node SIGKILLed mid-ingest, nothing lost
or duplicated, every document still searchable (by id listing and by its own vector)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.elasticsearch import ElasticsearchBackend
from tests.elasticsearch.conftest import unit_vectors
from tests.es_cluster import es_cluster  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N, DIM, KILL_AT = 3000, 16, 1201


def test_node_killed_mid_ingest_loses_and_duplicates_nothing(es_cluster):  # noqa: F811
    nodes = es_cluster
    name = "ret2-test-cluster"
    backend = ElasticsearchBackend.open(
        name,
        dim=DIM,
        shards=3,
        replicas=1,
        index_type="flat",
        hosts=[n.url for n in nodes],
        chunk_size=100,
        request_timeout=30,
        initial_backoff=0.5,
        bulk_max_retries=6,
        deadline=600,
    )
    client = nodes[0].client()
    client.cluster.health(index=name, wait_for_status="green", timeout="120s")
    shards = client.cat.shards(index=name, format="json")
    assert sorted((s["shard"], s["prirep"]) for s in shards) == [(str(i), p) for i in range(3) for p in ("p", "r")]
    victim = nodes[1]
    victim_name = f"ret2-node-{nodes.index(victim)}"
    assert any(s["node"] == victim_name for s in shards)  # the victim holds data
    vectors = unit_vectors(N, DIM)

    def stream() -> Iterator[IndexRecord]:
        for i, vector in enumerate(vectors):
            if i == KILL_AT:  # twelve chunks acknowledged, the rest goes to a cluster that just lost a node
                victim.kill()
            yield IndexRecord(f"d{i}", vector, text=f"doc {i}", content_hash=f"h{i}")

    report = backend.add(stream())
    assert (report.written, report.failed, report.unknown) == (N, [], [])

    live = next(n for n in nodes if n is not victim).client(request_timeout=120)
    health = live.cluster.health(index=name, wait_for_nodes="2", wait_for_status="yellow", timeout="120s")
    assert health["number_of_nodes"] == 2 and not health["timed_out"]
    live.indices.refresh(index=name)
    assert live.count(index=name)["count"] == N
    hits = live.search(index=name, query={"match_all": {}}, size=N + 10, source=False)["hits"]["hits"]
    ids = [h["_id"] for h in hits]
    assert len(ids) == N and set(ids) == {f"d{i}" for i in range(N)}  # none lost, none twice
    survivor = ElasticsearchBackend.open(name, dim=DIM, hosts=[n.url for n in nodes if n is not victim])
    for i in range(0, N, 97):  # searchable by its vector (exact kNN: flat index)
        assert survivor.search(vectors[i], top_k=1)[0].id == f"d{i}"
    live.close()
    client.close()
