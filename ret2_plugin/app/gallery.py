"""A static HTML result gallery: one section per query, thumbnails and scores (escaped, valid HTML)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

from ret2_plugin.atomic import atomic_write_text
from ret2_plugin.index import SearchHit

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;background:#fafafa;color:#222}
section{margin-bottom:2em}.hits{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:150px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
figure img{width:138px;height:138px;object-fit:contain;background:#eee}
figcaption{font-size:12px;overflow-wrap:anywhere}.score{color:#666}.query img{max-height:96px}
"""


def _img(src: str | None, out_dir: Path, alt: str) -> str:
    if not src:
        return '<div class="noimg">(no image)</div>'
    if not src.startswith(("http://", "https://", "data:image/")):
        src = os.path.relpath(Path(src).resolve(), out_dir.resolve())
    return f'<img src="{html.escape(src, quote=True)}" alt="{html.escape(alt, quote=True)}" loading="lazy">'


def render_gallery(
    queries: Sequence[tuple[str, str | None, Sequence[SearchHit]]], out_dir: Path, title: str = "ret2 results"
) -> str:
    """`queries`: (query text, query image path, ranked hits) triples."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for number, (text, image, hits) in enumerate(queries, 1):
        parts.append(f'<section><h2>Query {number}</h2><div class="query">')
        if text:
            parts.append(f"<p>{html.escape(text)}</p>")
        if image:
            parts.append(_img(image, out_dir, "query image"))
        parts.append('</div><div class="hits">')
        for rank, hit in enumerate(hits, 1):
            caption = html.escape(hit.text or hit.id)
            parts.append(
                f"<figure>{_img(hit.image, out_dir, hit.text or hit.id)}<figcaption>#{rank} {caption}"
                f'<br><span class="score">{html.escape(hit.id)} · {hit.score:.4f}</span></figcaption></figure>'
            )
        parts.append("</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_gallery(
    path: str | Path, queries: Sequence[tuple[str, str | None, Sequence[SearchHit]]], title: str = "ret2 results"
) -> Path:
    path = Path(path)
    atomic_write_text(path, render_gallery(queries, path.parent, title))
    return path
