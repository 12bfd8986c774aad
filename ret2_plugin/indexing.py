"""Index a JSONL corpus into any backend: skip unchanged items, embed in batches, report failures.

Embedding runs in this thread while a writer thread sends the previous batch to the backend, so a
network backend (Elasticsearch) and the model overlap. Nothing already indexed is removed; every bad
line or item is reported with file, line, id and reason. When the backend fails as a whole (unreachable,
deadline passed, refused) the run stops with `IndexingAborted`, whose summary says what was written;
running again resumes (items stored with the same content hash are skipped, upserts never duplicate).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ret2_plugin.index import IndexBackend, IndexRecord, WriteReport
from ret2_plugin.items import _NOT_FILES, Item, ItemError, read_jsonl
from ret2_plugin.processing.images import confine
from ret2_plugin.workers import BoundedWorker

log = logging.getLogger(__name__)

DEFAULT_COMMIT_EVERY = 10_000  # documents between durable saves during `index_items`
DEFAULT_COMMIT_SECONDS = 300.0  # or seconds, whichever comes first


@dataclass
class IndexSummary:
    """What an indexing job did."""

    indexed: int = 0
    unchanged: int = 0
    failed: list[ItemError] = field(default_factory=list)
    # sent but never confirmed by the backend, or embedded but not sent because the run stopped
    unknown: list[ItemError] = field(default_factory=list)
    commits: int = 0  # durable saves made during the run (periodic ones + the final one)

    @property
    def total_seen(self) -> int:
        return self.indexed + self.unchanged + len(self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "indexed": self.indexed,
            "unchanged": self.unchanged,
            "failed": len(self.failed),
            "failures": [e.to_dict() for e in self.failed],
            "unknown": len(self.unknown),
            "unknown_items": [e.to_dict() for e in self.unknown],
        }

    def describe(self) -> str:
        return f"indexed {self.indexed}, unchanged {self.unchanged}, failed {len(self.failed)}" + (
            f", outcome unknown {len(self.unknown)}" if self.unknown else ""
        )


class IndexingAborted(RuntimeError):
    """The backend failed as a whole and the run stopped; `summary` says what was written before."""

    def __init__(self, message: str, summary: IndexSummary) -> None:
        super().__init__(message)
        self.summary = summary


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
    backend: IndexBackend,
    items: Iterable[Item],
    summary: IndexSummary,
    chunk: int,
    source: str,
    errors: list[BaseException],
    hashes: dict[str, str],
    root: str | Path | None,
    image_root: str | Path | None,
) -> Iterator[Item]:
    """Drop items whose stored content hash equals the current one (no re-embedding); report items
    without an id (they cannot be upserted), images outside `image_root` and unreadable ones. The hash
    of each yielded item is left in `hashes` (computed once per item). Stops (error in `errors`) when
    the look-up fails."""
    for batch in _chunks(items, chunk):
        if errors:
            return
        ready: list[Item] = []
        for item in batch:
            if item.id is None:
                summary.failed.append(ItemError(source, item.line or 0, None, "missing id"))
                continue
            try:
                if image_root is not None and isinstance(item.image, str) and not item.image.startswith(_NOT_FILES):
                    confine(item.image, image_root)
                hashes[item.id] = item.content_hash(root)
            except ValueError as exc:  # ImageLoadError included: this item only
                summary.failed.append(ItemError(source, item.line or 0, item.id, str(exc)))
                continue
            ready.append(item)
        try:
            stored = backend.content_hashes([i.id for i in ready if i.id is not None])
        except Exception as exc:  # the backend as a whole: stop the run, keep what was written
            errors.append(exc)
            return
        for item in ready:
            if item.id in stored and stored[item.id] == hashes[item.id]:
                summary.unchanged += 1
                del hashes[item.id]
            else:
                yield item


def _record(item: Item, vector: Any, content_hash: str | None) -> IndexRecord:
    return IndexRecord(
        id=str(item.id),
        embedding=vector,
        text=item.text,
        image=item.image if isinstance(item.image, str) else None,
        meta=dict(item.meta),
        content_hash=content_hash,
    )


class _Committer:
    """Decides when the writer makes what it wrote durable (`backend.persist()`): every `every`
    documents or `seconds` seconds, whichever comes first (None: that trigger is off)."""

    def __init__(self, every: int | None, seconds: float | None) -> None:
        if every is not None and every <= 0:
            raise ValueError(f"commit_every must be a positive number of documents or None, got {every!r}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"commit_seconds must be positive or None, got {seconds!r}")
        self.every, self.seconds = every, seconds
        self.pending = 0
        self.last = time.monotonic()
        self.commits = 0

    def due(self, written: int) -> bool:
        self.pending += written
        if not self.pending:
            return False
        by_count = self.every is not None and self.pending >= self.every
        by_time = self.seconds is not None and time.monotonic() - self.last >= self.seconds
        return by_count or by_time

    def done(self) -> None:
        self.pending, self.last, self.commits = 0, time.monotonic(), self.commits + 1


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
    root: str | Path | None = None,
    image_root: str | Path | None = None,
    commit_every: int | None = DEFAULT_COMMIT_EVERY,
    commit_seconds: float | None = DEFAULT_COMMIT_SECONDS,
) -> IndexSummary:
    """Embed (document side) and upsert `items`; returns counts and every failure.

    `root`: folder image paths are hashed relative to (so a moved corpus is not re-embedded).
    `image_root`: refuse (per item) local images outside this folder. `commit_every` documents /
    `commit_seconds` seconds: make the writes durable (`backend.persist()`) that often during the run,
    so a killed run loses at most the last chunk; the end of the run always commits. A failed
    periodic save stops the run like any backend failure (`IndexingAborted`). A backend with a
    `run_deadline()` (Elasticsearch's `deadline` option) gets one deadline for the whole run."""
    run_deadline = getattr(backend, "run_deadline", None)  # a backend's time budget covers this whole run
    with run_deadline() if run_deadline is not None else nullcontext():
        return _index_items(
            items,
            backend,
            encoder,
            source=source,
            batch_size=batch_size,
            num_workers=num_workers,
            show_progress_bar=show_progress_bar,
            summary=summary,
            root=root,
            image_root=image_root,
            commit_every=commit_every,
            commit_seconds=commit_seconds,
        )


def _index_items(
    items: Iterable[Item],
    backend: IndexBackend,
    encoder: Any,
    *,
    source: str,
    batch_size: int,
    num_workers: int,
    show_progress_bar: bool,
    summary: IndexSummary | None,
    root: str | Path | None,
    image_root: str | Path | None,
    commit_every: int | None,
    commit_seconds: float | None,
) -> IndexSummary:
    from ret2_plugin.encoder import iter_embeddings

    summary = summary or IndexSummary()
    committer = _Committer(commit_every, commit_seconds)
    lines = {}
    hashes: dict[str, str] = {}

    def remember(stream: Iterable[Item]) -> Iterator[Item]:
        for item in stream:
            lines[item.id] = item.line
            yield item

    errors: list[BaseException] = []
    pending = remember(
        _new_or_changed(backend, items, summary, max(batch_size, 256), source, errors, hashes, root, image_root)
    )
    reports: list[WriteReport] = []

    def write(records: list[IndexRecord]) -> None:
        if errors:  # the run is stopping: batches still queued are not sent (a re-run embeds them)
            reports.append(WriteReport(unknown=[(r.id, f"not sent: the run stopped ({errors[0]})") for r in records]))
            return
        try:
            report = backend.add(records)
        except Exception as exc:  # the backend as a whole: the run stops, raised below with the summary
            errors.append(exc)
            landed = getattr(exc, "report", None)  # what the backend knows landed / failed before it failed
            reports.append(
                landed
                if landed is not None
                else WriteReport(
                    unknown=[(r.id, f"outcome unknown: the backend failed during this batch ({exc})") for r in records]
                )
            )
            return
        reports.append(report)
        if committer.due(report.written):
            try:
                backend.persist()  # periodic commit: a crash from here on loses at most one chunk
            except Exception as exc:  # disk full, concurrent writer ...: the run stops
                errors.append(exc)
                return
            committer.done()

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
                hashes.pop(str(item.id), None)
            outbox.submit(
                [_record(item, vector, hashes.pop(str(item.id), None)) for item, vector in zip(batch_items, vectors)]
            )
            if progress is not None:
                progress.update(len(batch_items) + len(failures))
            if errors:
                break
    except BaseException:
        _finish(outbox, progress)
        _persist(backend, [RuntimeError("interrupted")])  # what was written stays written; never hides the error
        raise
    _finish(outbox, progress)
    _persist(backend, errors)
    summary.commits = committer.commits + (not errors)
    for report in reports:
        summary.indexed += report.written
        for item_id, reason in report.failed:
            summary.failed.append(ItemError(source, lines.get(item_id) or 0, item_id, reason))
        for item_id, reason in report.unknown:
            summary.unknown.append(ItemError(source, lines.get(item_id) or 0, item_id, reason))
    if errors:
        raise IndexingAborted(
            f"{errors[0]}; stopped after: {summary.describe()} (run again to resume: stored items are skipped)", summary
        ) from errors[0]
    return summary


def _finish(outbox: BoundedWorker[list[IndexRecord]], progress: Any) -> None:
    try:
        outbox.close()  # waits for the writes in flight
    finally:
        if progress is not None:
            progress.close()


def _persist(backend: IndexBackend, errors: list[BaseException]) -> None:
    """Make what was written durable. Its own failure is recorded only when nothing failed before:
    when the run is already failing (e.g. the node is gone), the first error is the one to report."""
    try:
        backend.persist()
    except Exception as exc:
        if not errors:
            errors.append(exc)
        else:  # reported second to the run's own error, but never lost
            log.warning("could not make the written items durable after %s: %s: %s", errors[0], type(exc).__name__, exc)


def index_corpus(corpus: str | Path, backend: IndexBackend, encoder: Any, **kwargs: Any) -> IndexSummary:
    """`index_items` over a JSONL corpus; bad lines are reported in the summary with the rest."""
    summary = IndexSummary()
    items = read_jsonl(corpus, summary.failed)
    kwargs.setdefault("root", Path(corpus).resolve().parent)  # image paths hashed relative to the corpus
    return index_items(items, backend, encoder, source=str(corpus), summary=summary, **kwargs)
