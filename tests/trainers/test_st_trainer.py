"""sentence-transformers' own `SentenceTransformerTrainer` with `router_mapping` trains the side it
names: on a model whose query and document fusion modules differ, the anchor column must go through
the query side (the collator stamps `features["task"]`, the loss calls `model(features)`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.unit

datasets = pytest.importorskip("datasets")
pytest.importorskip("accelerate")


@pytest.fixture(scope="module")
def two_sided_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny single-vector ReT-2 model with separate query and document fusion modules."""
    from ret2_plugin.modeling import ReT2Config, ReT2Model
    from ret2_plugin.presets import clip_image_processor, clip_tower_configs
    from ret2_plugin.processing import ReT2Processor, clip_tokenizer

    text, vision = clip_tower_configs()
    torch.manual_seed(0)
    config = ReT2Config.ret2(
        text, vision, hidden_size=64, num_queries=8, late_proj_output_size=32, share_query_document=False
    )
    model = ReT2Model(config).eval()
    out = tmp_path_factory.mktemp("two-sided")
    model.save_pretrained(out)
    ReT2Processor(clip_tokenizer(), clip_image_processor(32)).save_pretrained(out)
    return out


def _fusion(st: object, side: str) -> dict[str, torch.Tensor]:
    module = getattr(st[0].model, f"{side}_fusion")  # type: ignore[index]
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_features_task_selects_the_side(two_sided_model_dir: Path) -> None:
    from ret2_plugin import load_encoder

    st = load_encoder(two_sided_model_dir, device="cpu")
    texts = ["a red apple", "a grey stone"]
    query = st.encode_query(texts, convert_to_tensor=True)
    document = st.encode_document(texts, convert_to_tensor=True)
    assert not torch.allclose(query, document, atol=1e-4)  # the two sides really differ
    with torch.no_grad():  # what the ST losses do: model(features) with the collator's stamped task
        feats = st.preprocess(texts, task="query")
        feats["task"] = "query"
        via_features = st(feats)["sentence_embedding"]
    torch.testing.assert_close(via_features, query, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "mapping", [{"anchor": "query", "positive": "document"}, {"anchor": "document", "positive": "document"}]
)
def test_sentence_transformer_trainer_trains_the_mapped_side(
    two_sided_model_dir: Path, tmp_path: Path, mapping: dict[str, str]
) -> None:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from ret2_plugin import load_encoder

    st = load_encoder(two_sided_model_dir, device="cpu")
    before = {side: _fusion(st, side) for side in ("query", "document")}
    words = ["apple", "river", "stone", "cloud", "tiger", "piano", "candle", "forest"]
    data = datasets.Dataset.from_dict(
        {"anchor": [f"find the {w}" for w in words], "positive": [f"a photo of a {w}" for w in words]}
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "st"),
        max_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        router_mapping=mapping,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_strategy="no",
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(model=st, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(st))
    trainer.train()
    changed = {side: any(not torch.equal(before[side][k], v) for k, v in _fusion(st, side).items()) for side in before}
    assert changed["document"]
    assert changed["query"] == (
        mapping["anchor"] == "query"
    )  # the query side trains exactly when a column is mapped to it
