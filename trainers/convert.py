"""Converters from the public benchmark layouts to our queries / corpus JSONL.

- M-BEIR queries: `qid`, `query_txt`, `query_img_path`, `pos_cand_list`, `neg_cand_list`, `task_id`;
  M-BEIR candidate pool: `did`, `txt`, `img_path`, `modality`.
- M2KR / ReT-M2KR queries: `question_id`, `question` (may be null), `img_path`, `instruction`,
  `pos_item_ids`; passages: `passage_id`, `passage_content`, optional `img_path`.

Relative image paths are rewritten against `image_root` (absolute in the output, so the files can
live anywhere). A record that cannot be converted is reported (file, line, id, reason) and skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ret2_plugin.atomic import atomic_path
from ret2_plugin.items import ItemError


def _first(obj: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = obj.get(key)
        if value not in (None, ""):
            return value
    return None


def _image(value: Any, image_root: str | None) -> str | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise ValueError(f"image path must be a string, got {type(value).__name__}")
    if value.startswith(("http://", "https://")) or Path(value).is_absolute() or image_root is None:
        return value
    return str((Path(image_root) / value).resolve())


def _ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [str(value)]
    return [str(v) for v in value]


def mbeir_query(obj: dict[str, Any], image_root: str | None) -> dict[str, Any]:
    out = {
        "id": str(obj["qid"]),
        "text": _first(obj, "query_txt"),
        "image": _image(obj.get("query_img_path"), image_root),
        "positives": _ids(obj.get("pos_cand_list")),
        "negatives": _ids(obj.get("neg_cand_list")),
        "meta": {k: obj[k] for k in ("task_id", "query_modality") if k in obj},
    }
    return out


def mbeir_candidate(obj: dict[str, Any], image_root: str | None) -> dict[str, Any]:
    return {
        "id": str(obj["did"]),
        "text": _first(obj, "txt"),
        "image": _image(obj.get("img_path"), image_root),
        "meta": {k: obj[k] for k in ("modality",) if k in obj},
    }


def m2kr_query(obj: dict[str, Any], image_root: str | None) -> dict[str, Any]:
    return {
        "id": str(_first(obj, "question_id", "qid", "id")),
        "text": _first(obj, "question", "query_text", "text"),
        "image": _image(_first(obj, "img_path", "image_path", "query_img_path"), image_root),
        "instruction": _first(obj, "instruction"),
        "positives": _ids(_first(obj, "pos_item_ids", "positives")),
    }


def m2kr_passage(obj: dict[str, Any], image_root: str | None) -> dict[str, Any]:
    return {
        "id": str(_first(obj, "passage_id", "id")),
        "text": _first(obj, "passage_content", "text"),
        "image": _image(_first(obj, "img_path", "image_path"), image_root),
    }


CONVERTERS = {
    "mbeir-queries": mbeir_query,
    "mbeir-corpus": mbeir_candidate,
    "m2kr-queries": m2kr_query,
    "m2kr-corpus": m2kr_passage,
}


def _records(path: Path, errors: list[ItemError]) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("r", encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                errors.append(ItemError(str(path), line_no, None, f"invalid JSON: {exc.msg}"))
                continue
            if not isinstance(obj, dict):
                errors.append(ItemError(str(path), line_no, None, "line is not a JSON object"))
                continue
            yield line_no, obj


def convert(
    fmt: str, input_path: str | Path, output_path: str | Path, *, image_root: str | None = None
) -> dict[str, Any]:
    """Convert one file; the output is written atomically. Returns `{"written", "errors"}`."""
    if fmt not in CONVERTERS:
        raise ValueError(f"unknown format {fmt!r}; known: {sorted(CONVERTERS)}")
    fn, src = CONVERTERS[fmt], Path(input_path)
    if image_root is None:
        image_root = str(src.resolve().parent)
    errors: list[ItemError] = []
    seen: set[str] = set()
    written = 0
    is_query = fmt.endswith("queries")
    with atomic_path(output_path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for line_no, obj in _records(src, errors):
            try:
                rec = fn(obj, image_root)
            except (KeyError, TypeError, ValueError) as exc:
                reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                errors.append(ItemError(str(src), line_no, None, reason))
                continue
            rid = rec["id"]
            problem = None
            if rid in ("None", ""):
                problem = "missing id"
            elif rid in seen:
                problem = "duplicate id"
            elif not rec.get("text") and not rec.get("image"):
                problem = "neither text nor image"
            elif is_query and not rec.get("positives"):
                problem = "no positives"
            if problem:
                errors.append(ItemError(str(src), line_no, None if rid == "None" else rid, problem))
                continue
            seen.add(rid)
            out.write(json.dumps({k: v for k, v in rec.items() if v not in (None, [], {})}, ensure_ascii=False) + "\n")
            written += 1
    return {
        "format": fmt,
        "input": str(src),
        "output": str(output_path),
        "written": written,
        "errors": [e.to_dict() for e in errors],
    }
