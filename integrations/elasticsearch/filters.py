"""Haystack filter syntax (`ret2_plugin.filters`) -> Elasticsearch query DSL.

Same semantics as `ret2_plugin.filters.matches` (the reference): `!=` and `not in` also match documents
without the field, range comparisons with None match nothing, NOT negates the AND of its conditions.
ES indexes neither a missing key nor a JSON null, so it cannot tell them apart: `==` / `!=` / `in` /
`not in` with a None value (which the reference answers differently for the two) raise FilterError.
Fields are metadata keys (`meta.source` or `source` -> ES field `meta.source`; `source` with
`meta_prefix=""` for indexes written by Haystack's document store, which keeps meta at the top level).
"""

from __future__ import annotations

from typing import Any

from ret2_plugin.filters import FilterError, meta_key, normalize_filters

MATCH_NONE: dict[str, Any] = {"bool": {"must_not": {"match_all": {}}}}
_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def to_es_query(filters: dict[str, Any] | None, meta_prefix: str = "meta.") -> dict[str, Any] | None:
    """The ES query for a Haystack filter (None for no filter). Raises FilterError on bad input."""
    canonical = normalize_filters(filters)
    return None if canonical is None else _node(canonical, meta_prefix)


def _scalar(value: Any, op: str, field: str) -> Any:
    if isinstance(value, (dict, list, tuple, set)):
        raise FilterError(f"filter on {field!r}: operator {op!r} needs a scalar value, got {value!r}")
    return value


def _node(node: dict[str, Any], prefix: str) -> dict[str, Any]:
    op = node["operator"]
    if op in ("AND", "OR", "NOT"):
        parts = [_node(c, prefix) for c in node["conditions"]]
        if op == "AND":
            return {"bool": {"filter": parts}}
        if op == "OR":
            return {"bool": {"should": parts, "minimum_should_match": 1}}
        return {"bool": {"must_not": [{"bool": {"filter": parts}}]}}
    field = f"{prefix}{meta_key(node['field'])}"
    value = node["value"]
    if op in ("==", "!=", "in", "not in") and (value is None or (isinstance(value, list) and None in value)):
        raise FilterError(
            f"filter on {field!r}: operator {op!r} with None is not supported on Elasticsearch "
            "(it cannot tell a missing key from a null value); filter on a concrete value instead"
        )
    if op in ("==", "!="):
        term = {"term": {field: _scalar(value, op, field)}}
        return term if op == "==" else {"bool": {"must_not": [term]}}
    if op in ("in", "not in"):
        terms: dict[str, Any] = {"terms": {field: [_scalar(v, op, field) for v in value]}}
        return terms if op == "in" else {"bool": {"must_not": [terms]}}
    if value is None:
        return MATCH_NONE
    return {"range": {field: {_RANGE[op]: _scalar(value, op, field)}}}
