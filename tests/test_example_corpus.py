"""The bundled example corpus (`examples/data/`) obeys the JSONL contract and its split is leak-free."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ret2_plugin.items import Item, ItemError, read_jsonl

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
SPLITS = ("queries_train.jsonl", "queries_heldout.jsonl")
MAX_BYTES = 10 * 1024 * 1024


def _read(name: str) -> list[Item]:
    errors: list[ItemError] = []
    items = list(read_jsonl(DATA / name, errors))
    assert not errors, f"{name}: " + "; ".join(str(e) for e in errors[:5])
    return items


def _non_blank_lines(name: str) -> int:
    return sum(1 for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip())


def _kind(item: Item) -> str:
    if item.has_text and item.has_image:
        return "text+image"
    return "text" if item.has_text else "image"


@pytest.fixture(scope="module")
def corpus() -> list[Item]:
    return _read("corpus.jsonl")


@pytest.fixture(scope="module")
def queries() -> dict[str, list[Item]]:
    return {name: _read(name) for name in SPLITS}


def test_every_line_parses_without_errors(corpus: list[Item], queries: dict[str, list[Item]]) -> None:
    # read_jsonl drops bad lines into `errors`; also check that no line went missing silently.
    assert len(corpus) == _non_blank_lines("corpus.jsonl")
    for name, items in queries.items():
        assert len(items) == _non_blank_lines(name), name
    assert 300 <= len(corpus) <= 2000


def test_ids_unique_across_corpus_and_queries(corpus: list[Item], queries: dict[str, list[Item]]) -> None:
    doc_ids = [d.id for d in corpus]
    assert len(doc_ids) == len(set(doc_ids))
    query_ids = [q.id for items in queries.values() for q in items]
    assert len(query_ids) == len(set(query_ids))


def test_every_image_exists_and_opens(corpus: list[Item], queries: dict[str, list[Item]]) -> None:
    paths = {d.image for d in corpus if d.has_image}
    paths |= {q.image for items in queries.values() for q in items if q.has_image}
    assert paths
    for path in sorted(paths):
        assert Path(path).is_file(), f"missing image {path}"
        assert Path(path).resolve().is_relative_to(DATA.resolve()), f"image outside examples/data: {path}"
        with Image.open(path) as image:
            image.verify()


def test_every_modality_appears_in_corpus(corpus: list[Item]) -> None:
    kinds = {_kind(d) for d in corpus}
    assert kinds == {"text", "image", "text+image"}
    sources = {d.meta.get("source") for d in corpus}
    assert sources == {"emoji", "photo"}
    for doc in corpus:
        assert {"category", "subcategory", "source"} <= set(doc.meta), doc.id


def test_positives_exist_and_no_query_repeats_a_caption(corpus: list[Item], queries: dict[str, list[Item]]) -> None:
    doc_ids = {d.id for d in corpus}
    captions = {d.text for d in corpus if d.has_text}
    for name, items in queries.items():
        for query in items:
            assert query.positives, f"{name}: {query.id} has no positives"
            assert set(query.positives) <= doc_ids, f"{name}: {query.id} -> {query.positives}"
            if _kind(query) == "text":
                assert query.text not in captions, f"{name}: {query.id} is a document caption"


def test_split_is_by_document(corpus: list[Item], queries: dict[str, list[Item]]) -> None:
    train = {p for q in queries["queries_train.jsonl"] for p in q.positives}
    heldout = {p for q in queries["queries_heldout.jsonl"] for p in q.positives}
    assert not train & heldout, f"documents in both splits: {sorted(train & heldout)[:5]}"
    share = len(heldout) / (len(train) + len(heldout))
    assert 0.1 <= share <= 0.3, share


def test_all_query_kinds_in_both_splits(queries: dict[str, list[Item]]) -> None:
    for name, items in queries.items():
        kinds = {_kind(q) for q in items}
        assert kinds == {"text", "image", "text+image"}, name
        assert all(q.instruction for q in items if _kind(q) == "text+image"), name


def test_total_size_under_limit() -> None:
    files = [p for p in DATA.rglob("*") if p.is_file()]
    apparent = sum(p.stat().st_size for p in files)
    on_disk = sum(p.stat().st_blocks * 512 for p in files)  # what `du` reports
    assert max(apparent, on_disk) < MAX_BYTES, (apparent, on_disk)
