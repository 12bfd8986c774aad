"""Index administration: create / read the layout, recreate, reindex (v1 -> v2 conversion included), and
delete-by-filter and index copy, server-side where the cluster can, client-side where it cannot.

`_delete_by_query` and `_reindex` live in Elasticsearch's `reindex` module, which every normal
distribution ships but the integ-test distribution used by our test node does not (the endpoint answers
400 or 405). There we fall back to the same work done by the client: scroll the matching
ids (or `_source` documents, vectors included) and send them back with `_bulk`. Either way the stored
vectors are copied, never re-embedded.
"""

from __future__ import annotations

from typing import Any

from . import mapping as mp
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
        done = long_running(client).reindex(
            source={"index": source}, dest={"index": dest}, wait_for_completion=True, refresh=True, timeout="10m"
        )
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


def read_layout(client: Any, name: str) -> dict[str, Any] | None:
    """The ret2 layout of index (or alias) `name` from its mapping; None when it does not exist."""
    from elasticsearch import NotFoundError

    try:
        mappings = client.indices.get_mapping(index=name)
    except NotFoundError:
        return None
    if len(mappings) != 1:
        raise ValueError(f"{name!r} names {len(mappings)} Elasticsearch indexes ({sorted(mappings)}); use one index")
    (concrete,) = mappings.values()
    return mp.describe_mapping(name, concrete["mappings"])


def create_index(client: Any, name: str, body: dict[str, Any]) -> None:
    """Create `name` with `body`'s settings and mappings; one created meanwhile by another writer is kept."""
    from elasticsearch import BadRequestError

    try:
        client.indices.create(index=name, settings=body["settings"], mappings=body["mappings"])
    except BadRequestError as exc:
        if exc.error == "resource_already_exists_exception":
            return  # created meanwhile by another writer; the caller re-reads and checks its mapping
        raise ValueError(f"cannot create Elasticsearch index {name!r}: {exc.message}: {exc.info}") from exc


def reindex(backend: Any, new_index: str, *, alias: str | None = None, **mapping_options: Any) -> Any:
    """Copy every stored vector into `new_index` with another mapping (e.g. hnsw -> int8_hnsw)
    without re-embedding: server-side `_reindex` (scroll + bulk where the cluster lacks it); then
    optionally move `alias` onto the new index. The source index is left as it was."""
    unknown = set(mapping_options) - set(mp.MAPPING_OPTIONS)
    if unknown:
        raise TypeError(f"reindex accepts mapping options {list(mp.MAPPING_OPTIONS)}, got {sorted(unknown)}")
    if backend.client.indices.exists(index=new_index):
        raise ValueError(f"Elasticsearch index {new_index!r} already exists; reindex needs a new name")
    backend._refresh_if_dirty(force=True)
    body = mp.build_index_body(
        dim=backend.dim,
        multi_vector=backend.multi_vector,
        similarity=backend.similarity,
        info=backend.info,
        **mapping_options,
    )
    create_index(backend.client, new_index, body)
    if backend._v1:  # layout v1 -> v2: documents change shape, so they are decoded and re-encoded here
        from elasticsearch.helpers import scan

        target_layout = read_layout(backend.client, new_index)
        assert target_layout is not None
        target = type(backend)(
            backend.client,
            new_index,
            target_layout,
            where=backend._where,
            bulk=backend._bulk,
            refresh=True,
            connection={**backend._connection, "client": backend.client},
        )
        hits = scan(
            backend.client, index=backend.index, query={"query": {"match_all": {}}}, size=backend._bulk.chunk_size
        )
        report = target.add(backend._encoder.record(h["_id"], h["_source"]) for h in hits)
        if report.failed:
            raise RuntimeError(
                f"reindex {backend.index!r} -> {new_index!r}: {len(report.failed)} documents failed, "
                f"first: {report.failed[0]}"
            )
    else:
        copy_index(backend.client, backend.index, new_index, chunk_size=backend._bulk.chunk_size)
    if alias:
        actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": alias}}]
        if backend.client.indices.exists_alias(name=alias):
            actions.insert(0, {"remove": {"index": "*", "alias": alias}})
        backend.client.indices.update_aliases(actions=actions)
    layout = read_layout(backend.client, new_index)
    assert layout is not None
    return type(backend)(
        backend.client,
        new_index,
        layout,
        where=backend._where,
        bulk=backend._bulk,
        refresh=backend._refresh,
        progress=backend._progress,
        connection={**backend._connection, "client": backend.client},
    )


def recreate(backend: Any) -> None:
    """Delete the index and create it again, empty, with its mappings and settings (what Haystack's
    `delete_all_documents(recreate_index=True)` does). An alias is emptied by deleting its documents."""
    backend._check_writable()
    found = backend.client.indices.get(index=backend.index)
    if list(found) != [backend.index]:
        backend.delete(filters=None, ids=backend.ids())
        return
    settings = found[backend.index]["settings"]
    for key in ("uuid", "creation_date", "provided_name", "version"):
        settings["index"].pop(key, None)
    backend.client.indices.delete(index=backend.index)
    backend.client.indices.create(index=backend.index, settings=settings, mappings=found[backend.index]["mappings"])
    backend._dirty = False
