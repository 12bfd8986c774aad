"""`index_items` when the backend fails as a whole: every item it embedded is in the summary (written,
failed or outcome unknown), and a failed save on the way out is logged, never swallowed.

The backend is the real in-memory backend with a fault injected in `add` / `persist` (the failure a
network or disk backend raises), the encoder the real tiny ReT-2 model."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ret2_plugin.indexing import IndexingAborted, index_items
from ret2_plugin.integrations.memory import InMemoryBackend
from ret2_plugin.items import Item

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Any:
    from ret2_plugin import load_encoder

    return load_encoder(tiny_model_dir, device="cpu")


def _items(n: int) -> list[Item]:
    return [Item(id=f"d{i}", text=f"document number {i}") for i in range(n)]


class _FailsOnSecondAdd(InMemoryBackend):
    """The second `add` stalls, then the backend is gone (raised with no report of what landed)."""

    calls = 0

    def add(self, records):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        if type(self).calls == 2:
            time.sleep(1.5)  # meanwhile the embedder queues further batches
            raise ConnectionError("node gone")
        return super().add(records)


def test_batches_dropped_after_a_backend_failure_are_in_the_summary(encoder, tmp_path: Path) -> None:
    backend = _FailsOnSecondAdd.open(f"drop-{tmp_path}", dim=encoder.get_embedding_dimension())
    _FailsOnSecondAdd.calls = 0
    with pytest.raises(IndexingAborted, match="node gone") as caught:
        index_items(_items(40), backend, encoder, batch_size=2, num_workers=0)
    summary = caught.value.summary
    stored = set(backend.ids())
    unknown = {e.id for e in summary.unknown}
    assert summary.indexed == len(stored) == 2 and not summary.failed
    assert not stored & unknown
    not_sent = [e for e in summary.unknown if e.reason.startswith("not sent")]
    assert len(not_sent) >= 2 and all("node gone" in e.reason for e in not_sent)  # queued behind the failure
    in_flight = [e for e in summary.unknown if e.reason.startswith("outcome unknown")]
    assert {e.id for e in in_flight} == {"d2", "d3"}
    # every embedded item is accounted for: a prefix of the input, none missing in between
    accounted = stored | unknown
    assert accounted == {f"d{i}" for i in range(len(accounted))}
    assert "outcome unknown" in summary.describe()


class _PersistFails(InMemoryBackend):
    def persist(self) -> None:
        raise OSError("disk full")


def test_persist_failure_on_interrupt_is_logged(encoder, tmp_path: Path, caplog) -> None:
    backend = _PersistFails.open(f"persist-{tmp_path}", dim=encoder.get_embedding_dimension())

    def interrupted() -> Iterator[Item]:
        yield from _items(4)
        raise KeyboardInterrupt

    with caplog.at_level(logging.WARNING, logger="ret2_plugin.indexing"), pytest.raises(KeyboardInterrupt):
        index_items(interrupted(), backend, encoder, batch_size=2, num_workers=0)
    assert any("disk full" in r.getMessage() and "interrupted" in r.getMessage() for r in caplog.records)
