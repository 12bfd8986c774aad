"""Delete-by-filter and index copy, server-side where the cluster can, client-side where it cannot.

`_delete_by_query` and `_reindex` live in Elasticsearch's `reindex` module, which every normal
distribution ships but the integ-test distribution used by our test node does not (the endpoint answers
400 or 405). There we fall back to the same work done by the client: scroll the matching
ids (or `_source` documents, vectors included) and send them back with `_bulk`. Either way the stored
vectors are copied, never re-embedded.
"""

from __future__ import annotations

from typing import Any

from .connection import long_running


def _missing_endpoint(exc: Exception) -> bool:
    """400 "no handler found" (`_delete_by_query`) or 405 (`_reindex` read as an index name)."""
    from elasticsearch import ApiError

    if not isinstance(exc, ApiError):
        return False
    return (exc.status_code == 400 and "no handler found" in str(exc.message)) or (
        exc.status_code == 405 and "Incorrect HTTP method" in str(exc.message)
    )


def delete_outcome(index: str, done: Any) -> tuple[int, int]:
    """(deleted, version conflicts) of a `_delete_by_query` response; raises on shard/bulk failures."""
    if done.get("failures"):
        raise RuntimeError(f"delete_by_query on {index!r} had failures: {done['failures'][:3]}")
    return int(done.get("deleted", 0)), int(done.get("version_conflicts", 0))


def delete_matching(client: Any, index: str, query: dict[str, Any], *, attempts: int = 3) -> int:
    """Delete every document matching `query`; returns how many were deleted. Documents changed while
    the delete ran (version conflicts) are retried; if some still conflict, raise: never report a
    partial delete as complete."""
    from elasticsearch.helpers import bulk, scan

    deleted = conflicts = 0
    for _ in range(attempts):
        try:
            done = long_running(client).delete_by_query(index=index, query=query, refresh=True, conflicts="proceed")
        except Exception as exc:  # noqa: BLE001 - only the missing-endpoint case is handled
            if not _missing_endpoint(exc):
                raise
            break
        removed, conflicts = delete_outcome(index, done)
        deleted += removed
        if not conflicts:
            return deleted
    else:
        raise RuntimeError(
            f"delete_by_query on {index!r}: {conflicts} matching documents were changed by other writers "
            f"while being deleted ({attempts} attempts, {deleted} deleted); run the delete again"
        )
    client.indices.refresh(index=index)
    hits = scan(client, index=index, query={"query": query}, _source=False, size=1000)
    actions = ({"_op_type": "delete", "_index": index, "_id": h["_id"]} for h in hits)
    removed, errors = bulk(client, actions, raise_on_error=False, refresh=True)
    real = [e for e in errors if e.get("delete", {}).get("status") != 404]
    if real:
        raise RuntimeError(f"deleting from {index!r} failed for {len(real)} documents, first: {real[0]}")
    return deleted + int(removed)


def copy_index(client: Any, source: str, dest: str, *, chunk_size: int = 500) -> int:
    """Copy all documents of `source` into the existing index `dest`; returns how many were copied."""
    from elasticsearch.helpers import bulk, scan

    try:
        done = long_running(client).reindex(source={"index": source}, dest={"index": dest}, wait_for_completion=True,
                                            refresh=True, timeout="10m")
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
