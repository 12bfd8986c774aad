"""`ReT2Processor`: items -> model inputs, exactly as the official `get_ret_features` prepares them.

Text: the query side gets `"{instruction} {text}"`; missing text is the empty string with
`text_mask = 0`. Images: missing ones become a black 336x336 placeholder run through the image
processor with `image_mask = 0`. Tokenizer called with padding + truncation (CLIP: 77 tokens).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer

from ret2_plugin.items import Item, Side
from ret2_plugin.processing.fast_pixels import fast_pixel_values
from ret2_plugin.processing.images import load_image

PLACEHOLDER_SIZE = (336, 336)


def _has_tokenizer_files(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))


class ReT2Processor:
    """Tokenizer + image processor + the masks ReT's gates need."""

    def __init__(self, tokenizer: Any, image_processor: Any, *, max_length: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        text_config: dict[str, Any] | None = None,
        text_model_name_or_path: str | None = None,
        vision_model_name_or_path: str | None = None,
        max_length: int | None = None,
    ) -> ReT2Processor:
        """Files saved in `path` win; otherwise they come from the backbones' names / paths.

        `text_config` (the text tower's config dict) is handed to the tokenizer loader for files in
        `path`: the folder's own `config.json`, if any, describes the whole ReT model (an official
        checkpoint's `model_type: "retriever"`), not the text tower."""
        folder = Path(path)
        if text_config is None and text_model_name_or_path is None and vision_model_name_or_path is None:
            from ret2_plugin.modeling.official import config_from_official, is_official_checkpoint

            if is_official_checkpoint(folder):  # the backbones it names, as the official code reads them
                official = config_from_official(json.loads((folder / "config.json").read_text(encoding="utf-8")))
                return cls.for_model(folder, official)
        text_source = str(folder) if _has_tokenizer_files(folder) else text_model_name_or_path
        vision_source = str(folder) if (folder / "preprocessor_config.json").is_file() else vision_model_name_or_path
        if not text_source or not vision_source:
            raise FileNotFoundError(
                f"no tokenizer / image processor files in {folder} and no backbone name to load them from"
            )
        tokenizer_kwargs: dict[str, Any] = {}
        if text_config and text_source == str(folder):
            from ret2_plugin.modeling.backbones import config_from_dict

            tokenizer_kwargs["config"] = config_from_dict(text_config)
        tokenizer = AutoTokenizer.from_pretrained(text_source, **tokenizer_kwargs)
        image_processor = AutoImageProcessor.from_pretrained(vision_source)
        return cls(tokenizer, image_processor, max_length=max_length)

    @classmethod
    def for_model(cls, path: str | Path, config: Any) -> ReT2Processor:
        """The processor of the model saved in `path` (ours or an official checkpoint) whose
        `ReT2Config` is `config`: files in `path` first, else the backbones' names (as the official
        `init_tokenizer_and_image_processor` does)."""
        return cls.from_pretrained(
            path,
            text_config=config.text_config,
            text_model_name_or_path=config.text_model_name_or_path,
            vision_model_name_or_path=config.vision_model_name_or_path,
            max_length=config.max_text_length,
        )

    def save_pretrained(self, path: str | Path) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(folder))
        self.image_processor.save_pretrained(str(folder))

    # ---- pieces, usable separately (e.g. decode images in DataLoader workers) --------------------
    def text_of(self, item: Item, side: Side) -> str:
        if not item.has_text and not (side == "query" and item.instruction):
            return ""
        return item.query_text() if side == "query" else (item.text or "")

    def load_images(self, items: Sequence[Item], *, root: str | Path | None = None) -> list[Image.Image | None]:
        """Decode every item's image (None where it has none); raises `ImageLoadError`."""
        return [load_image(item.image, root=root) if item.has_image else None for item in items]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = dict(return_tensors="pt", padding=True, truncation=True)
        if self.max_length:
            kwargs["max_length"] = self.max_length
        encoded = self.tokenizer(list(texts), **kwargs)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def pixel_values(self, images: Sequence[Image.Image | None]) -> torch.Tensor:
        """`[N, C, H, W]` float pixels from the image processor (bit-identical fast path for CLIP / ViT
        Pillow processors, see `fast_pixels`; anything else runs the processor itself)."""
        filled = [img if img is not None else Image.new("RGB", PLACEHOLDER_SIZE, color="black") for img in images]
        fast = fast_pixel_values(self.image_processor, filled)
        if fast is not None:
            return fast
        return self.image_processor(filled, return_tensors="pt")["pixel_values"]

    def __call__(
        self,
        items: Sequence[Item],
        side: Side = "document",
        *,
        images: Sequence[Image.Image | None] | None = None,
        root: str | Path | None = None,
    ) -> dict[str, torch.Tensor]:
        """Model inputs for a batch; pass `images` when they were decoded elsewhere."""
        if images is None:
            images = self.load_images(items, root=root)
        texts = [self.text_of(item, side) for item in items]
        batch = self.tokenize(texts)
        batch["pixel_values"] = self.pixel_values(images)
        batch["text_mask"] = torch.tensor([1.0 if t else 0.0 for t in texts])
        batch["image_mask"] = torch.tensor([0.0 if img is None else 1.0 for img in images])
        return batch
