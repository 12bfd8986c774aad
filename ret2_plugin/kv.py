"""The one KEY=VALUE rule for every command-line flag that takes pairs (`--option`, `--filter`,
`ret2 train --set`): the value is read as JSON when it parses, else kept as the text.

So `year=2020` is a number, `year="2020"` a string, `lr=3e-5` a float, `eval_every=null` None,
`tags=["a","b"]` a list, `name=foo` the string "foo" and `name=` the empty string. (YAML was the other
candidate; PyYAML reads `3e-5` as a string and `yes` / `no` / `on` as booleans, which surprises
more than it helps.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def parse_value(text: str) -> Any:
    """JSON when it parses (numbers, true/false, null, quoted strings, lists, objects), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_pairs(values: Iterable[str] | None, flag: str, *, normalize_keys: bool = False) -> dict[str, Any]:
    """`["k=v", ...]` -> `{k: parse_value(v)}`; a later pair overrides an earlier one.

    `normalize_keys` turns `eval-every` into `eval_every` (config field names); metadata keys (filters)
    are kept as written. Raises ValueError naming the flag and the bad pair."""
    out: dict[str, Any] = {}
    for value in values or ():
        key, sep, raw = value.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{flag} expects key=value, got {value!r}")
        out[key.replace("-", "_") if normalize_keys else key] = parse_value(raw)
    return out
