"""Peak RSS of `ret2 index` on huge images: early reduction (default) vs full-resolution decoding.

Twelve 9400 x 9400 PNGs (small files: flat colours) are indexed at the default batch size by a real
`ret2 index` subprocess; the peak RSS of that process (`wait4` rusage) is reported, once as shipped
and once with early reduction switched off (`REDUCE_ABOVE_PIXELS` raised past any image), so the
figure shows what the reduction buys. Goal: under 2 GB, independent of source resolution.

    python bench/bench_image_memory.py [--model DIR] [--images 12] [--size 9400] [--out result.json]

Without `--model`, a small randomly initialised CLIP-shaped ReT-2 model with the official 224 px CLIP
preprocessing is built (no training, no download): decoding, not the model, is what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = """
import atexit, os, sys

def _report_peak():  # VmHWM: this process's own peak RSS (rusage maxrss would include the parent's at fork)
    with open("/proc/self/status") as status, open(os.environ["RET2_BENCH_HWM"], "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(_report_peak)
from ret2_plugin.processing import images
if sys.argv.pop(1) == "full":
    images.REDUCE_ABOVE_PIXELS = 1 << 62  # never reduce: every image decoded and kept at full resolution
from ret2_plugin.app.cli import main
sys.exit(main())
"""


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """Written by a subprocess, so that this process stays small (its RSS would not matter, but keep
    the machine's memory for the measured runs)."""
    script = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_image_memory as b; b._write_images({str(folder)!r}, {count}, {size})"
    subprocess.run([sys.executable, "-c", script], check=True)
    return [folder / f"huge{i:02d}.png" for i in range(count)]


def _write_images(folder: str, count: int, size: int) -> None:
    from PIL import Image, ImageDraw

    for i in range(count):
        path = Path(folder) / f"huge{i:02d}.png"
        image = Image.new("RGB", (size, size), (20 * i % 256, 80, 160))
        draw = ImageDraw.Draw(image)
        draw.rectangle((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(255, 255 - 15 * i % 256, 0))
        draw.ellipse((size // 8, size // 2, size // 2, 7 * size // 8), fill=(0, 200, 20 * i % 256))
        image.save(path, optimize=False, compress_level=9)


def build_model(out: Path) -> Path:
    """A small CLIP-shaped ReT-2 model (224 px, patch 32) with the CLIP image processor, saved to `out`."""
    from ret2_plugin.presets import tiny_clip_model

    model, processor = tiny_clip_model("ret2", image_size=224, patch_size=32)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def peak_rss(mode: str, corpus: Path, index: Path, model: str, batch_size: int | None) -> dict:
    command = [
        sys.executable,
        "-c",
        RUN,
        mode,
        "index",
        str(corpus),
        "--index",
        str(index),
        "--model",
        model,
        "--json",
        "--no-progress",
    ]
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    hwm = index.with_suffix(".hwm")
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RET2_BENCH_HWM": str(hwm)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"ret2 index ({mode}) failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    return {
        "peak_rss_mb": round(int(hwm.read_text()) / 1024, 1),
        "seconds": round(seconds, 1),
        "indexed": summary["indexed"],
        "failed": summary["failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="model for `ret2 index` (default: a small 224 px CLIP-shaped model)"
    )
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=9400)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the CLI's default")
    parser.add_argument("--skip-full", action="store_true", help="only measure the shipped (reducing) path")
    parser.add_argument(
        "--small-size",
        type=int,
        default=940,
        help="also index the same number of images this size (the reduced size), to show that peak RSS "
        "does not grow with source resolution (0: skip)",
    )
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.model is None:
            args.model = str(build_model(folder / "model"))
        paths = make_images(folder, args.images, args.size)
        corpus = folder / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"id": p.stem, "image": p.name}) + "\n" for p in paths))
        result = {
            "images": args.images,
            "size": f"{args.size}x{args.size}",
            "format": "PNG",
            "mean_file_kb": round(sum(p.stat().st_size for p in paths) / len(paths) / 1024, 1),
            "model": args.model if not args.model.startswith(tmp) else "small CLIP-shaped ReT-2, 224 px",
            "batch_size": args.batch_size or "CLI default",
            "cpu_count": os.cpu_count(),
            "reduced": peak_rss("reduced", corpus, folder / "ix-reduced", args.model, args.batch_size),
        }
        if args.small_size:
            small = folder / "small"
            small.mkdir()
            small_paths = make_images(small, args.images, args.small_size)
            small_corpus = small / "corpus.jsonl"
            small_corpus.write_text("".join(json.dumps({"id": p.stem, "image": p.name}) + "\n" for p in small_paths))
            result[f"small_{args.small_size}px"] = peak_rss(
                "reduced", small_corpus, folder / "ix-small", args.model, args.batch_size
            )
        if not args.skip_full:
            result["full_resolution"] = peak_rss("full", corpus, folder / "ix-full", args.model, args.batch_size)
        result["goal_peak_rss_mb"] = 2048
        result["goal_met"] = result["reduced"]["peak_rss_mb"] < 2048
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
