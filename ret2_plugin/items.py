"""Items (text, image or both) and the JSONL contract of `shared/docs/data-format.md`.

Reading never crashes on bad input and never drops it silently: every bad line becomes an
`ItemError` (file, line, id, reason) that the caller reports and counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Side = Literal["query", "document"]  # the one definition: which encoder of a ReT model, and its prompt
SIDES: tuple[Side, ...] = ("query", "document")


@dataclass(frozen=True)
class Item:
    """One retrievable thing or one query: text, an image reference, or both."""

    id: str | None = None
    text: str | None = None
    image: Any = None  # path / URL string, PIL image, numpy array or bytes
    meta: dict[str, Any] = field(default_factory=dict)
    instruction: str | None = None
    positives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()
    line: int | None = None

    def __post_init__(self) -> None:
        if not self.has_text and self.image is None:
            raise ValueError(f"item {self.id!r} has neither text nor image")

    @property
    def has_text(self) -> bool:
        return isinstance(self.text, str) and self.text.strip() != ""

    @property
    def has_image(self) -> bool:
        return self.image is not None

    def query_text(self) -> str:
        """Text as the query encoder sees it: ReT's `"{instruction} {text}"` prefix."""
        text = self.text or ""
        if self.instruction:
            return f"{self.instruction} {text}".strip()
        return text

    def content_hash(self) -> str:
        """Hash of what is stored: text, meta, image reference and bytes (if a local file)."""
        h = hashlib.sha256()
        h.update((self.text or "").encode())
        h.update(b"\0")
        h.update(json.dumps(self.meta, sort_keys=True, default=repr).encode())
        h.update(b"\0")
        if isinstance(self.image, str):
            h.update(self.image.encode())
            path = Path(self.image)
            if path.is_file():
                h.update(path.read_bytes())
        elif self.image is not None:
            h.update(repr(type(self.image)).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class ItemError:
    """A bad input line: where it is and why it was refused."""

    file: str
    line: int
    id: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where} (id={self.id!r}): {self.reason}" if self.id else f"{where}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "id": self.id, "reason": self.reason}


def _str_list(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{key}' must be a list of ids")
    return tuple(value)


def parse_item(obj: Any, *, base_dir: Path, line: int, require_id: bool = True) -> Item:
    """Validate one decoded JSON object and resolve its relative image path against `base_dir`."""
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    item_id = obj.get("id")
    if item_id is None and require_id:
        raise ValueError("missing 'id'")
    if item_id is not None and not isinstance(item_id, (str, int)):
        raise ValueError("'id' must be a string")
    item_id = None if item_id is None else str(item_id)
    text = obj.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError("'text' must be a string")
    image = obj.get("image")
    if image is not None:
        if not isinstance(image, str) or not image:
            raise ValueError("'image' must be a path or URL string")
        if not image.startswith(("http://", "https://")) and not Path(image).is_absolute():
            image = str(base_dir / image)
    meta = obj.get("meta")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise ValueError("'meta' must be an object")
    instruction = obj.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise ValueError("'instruction' must be a string")
    if not (isinstance(text, str) and text.strip()) and image is None:
        raise ValueError("item has neither text nor image")
    return Item(
        id=item_id,
        text=text,
        image=image,
        meta=meta,
        instruction=instruction,
        positives=_str_list(obj.get("positives"), "positives"),
        negatives=_str_list(obj.get("negatives"), "negatives"),
        line=line,
    )


def read_jsonl(path: str | Path, errors: list[ItemError], *, require_id: bool = True) -> Iterator[Item]:
    """Stream valid items from a JSONL file; bad lines are appended to `errors`, never raised.

    Duplicate ids are errors too (the first occurrence wins). Blank lines are skipped.
    """
    path = Path(path)
    base_dir = path.resolve().parent
    seen: set[str] = set()
    with path.open("rb") as handle:  # decoded line by line: one bad byte costs one line, not the rest
        for line_no, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.append(ItemError(str(path), line_no, None, f"not UTF-8: {exc.reason} at byte {exc.start}"))
                continue
            if not raw.strip():
                continue
            item_id = None
            try:
                obj = json.loads(raw)
                if isinstance(obj, dict) and isinstance(obj.get("id"), (str, int)):
                    item_id = str(obj["id"])
                item = parse_item(obj, base_dir=base_dir, line=line_no, require_id=require_id)
            except json.JSONDecodeError as exc:
                errors.append(ItemError(str(path), line_no, None, f"invalid JSON: {exc.msg}"))
                continue
            except ValueError as exc:
                errors.append(ItemError(str(path), line_no, item_id, str(exc)))
                continue
            if item.id is not None:
                if item.id in seen:
                    errors.append(ItemError(str(path), line_no, item.id, "duplicate id"))
                    continue
                seen.add(item.id)
            yield item
