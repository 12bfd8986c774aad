"""Haystack filters -> SQL over the JSON meta column, with exactly `ret2_plugin.filters.matches` semantics.

Only what translates provably identically is translated: scalar values (None, bool, int, float, str)
on top-level meta keys. Haystack's rules are reproduced with `json_type` checks: a string never equals
a number, True == 1 as in Python, a missing key reads as None (so `== None` matches it). Where
Haystack compares ISO dates (an equality with a date-like string, any ordering with a string) the
filter is not translated. Where `matches` would raise (ordering a number against a string, list or
object), the store detects the rows that would trigger it and evaluates the filter in Python instead,
so errors are the same too. Anything else (list or dict values, `id` / `content`, nested paths)
raises `Untranslatable` and the caller falls back to evaluating `matches` row by row.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ret2_plugin.filters import looks_like_iso_date, meta_key

NUMERIC = ("integer", "real", "true", "false")
_SAFE_KEY = re.compile(r'^[^"\\\x00-\x1f]+$')
_ORDER = {">": ">", ">=": ">=", "<": "<", "<=": "<="}


class Untranslatable(Exception):
    """The filter uses something we do not translate; evaluate it in Python."""


class Sql:
    """A WHERE clause under construction: text, bound parameters, and (path, json types) pairs whose
    presence in any row would make `matches` raise (the caller then falls back to Python)."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.hazards: list[tuple[str, tuple[str, ...]]] = []


def _path(field: str) -> str:
    key = meta_key(field) if isinstance(field, str) else None
    if key is None or not _SAFE_KEY.match(key):
        raise Untranslatable(f"field {field!r}")
    return f'$."{key}"'


def _scalar_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "number"
    if isinstance(value, int):
        if abs(value) >= 2**53:
            raise Untranslatable("integer beyond float precision")
        return "number"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Untranslatable("non-finite float")
        return "number"
    if isinstance(value, str):
        if looks_like_iso_date(value):
            raise Untranslatable("ISO date string: Haystack compares it as a date")
        return "text"
    raise Untranslatable(f"value {value!r}")


def _equals(sql: Sql, path: str, value: Any) -> str:
    kind = _scalar_kind(value)
    if kind == "null":
        sql.params.append(path)
        return "COALESCE(json_type(meta, ?) = 'null', 1)"  # a missing key (SQL NULL) reads as None
    types = "('text')" if kind == "text" else str(NUMERIC)
    sql.params.extend([path, path, int(value) if isinstance(value, bool) else value])
    return f"COALESCE(json_type(meta, ?) IN {types} AND json_extract(meta, ?) = ?, 0)"


def _order(sql: Sql, path: str, op: str, value: Any) -> str:
    kind = _scalar_kind(value)
    if kind == "null":
        return "0"
    if kind == "text":
        raise Untranslatable("ordering with a string compares dates")
    else:
        types, hazards = str(NUMERIC), ("text", "array", "object")
    sql.hazards.append((path, hazards))
    sql.params.extend([path, path, int(value) if isinstance(value, bool) else value])
    return f"COALESCE(json_type(meta, ?) IN {types} AND json_extract(meta, ?) {_ORDER[op]} ?, 0)"


def _node(sql: Sql, node: dict[str, Any]) -> str:
    op = node["operator"]
    if op in ("AND", "OR"):
        return "(" + f" {op} ".join(_node(sql, c) for c in node["conditions"]) + ")"
    if op == "NOT":
        return "(NOT (" + " AND ".join(_node(sql, c) for c in node["conditions"]) + "))"
    path, value = _path(node["field"]), node["value"]
    if op == "==":
        return _equals(sql, path, value)
    if op == "!=":
        return f"(NOT {_equals(sql, path, value)})"
    if op in ("in", "not in"):
        inner = "(" + " OR ".join(_equals(sql, path, v) for v in value) + ")" if value else "0"
        return inner if op == "in" else f"(NOT {inner})"
    if op in _ORDER:
        return _order(sql, path, op, value)
    raise Untranslatable(f"operator {op!r}")


def translate(canonical: dict[str, Any]) -> tuple[str, list[Any], list[tuple[str, tuple[str, ...]]]]:
    """(WHERE clause, parameters, hazards) for a canonical filter; raises Untranslatable."""
    sql = Sql()
    where = _node(sql, canonical)
    return where, sql.params, sql.hazards
