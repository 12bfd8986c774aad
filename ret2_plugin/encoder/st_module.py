"""`ReT2Encoder`: the ReT model as a sentence-transformers input module.

One module does everything (inputs -> Items -> tensors -> fused features), so a saved folder is a
plain sentence-transformers model: `modules.json` names this class, and the module's files live in
the root (`ret2_config.json` + `model.safetensors` + tokenizer / image-processor files +
`ret2_st_module.json`). Reload with `SentenceTransformer(dir, trust_remote_code=True)` (or
`MultiVectorEncoder` for ReT v1) or `ret2_plugin.load_encoder(dir)`.

Outputs: single-vector models write `sentence_embedding` [N, D] (un-normalised here; `load_encoder`
puts sentence-transformers' `Normalize` after this module, so models return the official L2-normalised
vectors, and saved folders list it in `modules.json`); multi-vector models write `token_embeddings` [N, K, D], each token
L2-normalised as the official code does, and an all-ones `attention_mask` [N, K].
`task="query"` uses the query fusion side, anything else (`"document"`, or none: plain `encode`)
the document side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule
from torch.nn import functional as F

from ret2_plugin.encoder.batching import LazyPool, Side, prepare_batch
from ret2_plugin.encoder.inputs import describe, to_item, with_prompt
from ret2_plugin.encoder.model_card import card_markdown, write_model_card_section
from ret2_plugin.modeling import ReT2Model
from ret2_plugin.processing import ReT2Processor
from ret2_plugin.processing.images import check_image_decode

MODULE_CONFIG_NAME = "ret2_st_module.json"

# The prefetcher of the `encode` call running in this thread / context (set by
# `PrefetchMixin._inference`): per context, so concurrent `encode` calls on one model never share one.
ACTIVE_PREFETCHER: ContextVar[Any] = ContextVar("ret2_active_prefetcher", default=None)


def side_of(task: str | None) -> Side:
    """sentence-transformers `task` -> ReT fusion side (plain `encode` = document side)."""
    return "query" if task == "query" else "document"


class ReT2Encoder(InputModule):
    """ReT / ReT-2 as a sentence-transformers module: text, image and joint inputs, mixed freely."""

    save_in_root = True
    config_file_name = MODULE_CONFIG_NAME
    # saved with the module: only what belongs to the model. Image threads and the image folder are
    # per machine, given at load time (`load_encoder(..., image_workers=, image_root=)`).
    config_keys = ["training_data"]
    forward_kwargs = {"task"}

    def __init__(
        self,
        model: ReT2Model,
        processor: ReT2Processor,
        *,
        image_workers: int | None = None,
        image_root: str | None = None,
        image_decode: str = "exact",
        training_data: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.training_data = list(training_data or [])  # dataset names for the model card
        self.model = model.eval()
        self.processor = processor
        self.image_root = image_root
        self.image_decode = check_image_decode(image_decode)  # "fast": JPEG draft decoding (not saved)
        self._pool = LazyPool(image_workers)

    # ---- what sentence-transformers asks -----------------------------------------------------------
    @property
    def image_workers(self) -> int:
        return self._pool.workers

    @property
    def tokenizer(self) -> Any:  # type: ignore[override]
        return self.processor.tokenizer

    @property
    def modalities(self) -> list[Any]:
        # "message" lets sentence-transformers hand us mixed lists and chat messages unchanged
        return ["text", "image", ("image", "text"), "message"]

    @property
    def multi_vector(self) -> bool:
        return bool(self.model.config.multi_vector)

    @property
    def max_seq_length(self) -> int | None:
        return self.processor.max_length or getattr(self.processor.tokenizer, "model_max_length", None)

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        """`SentenceTransformer.max_seq_length = n` lands here: truncate texts to n tokens from now on
        (and save it with the model)."""
        if value is not None and int(value) <= 0:
            raise ValueError(f"max_seq_length must be positive or None, got {value!r}")
        value = None if value is None else int(value)
        self.processor.max_length = value
        self.model.config.max_text_length = value

    @property
    def _right_padded(self) -> bool:
        return getattr(self.processor.tokenizer, "padding_side", "right") == "right"

    def get_embedding_dimension(self) -> int:
        return int(self.model.config.embedding_dim)

    # ---- inputs ------------------------------------------------------------------------------------
    def preprocess(
        self, inputs: Sequence[Any], prompt: str | None = None, task: str | None = None, **kwargs: Any
    ) -> dict[str, torch.Tensor | Any]:
        """Raw inputs -> tensors (taken from the background prefetcher when it prepared this batch)."""
        prefetcher = ACTIVE_PREFETCHER.get()
        if prefetcher is not None and prefetcher.module is self:
            features = prefetcher.take(inputs, prompt=prompt, task=task)
            if features is not None:
                return features
        return self.prepare(inputs, prompt=prompt, task=task)

    def prepare(self, inputs: Sequence[Any], *, prompt: str | None = None, task: str | None = None) -> dict[str, Any]:
        """Raw inputs -> Items -> tensors; images decoded and preprocessed on the thread pool."""
        side = side_of(task)
        items = []
        for position, raw in enumerate(inputs):
            item = to_item(raw, f"input {describe(raw)} (batch position {position})", root=self.image_root)
            items.append(with_prompt(item, prompt, side))
        return prepare_batch(
            self.processor,
            items,
            side,
            executor=self._pool.executor,
            workers=self._pool.workers,
            root=self.image_root,
            fast_decode=self.image_decode == "fast",
        )

    # ---- forward -----------------------------------------------------------------------------------
    def forward(
        self, features: dict[str, torch.Tensor | Any], task: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Fuse per modality group (text only / image only / joint), so a text-only group never runs the
        vision tower and mixed batches give exactly the vectors of each item encoded alone.

        The side comes from `task` (`encode_query` / `encode_document`) or, when that is not given, from
        `features["task"]`: sentence-transformers' data collator stamps each column's `router_mapping`
        task there and its losses call `model(features)` without the keyword."""
        side = side_of(task if task is not None else features.get("task"))
        param = next(self.model.parameters())
        inputs = {
            key: features[key].to(param.device, param.dtype if features[key].is_floating_point() else None)
            for key in ("input_ids", "attention_mask", "pixel_values", "text_mask", "image_mask")
        }
        pattern = (inputs["text_mask"] > 0).long() * 2 + (inputs["image_mask"] > 0).long()
        groups = [torch.nonzero(pattern == value).flatten() for value in pattern.unique().tolist()]
        out: torch.Tensor | None = None
        for index in groups:
            sub = {key: value[index] for key, value in inputs.items()}
            if not bool(sub["text_mask"].any()):
                sub["attention_mask"] = sub["attention_mask"][:, :1]
                sub["input_ids"] = sub["input_ids"][:, :1]
            elif sub["attention_mask"].shape[1] > 1 and self._right_padded:  # trim padding the group does not need
                length = int(sub["attention_mask"].sum(dim=1).max())
                sub["input_ids"], sub["attention_mask"] = (
                    sub["input_ids"][:, :length],
                    sub["attention_mask"][:, :length],
                )
            emb = self.model.forward_features(side, **sub).float()
            if out is None:
                out = emb.new_empty((pattern.shape[0], *emb.shape[1:]))
            out[index] = emb
        assert out is not None
        if out.ndim == 3:  # ReT v1 late interaction: K token vectors, each L2-normalised
            features["token_embeddings"] = F.normalize(out, p=2, dim=-1)
            features["attention_mask"] = torch.ones(out.shape[:2], dtype=torch.long, device=out.device)
        else:
            features["sentence_embedding"] = out
        return features

    def __repr__(self) -> str:
        config = self.model.config
        dim = config.embedding_dim
        mode = f"multi_vector={config.num_queries}x{dim}" if self.multi_vector else f"dim={dim}"
        text = config.text_model_name_or_path or config.text_config.get("model_type")
        vision = config.vision_model_name_or_path or config.vision_config.get("model_type")
        return (
            f"ReT2Encoder(family={config.model_family}, text={text}, vision={vision}, "
            f"text_layers={config.text_layers}, vision_layers={config.vision_layers}, {mode})"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Multi-process encoding (sentence-transformers' `pool` / `device=[...]`) sends the model to
        spawned workers by pickling. Rebuild the ReT model from config + weights there instead of
        unpickling the Hugging Face towers, whose hidden-state recording hooks do not survive pickling."""
        state = {k: v.detach().cpu() for k, v in self.model.own_state_dict().items()}
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        options = {
            "image_workers": self.image_workers,
            "image_root": self.image_root,
            "image_decode": self.image_decode,
            "training_data": self.training_data,
        }
        return (_rebuild, (self.model.config.to_dict(), state, dtype, self.processor, options))

    # ---- persistence -------------------------------------------------------------------------------
    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Model (`ret2_config.json` + `model.safetensors`), tokenizer / image processor, module config
        and the ReT section of the model card."""
        os.makedirs(output_path, exist_ok=True)
        self.model.save_pretrained(output_path)
        self.processor.save_pretrained(output_path)
        self.save_config(output_path)
        write_model_card_section(output_path, self.model.config, training_data=self.training_data)

    def model_card(self) -> str:
        """The ReT model card (README.md) for this module's model; our sentence-transformers classes
        write it after their own save (see `prefetch.ReT2CardMixin`)."""
        return card_markdown(self.model.config, training_data=self.training_data)

    @classmethod
    def from_model_dir(cls, path: str | os.PathLike[str], **module_kwargs: Any) -> ReT2Encoder:
        """Build from our model directory, an ST folder written by `save`, an official checkpoint, or a
        hub id of one (resolved once; model and processor files then come from the same folder)."""
        from ret2_plugin.modeling import official

        folder = official.resolve_checkpoint_dir(path)
        model = ReT2Model.from_pretrained(folder)
        config = model.config
        processor = ReT2Processor.for_model(folder, config)
        return cls(model, processor, **module_kwargs)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> ReT2Encoder:
        folder = cls.load_dir_path(
            model_name_or_path,
            subfolder=subfolder,
            token=token,
            cache_folder=cache_folder,
            revision=revision,
            local_files_only=local_files_only,
        )
        options: dict[str, Any] = {}
        config_path = os.path.join(folder, MODULE_CONFIG_NAME)
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as handle:
                options = {k: v for k, v in json.load(handle).items() if k in cls.config_keys}
        return cls.from_model_dir(folder, **options)


def _rebuild(
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    dtype: str,
    processor: ReT2Processor,
    options: dict[str, Any],
) -> ReT2Encoder:
    """Inverse of `ReT2Encoder.__reduce__`."""
    from ret2_plugin.modeling import ReT2Config

    model = ReT2Model(ReT2Config.from_dict(config))
    model.load_weights(state)
    return ReT2Encoder(model.to(getattr(torch, dtype)).eval(), processor, **options)
