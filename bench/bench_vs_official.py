"""ret2-plugin vs the official aimagelab/ReT code on the SAME official checkpoint, side by side (JSON out).

For each shape (CLIP ViT-B/16- and ViT-L/14-shaped towers, random weights, H=1024, K=32) and variant
(ReT v1 multi-vector, pooled): the official code builds a model and writes it with its own
`save_pretrained`; ret2-plugin loads that checkpoint; both run the same batch (fp32, CPU) in separate
processes, interleaved over several rounds (the order alternates), and the outputs are compared
(max |diff| <= 1e-5, both sides). Reported per implementation: load time, forward time (median and
spread over rounds), peak RSS while loading and during the forward (VmHWM, reset between phases).

    python bench/bench_vs_official.py --official-repo /path/to/ReT \\
        --official-python /path/to/venv-with-transformers-4.45/bin/python --rounds 3 > vs_official.json

The official checkout is supplied by the user (github.com/aimagelab/ReT); nothing of it lives here.
This file is also the worker both interpreters run (`--worker official|ours`): it imports nothing
from ret2_plugin at module level so the official interpreter can execute it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# CLIP tower shapes (text, vision, official layer strategy). Random weights: shapes are what matters.
SHAPES: dict[str, dict[str, Any]] = {
    "vit-b-16": {
        "text": dict(
            hidden_size=512,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=8,
            max_position_embeddings=77,
            vocab_size=49408,
        ),
        "vision": dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            image_size=224,
            patch_size=16,
        ),
        "layer_strategy": "clip_vit_b",
    },
    "vit-l-14": {
        "text": dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            vocab_size=49408,
        ),
        "vision": dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
        ),
        "layer_strategy": "clip_vit_l",
    },
}
VARIANTS = {"multivector": False, "pooled": True}
TOLERANCE = 1e-5


# ---- memory probes (Linux /proc) ----------------------------------------------------------------
def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


# ---- workers -------------------------------------------------------------------------------------
def _official_build(out: Path, shape: str, pooled: bool, seed: int) -> None:
    import torch
    from src.models.retriever import RetrieverConfig, RetrieverModel

    torch.manual_seed(seed)
    spec = SHAPES[shape]

    def ret_config() -> dict[str, Any]:
        return dict(
            text_config=dict(model_type="clip_text_model", **spec["text"]),
            vision_config=dict(model_type="clip_vision_model", **spec["vision"]),
            layer_strategy=spec["layer_strategy"],
            use_pooler_features=pooled,
            hidden_size=1024,
            num_queries=32,
            late_proj_output_size=128,
            input_gate_bias_prior=0.5,
            forget_gate_bias_prior=-0.5,
        )

    config = RetrieverConfig(query_config=ret_config(), passage_config=ret_config(), share_query_passage_models=False)
    RetrieverModel(config).save_pretrained(str(out))


def _import(kind: str) -> Any:
    """The model class of each implementation (imported before the load is measured)."""
    if kind == "official":
        from src.models.retriever import RetrieverModel

        return RetrieverModel
    from ret2_plugin.modeling import ReT2Model

    return ReT2Model


def _load(kind: str, cls: Any, checkpoint: str) -> Any:
    """Returns forward(side, batch) -> features tensor."""
    import torch

    model = cls.from_pretrained(checkpoint).eval()
    if kind == "official":

        def forward(side: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            tower = model.get_query_model() if side == "query" else model.get_passage_model()
            return tower(**batch).ret_features

        return forward

    def forward(side: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.forward_features("query" if side == "query" else "document", **batch)

    return forward


def _worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    cls = _import(args.worker)
    rss_after_imports = _status_mb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    forward = _load(args.worker, cls, args.checkpoint)
    load_s = time.perf_counter() - start
    load_peak = _status_mb("VmHWM")
    data = np.load(args.inputs)
    batch = {
        k: torch.from_numpy(data[k]) for k in ("input_ids", "attention_mask", "pixel_values", "text_mask", "image_mask")
    }
    _reset_peak()
    rss_before_forward = _status_mb("VmRSS")
    times, outputs = [], {}
    forward_peak = 0.0
    with torch.inference_mode():
        if args.query_check:
            outputs["query"] = forward("query", batch).float().numpy()  # warm-up, and the query-side output
            forward_peak = _status_mb("VmHWM")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = forward("document", batch)
            times.append(time.perf_counter() - t0)
        forward_peak = max(forward_peak, _status_mb("VmHWM"))
        outputs["document"] = out.float().numpy()
    np.savez(args.out, **outputs)
    print(
        json.dumps(
            {
                "rss_after_imports_mb": rss_after_imports,
                "load_s": load_s,
                "forward_s": min(times),
                "forward_all_s": times,
                "peak_rss_load_mb": load_peak,
                "rss_before_forward_mb": rss_before_forward,
                "peak_rss_forward_mb": forward_peak,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


# ---- driver --------------------------------------------------------------------------------------
def _inputs(path: Path, shape: str, batch: int, text_len: int, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    size = SHAPES[shape]["vision"]["image_size"]
    ids = rng.integers(1, 49406, size=(batch, text_len), dtype=np.int64)
    lengths = rng.integers(max(2, text_len // 4), text_len + 1, size=batch)
    lengths[0] = text_len
    mask = (np.arange(text_len)[None, :] < lengths[:, None]).astype(np.int64)
    ids[np.arange(batch), lengths - 1] = 49407  # CLIP eos at each row's end, padding after it
    ids = np.where(mask == 1, ids, 49407)
    np.savez(
        path,
        input_ids=ids,
        attention_mask=mask,
        pixel_values=rng.standard_normal((batch, 3, size, size), dtype=np.float32),
        text_mask=np.ones(batch, dtype=np.float32),
        image_mask=np.ones(batch, dtype=np.float32),
    )


def _run_worker(
    python: str,
    env: dict[str, str],
    kind: str,
    checkpoint: Path,
    inputs: Path,
    out: Path,
    repeats: int,
    query_check: bool,
) -> dict:
    cmd = [
        python,
        __file__,
        "--worker",
        kind,
        "--checkpoint",
        str(checkpoint),
        "--inputs",
        str(inputs),
        "--out",
        str(out),
        "--repeats",
        str(repeats),
        *([] if query_check else ["--no-query-check"]),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stub_training_only_imports(python: str, env: dict[str, str], folder: Path) -> list[str]:
    """The official package imports pandas at import time for its training loss only. When the official
    interpreter lacks it, an inert placeholder module goes first on its path (inference never uses it);
    the report lists what was stubbed."""
    stubbed = []
    for name in ("pandas",):
        probe = subprocess.run([python, "-c", f"import {name}"], env=env, capture_output=True)
        if probe.returncode != 0:
            (folder / f"{name}.py").write_text('"""Placeholder: only the official training loss uses this module."""\n')
            stubbed.append(name)
    if stubbed:
        env["PYTHONPATH"] = f"{folder}{os.pathsep}{env['PYTHONPATH']}"
    return stubbed


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", type=Path, help="a checkout of github.com/aimagelab/ReT")
    parser.add_argument("--official-python", default=sys.executable, help="interpreter with transformers 4.45 for it")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (separate processes each)")
    parser.add_argument("--repeats", type=int, default=2, help="timed document-side forwards per process (best taken)")
    parser.add_argument(
        "--no-query-check",
        dest="query_check",
        action="store_false",
        help="skip the query-side forward (it doubles as warm-up; without it the first timed forward is cold)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--text-len", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep checkpoints here (default: a temp dir)")
    for flag in ("--worker", "--checkpoint", "--inputs", "--out"):
        parser.add_argument(flag, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.official_repo is None or not (args.official_repo / "src" / "models" / "retriever").is_dir():
        parser.error("--official-repo must point at a checkout of github.com/aimagelab/ReT (src/models/retriever)")
    import numpy as np

    base_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "RET2_LOAD_PLUGINS": ""}
    official_env = {**base_env, "PYTHONPATH": str(args.official_repo.resolve())}
    stubbed = _stub_training_only_imports(
        args.official_python, official_env, Path(tempfile.mkdtemp(prefix="ret-official-stubs-"))
    )
    ours_env = dict(base_env)
    pythons = {"official": args.official_python, "ours": sys.executable}
    envs = {"official": official_env, "ours": ours_env}
    report: dict[str, Any] = {
        "benchmark": "vs_official",
        "device": "cpu",
        "dtype": "fp32",
        "cpu_count": os.cpu_count(),
        "query_side_checked": args.query_check,
        "batch": args.batch,
        "text_len": args.text_len,
        "rounds": args.rounds,
        "repeats_per_process": args.repeats,
        "hidden_size": 1024,
        "num_queries": 32,
        "tolerance": TOLERANCE,
        "load_average_at_start": list(os.getloadavg()),
        "official_placeholder_modules": stubbed,
        "results": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for shape in args.shapes:
            inputs = work / f"inputs-{shape}.npz"
            _inputs(inputs, shape, args.batch, args.text_len, args.seed)
            for variant in args.variants:
                checkpoint = work / f"official-{shape}-{variant}"
                if not (checkpoint / "config.json").is_file():
                    build = subprocess.run(
                        [
                            args.official_python,
                            "-c",
                            f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_vs_official as b; "
                            f"b._official_build(b.Path({str(checkpoint)!r}), {shape!r}, {VARIANTS[variant]!r}, {args.seed})",
                        ],
                        env=official_env,
                        capture_output=True,
                        text=True,
                    )
                    if build.returncode != 0:
                        raise RuntimeError(f"official build failed:\n{build.stderr[-4000:]}")
                runs: dict[str, list[dict]] = {"official": [], "ours": []}
                max_diff = {side: 0.0 for side in (("query", "document") if args.query_check else ("document",))}
                for r in range(args.rounds):
                    order = ("official", "ours") if r % 2 == 0 else ("ours", "official")
                    outs = {}
                    for kind in order:
                        outs[kind] = (
                            work / f"out-{shape}-{variant}-{kind}-{os.getpid()}.npz"
                        )  # concurrent runs may share workdir
                        runs[kind].append(
                            _run_worker(
                                pythons[kind],
                                envs[kind],
                                kind,
                                checkpoint,
                                inputs,
                                outs[kind],
                                args.repeats,
                                args.query_check,
                            )
                        )
                    a, b = np.load(outs["official"]), np.load(outs["ours"])
                    for side in max_diff:
                        if a[side].shape != b[side].shape:
                            raise AssertionError(
                                f"{shape}/{variant} {side}: shapes differ {a[side].shape} vs {b[side].shape}"
                            )
                        max_diff[side] = max(max_diff[side], float(np.abs(a[side] - b[side]).max()))
                entry: dict[str, Any] = {
                    "output_shape": list(b["document"].shape),
                    "max_abs_diff": max_diff,
                    "equal_within_tolerance": max(max_diff.values()) <= TOLERANCE,
                }
                for kind, rows in runs.items():
                    entry[kind] = {
                        "forward_s": _summary([x["forward_s"] for x in rows]),
                        "load_s": _summary([x["load_s"] for x in rows]),
                        "peak_rss_load_mb": _summary([x["peak_rss_load_mb"] for x in rows]),
                        "peak_rss_forward_mb": _summary([x["peak_rss_forward_mb"] for x in rows]),
                        "rss_after_imports_mb": _summary([x["rss_after_imports_mb"] for x in rows]),
                        "load_above_imports_mb": _summary(
                            [x["peak_rss_load_mb"] - x["rss_after_imports_mb"] for x in rows]
                        ),
                        "forward_above_imports_mb": _summary(
                            [x["peak_rss_forward_mb"] - x["rss_after_imports_mb"] for x in rows]
                        ),
                        "torch": rows[0]["torch"],
                        "threads": rows[0]["threads"],
                    }
                o, u = entry["official"], entry["ours"]
                ratios = [x["forward_s"] / y["forward_s"] for x, y in zip(runs["official"], runs["ours"])]
                entry["speedup_official_over_ours"] = {
                    "of_medians": round(o["forward_s"]["median"] / u["forward_s"]["median"], 3),
                    "per_round": [round(x, 3) for x in ratios],
                }
                entry["load_rss_ratio_ours_over_official"] = round(
                    u["peak_rss_load_mb"]["median"] / o["peak_rss_load_mb"]["median"], 3
                )
                entry["forward_rss_ratio_ours_over_official"] = round(
                    u["peak_rss_forward_mb"]["median"] / o["peak_rss_forward_mb"]["median"], 3
                )
                entry["above_imports_ratios_ours_over_official"] = {
                    phase: round(u[f"{phase}_above_imports_mb"]["median"] / o[f"{phase}_above_imports_mb"]["median"], 3)
                    for phase in ("load", "forward")
                }
                entry["targets"] = {
                    "speedup_ge_1.3": entry["speedup_official_over_ours"]["of_medians"] >= 1.3,
                    "load_rss_le_official": entry["load_rss_ratio_ours_over_official"] <= 1.0,
                    "forward_rss_le_0.9_official": entry["forward_rss_ratio_ours_over_official"] <= 0.9,
                    "exact": entry["equal_within_tolerance"],
                }
                report["results"][f"{shape}/{variant}"] = entry
                print(json.dumps({f"{shape}/{variant}": entry}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
