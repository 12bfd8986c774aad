"""Bulk requests that survive faults: bisected rejections, bounded retries, a deadline, reconciled timeouts.

Outcomes are per document. A request-level rejection (HTTP 400 / 413 for the whole `_bulk`, e.g. one
over-long id the shared validation did not catch) is split in halves until the offending documents are
alone, so neighbours are never blamed for another document's error. A timeout or a dropped connection
leaves what was in flight UNKNOWN: those ids are looked up (`mget`, comparing the content hash that was
sent) before being resent, and are reported as unknown (never as failed) when the node cannot be asked.
Upserts by `_id` make every resend safe: never a duplicate. An overall deadline bounds the run (each
request's timeout is cut to the time left); when it passes, `DeadlineExceeded` carries the report so far.
The client never resends after a timeout (a stalled node costs one timeout, not four); it still fails
over to another node after a refused or dropped connection (safe: upserts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ret2_plugin.index import WriteReport

from .connection import ElasticsearchConnectionError

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # overloaded / shard moving: the same request may succeed later
SPLIT_STATUSES = frozenset({400, 413})  # the whole request refused because of what some documents hold


@dataclass(frozen=True)
class BulkSettings:
    chunk_size: int = 500
    max_chunk_bytes: int = 50 * 1024 * 1024
    max_retries: int = 3
    initial_backoff: float = 2.0
    max_backoff: float = 60.0


@dataclass(frozen=True)
class Doc:
    """One serialised document ready to send."""

    id: str
    body: str  # the `_source` as JSON
    content_hash: str | None = None


class ElasticsearchUnavailable(ElasticsearchConnectionError):
    """The cluster stopped answering during a write; `report` says what was written, failed and unknown."""

    def __init__(self, message: str, report: WriteReport | None = None) -> None:
        super().__init__(message)
        self.report = report or WriteReport()


class DeadlineExceeded(TimeoutError):
    """The run's deadline passed before the writes were confirmed; `report` says how far it got."""

    def __init__(self, message: str, report: WriteReport | None = None) -> None:
        super().__init__(message)
        self.report = report or WriteReport()


class Deadline:
    """An overall time budget (`seconds=None`: none) that every request of a run draws from."""

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
            raise ValueError(f"deadline must be a number of seconds > 0 or None, got {seconds!r}")
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + float(seconds)

    def remaining(self) -> float | None:
        return None if self._at is None else self._at - time.monotonic()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0.05

    def timeout(self, request_timeout: float | None) -> float | None:
        """`request_timeout` cut to the time left."""
        left = self.remaining()
        if left is None:
            return request_timeout
        return max(0.05, left if request_timeout is None else min(request_timeout, left))

    def describe(self) -> str:
        return f"the deadline of {self.seconds:g} s"


def bounded(client: Any, deadline: Deadline, request_timeout: float | None) -> Any:
    """The client for one request: timeout cut to the deadline, no resend after a timeout (we reconcile,
    knowing what is in doubt); failover to other nodes after connection errors is kept. Raises
    DeadlineExceeded when no time is left."""
    if deadline.expired():
        raise DeadlineExceeded(f"{deadline.describe()} passed")
    return client.options(request_timeout=deadline.timeout(request_timeout), retry_on_timeout=False)


