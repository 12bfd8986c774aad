"""Fine-tuning a user can trust: checks before step 1, output-dir ownership, honest summaries,
early stopping and best-checkpoint selection, augmentation, freezing, mined hard negatives, one
tokenisation rule for training / evaluation / serving, curves written during the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ret2_plugin.app.cli import main
from ret2_plugin.trainers.config import TrainConfig
from ret2_plugin.trainers.loop import Trainer
from ret2_plugin.trainers.validate import DataValidationError

pytestmark = pytest.mark.unit


def _config(model_dir: Path, data: dict[str, Path], out: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(
        model=str(model_dir),
        queries=str(data["queries"]),
        corpus=str(data["corpus"]),
        output_dir=str(out),
        batch_size=4,
        max_steps=3,
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


def _add_bad_items(data: dict[str, Path]) -> None:
    root = data["root"]
    (root / "img" / "broken.png").write_bytes(b"not a png at all")
    with data["corpus"].open("a") as f:
        f.write(json.dumps({"id": "bad-img", "text": "broken", "image": "img/broken.png"}) + "\n")  # line 17
    with data["queries"].open("a") as f:
        f.write("{not json\n")  # line 33
        f.write(json.dumps({"id": "q-unknown", "text": "x", "positives": ["nope"]}) + "\n")  # 34
        f.write(json.dumps({"id": "q-bad-neg", "text": "x", "positives": ["d1"], "negatives": ["ghost"]}) + "\n")  # 35
        f.write(json.dumps({"id": "q-on-broken", "text": "broken thing", "positives": ["bad-img"]}) + "\n")  # 36
        f.write(json.dumps({"id": "q-missing-img", "image": "img/missing.png", "positives": ["d0"]}) + "\n")  # 37


def test_every_item_is_checked_before_step_1(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    _add_bad_items(synthetic_data)
    trainer = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "run"))
    assert trainer.step == 0
    found = {(Path(e.file).name, e.line, e.id): e.reason for e in trainer.validation.errors}
    assert "invalid JSON" in found[("queries.jsonl", 33, None)]
    assert "corpus" in found[("queries.jsonl", 34, "q-unknown")]
    assert "ghost" in found[("queries.jsonl", 35, "q-bad-neg")]
    assert "broken.png" in found[("corpus.jsonl", 17, "bad-img")]  # opened and decoded, not only sampled
    assert "cannot be opened" in found[("queries.jsonl", 36, "q-on-broken")]
    assert "missing.png" in found[("queries.jsonl", 37, "q-missing-img")]
    # refused items never reach a batch: none of them is in the training data
    kept = {q.id for q in trainer.data.queries}
    assert kept.isdisjoint({"q-unknown", "q-on-broken", "q-missing-img"}) and "q-bad-neg" in kept
    assert "bad-img" not in trainer.data.doc_index
    report = json.loads((tmp_path / "run" / "validation_report.json").read_text())
    assert (
        report["num_errors"] == len(found) and report["images_checked"] == 34
    )  # 17 documents + 17 queries with an image


def test_strict_stops_before_training(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _add_bad_items(synthetic_data)
    with pytest.raises(DataValidationError, match="strict"):
        Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "a", strict=True))
    code = main(
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--queries",
            str(synthetic_data["queries"]),
            "--corpus",
            str(synthetic_data["corpus"]),
            "--output-dir",
            str(tmp_path / "b"),
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--workers",
            "0",
            "--strict",
            "--set",
            "plot=false",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "queries.jsonl:34 (id='q-unknown')" in err and "corpus.jsonl:17 (id='bad-img')" in err
    assert not (tmp_path / "b" / "checkpoints").exists() and not (tmp_path / "b" / "metrics.jsonl").exists()


def test_an_eval_split_that_cannot_be_built_fails_first(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other_corpus.jsonl"
    other.write_text(json.dumps({"id": "zz", "text": "unrelated"}) + "\n")
    with pytest.raises(DataValidationError, match="cannot build the evaluation split.*other_corpus"):
        Trainer(
            _config(
                tiny_model_dir,
                synthetic_data,
                tmp_path / "run",
                eval_queries=str(synthetic_data["queries"]),
                eval_corpus=str(other),
            )
        )
    eval_q = tmp_path / "eval_q.jsonl"
    eval_q.write_text(json.dumps({"id": "e1", "text": "x", "positives": ["elsewhere"]}) + "\n")
    with pytest.raises(DataValidationError, match="eval_corpus is not set"):
        Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "run", eval_queries=str(eval_q)))
    with pytest.raises(ValueError, match="eval_corpus is set but eval_queries is not"):
        _config(tiny_model_dir, synthetic_data, tmp_path / "run", eval_corpus=str(other))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_output_dir_needs_resume_or_overwrite(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    Trainer(_config(tiny_model_dir, synthetic_data, out, save_every=1)).train()
    (out / "notes.txt").write_text("mine")  # not a run artefact: never deleted
    with pytest.raises(FileExistsError, match="--resume auto.*--overwrite"):
        Trainer(_config(tiny_model_dir, synthetic_data, out))
    fresh = Trainer(_config(tiny_model_dir, synthetic_data, out, overwrite=True, max_steps=1))
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()
    summary = fresh.train()
    assert summary["steps_this_run"] == 1
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000001"]
    assert (out / "notes.txt").read_text() == "mine"


def test_summary_after_resume_counts_this_runs_steps(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    first = Trainer(_config(tiny_model_dir, synthetic_data, out, max_steps=5)).train(stop_at_step=2)
    assert first["steps_this_run"] == 2 and not first["finished"]
    args = [
        "train",
        "--model",
        str(tiny_model_dir),
        "--queries",
        str(synthetic_data["queries"]),
        "--corpus",
        str(synthetic_data["corpus"]),
        "--output-dir",
        str(out),
        "--batch-size",
        "4",
        "--max-steps",
        "5",
        "--workers",
        "0",
        "--seed",
        "3",
        "--lr",
        "1e-3",
        "--set",
        "warmup_steps=1",
        "--set",
        "plot=false",
        "--no-progress",
    ]
    assert main(args) == 2 and "--resume auto" in capsys.readouterr().err  # not silently restarted
    assert main([*args, "--resume", "auto"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("trained 3 steps (steps 3-5 of 5)")
    assert "the last weights" in line and "best" not in line  # select_best is off: no "best" that is not the model


def test_early_stopping_keeps_the_best_checkpoint(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    # a learning rate too small to change the ranking: the metric cannot improve after the first evaluation
    cfg = _config(
        tiny_model_dir,
        synthetic_data,
        tmp_path,
        max_steps=20,
        lr=1e-12,
        eval_every=1,
        select_best=True,
        early_stopping_patience=2,
        eval_queries=str(synthetic_data["queries"]),
        plot=True,
    )
    summary = Trainer(cfg).train()
    assert summary["finished"] and summary["stopped_early"] and summary["step"] == 3
    assert summary["best"]["step"] == 1 and summary["model_is"] == "best"
    exported, best = (
        _weights(Path(summary["model_dir"])),
        _weights(tmp_path / "checkpoints" / "step-00000001" / "model"),
    )
    assert all(torch.equal(exported[k], best[k]) for k in best)
    evals = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [1, 2, 3]
    assert (tmp_path / "training_curves.png").stat().st_size > 0


def test_default_eval_cadence_and_curves_during_the_run(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    trainer = Trainer(
        _config(
            tiny_model_dir,
            synthetic_data,
            tmp_path,
            max_steps=20,
            eval_queries=str(synthetic_data["queries"]),
            plot=True,
            early_stopping_patience=None,
        )
    )
    assert trainer.eval_every == 2  # 10 evaluations over 20 steps when not set
    summary = trainer.train(stop_at_step=2)  # a run that has not finished ...
    assert not summary["finished"]
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [2]
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # ... already has its curves


def test_freeze_a_tower_from_the_command_line(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    code = main(
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--queries",
            str(synthetic_data["queries"]),
            "--corpus",
            str(synthetic_data["corpus"]),
            "--output-dir",
            str(tmp_path),
            "--batch-size",
            "4",
            "--max-steps",
            "2",
            "--workers",
            "0",
            "--freeze",
            "vision",
            "--set",
            "plot=false",
            "--set",
            "backbone_lr_scale=1.0",
            "--json",
        ]
    )
    assert code == 0
    start, end = _weights(tiny_model_dir), _weights(tmp_path / "model")
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert not any(k.startswith("vision_backbone.") for k in changed)
    assert any(k.startswith("text_backbone.") for k in changed)


def test_augmentation_is_seeded_and_keeps_size() -> None:
    from PIL import Image

    from ret2_plugin.trainers.augment import Augmentation

    image = Image.linear_gradient("L").convert("RGB").resize((40, 30))
    aug = Augmentation(min_scale=0.5, flip=True, jitter=0.3)
    out = [aug(image, torch.Generator().manual_seed(s)).tobytes() for s in (1, 1, 2)]
    assert out[0] == out[1] and out[0] != out[2]
    assert aug(image, torch.Generator().manual_seed(1)).size == (40, 30) and out[0] != image.tobytes()
    flip_only = Augmentation(min_scale=1.0, flip=True, jitter=0.0)
    results = {flip_only(image, torch.Generator().manual_seed(s)).tobytes() for s in range(8)}
    assert results == {image.tobytes(), image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()}


@pytest.mark.slow  # four short trainings
def test_augmented_training_resumes_exactly(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    straight = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "a", augment=True)).train()
    Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "b", augment=True)).train(stop_at_step=1)
    resumed = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "b", augment=True, resume="auto")).train()
    a, b = _weights(Path(straight["model_dir"])), _weights(Path(resumed["model_dir"]))
    plain = _weights(Path(Trainer(_config(tiny_model_dir, synthetic_data, tmp_path / "c")).train()["model_dir"]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], plain[k]) for k in a)  # augmentation changed what was trained on


def test_mined_hard_negatives_enter_the_batch(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    from ret2_plugin.trainers.evaluation import encode_items, exact_search

    trainer = Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, mine_hard_negatives=2))
    saved = json.loads((tmp_path / "mined_negatives.json").read_text())
    assert len(saved["negatives"]) == len(trainer.data.queries) == 32
    # they are the starting model's best-ranked non-positives
    model, processor = trainer.model, trainer.processor
    docs = encode_items(model, processor, trainer.data.corpus, side="document", source="c", device=torch.device("cpu"))
    query = trainer.data.queries[0]
    q = encode_items(model, processor, [query], side="query", source="q", device=torch.device("cpu"))
    ranked = [trainer.data.corpus[j].id for j in exact_search(q.embeddings, docs.embeddings, 16)[0].tolist()]
    assert saved["negatives"][0] == [d for d in ranked if d not in query.positives][:2]
    assert all(n in trainer.data.queries[i].negatives for i, ns in enumerate(saved["negatives"]) for n in ns)
    batch = next(iter(trainer.loader))
    assert batch["doc_ids"].shape[0] == 8  # 4 positives + 1 mined negative per query
    trainer.train()


def test_training_evaluation_and_serving_share_the_text_limit(tmp_path: Path, synthetic_data: dict[str, Path]) -> None:
    from ret2_plugin import load_encoder
    from ret2_plugin.presets import tiny_clip_model

    model, processor = tiny_clip_model("ret2")
    model.config.max_text_length = 5
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")  # the processor itself has no limit saved
    trainer = Trainer(_config(tmp_path / "m", synthetic_data, tmp_path / "run"))
    served = load_encoder(tmp_path / "m", device="cpu")
    assert trainer.processor.max_length == served[0].processor.max_length == 5
    from ret2_plugin.items import Item

    long = [Item(text="one two three four five six seven eight nine ten")]
    assert trainer.processor(long, side="document")["input_ids"].shape[1] == 5


def test_checkpoints_on_a_clock_by_default(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    assert TrainConfig.model_fields["save_every_minutes"].default == 10.0  # a run is never hours without a checkpoint
    Trainer(_config(tiny_model_dir, synthetic_data, tmp_path, save_every_minutes=1e-9, keep_last=5)).train()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-00000001",
        "step-00000002",
        "step-00000003",
    ]


def test_training_applies_the_served_prompts(
    tiny_model_dir: Path, synthetic_data: dict[str, Path], tmp_path: Path
) -> None:
    from ret2_plugin import load_encoder
    from ret2_plugin.encoder.inputs import with_prompt
    from ret2_plugin.trainers.data import PairCollator

    folder = tmp_path / "st"
    load_encoder(tiny_model_dir, device="cpu", prompts={"query": "search for:"}).save(str(folder))
    trainer = Trainer(_config(folder, synthetic_data, tmp_path / "run"))
    assert trainer.prompts == {"query": "search for:"}
    example = trainer.dataset[0]
    batch = PairCollator(trainer.processor, trainer.prompts)([example])
    expected = trainer.processor([with_prompt(example["query"], "search for:", "query")], side="query")
    assert torch.equal(batch["query_inputs"]["input_ids"], expected["input_ids"])
    plain = trainer.processor([example["query"]], side="query")["input_ids"]
    assert plain.shape != expected["input_ids"].shape or not torch.equal(plain, expected["input_ids"])


def test_modules_the_loop_cannot_train_are_refused(tmp_path: Path) -> None:
    from ret2_plugin.trainers.model_io import check_modules

    ours = {"idx": 0, "name": "0", "path": "", "type": "ret2_plugin.encoder.st_module.ReT2Encoder"}
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [ours, {"idx": 1, "name": "1", "path": "1_Normalize", "type": "sentence_transformers.models.Normalize"}]
        )
    )
    check_modules(tmp_path)  # normalising does not change what the loop trains
    (tmp_path / "modules.json").write_text(
        json.dumps([ours, {"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.models.Dense"}])
    )
    with pytest.raises(ValueError, match="Dense.*SentenceTransformerTrainer"):
        check_modules(tmp_path)
