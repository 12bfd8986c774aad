"""Haystack filter syntax (`ret2_plugin.filters`) -> Elasticsearch query DSL, with Haystack's semantics.

As in `ret2_plugin.filters.matches` (the reference): a missing key reads as None, so `== None` is "no
value" (`must_not exists`), `!=` and `not in` also match documents without the field, ordering with
None matches nothing, NOT negates the AND of its conditions. ES indexes neither a missing key nor a JSON
null, and Haystack treats both as None, so the two agree. Ordering with a string is an ISO-date
comparison; it runs as a range on the keyword field, which orders ISO strings of one format (what
`date_detection: false` keeps) chronologically. Fields: `meta.<key>` (or a bare `<key>`) -> the meta
field (`meta.<key>` in ret2's v1 layout, `<key>` at the top level in Haystack's layout, which ret2
writes since v2), `id` -> `_id`, `content` -> its exact keyword copy `content.keyword` (layout v2; texts
longer than `mapping.CONTENT_KEYWORD_MAX` characters are not in it); where an index has no such copy (v1,
indexes Haystack wrote) a filter on `content` raises FilterError rather than running on analysed text.
"""

from __future__ import annotations

from typing import Any

from ret2_plugin.filters import FilterError, normalize_filters

MATCH_NONE: dict[str, Any] = {"bool": {"must_not": {"match_all": {}}}}
_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def to_es_query(
    filters: dict[str, Any] | None, meta_prefix: str = "", text_field: str | None = "content.keyword"
) -> dict[str, Any] | None:
    """The ES query for a Haystack filter (None for no filter). Raises FilterError on bad input."""
    canonical = normalize_filters(filters)
    return None if canonical is None else _node(canonical, meta_prefix, text_field)


def es_field(field: str, meta_prefix: str, text_field: str | None) -> str:
    if field == "id":
        return "_id"
    if field == "content":
        if text_field is None:
            raise FilterError(
                "this Elasticsearch index has no exact (keyword) copy of `content`: filtering on content "
                "is not supported on it (indexes ret2 creates since layout v2 have one)"
            )
        return text_field
    if field.startswith("meta."):
        return f"{meta_prefix}{field[5:]}"
    if field in ("blob", "embedding", "score", "sparse_embedding"):
        raise FilterError(f"filtering on the document field {field!r} is not supported on Elasticsearch")
    return f"{meta_prefix}{field}"


def _scalar(value: Any, op: str, field: str) -> Any:
    if isinstance(value, (dict, list, tuple, set)):
        raise FilterError(f"filter on {field!r}: operator {op!r} needs a scalar value, got {value!r}")
    return value


def _equal(field: str, value: Any, op: str) -> dict[str, Any]:
    if value is None:
        return {"bool": {"must_not": [{"exists": {"field": field}}]}}
    return {"term": {field: _scalar(value, op, field)}}


def _node(node: dict[str, Any], prefix: str, text_field: str | None) -> dict[str, Any]:
    if "field" not in node:
        op = node["operator"]
        parts = [_node(c, prefix, text_field) for c in node["conditions"]]
        if op == "AND":
            return {"bool": {"filter": parts}}
        if op == "OR":
            return {"bool": {"should": parts, "minimum_should_match": 1}}
        return {"bool": {"must_not": [{"bool": {"filter": parts}}]}}
    op, value = node["operator"], node["value"]
    field = es_field(node["field"], prefix, text_field)
    if op in ("==", "!="):
        query = _equal(field, value, op)
        return query if op == "==" else {"bool": {"must_not": [query]}}
    if op in ("in", "not in"):
        concrete = [_scalar(v, op, field) for v in value if v is not None]
        options: list[dict[str, Any]] = [{"terms": {field: concrete}}] if concrete else []
        if None in value:
            options.append(_equal(field, None, op))
        query = {"bool": {"should": options, "minimum_should_match": 1}} if options else MATCH_NONE
        return query if op == "in" else {"bool": {"must_not": [query]}}
    if value is None:
        return MATCH_NONE
    return {"range": {field: {_RANGE[op]: _scalar(value, op, field)}}}
