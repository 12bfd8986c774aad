"""A real 3-node Elasticsearch cluster on loopback for the scale-out test (same integ-test-zip as es_node).

Three processes of the same distribution with distinct `http.port`, `transport.port`, `path.data` and
`node.name`, `discovery.seed_hosts` listing the three transport ports and `cluster.initial_master_nodes`
the three names; 512 MB heap each, security off (the test is about shards and replicas, not auth).
Started only by the test that asks for `es_cluster`; every process is stopped in its teardown.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.es_node import ESNode, ESNodeError, _free_port, start_node

CLUSTER_TIMEOUT_S = 300.0  # three JVMs on two shared cores


def _cluster_ready(url: str, nodes: int) -> bool:
    query = f"{url}/_cluster/health?wait_for_nodes={nodes}&wait_for_status=green&timeout=5s"
    try:
        with urllib.request.urlopen(query, timeout=10) as response:
            return '"timed_out":false' in response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def wait_for_cluster(nodes: list[ESNode], size: int, timeout: float = CLUSTER_TIMEOUT_S) -> None:
    """Until a live node reports `size` nodes and green health; ESNodeError (with a log tail) otherwise."""
    deadline = time.monotonic() + timeout
    live = [n for n in nodes if n.process is not None and n.process.poll() is None]
    while time.monotonic() < deadline:
        if any(_cluster_ready(n.url, size) for n in live):
            return
        time.sleep(1.0)
    from tests.es_node import _log_tail

    tails = "\n".join(_log_tail(n.workdir, 2000) for n in live if n.workdir is not None)
    raise ESNodeError(
        f"the {len(nodes)}-node cluster did not reach {size} nodes / green within {timeout:.0f} s:\n{tails}"
    )


def start_cluster(size: int = 3, timeout: float = CLUSTER_TIMEOUT_S) -> list[ESNode]:
    """Start `size` nodes that form one cluster; on failure every started process is stopped."""
    http_ports = [_free_port() for _ in range(size)]
    transport_ports = [_free_port() for _ in range(size)]
    names = [f"ret2-node-{i}" for i in range(size)]
    nodes: list[ESNode] = []
    try:
        for i in range(size):
            nodes.append(
                start_node(
                    security=False,
                    launch=False,
                    settings={
                        "cluster.name": f"ret2-cluster-{http_ports[0]}",
                        "node.name": names[i],
                        "discovery.type": None,
                        "http.port": http_ports[i],
                        "transport.port": transport_ports[i],
                        "discovery.seed_hosts": json.dumps([f"127.0.0.1:{p}" for p in transport_ports]),
                        "cluster.initial_master_nodes": json.dumps(names),
                    },
                )
            )
        for node in nodes:
            node.restart(wait=False)
        wait_for_cluster(nodes, size, timeout)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


@pytest.fixture
def es_cluster() -> Iterator[list[ESNode]]:
    """Three running nodes of one cluster (security off); all stopped and removed afterwards."""
    try:
        nodes = start_cluster()
    except ESNodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()
