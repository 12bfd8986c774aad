"""`ret2 demo`: the whole product on the bundled example corpus, offline, in a few CPU minutes.

Builds (once, then cached) the starter model, indexes the corpus into FAISS, runs a text, an image
and a text+image query, writes an HTML gallery and reports Recall@k on the held-out queries.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ret2_plugin.app.starter import EXAMPLES
from ret2_plugin.items import Item, ItemError, read_jsonl

QUICK_DOCS = 150


def _say(verbose: bool, text: str = "") -> None:
    if verbose:
        print(text, flush=True)


def _subset(corpus: list[Item], queries: list[Item], quick: bool) -> tuple[list[Item], list[Item]]:
    if not quick:
        return corpus, queries
    keep = corpus[:QUICK_DOCS]
    ids = {d.id for d in keep}
    return keep, [q for q in queries if set(q.positives) & ids]


def _example_queries(heldout: list[Item]) -> list[Item]:
    """One held-out query of each kind (text, image, text+image)."""
    picked: dict[str, Item] = {}
    for query in heldout:
        kind = "text+image" if query.has_text and query.has_image else ("image" if query.has_image else "text")
        picked.setdefault(kind, query)
    return [picked[k] for k in ("text", "image", "text+image") if k in picked]


def run_demo(
    model: str | None = None,
    out_dir: str | Path = "ret2-demo",
    *,
    quick: bool = False,
    rebuild: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    from ret2_plugin.app.gallery import write_gallery
    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.encoder import load_encoder
    from ret2_plugin.indexing import index_items
    from ret2_plugin.search import create_index, embed_queries
    from ret2_plugin.trainers.evaluation import retrieval_metrics

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    errors: list[ItemError] = []
    corpus_file = EXAMPLES / "corpus.jsonl"
    if not corpus_file.is_file():
        raise FileNotFoundError(
            f"example corpus not found at {corpus_file} (it ships in the ret2-plugin wheel: reinstall the package)"
        )
    corpus, heldout = _subset(
        list(read_jsonl(corpus_file, errors)), list(read_jsonl(EXAMPLES / "queries_heldout.jsonl", errors)), quick
    )
    started = time.perf_counter()
    _say(verbose, f"[1/5] model: {model or 'starter (offline; built and cached on first run)'}")
    if model is None and quick:
        model = "starter-quick"  # a reduced build, never cached as the full starter
    model_path = resolve_model(model, rebuild=rebuild)
    encoder = load_encoder(model_path)
    model_seconds = time.perf_counter() - started

    index_dir = out / ("index-quick" if quick else "index")
    _say(verbose, f"[2/5] indexing {len(corpus)} documents into FAISS at {index_dir}")
    index = create_index("faiss", str(index_dir), encoder, model=model_path)
    try:
        summary = index_items(corpus, index, encoder, source=str(corpus_file), show_progress_bar=verbose)
        _say(verbose, f"      indexed {summary.indexed}, unchanged {summary.unchanged}, failed {len(summary.failed)}")

        by_id = {d.id: d for d in corpus if d.id}
        _say(verbose, "[3/5] example queries")
        shown = []
        examples = _example_queries(heldout)
        for query, vector in zip(examples, embed_queries(encoder, examples)):
            hits = index.search(vector, top_k=5)
            label = " + ".join(
                filter(
                    None,
                    [
                        f"text {query.text!r}" if query.text else None,
                        f"image {Path(query.image).name}" if query.image else None,
                    ],
                )
            )
            _say(
                verbose,
                f"  query: {label}  (expected: {', '.join(by_id[p].text or p for p in query.positives if p in by_id)})",
            )
            for rank, hit in enumerate(hits, 1):
                mark = "*" if hit.id in query.positives else " "
                _say(verbose, f"   {mark}{rank}. {hit.score:.3f}  {hit.text or hit.id}")
            shown.append((query.query_text(), query.image, hits))

        gallery = write_gallery(out / "gallery.html", shown, title="ret2 demo: example queries")
        _say(verbose, f"[4/5] gallery: {gallery}")

        _say(verbose, f"[5/5] Recall@k on {len(heldout)} held-out queries")
        vectors = embed_queries(encoder, heldout)
        rankings = [[h.id for h in index.search(vector, top_k=10)] for vector in vectors]
        relevants = [set(query.positives) for query in heldout]
        metrics = retrieval_metrics(rankings, relevants)
        by_kind: dict[str, dict[str, float]] = {}
        for kind in sorted({str(q.meta.get("kind", "all")) for q in heldout}):
            rows = [i for i, q in enumerate(heldout) if str(q.meta.get("kind", "all")) == kind]
            by_kind[kind] = retrieval_metrics([rankings[i] for i in rows], [relevants[i] for i in rows])
    finally:
        index.close()
    _say(verbose, "      " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    for kind, values in by_kind.items():
        _say(
            verbose,
            f"      {kind:>10}: " + ", ".join(f"{k} {values[k]:.3f}" for k in ("recall@1", "recall@5", "recall@10")),
        )
    report = {
        "model": model_path,
        "documents": len(corpus),
        "heldout_queries": len(heldout),
        "index": str(index_dir),
        "indexing": summary.to_dict(),
        "metrics": metrics,
        "metrics_by_query_kind": by_kind,
        "gallery": str(gallery),
        "input_errors": [e.to_dict() for e in errors],
        "model_seconds": round(model_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    _say(verbose, f"done in {report['total_seconds']} s")
    return report
