"""Load a model for training / evaluation exactly as serving loads it.

Serving (`load_encoder`) builds the processor with the model's `max_text_length` and applies the
sentence-transformers prompts saved with the model (`config_sentence_transformers.json`) to queries
and documents. `ret2 train` and `ret2 eval` load through here so they tokenise with the same limit and
prompts. A sentence-transformers folder with modules after ours that change the embedding (`Dense`,
...) is refused: our loop trains the ReT module only, so the served model would differ from the one
trained and evaluated (train such a model with `SentenceTransformerTrainer`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# modules that may follow ours without changing what the loop trains (the loss normalises anyway)
_NEUTRAL = ("Normalize",)


def serving_prompts(folder: str | Path) -> dict[str, str]:
    """The "query" / "document" prompts that `encode_query` / `encode_document` apply by default."""
    path = Path(folder) / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    try:
        prompts = json.loads(path.read_text(encoding="utf-8")).get("prompts") or {}
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{path} is unreadable: {exc}") from exc
    return {side: str(prompts[side]) for side in ("query", "document") if prompts.get(side)}


def check_modules(folder: str | Path) -> None:
    """Refuse a sentence-transformers folder whose pipeline has modules the loop would not train."""
    path = Path(folder) / "modules.json"
    if not path.is_file():
        return
    try:
        types = [str(m.get("type", "")) for m in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{path} is unreadable: {exc}") from exc
    extra = [t for t in types[1:] if t.rsplit(".", 1)[-1] not in _NEUTRAL]
    if extra:
        raise ValueError(
            f"{folder}: modules after the ReT encoder ({', '.join(extra)}) change the embedding, and "
            "`ret2 train` / `ret2 eval` run the ReT module only; use SentenceTransformerTrainer for this model"
        )


def load_for_training(path: str | Path) -> tuple[Any, Any, dict[str, str]]:
    """`(ReT2Model, ReT2Processor, prompts)` built as `ReT2Encoder.from_model_dir` builds them."""
    from ret2_plugin.encoder.st_module import ReT2Encoder
    from ret2_plugin.modeling import official

    folder = official.resolve_checkpoint_dir(path)
    check_modules(folder)
    module = ReT2Encoder.from_model_dir(folder)
    return module.model, module.processor, serving_prompts(folder)
