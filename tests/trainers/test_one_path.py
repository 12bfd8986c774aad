"""One embedding path: `ret2 eval` scores a model exactly as `ret2 index` + `ret2 search` serve it,
saved prompts included (the evaluation used to call `forward_features` and skip them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ret2_plugin.app.cli import main
from ret2_plugin.items import read_jsonl
from ret2_plugin.trainers.evaluation import as_encoder, encode_items, retrieval_metrics

pytestmark = pytest.mark.unit

PROMPTS = {"query": "Which picture shows this:", "document": "A picture of"}


@pytest.fixture
def prompted_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    from ret2_plugin import load_encoder

    encoder = load_encoder(tiny_model_dir, device="cpu", prompts=PROMPTS)
    encoder.save(str(tmp_path / "prompted"))
    return tmp_path / "prompted"


def test_eval_and_search_score_a_prompted_model_identically(
    prompted_model: Path, synthetic_data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus, queries_file = synthetic_data["corpus"], tmp_path / "queries8.jsonl"
    lines = synthetic_data["queries"].read_text().splitlines()[:8]  # 4 text (with instruction) + 4 image queries
    assert synthetic_data["root"] == tmp_path  # relative image paths resolve from the new file too
    queries_file.write_text("\n".join(lines) + "\n")
    index = tmp_path / "idx"
    assert main(["index", str(corpus), "--index", str(index), "--model", str(prompted_model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 16
    queries = list(read_jsonl(queries_file, []))
    rankings, relevant = [], []
    for query in queries:
        args = ["search", "--index", str(index), "-k", "10", "--json"]
        args += ["--text", query.text] if query.text else []
        args += ["--image", str(query.image)] if query.image else []
        args += ["--instruction", query.instruction] if query.instruction else []
        assert main(args) == 0
        rankings.append([hit["id"] for hit in json.loads(capsys.readouterr().out)["results"]])
        relevant.append(set(query.positives))
    served = retrieval_metrics(rankings, relevant)

    assert (
        main(
            [
                "eval",
                "--model",
                str(prompted_model),
                "--queries",
                str(queries_file),
                "--corpus",
                str(corpus),
                "--workers",
                "0",
                "--json",
            ]
        )
        == 0
    )
    evaluated = json.loads(capsys.readouterr().out)
    for name, value in served.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-9), name


def test_evaluation_vectors_are_the_served_vectors_prompts_included(
    prompted_model: Path, synthetic_data: dict[str, Path]
) -> None:
    import torch

    from ret2_plugin import load_encoder
    from ret2_plugin.modeling import ReT2Model
    from ret2_plugin.processing import ReT2Processor
    from ret2_plugin.search import embed_queries

    encoder = load_encoder(prompted_model, device="cpu")
    queries = list(read_jsonl(synthetic_data["queries"], []))
    cpu = torch.device("cpu")
    evaluated = encode_items(encoder, None, queries, side="query", source="q", device=cpu).embeddings.numpy()
    served = embed_queries(encoder, queries)
    np.testing.assert_allclose(evaluated, served, atol=1e-5)

    # the trainer's view (bare ReT2Model + processor) with the saved prompts gives the same vectors ...
    model, processor = ReT2Model.from_pretrained(prompted_model), ReT2Processor.from_pretrained(prompted_model)
    trained = encode_items(model, processor, queries, side="query", source="q", device=cpu, prompts=PROMPTS)
    np.testing.assert_allclose(trained.embeddings.numpy(), served, atol=1e-5)
    # ... and without them does not: the prompts reach the model (the test can fail)
    bare = encode_items(model, processor, queries, side="query", source="q", device=cpu).embeddings.numpy()
    assert not np.allclose(bare[::2], served[::2], atol=1e-3)  # text queries carry the prompt
    assert isinstance(as_encoder(model, processor, prompts=PROMPTS)[0].model, ReT2Model)
