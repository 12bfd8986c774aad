"""Metadata filters: one syntax for every index backend.

We use Haystack's filter syntax, so a filter written for a Haystack pipeline works unchanged:

    {"field": "meta.source", "operator": "==", "value": "stamps"}
    {"operator": "AND", "conditions": [{...}, {...}]}

Comparison operators: ==, !=, >, >=, <, <=, in, "not in". Logical: AND, OR, NOT.
A plain mapping `{"source": "stamps"}` (what `--filter source=stamps` gives) is shorthand for an AND of
equalities on `meta.*`. `normalize_filters` turns either form into the canonical one and validates it;
`matches` evaluates a canonical filter against a meta dict (used by in-process backends).
"""

from __future__ import annotations

from typing import Any

COMPARISON_OPERATORS = frozenset({"==", "!=", ">", ">=", "<", "<=", "in", "not in"})
LOGICAL_OPERATORS = frozenset({"AND", "OR", "NOT"})


class FilterError(ValueError):
    """A filter that is malformed or uses an unsupported operator."""


def meta_key(field: str) -> str:
    """`meta.source` -> `source`; fields are always metadata keys."""
    return field[5:] if field.startswith("meta.") else field


def normalize_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate a filter and return it in canonical Haystack form (or None for no filter)."""
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict, got {type(filters).__name__}")
    if "operator" not in filters:
        conditions = [
            {"field": f"meta.{meta_key(key)}", "operator": "==", "value": value} for key, value in filters.items()
        ]
        return conditions[0] if len(conditions) == 1 else {"operator": "AND", "conditions": conditions}
    _validate(filters)
    return filters


def _validate(node: dict[str, Any]) -> None:
    op = node.get("operator")
    if op in LOGICAL_OPERATORS:
        conditions = node.get("conditions")
        if not isinstance(conditions, list) or not conditions:
            raise FilterError(f"logical operator {op!r} needs a non-empty 'conditions' list")
        for condition in conditions:
            if not isinstance(condition, dict):
                raise FilterError(f"condition {condition!r} is not a dict")
            _validate(condition)
    elif op in COMPARISON_OPERATORS:
        if "field" not in node or "value" not in node:
            raise FilterError(f"comparison {node!r} needs 'field' and 'value'")
        if op in ("in", "not in") and not isinstance(node["value"], list):
            raise FilterError(f"operator {op!r} needs a list value, got {node['value']!r}")
    else:
        raise FilterError(
            f"unknown filter operator {op!r}; use one of {sorted(COMPARISON_OPERATORS | LOGICAL_OPERATORS)}"
        )


def matches(filters: dict[str, Any] | None, meta: dict[str, Any]) -> bool:
    """Evaluate a canonical filter against one document's metadata."""
    if not filters:
        return True
    op = filters["operator"]
    if op == "AND":
        return all(matches(c, meta) for c in filters["conditions"])
    if op == "OR":
        return any(matches(c, meta) for c in filters["conditions"])
    if op == "NOT":
        return not all(matches(c, meta) for c in filters["conditions"])
    value = filters["value"]
    key = meta_key(filters["field"])
    present = key in meta
    actual = meta.get(key)
    if op == "==":
        return present and actual == value
    if op == "!=":
        return not present or actual != value
    if op == "in":
        return present and actual in value
    if op == "not in":
        return not present or actual not in value
    if not present or actual is None or value is None:
        return False
    try:
        if op == ">":
            return actual > value
        if op == ">=":
            return actual >= value
        if op == "<":
            return actual < value
        return actual <= value
    except TypeError as exc:
        raise FilterError(f"cannot compare {key}={actual!r} with {value!r}") from exc
