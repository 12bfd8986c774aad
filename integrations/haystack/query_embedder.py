"""`ReT2QueryEmbedder`: one query (text, image, or both jointly) to one embedding.

An optional `instruction` is applied ReT-style, `"{instruction} {text}"`: it is handed to the encoder as
the input's `instruction` (the same path `Item.instruction` takes in `ret2 search` / `ret2 eval`), so
queries embedded here match the CLI's.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import ByteStream, ImageContent
from haystack.utils import ComponentDevice
from PIL import Image

from ret2_plugin.integrations.haystack.device import as_device, device_from_dict, device_to_dict, torch_device
from ret2_plugin.integrations.haystack.encoder import load_single_vector_encoder
from ret2_plugin.integrations.haystack.images import as_pil

PUBLIC_MODULE = "haystack_integrations.components.embedders.ret2"


@component
class ReT2QueryEmbedder:
    """Embeds a query for retrieval with a ReT / ReT-2 model.

    ```python
    embedder = ReT2QueryEmbedder(model="path/to/ret2-model", instruction="Find the bird in the image.")
    embedding = embedder.run(text="which bird is this?", image="q1.jpg")["embedding"]
    ```
    """

    __module__ = PUBLIC_MODULE  # serialise under haystack_integrations (default YAML allow-list)

    def __init__(
        self,
        *,
        model: str,
        device: ComponentDevice | str | None = None,
        precision: str = "float32",
        instruction: str | None = None,
        normalize_embeddings: bool = True,
    ) -> None:
        """
        :param model: Local path or hub id of a ReT / ReT-2 model.
        :param device: A `ComponentDevice` (or "cpu", "cuda:0" ...); None: the encoder picks (CUDA if any).
        :param precision: Encoder precision ("float32", "float16", "bfloat16").
        :param instruction: Task instruction prefixed to the query text, as ReT was trained.
        :param normalize_embeddings: L2-normalise the embedding.
        """
        self.model = model
        self.device = as_device(device)
        self.precision = precision
        self.instruction = instruction
        self.normalize_embeddings = normalize_embeddings
        self._encoder: Any = None

    def warm_up(self) -> None:
        """Load the encoder once (later calls do nothing)."""
        if self._encoder is None:
            self._encoder = load_single_vector_encoder(
                self.model, device=torch_device(self.device), precision=self.precision
            )

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            device=device_to_dict(self.device),
            precision=self.precision,
            instruction=self.instruction,
            normalize_embeddings=self.normalize_embeddings,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReT2QueryEmbedder:
        params = dict(data.get("init_parameters", {}))
        params["device"] = device_from_dict(params.get("device"))
        return default_from_dict(cls, {**data, "init_parameters": params})

    def query_input(self, text: str | None = None, image: Any = None) -> Any:
        """The encoder input for a query: `{"text"?, "image"?, "instruction"?}`."""
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}; use ReT2DocumentEmbedder for Documents")
        if image is not None and not isinstance(image, (str, Path, Image.Image, ByteStream, ImageContent)):
            raise TypeError(
                f"image must be an ImageContent, a path, a PIL image or a ByteStream, got {type(image).__name__}"
            )
        text = text if text and text.strip() else None
        pil = as_pil(image) if image is not None else None
        if text is None and pil is None:
            raise ValueError("ReT2QueryEmbedder needs text, an image, or both")
        value: dict[str, Any] = {}
        if text is not None:
            value["text"] = text
        if pil is not None:
            value["image"] = pil
        if self.instruction:
            value["instruction"] = self.instruction  # the encoder builds "{instruction} {text}"
        return value

    @component.output_types(embedding=list[float])
    def run(
        self, text: str | None = None, image: ImageContent | str | Path | Image.Image | ByteStream | None = None
    ) -> dict[str, Any]:
        """Embed one query. `image` is Haystack's `ImageContent`, a path, a PIL image or a `ByteStream`.

        :returns: `embedding`: the query vector as a list of floats.
        """
        value = self.query_input(text, image)
        self.warm_up()
        vectors = self._encoder.encode_query(
            [value], show_progress_bar=False, normalize_embeddings=self.normalize_embeddings, convert_to_numpy=True
        )
        return {"embedding": vectors[0].tolist()}

    @component.output_types(embedding=list[float])
    async def run_async(
        self, text: str | None = None, image: ImageContent | str | Path | Image.Image | ByteStream | None = None
    ) -> dict[str, Any]:
        """`run` in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(self.run, text=text, image=image))
