"""The training loop on a tiny model and synthetic data: exact resume, gradient checkpointing,
bf16 autocast on CPU, bad items reported and skipped, the encoder-format export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ret2_plugin.trainers.config import TrainConfig
from ret2_plugin.trainers.loop import Trainer

pytestmark = pytest.mark.unit


def _config(model_dir: Path, data: dict[str, Path], out: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(
        model=str(model_dir),
        queries=str(data["queries"]),
        corpus=str(data["corpus"]),
        output_dir=str(out),
        batch_size=4,
        max_steps=4,
        num_workers=0,
        lr=1e-3,
        warmup_steps=1,
        log_every=1,
        progress=False,
        eval_at_end=False,
        select_best=False,
        plot=False,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_resume_gives_identical_weights(tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path) -> None:
    kw = dict(num_hard_negatives=1, grad_accum_steps=2, learnable_temperature=True)
    straight = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "a", **kw)).train()

    first = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "b", **kw)).train(stop_at_step=2)
    assert not first["finished"] and first["step"] == 2
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["step-00000002"]
    resumed = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "b", resume="auto", **kw))
    assert resumed.step == 2 and resumed.batch_in_epoch == 4  # 2 steps x 2 micro-batches consumed
    second = resumed.train()
    assert second["finished"] and second["step"] == 4

    a, b = _weights(Path(straight["model_dir"])), _weights(Path(second["model_dir"]))
    start = _weights(tiny_model_dir)
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it did train
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the metrics log of the resumed run has one record per step, as the straight run's
    steps = [r["step"] for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())]
    assert steps == [1, 2, 3, 4]


def test_keep_last_checkpoints_and_export(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    from ret2_plugin.modeling import ReT2Model
    from ret2_plugin.processing import ReT2Processor

    summary = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, save_every=1, keep_last=2)).train()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000003", "step-00000004"]
    model_dir = Path(summary["model_dir"])
    ReT2Model.from_pretrained(model_dir)  # the encoder-format layout: model + processor together
    ReT2Processor.from_pretrained(model_dir)
    exported, last = _weights(model_dir), _weights(tmp_path / "checkpoints" / "step-00000004" / "model")
    assert exported.keys() == last.keys() and all(torch.equal(exported[k], last[k]) for k in exported)


def test_gradient_checkpointing_same_loss_and_grads(tiny_model_dir: Path) -> None:
    from PIL import Image

    from ret2_plugin.items import Item
    from ret2_plugin.modeling import ReT2Model
    from ret2_plugin.processing import ReT2Processor
    from ret2_plugin.trainers.loop import TrainModule, enable_checkpointing
    from ret2_plugin.trainers.losses import ContrastiveLoss
    from ret2_plugin.trainers.optim import block_list

    processor = ReT2Processor.from_pretrained(tiny_model_dir)
    qs = [Item(text="red apple", image=Image.new("RGB", (32, 32), (200, 0, 0))), Item(text="green pear")]
    ds = [Item(text="an apple"), Item(text="a pear", image=Image.new("RGB", (32, 32), (0, 200, 0)))]
    q_in, d_in = processor(qs, side="query"), processor(ds, side="document")

    results = []
    for ckpt in (False, True):
        model = ReT2Model.from_pretrained(tiny_model_dir).train()
        calls = []
        inner = next(iter(block_list(model.text_backbone)[0].children()))  # hooks inside the checkpointed block
        inner.register_forward_hook(lambda *a: calls.append(1))
        if ckpt:
            for tower in (model.text_backbone, model.vision_backbone):
                enable_checkpointing(tower)
        module = TrainModule(model, ContrastiveLoss(0.05))
        torch.manual_seed(0)
        out = module(q_in, d_in, torch.tensor([[0], [1]]), torch.tensor([0, 1]))
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.item(), grads, len(calls)))
    (loss_a, grads_a, calls_a), (loss_b, grads_b, calls_b) = results
    assert calls_b > calls_a  # the checkpointed layer ran again during backward: checkpointing was active
    assert loss_a == pytest.approx(loss_b, rel=1e-6)
    assert grads_a.keys() == grads_b.keys() and any("text_backbone" in k for k in grads_a)
    for k in grads_a:
        torch.testing.assert_close(grads_a[k], grads_b[k], rtol=1e-5, atol=1e-7)


def test_trainer_enables_checkpointing_on_trained_towers_only(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    trainer = Trainer(
        _config(
            tiny_model_dir,
            synthetic_data,
            tmp_path,
            gradient_checkpointing=True,
            text_backbone="partial",
            vision_backbone="frozen",
            unfreeze_last_n_layers=1,
        )
    )
    assert trainer.checkpointed == ["text"]
    blocks = {
        m.group(1)
        for n, p in trainer.model.text_backbone.named_parameters()
        if p.requires_grad and (m := re.search(r"layers\.(\d+)\.", n))
    }
    assert blocks == {"3"}  # only the last block (of 4) is unfrozen
    assert not any(p.requires_grad for p in trainer.model.vision_backbone.parameters())
    names = [g["name"] for g in trainer.optimizer.param_groups]
    assert "backbone" in names and "fusion" in names
    lrs = {g["name"]: g["initial_lr"] for g in trainer.optimizer.param_groups}
    assert lrs["backbone"] == pytest.approx(lrs["fusion"] * 0.1)


def test_bf16_autocast_runs_on_cpu(tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path) -> None:
    summary = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, precision="bf16", max_steps=2)).train()
    assert summary["precision"] == "bf16" and summary["finished"]
    assert torch.isfinite(torch.tensor(summary["final_loss"]))
    start, end = _weights(tiny_model_dir), _weights(Path(summary["model_dir"]))
    assert any(not torch.equal(start[k], end[k]) for k in start)


def test_bad_items_are_reported_and_skipped(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    root = synthetic_data["root"]
    (root / "img" / "broken.png").write_bytes(b"not a png at all")
    with synthetic_data["corpus"].open("a") as f:
        f.write(json.dumps({"id": "bad-img", "text": "broken", "image": "img/broken.png"}) + "\n")
        f.write("{not json\n")
    with synthetic_data["queries"].open("a") as f:
        f.write(json.dumps({"id": "q-unknown", "text": "x", "positives": ["nope"]}) + "\n")
        for i in range(4):  # queries whose positive image cannot be opened: skipped at batch time
            f.write(json.dumps({"id": f"q-bad-{i}", "text": "broken thing", "positives": ["bad-img"]}) + "\n")
        f.write(json.dumps({"id": "q-missing-img", "image": "img/missing.png", "positives": ["d0"]}) + "\n")
    summary = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, max_steps=10, num_workers=1)).train()
    assert summary["finished"]
    reasons = {(e["id"], e["line"]): e["reason"] for e in summary["errors"]}
    assert any("invalid JSON" in r for r in reasons.values())
    assert "corpus" in reasons[("q-unknown", 33)]
    bad = [e for e in summary["errors"] if e["id"] == "bad-img"]
    assert bad and "broken.png" in bad[0]["reason"] and bad[0]["file"].endswith("corpus.jsonl") and bad[0]["line"] == 17
    assert any(e["id"] == "q-missing-img" and "missing.png" in e["reason"] for e in summary["errors"])
    assert summary["num_errors"] == len({(e["file"], e["line"], e["id"], e["reason"]) for e in summary["errors"]})


def test_multi_vector_model_trains_fusion_only(
    tiny_v1_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    trainer = Trainer(
        _config(
            tiny_v1_model_dir,
            synthetic_data,
            tmp_path,
            max_steps=2,
            eval_queries=str(synthetic_data["queries"]),
            eval_at_end=True,
        )
    )
    assert trainer.model.config.multi_vector and trainer.loss_fn.logit_scale().item() == pytest.approx(1.0)
    summary = trainer.train()
    start, end = _weights(tiny_v1_model_dir), _weights(Path(summary["model_dir"]))
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert any(k.startswith("query_fusion.") for k in changed) and any(
        k.startswith("document_fusion.") for k in changed
    )
    assert not any("backbone" in k for k in changed)  # ReT v1: frozen towers
    assert 0 <= summary["last_eval"]["recall@5"] <= 1


def test_fp16_uses_the_grad_scaler(tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path) -> None:
    trainer = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, precision="fp16", max_steps=2))
    assert trainer.scaler.is_enabled()
    summary = trainer.train()
    assert summary["finished"] and trainer.scaler.get_scale() > 0
    state = json.loads((tmp_path / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert state["step"] == 2


def test_resume_refuses_changed_settings(tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path) -> None:
    Trainer(_config(tiny_model_dir, synthetic_data, tmp_path)).train(stop_at_step=1)
    for change, message in (
        (dict(batch_size=8), "batch_size was 4, now 8"),
        (dict(grad_accum_steps=2), "grad_accum_steps"),
        (dict(max_steps=6), "max_steps was 4, now 6"),
        (dict(num_epochs=2.0), "num_epochs"),
    ):
        with pytest.raises(ValueError, match=message):
            Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, resume="auto", **change))
    assert Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, resume="auto")).step == 1  # same settings: fine


def test_final_export_keeps_the_old_model_until_the_new_one_is_in(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    trainer = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path))
    target = tmp_path / "model"
    target.mkdir()
    (target / "previous.txt").write_text("an earlier run's model")
    real_replace, real_rename = os.replace, os.rename

    def crash(real):  # type: ignore[no-untyped-def]
        def move(src, dst):  # type: ignore[no-untyped-def]
            if Path(src).name.startswith(".model-") and Path(dst) == target:
                raise OSError("killed mid-export")
            return real(src, dst)

        return move

    monkeypatch.setattr(os, "replace", crash(real_replace))
    monkeypatch.setattr(os, "rename", crash(real_rename))
    with pytest.raises(OSError, match="mid-export"):
        trainer._export_final()
    assert (target / "previous.txt").is_file()
    monkeypatch.setattr(os, "replace", real_replace)
    monkeypatch.setattr(os, "rename", real_rename)
    assert trainer._export_final() == target
    assert (target / "model.safetensors").is_file() and not (target / "previous.txt").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_zero_backbone_lr_freezes_the_backbone(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    trainer = Trainer(
        _config(tiny_model_dir, synthetic_data, tmp_path, text_backbone="full", backbone_lr_scale=0.0, max_steps=1)
    )
    backbone = [p for t in (trainer.model.text_backbone, trainer.model.vision_backbone) for p in t.parameters()]
    assert not any(
        p.requires_grad for p in backbone
    )  # no gradient computed (nor all-reduced) for never-stepped weights
    assert {g["name"] for g in trainer.optimizer.param_groups} >= {"fusion"}
    assert not any(g["name"].startswith("backbone") for g in trainer.optimizer.param_groups)
    trainer.train()
    assert all(p.grad is None for p in backbone)


def test_train_destroys_the_process_group_it_created(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.distributed as dist

    from ret2_plugin.trainers import distributed as du
    from ret2_plugin.trainers.loop import train

    def join(backend=None, timeout_minutes=60):  # type: ignore[no-untyped-def]  # a one-rank "torchrun" group
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        return True

    monkeypatch.setattr(du, "init_from_env", join)
    try:
        assert (
            train(_config(tiny_model_dir, synthetic_data, tmp_path / "run", max_steps=1)) / "model.safetensors"
        ).is_file()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
