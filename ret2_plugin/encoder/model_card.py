"""The ReT section of a saved encoder's model card: backbones, tapped layers, output mode, training data.

sentence-transformers writes `README.md` after the modules are saved, so the card text is handed to
it through the model's `_model_card_text` (see `ReT2Encoder.on_model_ready`); the same facts are kept
machine-readable in `ret2_model_card.json` next to the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ret2_plugin.atomic import atomic_write_json
from ret2_plugin.modeling import ReT2Config
from ret2_plugin.modeling.configuration import is_local_path

CARD_JSON = "ret2_model_card.json"


def _backbone(config: dict[str, Any], name: str | None) -> str:
    kind = config.get("model_type", "?")
    width = config.get("hidden_size", "?")
    layers = config.get("num_hidden_layers", "?")
    origin = name or "randomly initialised / saved weights"
    return f"{kind} ({layers} layers, width {width}; from {origin})"


def _portable(name: str | None) -> str | None:
    """Hub ids as they are; local folders by their last component only (no machine paths in cards)."""
    return Path(name).name if is_local_path(name) else name


def card_facts(config: ReT2Config, *, training_data: list[str] | None = None) -> dict[str, Any]:
    """What a reader needs to know to use the embeddings correctly."""
    multi = bool(config.multi_vector)
    return {
        "model_family": config.model_family,
        "text_backbone": _backbone(config.text_config, _portable(config.text_model_name_or_path)),
        "vision_backbone": _backbone(config.vision_config, _portable(config.vision_model_name_or_path)),
        "text_layers": list(config.text_layers),
        "vision_layers": list(config.vision_layers),
        "output_mode": (
            f"multi-vector: {config.num_queries} x {config.embedding_dim} token vectors, each L2-normalised, MaxSim scoring"
            if multi
            else f"single vector: {config.embedding_dim} dims, cosine / inner product on normalised vectors"
        ),
        "query_document_fusion": "shared" if config.share_query_document else "separate query and document modules",
        "training_data": list(training_data or []),
    }


def card_markdown(config: ReT2Config, *, training_data: list[str] | None = None) -> str:
    facts = card_facts(config, training_data=training_data)
    loader = "MultiVectorEncoder" if config.multi_vector else "SentenceTransformer"
    lines = [
        "---",
        "library_name: sentence-transformers",
        "tags: [sentence-transformers, ret2-plugin, multimodal, retrieval]",
        "---",
        f"# ReT ({facts['model_family']}) multimodal retriever",
        "",
        "Encodes text, images and text+image pairs into one space (ret2-plugin).",
        "",
        f"- **Text backbone:** {facts['text_backbone']}",
        f"- **Vision backbone:** {facts['vision_backbone']}",
        f"- **Tapped layers:** text {facts['text_layers']}, vision {facts['vision_layers']}",
        f"- **Output:** {facts['output_mode']}",
        f"- **Query / document fusion:** {facts['query_document_fusion']}",
        f"- **Training data:** {', '.join(facts['training_data']) or 'unknown'}",
        "",
        "## Usage",
        "",
        "```python",
        "from ret2_plugin import load_encoder",
        "model = load_encoder('path/to/this/folder')",
        "q = model.encode_query(['a red car'])",
        "d = model.encode_document([{'text': 'a car', 'image': 'car.jpg'}, 'img.png'])",
        "# or: sentence_transformers." + loader + "('path/to/this/folder', trust_remote_code=True)",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card_section(folder: str | Path, config: ReT2Config, *, training_data: list[str] | None = None) -> None:
    """Write `ret2_model_card.json` (atomic)."""
    atomic_write_json(Path(folder) / CARD_JSON, card_facts(config, training_data=training_data))
