"""The SQL translation of filters must agree with `ret2_plugin.filters.matches` exactly, errors included."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ret2_plugin.filters import FilterError, matches, normalize_filters
from ret2_plugin.index import IndexRecord
from ret2_plugin.integrations.faiss import FaissBackend
from ret2_plugin.integrations.faiss.sqlfilter import Untranslatable, translate

pytestmark = pytest.mark.unit

VALUES = [
    None,
    True,
    False,
    0,
    1,
    2,
    -3,
    1.0,
    2.5,
    "",
    "a",
    "b",
    "1",
    "ä",
    "[1,2]",
    '{"x":1}',
    [1, 2],
    {"x": 1},
    "1969-07-21T20:17:40",
    "1969-07-21 20:17:40",
    "1972-12-11T19:54:58+00:00",
    "2001-01-01",
]
KEYS = ["k", "n", "s", "weird.key"]


def _random_meta(rng: random.Random) -> dict:
    meta = {}
    for key in KEYS:
        if rng.random() < 0.75:
            meta[key] = rng.choice(VALUES)
    if rng.random() < 0.5:
        meta["n"] = rng.choice([0, 1, 2, 2.5, -3, True])  # mostly numeric, so orderings translate
    if rng.random() < 0.5:
        meta["s"] = rng.choice(["", "a", "b", "ä"])
    return meta


def _random_filter(rng: random.Random, depth: int = 0) -> dict:
    if depth < 2 and rng.random() < 0.35:
        op = rng.choice(["AND", "OR", "NOT"])
        return {"operator": op, "conditions": [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    op = rng.choice(["==", "!=", ">", ">=", "<", "<=", "in", "not in"])
    field = "meta." + rng.choice(KEYS)
    if op in ("in", "not in"):
        value = rng.sample([v for v in VALUES if not isinstance(v, (list, dict))], rng.randint(0, 3))
    else:
        value = rng.choice(VALUES)
    return {"field": field, "operator": op, "value": value}


def _python(metas: list[dict], canonical: dict) -> list[int] | type:
    try:
        return [i for i, meta in enumerate(metas) if matches(canonical, meta)]
    except FilterError:
        return FilterError


def test_sql_translation_agrees_with_matches(tmp_path):
    rng = random.Random(7)
    metas = [_random_meta(rng) for _ in range(120)]
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=2)
    report = backend.add([IndexRecord(f"d{i}", np.ones(2, np.float32), meta=m) for i, m in enumerate(metas)])
    assert report.written == len(metas)
    translated = 0
    refused = 0
    for _ in range(500):
        try:
            canonical = normalize_filters(_random_filter(rng))
        except FilterError:  # refused up front (ordering with a non-date string): never a silent 0-hit query
            refused += 1
            continue
        expected = _python(metas, canonical)
        try:
            got: list[int] | type = sorted(int(k) for k in backend.store.matching_keys(canonical)[0])
        except FilterError:
            got = FilterError
        assert got == expected, canonical
        try:
            translate(canonical)
            translated += 1
        except Untranslatable:
            pass
    assert translated > 150  # the SQL path, not only the fallback, was exercised
    assert refused > 0


def test_hazardous_ordering_raises_like_matches(tmp_path):
    backend = FaissBackend.open(str(tmp_path / "ix"), dim=2)
    backend.add(
        [
            IndexRecord("a", np.ones(2, np.float32), meta={"v": 3}),
            IndexRecord("b", np.ones(2, np.float32), meta={"v": "x"}),
        ]
    )
    with pytest.raises(FilterError, match="(?i)compare"):
        backend.count({"field": "meta.v", "operator": ">", "value": 1})
    assert backend.count({"field": "meta.v", "operator": "==", "value": 3}) == 1
    assert backend.count({"v": True}) == 0 and backend.count({"field": "meta.v", "operator": "!=", "value": "x"}) == 1
