"""Index a JSONL corpus into any backend: skip unchanged items, embed in batches, report failures.

Embedding runs in this thread while a writer thread sends the previous batch to the backend, so a
network backend (Elasticsearch) and the model overlap. Nothing already indexed is removed; every bad
line or item is reported with file, line, id and reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ret2_plugin.index import IndexBackend, IndexRecord, WriteReport
from ret2_plugin.items import Item, ItemError, read_jsonl
from ret2_plugin.workers import BoundedWorker

@dataclass
class IndexSummary:
    """What an indexing job did."""

    indexed: int = 0
    unchanged: int = 0
    failed: list[ItemError] = field(default_factory=list)

    @property
    def total_seen(self) -> int:
        return self.indexed + self.unchanged + len(self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "failed": len(self.failed),
            "failures": [e.to_dict() for e in self.failed],
        }


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _new_or_changed(
    backend: IndexBackend, items: Iterable[Item], summary: IndexSummary, chunk: int, source: str
) -> Iterator[Item]:
    """Drop items whose stored content hash equals the current one (no re-embedding); report items
    without an id (they cannot be upserted)."""
    for batch in _chunks(items, chunk):
        stored = backend.content_hashes([i.id for i in batch if i.id is not None])
        for item in batch:
            if item.id is None:
                summary.failed.append(ItemError(source, item.line or 0, None, "missing id"))
            elif item.id in stored and stored[item.id] == item.content_hash():
                summary.unchanged += 1
            else:
                yield item


def _record(item: Item, vector: Any) -> IndexRecord:
    return IndexRecord(
        id=str(item.id),
        embedding=vector,
        text=item.text,
        image=item.image if isinstance(item.image, str) else None,
        meta=dict(item.meta),
        content_hash=item.content_hash(),
    )


def index_items(
    items: Iterable[Item],
    backend: IndexBackend,
    encoder: Any,
    *,
    source: str = "<items>",
    batch_size: int = 32,
    num_workers: int = 2,
    show_progress_bar: bool = False,
    summary: IndexSummary | None = None,
) -> IndexSummary:
    """Embed (document side) and upsert `items`; returns counts and every failure."""
    from ret2_plugin.encoder import iter_embeddings

    summary = summary or IndexSummary()
    lines = {}

    def remember(stream: Iterable[Item]) -> Iterator[Item]:
        for item in stream:
            lines[item.id] = item.line
            yield item

    pending = remember(_new_or_changed(backend, items, summary, max(batch_size, 256), source))
    reports: list[WriteReport] = []
    errors: list[BaseException] = []

    def write(records: list[IndexRecord]) -> None:
        try:
            reports.append(backend.add(records))
        except Exception as exc:  # reported per item below, never swallowed
            errors.append(exc)
            reports.append(WriteReport(0, [(r.id, f"backend write failed: {exc}") for r in records]))

    outbox = BoundedWorker(write, depth=2, name="ret2-index-writer")
    progress = None
    if show_progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(desc="Indexing", unit="item")
    try:
        for batch_items, vectors, failures in iter_embeddings(
            encoder, pending, side="document", batch_size=batch_size, num_workers=num_workers
        ):
            for item, reason in failures:
                summary.failed.append(ItemError(source, item.line or 0, item.id, reason))
            outbox.submit([_record(item, vector) for item, vector in zip(batch_items, vectors)])
            if progress is not None:
                progress.update(len(batch_items) + len(failures))
    finally:
        try:
            outbox.close()  # waits for the writes in flight
        finally:
            if progress is not None:
                progress.close()
            backend.persist()  # what was written stays written, even when embedding failed part-way
    for report in reports:
        summary.indexed += report.written
        for item_id, reason in report.failed:
            summary.failed.append(ItemError(source, lines.get(item_id) or 0, item_id, reason))
    if errors and not summary.indexed:
        raise errors[0]
    return summary


def index_corpus(
    corpus: str | Path, backend: IndexBackend, encoder: Any, **kwargs: Any
) -> IndexSummary:
    """`index_items` over a JSONL corpus; bad lines are reported in the summary with the rest."""
    summary = IndexSummary()
    items = read_jsonl(corpus, summary.failed)
    return index_items(items, backend, encoder, source=str(corpus), summary=summary, **kwargs)