def api_reason(error: Any) -> str:
    """`type: reason (cause)` from an ES error object (an item's `error`, or an ApiError's body)."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause.get('type', '')}: {cause['reason']})"
        root = error.get("root_cause")
        if not error.get("reason") and isinstance(root, list) and root and isinstance(root[0], dict):
            return api_reason(root[0])
        return reason
    return str(error)


class BulkSender:
    """Sends chunks of `Doc`s to one index and records every document's outcome in a WriteReport."""

    def __init__(
        self,
        client: Any,
        index: str,
        settings: BulkSettings,
        *,
        deadline: Deadline,
        where: str,
        request_timeout: float | None = 30.0,
        refresh: bool | str = False,
        on_outcome: Any = None,
    ) -> None:
        self.client = client
        self.index = index
        self.settings = settings
        self.deadline = deadline
        self.where = where
        self.request_timeout = request_timeout
        self.refresh = refresh
        self.on_outcome = on_outcome or (lambda n: None)  # progress: called with the number of settled docs

    def send(self, docs: Iterable[Doc], report: WriteReport) -> None:
        for chunk in self._chunks(docs):
            self._deliver(chunk, report)

    def _chunks(self, docs: Iterable[Doc]) -> Iterator[list[Doc]]:
        chunk: list[Doc] = []
        size = 0
        for doc in docs:
            n = len(doc.body) + len(doc.id) + 64  # action line + newlines
            if chunk and (len(chunk) >= self.settings.chunk_size or size + n > self.settings.max_chunk_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(doc)
            size += n
        if chunk:
            yield chunk

    def _operations(self, docs: list[Doc]) -> list[str]:
        ops: list[str] = []
        for doc in docs:
            ops.append(_action_line(self.index, doc.id))
            ops.append(doc.body)
        return ops

    def _deliver(self, docs: list[Doc], report: WriteReport) -> None:
        """Send `docs` until each is written, failed or (node unreachable / deadline) unknown."""
        from elasticsearch import ApiError, AuthenticationException, AuthorizationException, ConnectionTimeout
        from elasticsearch import ConnectionError as TransportConnectionError

        pending, attempt, last, unreachable = docs, 0, "", False
        in_doubt: set[str] = set()  # sent, no answer: maybe written
        while pending:
            if attempt > self.settings.max_retries:
                self._settle(pending, in_doubt, report, f"gave up after {attempt} attempts: {last}")
                if unreachable:
                    raise ElasticsearchUnavailable(f"Elasticsearch at {self.where} stopped answering: {last}", report)
                return
            if attempt:
                self._sleep(
                    min(self.settings.max_backoff, self.settings.initial_backoff * 2 ** (attempt - 1)),
                    pending,
                    in_doubt,
                    report,
                )
            attempt += 1
            try:
                client = bounded(self.client, self.deadline, self.request_timeout)
                response = client.bulk(
                    operations=self._operations(pending), refresh=self.refresh if self.refresh == "wait_for" else None
                )
            except DeadlineExceeded:
                self._expire(pending, in_doubt, report)
            except (AuthenticationException, AuthorizationException) as exc:
                raise PermissionError(
                    f"not allowed to write to Elasticsearch index {self.index!r} ({exc.message}); "
                    f"{report.written} records were written before the refusal"
                ) from exc
            except ApiError as exc:
                status, reason = exc.meta.status, api_reason(exc.body)
                if status in SPLIT_STATUSES:
                    log.debug("bulk of %d docs rejected (HTTP %s: %s); bisecting", len(pending), status, reason)
                    if len(pending) > 1:  # whose fault? halve until each offender is alone
                        middle = len(pending) // 2
                        self._deliver(pending[:middle], report)
                        self._deliver(pending[middle:], report)
                    else:
                        report.failed.append((pending[0].id, f"rejected by Elasticsearch (HTTP {status}): {reason}"))
                        self.on_outcome(1)
                    return
                if status not in RETRY_STATUSES:
                    report.failed += [(d.id, f"bulk request failed (HTTP {status}): {reason}") for d in pending]
                    self.on_outcome(len(pending))
                    return
                last, unreachable = f"HTTP {status}: {reason}", False
            except (ConnectionTimeout, TransportConnectionError) as exc:
                timed_out = isinstance(exc, ConnectionTimeout)
                last = f"{'no answer within the request timeout' if timed_out else 'connection failed'} ({exc.message})"
                unreachable = True  # refused, dropped or stalled: if it lasts, the run cannot go on
                in_doubt.update(d.id for d in pending)
                sent = len(pending)
                pending = self._reconcile(pending, in_doubt, report)
                log.debug(
                    "bulk of %d docs: %s; %d confirmed by mget, %d to resend",
                    sent,
                    last,
                    sent - len(pending),
                    len(pending),
                )
            else:
                retry = []
                for doc, item in zip(pending, response["items"]):
                    result = next(iter(item.values()))
                    status = int(result.get("status", 500))
                    if 200 <= status < 300:
                        report.written += 1
                        self.on_outcome(1)
                    elif status in RETRY_STATUSES:
                        log.debug("doc %r: HTTP %s, will retry", doc.id, status)
                        retry.append(doc)
                        last = f"HTTP {status}: {api_reason(result.get('error', result))}"
                    else:
                        report.failed.append((doc.id, api_reason(result.get("error", result))))
                        self.on_outcome(1)
                    in_doubt.discard(doc.id)
                pending, unreachable = retry, False

    def _reconcile(self, pending: list[Doc], in_doubt: set[str], report: WriteReport) -> list[Doc]:
        """Ask (mget, real time) which in-doubt docs are stored with the content hash we sent: those are
        written; the rest are returned to resend. If the node cannot answer, all stay in doubt."""
        from elasticsearch import TransportError

        try:
            client = bounded(self.client, self.deadline, self.request_timeout)
            found = client.mget(
                index=self.index, ids=[d.id for d in pending], source_includes=["content_hash"], realtime=True
            )
        except (TransportError, DeadlineExceeded):
            return pending
        except Exception:  # noqa: BLE001 - an API error on the lookup: resending is safe (upsert)
            return pending
        resend = []
        for doc, got in zip(pending, found["docs"]):
            stored = got.get("_source", {}).get("content_hash") if got.get("found") else None
            if doc.content_hash is not None and stored == doc.content_hash:
                report.written += 1
                self.on_outcome(1)
                in_doubt.discard(doc.id)
            else:
                resend.append(doc)  # absent (never arrived), or no hash to compare: send again
        return resend

    def _settle(self, pending: list[Doc], in_doubt: set[str], report: WriteReport, why: str) -> None:
        for doc in pending:
            if doc.id in in_doubt:
                report.unknown.append((doc.id, f"outcome unknown, {why}"))
            else:
                report.failed.append((doc.id, why))
        self.on_outcome(len(pending))

    def _expire(self, pending: list[Doc], in_doubt: set[str], report: WriteReport) -> None:
        why = f"{self.deadline.describe()} passed before Elasticsearch at {self.where} confirmed the write"
        for doc in pending:  # not sent, or sent without an answer: neither is a known failure
            report.unknown.append((doc.id, why if doc.id in in_doubt else f"not sent: {why}"))
        raise DeadlineExceeded(
            f"{self.deadline.describe()} passed while writing to Elasticsearch index {self.index!r} at {self.where}",
            report,
        )

    def _sleep(self, seconds: float, pending: list[Doc], in_doubt: set[str], report: WriteReport) -> None:
        left = self.deadline.remaining()
        if left is not None and left <= seconds:
            time.sleep(max(0.0, left))
            self._expire(pending, in_doubt, report)
        time.sleep(seconds)


def _action_line(index: str, doc_id: str) -> str:
    import json

    return json.dumps({"index": {"_index": index, "_id": doc_id}}, ensure_ascii=False)
