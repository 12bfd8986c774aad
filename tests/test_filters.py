"""The one filter engine (`ret2_plugin.filters`) answers as Haystack's `document_matches_filter`, and
refuses malformed filters up front instead of running them as 0-hit queries."""

from __future__ import annotations

import random

import pytest

from ret2_plugin.filters import FilterError, FilterTarget, matches, matches_document, normalize_filters
from tests.faiss.test_faiss_filters_sql import _random_filter, _random_meta

pytestmark = pytest.mark.unit


def test_matches_agrees_with_haystack_document_matches_filter():
    from haystack import Document
    from haystack.errors import FilterError as HaystackFilterError
    from haystack.utils.filters import document_matches_filter

    rng = random.Random(11)
    metas = [_random_meta(rng) for _ in range(60)]
    compared = errors = 0
    for _ in range(400):
        try:
            canonical = normalize_filters(_random_filter(rng))
        except FilterError:
            continue
        for i, meta in enumerate(metas):
            try:
                theirs: object = document_matches_filter(canonical, Document(id=str(i), content="c", meta=meta))
            except (HaystackFilterError, TypeError):
                theirs = "error"
            try:
                ours: object = matches(canonical, meta, id=str(i), content="c")
            except FilterError:
                ours = "error"
            assert ours == theirs, (canonical, meta)
            compared += 1
            errors += ours == "error"
    assert compared > 10000 and errors > 0


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("id", "b", ["b"]),
        ("content", "text a", ["a"]),
        ("meta.nested.x", 1, ["a"]),
        ("meta.date", "1969-07-21 20:17:40", ["a"]),  # the same instant, spelled differently
        ("meta.missing", None, ["a", "b"]),  # a missing key reads as None
        ("nowhere.x", None, ["a", "b"]),  # a dotted field whose root is no Document field: missing too
    ],
)
def test_fields_and_dates_as_haystack(field, value, expected):
    from haystack import Document
    from haystack.utils.filters import document_matches_filter

    docs = [
        Document(id="a", content="text a", meta={"nested": {"x": 1}, "date": "1969-07-21T20:17:40"}),
        Document(id="b", content="text b", meta={"nested": {"x": 2}, "date": "1972-12-11T19:54:58"}),
    ]
    condition = {"field": field, "operator": "==", "value": value}
    assert [d.id for d in docs if document_matches_filter(condition, d)] == expected
    assert [d.id for d in docs if matches(condition, d.meta, id=d.id, content=d.content)] == expected
    assert [d.id for d in docs if matches_document(condition, d)] == expected
    later = {"field": "meta.date", "operator": ">", "value": "1970-01-01T00:00:00"}
    assert [d.id for d in docs if matches_document(later, d)] == ["b"]


@pytest.mark.parametrize(
    "bad",
    [
        {"conditions": [{"field": "meta.name", "operator": "==", "value": "x"}]},  # no operator: not a meta equality
        {"operator": "AND"},
        {"operator": "AND", "conditions": [{"operator": "==", "value": "x"}]},
        {"operator": "AND", "conditions": [{"field": "meta.a", "value": "x"}]},
        {"operator": "AND", "conditions": [{"field": "meta.a", "operator": "=="}]},
        {"operator": "XOR", "conditions": [{"field": "meta.a", "operator": "==", "value": 1}]},
        {"field": "meta.a", "operator": "~", "value": 1},
        {"field": "meta.a", "operator": "in", "value": (1, 2)},
        {"field": "meta.a", "operator": "not in", "value": 3},
        {"field": "meta.a", "operator": ">", "value": [1]},
        {"field": "meta.a", "operator": "<", "value": "1"},  # strings order only as ISO dates
        "source=x",
    ],
)
def test_malformed_filters_raise_up_front(bad):
    with pytest.raises(FilterError):
        normalize_filters(bad)


def test_shorthand_mapping_is_meta_equality():
    assert normalize_filters({"source": "stamps"}) == {"field": "meta.source", "operator": "==", "value": "stamps"}
    assert normalize_filters({}) is None and normalize_filters(None) is None
    assert FilterTarget().meta == {}
