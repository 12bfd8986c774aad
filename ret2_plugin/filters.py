"""Metadata filters: one syntax and one meaning for every index backend, Haystack's.

We use Haystack's filter syntax and semantics, so a filter written for a Haystack pipeline gives the
same answer on every ret2 backend as on Haystack's `InMemoryDocumentStore`:

    {"field": "meta.source", "operator": "==", "value": "stamps"}
    {"operator": "AND", "conditions": [{...}, {...}]}

Comparison operators: ==, !=, >, >=, <, <=, in, "not in". Logical: AND, OR, NOT (= not AND).
A missing key reads as None (so `== None` matches documents without the key, `!= 100` matches them
too); ordering against None matches nothing; ordering with a string compares ISO dates (a string that
is not a date is an error); `in` / `not in` need a list. Fields: `meta.<key>` (dots go deeper into
nested dicts), `id`, `content`; a bare name that is no document field is a meta key (Haystack's
legacy form). A plain mapping `{"source": "stamps"}` (what `--filter source=stamps` gives) is
shorthand for an AND of equalities on `meta.*`.

`normalize_filters` validates a filter up front (a malformed one raises `FilterError`, never runs as a
silent 0-hit query) and returns its canonical form; `matches` evaluates it on one document, by the
rules of `haystack.utils.filters.document_matches_filter` (the core does not import Haystack, an
optional extra; tests/test_filters.py checks the two agree, errors included, on random filters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime
from typing import Any

COMPARISON_OPERATORS = frozenset({"==", "!=", ">", ">=", "<", "<=", "in", "not in"})
ORDERING_OPERATORS = frozenset({">", ">=", "<", "<="})
LOGICAL_OPERATORS = frozenset({"AND", "OR", "NOT"})
DOCUMENT_FIELDS = ("id", "content", "blob", "meta", "score", "embedding", "sparse_embedding")


class FilterError(ValueError):
    """A filter that is malformed, or values a filter cannot compare. The Haystack components raise it
    as `haystack.errors.FilterError` (see `ret2_plugin.integrations.haystack.document_store`)."""


@dataclass
class FilterTarget:
    """What a filter sees of one stored document: Haystack `Document`'s fields (only some filled)."""

    id: str = ""
    content: str | None = None
    blob: Any = None
    meta: dict[str, Any] = dc_field(default_factory=dict)
    score: float | None = None
    embedding: Any = None
    sparse_embedding: Any = None


def meta_key(field: str) -> str | None:
    """The top-level meta key a field addresses (`meta.source` / legacy `source` -> `source`), or None
    for a document field (`id`, `content` ...) or a nested path (`meta.a.b`)."""
    if field.startswith("meta."):
        key = field[5:]
        return None if "." in key else key
    if "." in field or field in DOCUMENT_FIELDS:
        return None
    return field


