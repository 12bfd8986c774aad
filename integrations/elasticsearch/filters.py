"""Haystack filter syntax (`ret2_plugin.filters`) -> Elasticsearch query DSL.

Same semantics as `ret2_plugin.filters.matches` (the reference): `!=` and `not in` also match documents
without the field, comparisons with None match nothing, NOT negates the AND of its conditions.
Fields are metadata keys (`meta.source` or `source` -> ES field `meta.source`).
"""

from __future__ import annotations

from typing import Any

from ret2_plugin.filters import FilterError, meta_key, normalize_filters

MATCH_NONE: dict[str, Any] = {"bool": {"must_not": {"match_all": {}}}}
_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def to_es_query(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ES query for a Haystack filter (None for no filter). Raises FilterError on bad input."""
    canonical = normalize_filters(filters)
    return None if canonical is None else _node(canonical)


def _scalar(value: Any, op: str, field: str) -> Any:
    if isinstance(value, (dict, list, tuple, set)):
        raise FilterError(f"filter on {field!r}: operator {op!r} needs a scalar value, got {value!r}")
    return value


def _node(node: dict[str, Any]) -> dict[str, Any]:
    op = node["operator"]
    if op in ("AND", "OR", "NOT"):
        parts = [_node(c) for c in node["conditions"]]
        if op == "AND":
            return {"bool": {"filter": parts}}
        if op == "OR":
            return {"bool": {"should": parts, "minimum_should_match": 1}}
        return {"bool": {"must_not": [{"bool": {"filter": parts}}]}}
    field = f"meta.{meta_key(node['field'])}"
    value = node["value"]
    if op in ("==", "!="):
        if value is None:
            exists = {"exists": {"field": field}}
            return {"bool": {"must_not": [exists]}} if op == "==" else exists
        term = {"term": {field: _scalar(value, op, field)}}
        return term if op == "==" else {"bool": {"must_not": [term]}}
    if op in ("in", "not in"):
        values = [v for v in value if v is not None]
        terms: dict[str, Any] = {"terms": {field: [_scalar(v, op, field) for v in values]}}
        if len(values) < len(value):  # None in the list: "field missing" counts as a match
            terms = {"bool": {"should": [terms, {"bool": {"must_not": [{"exists": {"field": field}}]}}]}}
        return terms if op == "in" else {"bool": {"must_not": [terms]}}
    if value is None:
        return MATCH_NONE
    return {"range": {field: {_RANGE[op]: _scalar(value, op, field)}}}
