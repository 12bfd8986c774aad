"""Fusion overhead: full ReT forward vs the two backbones alone, same batch (prints JSON).

For the ReT v1 preset (12 taps, separate fusion, K x 128) and the ReT-2 preset (3 taps, shared,
single vector) on a small CLIP-shaped model. Usage: python bench/bench_model.py [--width 256 ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from ret2_plugin.modeling import ReT2Config, ReT2Model
from ret2_plugin.modeling.backbones import text_hidden_states, vision_hidden_states
from ret2_plugin.presets import clip_tower_configs


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    text, vision = clip_tower_configs(
        width=args.width,
        layers=args.layers,
        heads=args.width // 64,
        image_size=args.image_size,
        patch_size=args.patch_size,
    )
    device = torch.device(args.device)
    batch = {
        "input_ids": torch.randint(0, 49408, (args.batch, args.text_len), device=device),
        "attention_mask": torch.ones(args.batch, args.text_len, dtype=torch.long, device=device),
        "pixel_values": torch.randn(args.batch, 3, args.image_size, args.image_size, device=device),
        "text_mask": torch.ones(args.batch, device=device),
        "image_mask": torch.ones(args.batch, device=device),
    }
    results = {}
    presets = {
        "ret_v1": ReT2Config.ret_v1(text, vision, hidden_size=args.hidden, num_queries=args.queries),
        "ret2": ReT2Config.ret2(text, vision, hidden_size=args.hidden, num_queries=args.queries),
    }
    for name, config in presets.items():
        model = ReT2Model(config).to(device).eval()

        @torch.inference_mode()
        def backbones() -> None:
            text_hidden_states(model.text_backbone, batch["input_ids"], batch["attention_mask"])
            vision_hidden_states(model.vision_backbone, batch["pixel_values"])

        @torch.inference_mode()
        def full() -> None:
            model.forward_features("document", **batch)

        t_backbones, t_full = _time(backbones, args.repeats), _time(full, args.repeats)
        results[name] = {
            "taps": config.num_steps,
            "backbones_s": round(t_backbones, 4),
            "full_s": round(t_full, 4),
            "fusion_overhead_ratio": round(t_full / t_backbones, 3),
            "items_per_s": round(args.batch / t_full, 1),
        }
    return {
        "benchmark": "fusion_overhead",
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, {args.device}",
        "torch": torch.__version__,
        "shape": {
            k: getattr(args, k)
            for k in ("width", "layers", "image_size", "patch_size", "text_len", "hidden", "queries", "batch")
        },
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--text-len", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=1024, help="fusion width H (ReT default 1024)")
    parser.add_argument("--queries", type=int, default=32, help="latent tokens K (ReT default 32)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
