"""Delete-by-filter and index copy, server-side where the cluster can, client-side where it cannot.

`_delete_by_query` and `_reindex` live in Elasticsearch's `reindex` module, which every normal
distribution ships but the integ-test distribution used by our test node does not (the endpoint answers
400 or 405). There we fall back to the same work done by the client: scroll the matching
ids (or `_source` documents, vectors included) and send them back with `_bulk`. Either way the stored
vectors are copied, never re-embedded.
"""

from __future__ import annotations

from typing import Any


def _missing_endpoint(exc: Exception) -> bool:
    """400 "no handler found" (`_delete_by_query`) or 405 (`_reindex` read as an index name)."""
    from elasticsearch import ApiError

    if not isinstance(exc, ApiError):
        return False
    return (exc.status_code == 400 and "no handler found" in str(exc.message)) or (
        exc.status_code == 405 and "Incorrect HTTP method" in str(exc.message)
    )


def delete_matching(client: Any, index: str, query: dict[str, Any]) -> int:
    """Delete every document matching `query`; returns how many were deleted."""
    from elasticsearch.helpers import bulk, scan

    try:
        done = client.delete_by_query(index=index, query=query, refresh=True, conflicts="proceed")
    except Exception as exc:  # noqa: BLE001 - only the missing-endpoint case is handled
        if not _missing_endpoint(exc):
            raise
    else:
        if done.get("failures"):
            raise RuntimeError(f"delete_by_query on {index!r} had failures: {done['failures'][:3]}")
        return int(done.get("deleted", 0))
    client.indices.refresh(index=index)
    hits = scan(client, index=index, query={"query": query}, _source=False, size=1000)
    actions = ({"_op_type": "delete", "_index": index, "_id": h["_id"]} for h in hits)
    deleted, errors = bulk(client, actions, raise_on_error=False, refresh=True)
    real = [e for e in errors if e.get("delete", {}).get("status") != 404]
    if real:
        raise RuntimeError(f"deleting from {index!r} failed for {len(real)} documents, first: {real[0]}")
    return int(deleted)


def copy_index(client: Any, source: str, dest: str, *, chunk_size: int = 500) -> int:
    """Copy all documents of `source` into the existing index `dest`; returns how many were copied."""
    from elasticsearch.helpers import bulk, scan

    try:
        done = client.reindex(source={"index": source}, dest={"index": dest}, wait_for_completion=True, refresh=True,
                              timeout="10m")
    except Exception as exc:  # noqa: BLE001 - only the missing-endpoint case is handled
        if not _missing_endpoint(exc):
            raise
    else:
        if done.get("failures"):
            raise RuntimeError(f"reindex {source!r} -> {dest!r} had failures: {done['failures'][:3]}")
        return int(done.get("created", 0)) + int(done.get("updated", 0))
    client.indices.refresh(index=source)
    hits = scan(client, index=source, query={"query": {"match_all": {}}}, size=chunk_size)
    actions = ({"_op_type": "index", "_index": dest, "_id": h["_id"], "_source": h["_source"]} for h in hits)
    copied, errors = bulk(client, actions, chunk_size=chunk_size, raise_on_error=False, refresh=True)
    if errors:
        raise RuntimeError(f"copying {source!r} -> {dest!r} failed for {len(errors)} documents, first: {errors[0]}")
    return int(copied)
