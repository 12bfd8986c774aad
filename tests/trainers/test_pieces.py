"""Metrics by hand, config overrides, checkpoint retention and atomicity, the resumable sampler,
the data loader's error reporting, the converters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ret2_plugin.trainers import checkpoint as ckpt
from ret2_plugin.trainers.config import TrainConfig, parse_overrides
from ret2_plugin.trainers.convert import convert
from ret2_plugin.trainers.data import ResumableBatchSampler, TrainingData
from ret2_plugin.trainers.evaluation import exact_search, mrr_at_k, ndcg_at_k, recall_at_k, retrieval_metrics

pytestmark = pytest.mark.unit


def test_metrics_by_hand() -> None:
    ranked, rel = ["a", "b", "c", "d"], {"c", "z"}
    assert recall_at_k(ranked, rel, 1) == 0.0 and recall_at_k(ranked, rel, 3) == 1.0
    assert mrr_at_k(ranked, rel) == pytest.approx(1 / 3)
    # one hit at rank 3; the ideal ranking has 2 hits at ranks 1, 2
    assert ndcg_at_k(ranked, rel) == pytest.approx((1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    m = retrieval_metrics([ranked, ["z", "x"]], [rel, {"z"}])
    assert m["recall@1"] == pytest.approx(0.5) and m["mrr@10"] == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError):
        retrieval_metrics([], [])


def test_exact_search_single_and_multi_vector() -> None:
    docs = torch.eye(3)
    q = torch.tensor([[0.0, 1.0, 0.0], [0.6, 0.0, 0.8]])
    assert exact_search(q, docs, 2).tolist() == [[1, 0], [2, 0]]
    qm, dm = torch.eye(2)[None].repeat(2, 1, 1), torch.stack([torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 0.0]])])
    assert exact_search(qm, dm, 1).tolist() == [[0], [0]]  # MaxSim: doc 0 matches both query tokens


@pytest.mark.parametrize("multi", [False, True])
def test_exact_search_slices_documents_and_matches_the_unsliced_search(
    multi: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ret2_plugin.trainers import evaluation
    from ret2_plugin.trainers.losses import similarity

    gen = torch.Generator().manual_seed(0)
    shape_q, shape_d = ((7, 4, 8), (23, 5, 8)) if multi else ((7, 8), (23, 8))
    q = torch.nn.functional.normalize(torch.randn(*shape_q, generator=gen), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(*shape_d, generator=gen), dim=-1)
    expected = similarity(q, d).topk(5, dim=1).indices
    per_pair = 4 * 5 if multi else 1
    blocks: list[tuple[int, int]] = []

    def recording(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        blocks.append((a.shape[0], b.shape[0]))
        return similarity(a, b)

    monkeypatch.setattr(evaluation, "similarity", recording)
    got = exact_search(q, d, 5, chunk=2, max_elements=30 * per_pair)
    assert torch.equal(got, expected)
    assert max(nq * nd * per_pair for nq, nd in blocks) <= 30 * per_pair  # no block above the budget
    assert len({nd for _, nd in blocks}) > 1 and sum(nd for nq, nd in blocks[:2]) == 23  # documents were sliced


def test_rng_state_of_each_rank_is_restored_to_that_rank(tmp_path: Path) -> None:
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        states.append(ckpt.rng_state())
    ckpt.save_checkpoint(
        tmp_path,
        1,
        model=_Saveable(),
        processor=_Saveable(),
        extra_tensors={},
        optim_state={},
        state={},
        rng_states=states,
    )
    _, tensors, _ = ckpt.load_checkpoint(tmp_path / "step-00000001")
    for rank, seed in ((0, 1), (1, 2)):
        torch.manual_seed(99)
        ckpt.set_rng_state(ckpt.rng_for_rank(tensors, rank))
        restored = torch.rand(3)
        torch.manual_seed(seed)
        assert torch.equal(restored, torch.rand(3)), rank
    with pytest.raises(ValueError, match="rank 2"):
        ckpt.rng_for_rank(tensors, 2)
    legacy = {"rng.cpu": states[0]["rng.cpu"], "loss.x": torch.ones(1)}  # written before per-rank states
    assert ckpt.rng_for_rank(legacy, 1).keys() == {"rng.cpu"}


def test_checkpoint_files_are_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    real = ckpt.fsync_file
    monkeypatch.setattr(ckpt, "fsync_file", lambda p: (synced.append(Path(p)), real(p)))
    final = ckpt.save_checkpoint(
        tmp_path, 1, model=_Saveable(), processor=_Saveable(), extra_tensors={}, optim_state={}, state={}
    )
    files = {p.relative_to(final) for p in final.rglob("*") if p.is_file()}
    assert files and {Path(*p.relative_to(tmp_path).parts[1:]) for p in synced} == files
    assert all(p.relative_to(tmp_path).parts[0].startswith(".tmp-step-") for p in synced)  # while still hidden


def test_replace_dir_keeps_the_old_folder_when_the_new_cannot_move_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    old, new = tmp_path / "model", tmp_path / ".new"
    old.mkdir()
    (old / "w.txt").write_text("old")
    new.mkdir()
    (new / "w.txt").write_text("new")
    real = os.replace

    def failing(src, dst):  # type: ignore[no-untyped-def]
        if Path(src) == new:
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk gone"):
        ckpt.replace_dir(new, old)
    assert (old / "w.txt").read_text() == "old"
    monkeypatch.setattr(os, "replace", real)
    ckpt.replace_dir(new, old)
    assert (old / "w.txt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_config_yaml_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "model: m\nqueries: q\ncorpus: c\noutput_dir: o\nlr: 0.001\neval_every: 5\neval_queries: e\n"
    )
    cfg = TrainConfig.load(tmp_path / "c.yaml", parse_overrides(["lr=3e-5", "eval-every=null", "precision=bf16"]))
    assert cfg.lr == pytest.approx(3e-5) and cfg.eval_every is None and cfg.precision == "bf16"
    with pytest.raises(ValueError, match="lerning_rate"):
        TrainConfig.load(tmp_path / "c.yaml", {"lerning_rate": 1})
    with pytest.raises(ValueError, match="best_metric"):
        TrainConfig.load(tmp_path / "c.yaml", {"best_metric": "accuracy"})
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


class _Saveable:
    def save_pretrained(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "weights.txt").write_text("w")


def test_checkpoints_keep_last_protect_best_and_ignore_partial(tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    opt = {"optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1, "params": [0]}]}}
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(
            root,
            step,
            model=_Saveable(),
            processor=_Saveable(),
            extra_tensors={"loss.x": torch.ones(1)},
            optim_state=opt,
            state={"epoch": 0, "batch_in_epoch": step},
        )
        ckpt.prune_checkpoints(root, 2, protect={root / "step-00000001"})
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000001", "step-00000003", "step-00000004"]
    (root / "step-00000009").mkdir()  # a directory without trainer_state.json is not a checkpoint
    assert ckpt.latest_checkpoint(root).name == "step-00000004"
    state, tensors, optim_state = ckpt.load_checkpoint(root / "step-00000004")
    assert state["step"] == 4 and state["batch_in_epoch"] == 4 and "rng.rank0.cpu" in tensors
    assert torch.equal(optim_state["optimizer"]["state"][0]["exp_avg"], torch.ones(2))
    assert not any(p.name.startswith(".tmp") for p in root.iterdir())


def test_failed_checkpoint_write_leaves_nothing(tmp_path: Path) -> None:
    class Broken(_Saveable):
        def save_pretrained(self, path: str) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.save_checkpoint(
            tmp_path, 1, model=Broken(), processor=_Saveable(), extra_tensors={}, optim_state={}, state={}
        )
    assert list(tmp_path.iterdir()) == []


def test_sampler_shards_ranks_and_resumes_mid_epoch() -> None:
    full = [ResumableBatchSampler(22, 3, seed=1, rank=r, world_size=2) for r in range(2)]
    for s in full:
        s.set_epoch(5)
    batches = [list(s) for s in full]
    assert len(batches[0]) == len(batches[1]) == 3  # 22 // (3 * 2); the tail waits for the next shuffle
    seen = [i for b in batches for batch in b for i in batch]
    assert len(seen) == len(set(seen)) == 18
    resumed = ResumableBatchSampler(22, 3, seed=1, rank=1, world_size=2)
    resumed.set_epoch(5, start_batch=2)
    assert list(resumed) == batches[1][2:]
    other_epoch = ResumableBatchSampler(22, 3, seed=1, rank=1, world_size=2)
    other_epoch.set_epoch(6)
    assert list(other_epoch) != batches[1]
    with pytest.raises(ValueError, match="cannot fill"):
        ResumableBatchSampler(5, 3, world_size=2)


def test_training_data_reports_unusable_queries(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text('{"id": "d1", "text": "x"}\n{"id": "d1", "text": "dup"}\n')
    (tmp_path / "q.jsonl").write_text(
        '{"id": "q1", "text": "a", "positives": ["d1", "gone"], "negatives": ["d1", "nah"]}\n'
        '{"id": "q2", "text": "b", "positives": ["gone"]}\n{"id": "q3", "text": "c"}\n'
    )
    data = TrainingData.load(tmp_path / "q.jsonl", tmp_path / "c.jsonl")
    assert [q.id for q in data.queries] == ["q1"]
    assert data.queries[0].positives == ("d1",) and data.queries[0].negatives == ()  # a positive is never a negative
    reasons = {(e.id, e.line): e.reason for e in data.errors}
    assert reasons[("d1", 2)] == "duplicate id"
    assert "gone" in reasons[("q2", 2)] and reasons[("q3", 3)] == "no positives"
    assert any("nah" in r for r in reasons.values())


def test_mbeir_and_m2kr_converters(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "qid": "9:1",
                    "query_txt": "a dog",
                    "query_img_path": "imgs/1.jpg",
                    "pos_cand_list": ["9:5"],
                    "neg_cand_list": ["9:6"],
                    "task_id": 3,
                },
                {"qid": "9:2", "query_txt": "", "pos_cand_list": ["9:5"]},
                {"qid": "9:3", "query_txt": "no positives"},
            ]
        )
        + "\n{broken\n"
    )
    rep = convert("mbeir-queries", tmp_path / "q.jsonl", tmp_path / "out_q.jsonl", image_root=str(tmp_path))
    assert rep["written"] == 1 and len(rep["errors"]) == 3
    row = json.loads((tmp_path / "out_q.jsonl").read_text())
    assert row == {
        "id": "9:1",
        "text": "a dog",
        "image": str(tmp_path / "imgs" / "1.jpg"),
        "positives": ["9:5"],
        "negatives": ["9:6"],
        "meta": {"task_id": 3},
    }
    (tmp_path / "p.jsonl").write_text(
        json.dumps({"passage_id": "p1", "passage_content": "text", "img_path": "https://x/y.jpg"})
        + "\n"
        + json.dumps({"passage_id": "p1", "passage_content": "again"})
        + "\n"
    )
    rep = convert("m2kr-corpus", tmp_path / "p.jsonl", tmp_path / "out_p.jsonl")
    assert rep["written"] == 1 and rep["errors"][0]["reason"] == "duplicate id"
    (tmp_path / "m.jsonl").write_text(
        json.dumps(
            {
                "question_id": "k1",
                "question": None,
                "img_path": "a.jpg",
                "instruction": "Identify.",
                "pos_item_ids": ["p1"],
            }
        )
        + "\n"
    )
    convert("m2kr-queries", tmp_path / "m.jsonl", tmp_path / "out_m.jsonl")
    from ret2_plugin.items import read_jsonl

    errors: list = []
    items = list(read_jsonl(tmp_path / "out_m.jsonl", errors))
    assert (
        not errors and items[0].instruction == "Identify." and items[0].text is None and items[0].positives == ("p1",)
    )
    assert items[0].image == str(tmp_path / "a.jpg")
