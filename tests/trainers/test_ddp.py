"""DDP on CPU (gloo, 2 processes): loss and gradients equal a single-process run on the same global
batch, with documents gathered across ranks (soft target shared across ranks, uneven doc counts)."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.unit

# global batch: query 3 shares query 0's target (doc id 0) from the other rank; doc id 4 is a hard
# negative on rank 0 only (ranks hold 3 and 2 documents); rank 1's queries have no image.
Q_SLICES = [slice(0, 2), slice(2, 4)]
D_SLICES = [slice(0, 3), slice(3, 5)]


def _global_batch():  # type: ignore[no-untyped-def]
    from PIL import Image

    from ret2_plugin.items import Item

    colors = [(250, 10, 10), (10, 250, 10), (10, 10, 250), (200, 200, 0), (0, 120, 200)]
    docs = [
        Item(id=str(i), text=f"document number {i}", image=Image.new("RGB", (32, 32), c)) for i, c in enumerate(colors)
    ]
    queries = [
        Item(id="q0", text="red thing", image=Image.new("RGB", (32, 32), colors[0]), instruction="Find it."),
        Item(id="q1", image=Image.new("RGB", (32, 32), colors[1])),
        Item(id="q2", text="blue document"),
        Item(id="q3", text="the red one"),
    ]
    q_pos = torch.tensor([[0], [1], [2], [0]])
    d_order = [0, 1, 4, 2, 0]
    return queries, [docs[i] for i in d_order], q_pos, torch.tensor(d_order)


def _grads_and_loss(module: torch.nn.Module, out) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    out.loss.backward()
    inner = getattr(module, "module", module)
    grads = {
        n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
        for n, p in inner.named_parameters()
        if p.requires_grad
    }
    grads["__loss"] = out.global_loss.detach().reshape(1)
    grads["__acc"] = out.accuracy.detach().reshape(1)
    return grads


def _build():  # type: ignore[no-untyped-def]
    from ret2_plugin.presets import tiny_clip_model
    from ret2_plugin.trainers.loop import TrainModule
    from ret2_plugin.trainers.losses import ContrastiveLoss

    model, processor = tiny_clip_model("ret2", seed=0)
    return TrainModule(model, ContrastiveLoss(0.05, learnable_temperature=True)).eval(), processor


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from ret2_plugin.trainers.loop import wrap_ddp

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        module, processor = _build()
        ddp = wrap_ddp(module, torch.device("cpu"))
        queries, docs, q_pos, d_ids = _global_batch()
        qs, ds = Q_SLICES[rank], D_SLICES[rank]
        out = ddp(processor(queries[qs], side="query"), processor(docs[ds], side="document"), q_pos[qs], d_ids[ds])
        save_file(_grads_and_loss(ddp, out), str(Path(out_dir) / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)

    module, processor = _build()
    queries, docs, q_pos, d_ids = _global_batch()
    ref = _grads_and_loss(
        module, module(processor(queries, side="query"), processor(docs, side="document"), q_pos, d_ids)
    )

    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert ref["__loss"].item() > 0
    for got in ranks:
        assert got["__loss"].item() == pytest.approx(ref["__loss"].item(), rel=1e-5)
        assert got["__acc"].item() == pytest.approx(ref["__acc"].item())
        assert set(got) == set(ref)
        nonzero = 0
        for name, g in ref.items():
            torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")
            nonzero += int(g.abs().sum() > 0)
        assert nonzero > 10  # backbones, fusion and temperature all received gradients
    assert ref["loss.log_scale"].abs().item() > 0


class _Saveable:
    def save_pretrained(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)


def _rng_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from ret2_plugin.trainers import checkpoint as ckpt

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(10 + rank)
        torch.rand(rank + 1)  # ranks have drawn differently by the time they save
        states = ckpt.all_rng_states()
        expected = torch.rand(4)
        if rank == 0:
            ckpt.save_checkpoint(
                Path(out_dir) / "ckpt",
                1,
                model=_Saveable(),
                processor=_Saveable(),
                extra_tensors={},
                optim_state={},
                state={},
                rng_states=states,
            )
        dist.barrier()
        torch.manual_seed(999)
        _, tensors, _ = ckpt.load_checkpoint(Path(out_dir) / "ckpt" / "step-00000001")
        ckpt.set_rng_state(ckpt.rng_for_rank(tensors, rank))
        save_file({"expected": expected, "restored": torch.rand(4)}, str(Path(out_dir) / f"rng{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_each_rank_resumes_its_own_rng_state(tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    mp.spawn(_rng_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    draws = [load_file(str(tmp_path / f"rng{r}.safetensors")) for r in range(2)]
    for r, d in enumerate(draws):
        assert torch.equal(d["restored"], d["expected"]), f"rank {r}"
    assert not torch.equal(draws[0]["expected"], draws[1]["expected"])


def _trainer_worker(rank: int, world: int, port: int, cfg_json: str) -> None:
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.loop import Trainer

    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    try:
        Trainer(TrainConfig.model_validate_json(cfg_json)).train()
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_trainer_under_two_ranks_matches_one_rank_with_the_global_batch(
    synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    """The whole torchrun path (env init, sampler sharding, DDP, gathered loss, clipping, AdamW)."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from ret2_plugin.modeling import ReT2Config, ReT2Model
    from ret2_plugin.presets import clip_image_processor, clip_tower_configs
    from ret2_plugin.processing import ReT2Processor, clip_tokenizer
    from ret2_plugin.trainers.config import TrainConfig
    from ret2_plugin.trainers.loop import Trainer

    text, vision = clip_tower_configs()
    torch.manual_seed(0)  # no dropout: ranks would draw other masks than one process does
    model = ReT2Model(
        ReT2Config.ret2(
            text, vision, hidden_size=64, num_queries=8, late_proj_output_size=32, dropout_p=0.0, attention_dropout=0.0
        )
    )
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    ReT2Processor(clip_tokenizer(), clip_image_processor(32)).save_pretrained(model_dir)

    for bad in ("d3", "d5"):  # unreadable images: dropped from whichever rank loads them, reported by rank 0
        (synthetic_data["root"] / "img" / f"{bad}.png").write_bytes(b"garbage")
    base = dict(
        model=str(model_dir),
        queries=str(synthetic_data["queries"]),
        corpus=str(synthetic_data["corpus"]),
        max_steps=2,
        num_workers=0,
        lr=1e-3,
        warmup_steps=0,
        progress=False,
        eval_at_end=False,
        log_every=1,
        select_best=False,
        plot=False,
        num_hard_negatives=1,
        learnable_temperature=True,
        ddp_backend="gloo",
    )
    single = Trainer(TrainConfig(**base, batch_size=8, output_dir=str(tmp_path / "one"))).train()
    cfg = TrainConfig(**base, batch_size=4, output_dir=str(tmp_path / "two"))
    mp.spawn(_trainer_worker, args=(2, _free_port(), cfg.model_dump_json()), nprocs=2, join=True)

    one = load_file(str(Path(single["model_dir"]) / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    start = load_file(str(model_dir / "model.safetensors"))
    assert any(not torch.equal(one[k], start[k]) for k in one)
    # Adam divides by sqrt(v): a 1e-7 gradient difference on a near-zero gradient can move an update by
    # ~1e-5, so weights are compared at 10% of one lr-sized update; the logged global losses tightly.
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-3, atol=1e-4, msg=lambda m, k=k: f"{k}: {m}")
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("one", "two")
    ]
    assert len(losses[0]) == len(losses[1]) == 2 and all(math.isfinite(v) for v in losses[1])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    reports = [json.loads((tmp_path / d / "train_report.json").read_text()) for d in ("one", "two")]
    bad = [{(e["id"], e["line"]) for e in r["errors"]} for r in reports]
    assert bad[0] and bad[1] == bad[0]  # errors seen on rank 1 reach rank 0's report
    # the broken documents, the image queries that use those images, and (checked before step 1) the
    # text queries whose only positive is one of them
    assert {"d3", "d5"} <= {i for i, _ in bad[0]} <= {"d3", "d5", "qi3", "qi5", "qt3", "qt5"}
