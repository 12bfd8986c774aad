"""The `ret2` command: a thin layer over the library. `ret2 COMMAND --help` for each command."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from ret2_plugin import __version__
from ret2_plugin.kv import parse_pairs


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    options = parse_pairs(args.option, "--option")
    if getattr(args, "es_url", None):
        options["hosts"] = args.es_url
    return options


def _add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", required=True, help="index location: a directory (faiss) or an index name (elasticsearch)"
    )
    parser.add_argument(
        "--backend", default="faiss", help="index backend by registered name (default: faiss; see `ret2 plugins`)"
    )
    parser.add_argument(
        "--es-url", help="Elasticsearch URL (default: $ELASTICSEARCH_URL); credentials from ELASTICSEARCH_* env vars"
    )
    parser.add_argument(
        "--option", action="append", metavar="KEY=VALUE", help="backend option, e.g. index_type=HNSW32 (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary")


def _load_encoder(name: str, spec: str | None, device: str | None) -> tuple[str, Any]:
    """(model, encoder) through the `register_encoders` hook. Named models (`starter`, presets) are
    the built-in `ret2` encoder's; a plugin encoder gets `--model` as given."""
    from ret2_plugin.app.model_store import resolve_model
    from ret2_plugin.plugins import get_encoder_loader

    loader = get_encoder_loader(name)
    if name == "ret2":
        model = resolve_model(spec)
    elif spec:
        model = spec
    else:
        raise ValueError(f"--encoder {name} needs --model (the model the plugin loads)")
    return model, loader(model, device=device)


def _set_image_decode(encoder: Any, mode: str, name: str) -> None:
    """`--image-decode`: set on the encoder's ReT module; an encoder without that setting refuses "fast"."""
    try:
        module = encoder[0]
    except (TypeError, IndexError, KeyError):
        module = encoder
    if hasattr(module, "image_decode"):
        module.image_decode = mode
    elif mode != "exact":
        raise ValueError(f"--image-decode {mode}: encoder {name!r} has no image_decode setting")


def cmd_index(args: argparse.Namespace) -> int:
    from ret2_plugin.indexing import IndexingAborted, index_corpus
    from ret2_plugin.search import create_index

    model, encoder = _load_encoder(args.encoder, args.model, args.device)
    _set_image_decode(encoder, args.image_decode, args.encoder)
    index = create_index(
        args.backend, args.index, encoder, model=model, encoder_name=args.encoder, **_backend_options(args)
    )
    closing: Any = contextlib.nullcontext()
    try:
        summary = index_corpus(
            args.corpus,
            index,
            encoder,
            batch_size=args.batch_size,
            num_workers=args.workers,
            show_progress_bar=not args.json and not args.no_progress,
            image_root=args.image_root,
            commit_every=args.commit_every or None,
            commit_seconds=args.commit_seconds or None,
        )
        total = index.count()
    except IndexingAborted as exc:  # the backend failed as a whole: say what was written, no traceback
        if args.json:
            print(
                json.dumps(
                    {**exc.summary.to_dict(), "index": args.index, "backend": args.backend, "error": str(exc)}, indent=2
                )
            )
        print(f"ret2: error: {' '.join(str(exc).split())}", file=sys.stderr)
        closing = contextlib.suppress(Exception)  # the same failure again on close: already reported
        return 2
    finally:
        with closing:
            index.close()
    result = {**summary.to_dict(), "index": args.index, "backend": args.backend, "model": model, "count": total}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{summary.describe()}; {total} in {args.index}")
        for failure in summary.failed:
            print(f"  FAILED {failure}", file=sys.stderr)
        for unknown in summary.unknown:
            print(f"  UNKNOWN {unknown}", file=sys.stderr)
    nothing_valid = summary.failed and not (summary.indexed or summary.unchanged)
    return 1 if (args.strict and summary.failed) or nothing_valid else 0