def normalize_filters(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Validate a filter and return it in canonical Haystack form (None for no filter)."""
    if filters is None:
        return None
    if not isinstance(filters, dict):
        raise FilterError(f"filters must be a dict, got {type(filters).__name__}")
    if not filters:
        return None
    if not ({"field", "operator", "conditions", "value"} & filters.keys()):
        conditions = [{"field": f"meta.{key}", "operator": "==", "value": value} for key, value in filters.items()]
        return conditions[0] if len(conditions) == 1 else {"operator": "AND", "conditions": conditions}
    _validate(filters)
    return filters


def _validate(node: Any) -> None:
    if not isinstance(node, dict):
        raise FilterError(f"filter condition {node!r} is not a dict")
    if "field" not in node:  # a logical node, as Haystack reads it
        if "operator" not in node:
            raise FilterError(f"'operator' key missing in {node}")
        if "conditions" not in node:
            raise FilterError(f"'conditions' key missing in {node}")
        op, conditions = node["operator"], node["conditions"]
        if op not in LOGICAL_OPERATORS:
            raise FilterError(f"unknown logical operator {op!r}; use one of {sorted(LOGICAL_OPERATORS)}")
        if not isinstance(conditions, list) or not conditions:
            raise FilterError(f"logical operator {op!r} needs a non-empty 'conditions' list")
        for condition in conditions:
            _validate(condition)
        return
    field = node["field"]
    if not isinstance(field, str) or not field:
        raise FilterError(f"'field' must be a non-empty string in {node}")
    if "operator" not in node:
        raise FilterError(f"'operator' key missing in {node}")
    if "value" not in node:
        raise FilterError(f"'value' key missing in {node}")
    op, value = node["operator"], node["value"]
    if op not in COMPARISON_OPERATORS:
        raise FilterError(
            f"unknown filter operator {op!r}; use one of {sorted(COMPARISON_OPERATORS | LOGICAL_OPERATORS)}"
        )
    if op in ("in", "not in") and not isinstance(value, list):
        raise FilterError(
            f"filter on {field!r}: operator {op!r} needs a list value, got {type(value).__name__} {value!r}"
        )
    if op in ORDERING_OPERATORS:
        if isinstance(value, (list, dict)):
            raise FilterError(f"filter on {field!r}: operator {op!r} cannot take a {type(value).__name__} value")
        if isinstance(value, str) and _iso_date(value) is None:
            raise FilterError(
                f"filter on {field!r}: cannot compare strings using {op!r}; strings are only ordered if they are ISO dates"
            )


def matches(filters: dict[str, Any] | None, meta: dict[str, Any], *, id: str = "", content: str | None = None) -> bool:
    """Whether one document (its meta, id and text) satisfies a canonical filter. Raises FilterError where
    Haystack does (ordering a number against a date string ...) and where Python cannot compare."""
    if not filters:
        return True
    target = FilterTarget(id=id, content=content, meta=meta)
    try:
        return _own_matches(filters, target)
    except TypeError as exc:
        raise FilterError(f"cannot compare values under filter {filters}: {exc}") from exc


def matches_document(filters: dict[str, Any] | None, document: Any) -> bool:
    """`matches` on a Haystack `Document` (every field, blob included, as Haystack's own stores see it)."""
    if not filters:
        return True
    try:
        return _own_matches(filters, document)
    except TypeError as exc:
        raise FilterError(f"cannot compare values under filter {filters}: {exc}") from exc


# --- the evaluator: the rules of haystack.utils.filters ---------------------------------------------


def parse_date(value: Any) -> datetime | None:
    """`value` as a datetime if it is a datetime or a string Haystack reads as one, else None."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    try:
        import dateutil.parser
    except ImportError:  # pragma: no cover
        return None
    try:
        return dateutil.parser.parse(value)
    except (ValueError, OverflowError, TypeError):
        return None


def _iso_date(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def looks_like_iso_date(value: Any) -> bool:
    """True for a string shaped like an ISO-8601 date or date-time (`YYYY-MM-DD[T ...]`): the one rule
    every backend uses to decide that a filter value is compared as a date, not as text."""
    return (
        isinstance(value, str)
        and len(value) >= 10
        and value[:4].isdigit()
        and value[4] == "-"
        and value[5:7].isdigit()
        and value[7] == "-"
        and value[8:10].isdigit()
        and (len(value) == 10 or value[10] in "Tt ")
    )


def _same_awareness(a: datetime, b: datetime) -> tuple[datetime, datetime]:
    if (a.tzinfo is None) == (b.tzinfo is None):
        return a, b
    return (a.replace(tzinfo=b.tzinfo), b) if a.tzinfo is None else (a, b.replace(tzinfo=a.tzinfo))


def _equal(value: Any, wanted: Any) -> bool:
    if value == wanted:
        return True
    dates = []
    for candidate in (value, wanted):
        if isinstance(candidate, datetime):
            dates.append(candidate)
        elif looks_like_iso_date(candidate):
            try:
                dates.append(datetime.fromisoformat(candidate))
            except ValueError:
                return False
        else:
            return False
    a, b = _same_awareness(*dates)
    return a == b


def _ordered(op: str) -> Callable[[Any, Any], bool]:
    def compare(value: Any, wanted: Any) -> bool:
        if value is None or wanted is None:
            return False
        if isinstance(value, str) or isinstance(wanted, str):
            parsed = [parse_date(v) if not isinstance(v, datetime) else v for v in (value, wanted)]
            if any(p is None for p in parsed):
                raise FilterError(
                    "cannot compare strings using '>', '>=', '<', '<='; strings are only ordered if they are ISO dates"
                )
            value, wanted = parsed
        if isinstance(wanted, list):
            raise FilterError(f"filter value can't be a list using operator {op!r}")
        if isinstance(value, datetime) != isinstance(wanted, datetime):
            raise FilterError(f"can't compare a datetime with a non-datetime value using {op!r}")
        if isinstance(value, datetime):
            value, wanted = _same_awareness(value, wanted)
        return {">": value > wanted, ">=": value >= wanted, "<": value < wanted, "<=": value <= wanted}[op]

    return compare


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda v, w: not _equal(v, w),
    "in": lambda v, w: any(_equal(e, v) for e in w),
    "not in": lambda v, w: not any(_equal(e, v) for e in w),
    **{op: _ordered(op) for op in ORDERING_OPERATORS},
}


def _field_value(target: Any, field: str) -> Any:
    if "." in field:
        parts = field.split(".")
        value = getattr(target, parts[0], None)
        for part in parts[1:]:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value
    if field in DOCUMENT_FIELDS:
        return getattr(target, field, None)
    return target.meta.get(field)


def _own_matches(node: dict[str, Any], target: Any) -> bool:
    if "field" not in node:
        op, conditions = node["operator"], node["conditions"]
        results = (_own_matches(c, target) for c in conditions)
        if op == "AND":
            return all(results)
        if op == "OR":
            return any(results)
        return not all(results)
    return _COMPARE[node["operator"]](_field_value(target, node["field"]), node["value"])
