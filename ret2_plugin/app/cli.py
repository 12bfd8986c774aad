"""The `ret2` command: a thin layer over the library. `ret2 COMMAND --help` for each command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ret2_plugin import __version__


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(values: Sequence[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in values or ():
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"ret2: {flag} expects KEY=VALUE, got {value!r}")
        out[key] = _parse_value(raw)  # JSON values: year=2020 is a number, tag="2020" a string
    return out


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    options = _pairs(args.option, "--option")
    if getattr(args, "es_url", None):
        options["hosts"] = args.es_url
    return options


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="index location: a directory (faiss) or an index name (elasticsearch)")
    parser.add_argument("--backend", default="faiss", help="index backend by registered name (default: faiss; see `ret2 plugins`)")
    parser.add_argument("--es-url", help="Elasticsearch URL (default: $ELASTICSEARCH_URL); credentials from ELASTICSEARCH_* env vars")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="backend option, e.g. index_type=HNSW32 (repeatable)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")


def cmd_index(args: argparse.Namespace) -> int:
    from ret2_plugin.encoder import load_encoder
    from ret2_plugin.indexing import index_corpus
    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.search import create_index

    model = resolve_model(args.model)
    encoder = load_encoder(model, device=args.device)
    index = create_index(args.backend, args.index, encoder, model=model, **_backend_options(args))
    try:
        summary = index_corpus(
            args.corpus, index, encoder, batch_size=args.batch_size, num_workers=args.workers,
            show_progress_bar=not args.json and not args.no_progress,
        )
        total = index.count()
    finally:
        index.close()
    result = {**summary.to_dict(), "index": args.index, "backend": args.backend, "model": model, "count": total}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"indexed {summary.indexed}, unchanged {summary.unchanged}, failed {len(summary.failed)}; {total} in {args.index}")
        for failure in summary.failed:
            print(f"  FAILED {failure}", file=sys.stderr)
    nothing_valid = summary.failed and not (summary.indexed or summary.unchanged)
    return 1 if (args.strict and summary.failed) or nothing_valid else 0


def cmd_search(args: argparse.Namespace) -> int:
    from ret2_plugin.encoder import load_encoder
    from ret2_plugin.app.gallery import write_gallery
    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.search import open_index, search

    index = open_index(args.backend, args.index, **_backend_options(args))
    try:
        model = resolve_model(args.model) if args.model else index.info.get("model")
        if not model:
            raise SystemExit(f"ret2: index {args.index!r} does not record its model; pass --model")
        encoder = load_encoder(model, device=args.device)
        filters = _pairs(args.filter, "--filter") or None
        hits = search(encoder, index, text=args.text, image=args.image, instruction=args.instruction, top_k=args.k, filters=filters)
    finally:
        index.close()
    if args.html:
        write_gallery(args.html, [(args.text or "", args.image, hits)])
    if args.json:
        print(json.dumps({"results": [h.to_dict() for h in hits]}, indent=2))
    else:
        for rank, hit in enumerate(hits, 1):
            print(f"{rank:>3}. {hit.score:8.4f}  {hit.id}  {hit.text or ''}  {hit.image or ''}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from ret2_plugin.plugins import registered

    found = registered()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for kind, entries in found.items():
            print(f"{kind}:")
            for name, provider in entries.items():
                print(f"  {name:<16} {provider}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ret2_plugin.encoder import load_encoder

    encoder = load_encoder(args.source, device="cpu")
    encoder.save(args.output)
    print(json.dumps({"source": args.source, "output": args.output}) if args.json else f"saved {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ret2_plugin.app.demo import run_demo

    report = run_demo(model=args.model, out_dir=args.out, quick=args.quick, rebuild=args.rebuild, verbose=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ret2", description="ReT / ReT-2 multimodal retrieval: index, search, train, evaluate.")
    parser.add_argument("--version", action="version", version=f"ret2-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="build or update an index from a JSONL corpus")
    p.add_argument("corpus", help="corpus JSONL (id, text and/or image, meta)")
    _add_backend_args(p)
    p.add_argument("--model", help="model dir, hub id or preset (default: starter)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="image decoding threads")
    p.add_argument("--device", default=None)
    p.add_argument("--strict", action="store_true", help="exit non-zero when any item failed")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="query an index with text, an image, or both")
    _add_backend_args(p)
    p.add_argument("--text")
    p.add_argument("--image", help="query image path")
    p.add_argument("--instruction", help='ReT query instruction, prefixed as "{instruction} {text}"')
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--filter", action="append", metavar="KEY=VALUE",
                   help="metadata equality filter, value read as JSON when it parses (year=2020 is a number) (repeatable)")
    p.add_argument("--model", help="override the model recorded in the index")
    p.add_argument("--device", default=None)
    p.add_argument("--html", metavar="OUT.html", help="write a result gallery")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("plugins", help="list registered encoders, index backends and image loaders")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("convert", help="official ReT checkpoint or hub id -> our saved encoder format")
    p.add_argument("source")
    p.add_argument("output")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("demo", help="the end-to-end demo on the bundled example corpus (offline)")
    p.add_argument("--model", help="model dir, hub id or preset (default: the offline starter model)")
    p.add_argument("--out", default="ret2-demo", help="output folder (index, gallery)")
    p.add_argument("--quick", action="store_true", help="reduced mode: fewer items and training steps")
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached starter model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    try:
        from ret2_plugin.app.train_cli import add_train_commands
    except ImportError:  # pragma: no cover - trainer extras missing
        pass
    else:
        add_train_commands(sub)

    from ret2_plugin.plugins import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (OSError, KeyError, ValueError) as exc:  # bad input, missing files, connection / auth failures
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ret2: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
