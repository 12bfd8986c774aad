"""Metadata summaries for `ReT2DocumentStore` (Haystack's optional store methods), computed from the
stored meta of the documents a filter selects, with `InMemoryDocumentStore`'s rules: None values are
ignored, 1, 1.0, "1" and True are distinct values, field names may carry the "meta." prefix."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def meta_key(field: str) -> str:
    return field.removeprefix("meta.")


def _identity(value: Any) -> tuple[str, str]:
    """A hashable key that keeps 1, 1.0, "1" and True apart (and takes lists / dicts by content)."""
    return type(value).__name__, json.dumps(value, sort_keys=True, default=str)


def count_unique(metas: list[dict[str, Any]], fields: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for field in fields:
        key = meta_key(field)
        out[key] = len({_identity(m[key]) for m in metas if m.get(key) is not None})
    return out


def fields_info(metas: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    types: dict[str, str] = {}
    for meta in metas:
        for key, value in meta.items():
            if value is None:
                continue
            if isinstance(value, bool):
                types[key] = "boolean"
            elif isinstance(value, int):
                types[key] = "int"
            elif isinstance(value, float):
                types[key] = "float"
            else:
                types[key] = "keyword"
    return {key: {"type": kind} for key, kind in types.items()}


def min_max(metas: Iterable[dict[str, Any]], field: str) -> dict[str, Any]:
    key = meta_key(field)
    values = [m[key] for m in metas if isinstance(m.get(key), (int, float, str))]
    try:
        return {"min": min(values), "max": max(values)} if values else {"min": None, "max": None}
    except TypeError:  # numbers and strings mixed: no order
        return {"min": None, "max": None}


def unique_values(
    metas: Iterable[dict[str, Any]], field: str, search_term: str | None, from_: int, size: int
) -> tuple[list[Any], int]:
    key = meta_key(field)
    found: dict[tuple[str, str], Any] = {}
    for meta in metas:
        if meta.get(key) is not None:
            found.setdefault(_identity(meta[key]), meta[key])
    if search_term:
        needle = search_term.lower()
        found = {k: v for k, v in found.items() if needle in str(v).lower()}
    ordered = sorted(found, key=lambda k: (str(found[k]), k[0]))
    return [found[k] for k in ordered[from_ : from_ + size]], len(ordered)
