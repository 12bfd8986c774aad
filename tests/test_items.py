"""The JSONL contract: valid items stream, every bad line is reported with file, line, id, reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ret2_plugin.items import Item, ItemError, read_jsonl

pytestmark = pytest.mark.unit


def test_bad_lines_are_reported_and_the_rest_streams(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "\n".join(
            [
                '{"id": "d1", "text": "heron", "image": "img/heron.png", "meta": {"source": "stamps"}}',
                "{not json",
                '{"id": "d2"}',
                '{"id": "d1", "text": "again"}',
                '{"text": "no id"}',
                '{"id": "d3", "image": 5}',
                "",
                '{"id": "d4", "text": "fine", "positives": ["d1"], "instruction": "Find it."}',
            ]
        )
    )
    errors: list[ItemError] = []
    items = list(read_jsonl(corpus, errors))
    assert [i.id for i in items] == ["d1", "d4"]
    assert items[0].image == str(tmp_path / "img" / "heron.png")
    assert items[1].positives == ("d1",) and items[1].query_text() == "Find it. fine"
    reasons = {(e.line, e.id): e.reason for e in errors}
    assert reasons[(2, None)].startswith("invalid JSON")
    assert reasons[(3, "d2")] == "item has neither text nor image"
    assert reasons[(4, "d1")] == "duplicate id"
    assert reasons[(5, None)] == "missing 'id'"
    assert "image" in reasons[(6, "d3")]
    assert all(e.file == str(corpus) for e in errors) and "corpus.jsonl:2" in str(errors[0])


def test_item_needs_text_or_image() -> None:
    with pytest.raises(ValueError, match="neither text nor image"):
        Item(id="x", text="")
    assert Item(text="t").content_hash() != Item(text="u").content_hash()


def test_a_bad_byte_costs_one_line_not_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    lines = [f'{{"id": "d{i}", "text": "item {i}"}}'.encode() for i in range(50)]
    lines[3] = b'{"id": "d3", "text": "caf\xe9"}'  # latin-1, not UTF-8
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    errors: list[ItemError] = []
    items = list(read_jsonl(corpus, errors))
    assert len(items) == 49 and [(e.line, e.reason[:9]) for e in errors] == [(4, "not UTF-8")]


def test_content_hash_covers_meta_and_whitespace_is_not_text() -> None:
    assert Item(id="a", text="t", meta={"k": 1}).content_hash() != Item(id="a", text="t", meta={"k": 2}).content_hash()
    assert not Item(text=" ", image="x.png").has_text
    with pytest.raises(ValueError):
        Item(text="   ")
