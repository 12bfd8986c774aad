"""Encoder pipeline efficiency: `encode` (and the streaming API) vs a bare forward on pre-processed tensors.

Prints one JSON object: images/s and texts/s for
- `forward`: `model.forward_features` on tensors prepared beforehand (the ceiling),
- `encode`: `SentenceTransformer.encode_document` from raw inputs (paths / strings),
- `stream`: `iter_embeddings` over `Item`s (background prefetch),
the efficiency ratios (`encode` / `forward`, goal >= 0.85) and peak RSS, on a small CLIP-shaped
model (random weights, built offline) at batch 32. Images are JPEGs written to a temp dir so decoding
is part of the measured pipeline; `encode_fast` is the same encode with `image_decode="fast"` (JPEG
DCT-scaled decoding). `--torch-threads` sets the forward's intra-op threads (default: torch's, one per
core): with fewer threads than cores, decoding runs beside the forward instead of competing with it.

    .venv/bin/python bench/bench_encode.py --n 128 --torch-threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux: write 5 to /proc/self/clear_refs) so the next peak is a phase's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_images(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize(size, Image.BILINEAR)  # smooth-ish content, realistic JPEG size
        path = folder / f"img{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def timed_interleaved(fns: list, repeats: int) -> tuple[list[float], list[float]]:
    """Best-of-`repeats` wall time and process CPU time of each function, the runs interleaved so
    that load changes on a shared machine hit every variant alike."""
    for fn in fns:
        fn()  # warm-up
    wall = [float("inf")] * len(fns)
    cpu = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[i] = min(wall[i], time.perf_counter() - start)
            cpu[i] = min(cpu[i], time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="images and texts per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--source-size", type=int, nargs=2, default=(640, 480), help="JPEG width height")
    parser.add_argument("--workers", type=int, default=None, help="image threads (default: one per core, max 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-multiplier", type=int, default=10, help="flat-memory run: this many x n items")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--torch-threads", type=int, default=None, help="intra-op threads of the forward")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RET2_LOAD_PLUGINS", "")
    from ret2_plugin import load_encoder
    from ret2_plugin.encoder import iter_embeddings
    from ret2_plugin.items import Item
    from ret2_plugin.presets import tiny_clip_model

    model, processor = tiny_clip_model(
        "ret2",
        width=args.width,
        layers=args.layers,
        heads=max(1, args.width // 64),
        image_size=args.image_size,
        patch_size=args.patch_size,
        hidden_size=args.width,
        num_queries=32,
        late_proj_output_size=128,
    )
    results: dict[str, object] = {
        "benchmark": "encode_pipeline",
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "model": {
            "width": args.width,
            "layers": args.layers,
            "image_size": args.image_size,
            "patch_size": args.patch_size,
        },
        "n": args.n,
        "batch_size": args.batch_size,
        "source_image_size": list(args.source_size),
        "load_average_at_start": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save_pretrained(folder / "model")
        processor.save_pretrained(folder / "model")
        encoder = load_encoder(folder / "model", device=args.device, image_workers=args.workers)
        fast_encoder = load_encoder(
            folder / "model", device=args.device, image_workers=args.workers, image_decode="fast"
        )
        results["image_workers"] = encoder[0].image_workers
        images = make_images(folder, args.n, tuple(args.source_size))
        texts = [f"a photo number {i} of something rather ordinary, described in a few words" for i in range(args.n)]
        net = encoder[0].model
        rss_start = peak_rss_mb()

        for kind, raw, items in (
            ("images", images, [Item(image=p) for p in images]),
            ("texts", texts, [Item(text=t) for t in texts]),
        ):
            batches = [
                {k: v.to(args.device) for k, v in processor(items[i : i + args.batch_size], side="document").items()}
                for i in range(0, len(items), args.batch_size)
            ]

            def bare() -> None:
                with torch.inference_mode():
                    for batch in batches:
                        net.forward_features("document", **batch)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()

            def encode_with(model: Any) -> Callable[[], None]:
                return lambda: model.encode_document(raw, batch_size=args.batch_size, normalize_embeddings=True)

            def stream() -> None:
                for _ in iter_embeddings(encoder, items, side="document", batch_size=args.batch_size):
                    pass

            def prepare_with(model: Any) -> Callable[[], None]:
                def prepare() -> None:
                    for i in range(0, len(raw), args.batch_size):
                        model[0].prepare(raw[i : i + args.batch_size], task="document")

                return prepare

            names = ("forward", "encode", "stream", "prepare_only", "encode_fast", "prepare_fast")
            fns = [
                bare,
                encode_with(encoder),
                stream,
                prepare_with(encoder),
                encode_with(fast_encoder),
                prepare_with(fast_encoder),
            ]
            if kind == "texts":  # nothing to decode: the fast mode is the same code
                names, fns = names[:4], fns[:4]
            wall, cpu = timed_interleaved(fns, args.repeats)
            t = dict(zip(names, wall))
            results[f"{kind}_prepare_only_per_s"] = round(args.n / t["prepare_only"], 1)
            if "prepare_fast" in t:
                results[f"{kind}_prepare_fast_per_s"] = round(args.n / t["prepare_fast"], 1)
            results[f"{kind}_cpu_s"] = dict(zip(names, (round(c, 2) for c in cpu)))
            runs = [name for name in ("forward", "encode", "stream", "encode_fast") if name in t]
            results[f"{kind}_per_s"] = {name: round(args.n / t[name], 1) for name in runs}
            results[f"{kind}_efficiency"] = {name: round(t["forward"] / t[name], 3) for name in runs[1:]}
            batches.clear()  # free the prepared tensors before the next kind
        # flat memory: stream `--stream-multiplier` x n items from a generator; peak RSS must not grow with it
        results["peak_rss_mb"] = round(peak_rss_mb(), 1)
        reset = reset_peak_rss()
        before = current_rss_mb()
        total = 0

        def corpus():
            for round_ in range(args.stream_multiplier):
                for i, text in enumerate(texts):
                    yield Item(text=f"{text} {round_}", image=images[i] if i % 8 == 0 else None)

        start = time.perf_counter()
        for batch in iter_embeddings(encoder, corpus(), side="document", batch_size=args.batch_size):
            total += len(batch.items)
        results["stream_flat_memory"] = {
            "items": total,
            "items_per_s": round(total / (time.perf_counter() - start), 1),
            "rss_before_mb": round(before, 1),
            "rss_after_mb": round(current_rss_mb(), 1),
            "peak_rss_during_mb": round(peak_rss_mb(), 1) if reset else None,
        }
        results["peak_rss_mb_before_runs"] = round(rss_start, 1)
    results["goal_efficiency"] = 0.85
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