def cmd_search(args: argparse.Namespace) -> int:
    from ret2_plugin.app.gallery import write_gallery
    from ret2_plugin.search import open_index, search

    index = open_index(args.backend, args.index, **_backend_options(args))
    try:
        name = args.encoder or index.info.get("encoder") or "ret2"
        spec = args.model or index.info.get("model")
        if not spec:
            raise SystemExit(f"ret2: index {args.index!r} does not record its model; pass --model")
        _, encoder = _load_encoder(name, spec, args.device)
        filters = parse_pairs(args.filter, "--filter") or None
        hits = search(
            encoder,
            index,
            text=args.text,
            image=args.image,
            instruction=args.instruction,
            top_k=args.k,
            filters=filters,
            hybrid=args.hybrid,
        )
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


def _unavailable(backend: str) -> str:
    """ "  [unavailable: ...]" when the backend's optional dependency is missing (names the extra)."""
    from ret2_plugin.plugins import get_index_backend

    try:
        get_index_backend(backend)
    except ImportError as exc:
        return f"  [unavailable: {exc}]"
    return ""


def cmd_plugins(args: argparse.Namespace) -> int:
    from ret2_plugin.plugins import registered

    found = registered()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for kind, entries in found.items():
            print(f"{kind}:")
            for name, provider in entries.items():
                print(f"  {name:<16} {provider}{_unavailable(name) if kind == 'index_backends' else ''}")
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
    parser = argparse.ArgumentParser(
        prog="ret2", description="ReT / ReT-2 multimodal retrieval: index, search, train, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"ret2-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="build or update an index from a JSONL corpus")
    p.add_argument("corpus", help="corpus JSONL (id, text and/or image, meta)")
    _add_backend_args(p)
    p.add_argument("--model", help="model dir, hub id or preset (default: starter)")
    p.add_argument("--encoder", default="ret2", help="encoder by registered name (default: ret2; see `ret2 plugins`)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="image decoding threads")
    p.add_argument("--device", default=None)
    p.add_argument("--strict", action="store_true", help="exit non-zero when any item failed")
    p.add_argument("--image-root", metavar="DIR", help="refuse (per item) image files outside DIR, symlinks resolved")
    p.add_argument(
        "--image-decode",
        choices=("exact", "fast"),
        default="exact",
        help="fast: JPEGs decoded at the DCT scale nearest to the model input (faster, pixels differ slightly)",
    )
    p.add_argument(
        "--commit-every",
        type=int,
        default=10_000,
        metavar="N",
        help="make writes durable every N documents (0: only at the end; default 10000)",
    )
    p.add_argument(
        "--commit-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="... or every S seconds, whichever comes first (0: off; default 300)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="query an index with text, an image, or both")
    _add_backend_args(p)
    p.add_argument("--text")
    p.add_argument("--image", help="query image path")
    p.add_argument("--instruction", help='ReT query instruction, prefixed as "{instruction} {text}"')
    p.add_argument("-k", type=int, default=10)
    p.add_argument(
        "--hybrid",
        action="store_true",
        help="also BM25 on --text, fused with kNN by RRF (score = RRF score); elasticsearch backend",
    )
    p.add_argument(
        "--filter",
        action="append",
        metavar="KEY=VALUE",
        help="metadata equality filter, value read as JSON when it parses (year=2020 is a number) (repeatable)",
    )
    p.add_argument("--model", help="override the model recorded in the index")
    p.add_argument("--encoder", help="override the encoder recorded in the index (registered name)")
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
    from ret2_plugin.index import IndexStorageError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    # bad input, missing files, connection / auth failures, damaged indexes, concurrent writers, failed saves
    except (OSError, KeyError, ValueError, IndexStorageError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ret2: error: {' '.join(str(message).split())}", file=sys.stderr)  # one line
        return 2
    except ModuleNotFoundError as exc:  # an optional dependency: one line naming the extra to install
        from ret2_plugin.extras import MissingExtraError, missing_extra

        error = exc if isinstance(exc, MissingExtraError) else missing_extra(exc, f"`ret2 {args.command}`")
        if error is None:
            raise
        print(f"ret2: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
