"""`ReT2DocumentEmbedder`: embeds Haystack Documents with a ReT / ReT-2 encoder.

Each document becomes one encoder input: its text (`content`), its image (a `ByteStream` blob whose
mime type is unset or `image/*`, else `meta["file_path"]`, optionally confined to `root_path`), or both
jointly. Image files are handed to the encoder as paths, so it decodes them on its own worker threads
while the model runs. Documents that cannot be embedded (no content, image missing, corrupt or outside
the root) are logged and returned in `failed_documents` with `meta["embedding_error"]`, or raise with
`raise_on_failure=True`: never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import replace
from functools import partial
from typing import Any

from haystack import component, default_from_dict, default_to_dict
from haystack.dataclasses import Document
from haystack.utils import ComponentDevice
from tqdm.auto import tqdm

from ret2_plugin.integrations.haystack.device import as_device, device_from_dict, device_to_dict, torch_device
from ret2_plugin.integrations.haystack.encoder import load_single_vector_encoder
from ret2_plugin.integrations.haystack.images import DocumentImageError, load_image, resolve_file_path
from ret2_plugin.processing.images import check_image_decode

logger = logging.getLogger(__name__)

PUBLIC_MODULE = "haystack_integrations.components.embedders.ret2"
_BATCH_POSITION = re.compile(r" \(batch position \d+\)")
CALLS_PER_STEP = 8  # encoder batches per encode call: lets the encoder prefetch images across batches


class DocumentEmbeddingError(RuntimeError):
    """Raised with `raise_on_failure=True`; lists every document that failed and why."""


Prepared = tuple[Document, Any, str]  # (document, encoder input, embedding_source)


@component
class ReT2DocumentEmbedder:
    """Computes document embeddings (text, image or text+image) with a ReT / ReT-2 model.

    ```python
    embedder = ReT2DocumentEmbedder(model="path/to/ret2-model", root_path="corpus/")
    docs = embedder.run([Document(content="A heron", meta={"file_path": "img/heron.png"})])["documents"]
    ```
    """

    # Serialise (and register) under the haystack_integrations namespace so pipeline YAML naming this
    # component loads with Haystack's default deserialization allow-list.
    __module__ = PUBLIC_MODULE

    def __init__(
        self,
        *,
        model: str,
        device: ComponentDevice | str | None = None,
        precision: str = "float32",
        root_path: str | None = None,
        batch_size: int = 32,
        progress_bar: bool = True,
        normalize_embeddings: bool = True,
        raise_on_failure: bool = False,
        image_workers: int | None = None,
        image_decode: str = "exact",
        file_path_meta_field: str = "file_path",
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
    ) -> None:
        """
        :param model: Local path or hub id of a ReT / ReT-2 model (anything `ret2_plugin.load_encoder` reads).
        :param device: A `ComponentDevice` (or "cpu", "cuda:0" ...); None: the encoder picks (CUDA if any).
        :param precision: Encoder precision ("float32", "float16", "bfloat16").
        :param root_path: Folder that relative `meta["file_path"]` values resolve against; paths escaping
            it are refused. None: paths are used as given.
        :param batch_size: Documents per model forward pass.
        :param progress_bar: Show a tqdm progress bar.
        :param normalize_embeddings: L2-normalise embeddings (cosine = inner product).
        :param raise_on_failure: Raise `DocumentEmbeddingError` if any document fails instead of
            returning it in `failed_documents`.
        :param image_workers: Encoder threads decoding images (None: the encoder's default).
        :param image_decode: "exact" (default) or "fast": JPEGs decoded at the DCT scale nearest to the
            model's input size (faster preprocessing of photos, pixels slightly different; see
            `ret2_plugin.load_encoder`).
        :param file_path_meta_field: Meta field holding a document's image path (as Haystack's image embedders).
        :param meta_fields_to_embed: Meta fields whose values are embedded with the text, before it (as
            Haystack's text embedders: values, then content, joined by `embedding_separator`).
        :param embedding_separator: Separator of those values and the content.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.device = as_device(device)
        self.precision = precision
        self.root_path = root_path
        self.batch_size = batch_size
        self.progress_bar = progress_bar
        self.normalize_embeddings = normalize_embeddings
        self.raise_on_failure = raise_on_failure
        self.image_workers = image_workers
        self.image_decode = check_image_decode(image_decode)
        self.file_path_meta_field = file_path_meta_field
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self._encoder: Any = None

    def warm_up(self) -> None:
        """Load the encoder once (later calls do nothing)."""
        if self._encoder is None:
            self._encoder = load_single_vector_encoder(
                self.model,
                device=torch_device(self.device),
                precision=self.precision,
                image_workers=self.image_workers,
                image_decode=self.image_decode,
            )

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            device=device_to_dict(self.device),
            precision=self.precision,
            root_path=self.root_path,
            batch_size=self.batch_size,
            progress_bar=self.progress_bar,
            normalize_embeddings=self.normalize_embeddings,
            raise_on_failure=self.raise_on_failure,
            image_workers=self.image_workers,
            image_decode=self.image_decode,
            file_path_meta_field=self.file_path_meta_field,
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReT2DocumentEmbedder:
        params = dict(data.get("init_parameters", {}))
        params["device"] = device_from_dict(params.get("device"))
        return default_from_dict(cls, {**data, "init_parameters": params})

    def _image(self, doc: Document) -> Any:
        """A decoded blob, a checked image path, or None. Raises ValueError with the reason."""
        blob = doc.blob
        if blob is not None and (blob.mime_type is None or blob.mime_type.startswith("image/")):
            return load_image(blob)  # a blob of another declared type (PDF, audio) is not an image input
        file_path = doc.meta.get(self.file_path_meta_field)
        if not file_path:
            return None
        path = resolve_file_path(file_path, self.root_path)
        if "://" not in path and not path.startswith("data:") and not os.path.isfile(path):
            raise DocumentImageError(f"image {str(file_path)!r}: file not found")
        return path  # decoded (and validated) by the encoder's image workers

    def _input(self, doc: Document) -> tuple[Any, str]:
        """The encoder input for one document and its `embedding_source`; raises ValueError with the reason."""
        parts = [str(doc.meta[k]) for k in self.meta_fields_to_embed if doc.meta.get(k) not in (None, "")]
        if isinstance(doc.content, str) and doc.content.strip():
            parts.append(doc.content)
        text = self.embedding_separator.join(parts) if parts else None
        image = self._image(doc)
        # Always a dict: a bare string that looks like a file name would be taken for an image path.
        if text is not None and image is not None:
            return {"text": text, "image": image}, "text+image"
        if text is not None:
            return {"text": text}, "text"
        if image is not None:
            return {"image": image}, "image"
        raise ValueError(f"no text content, no blob and no meta[{self.file_path_meta_field!r}]: nothing to embed")

    def _encode(self, ready: list[Prepared], failed: list[tuple[Document, str]]) -> list[Any]:
        """Vectors for `ready` (None where encoding failed). A failing call is split in halves until the
        culprits are isolated, so one corrupt image costs O(log n) extra calls, not the batch."""
        try:
            vectors = self._encoder.encode_document(
                [value for _, value, _ in ready],
                batch_size=self.batch_size,
                show_progress_bar=False,
                normalize_embeddings=self.normalize_embeddings,
                convert_to_numpy=True,
            )
            return [vector.tolist() for vector in vectors]
        except Exception as exc:
            if len(ready) == 1:
                failed.append((ready[0][0], _BATCH_POSITION.sub("", str(exc))))  # position in a 1-item call: noise
                return [None]
            half = len(ready) // 2
            return self._encode(ready[:half], failed) + self._encode(ready[half:], failed)

    def _embed_step(self, docs: list[Document], failed: list[tuple[Document, str]]) -> list[Document]:
        ready: list[Prepared] = []
        for doc in docs:
            try:
                value, source = self._input(doc)
            except (ValueError, OSError) as exc:
                failed.append((doc, str(exc)))
                continue
            ready.append((doc, value, source))
        vectors = self._encode(ready, failed) if ready else []
        return [
            replace(doc, embedding=vector, meta={**doc.meta, "embedding_source": source})
            for (doc, _, source), vector in zip(ready, vectors)
            if vector is not None
        ]

    @component.output_types(documents=list[Document], failed_documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, list[Document]]:
        """Embed `documents`.

        :returns: `documents`: new Documents (input order) with `embedding` and `meta["embedding_source"]`
            ("text", "image" or "text+image"); `failed_documents`: those that could not be embedded (input
            order), with the reason in `meta["embedding_error"]`.
        """
        if not isinstance(documents, list) or any(not isinstance(d, Document) for d in documents):
            raise TypeError("ReT2DocumentEmbedder expects a list of Documents; use ReT2QueryEmbedder for queries")
        self.warm_up()
        embedded: list[Document] = []
        failed: list[tuple[Document, str]] = []
        step = self.batch_size * CALLS_PER_STEP
        with tqdm(total=len(documents), desc="ReT2 embedding", disable=not self.progress_bar) as bar:
            for start in range(0, len(documents), step):
                chunk = documents[start : start + step]
                embedded.extend(self._embed_step(chunk, failed))
                bar.update(len(chunk))
        position = {id(doc): i for i, doc in enumerate(documents)}
        failed.sort(key=lambda pair: position[id(pair[0])])
        for doc, reason in failed:
            logger.warning("document %s not embedded: %s", doc.id, reason)
        if failed and self.raise_on_failure:
            lines = "; ".join(f"{doc.id}: {reason}" for doc, reason in failed)
            raise DocumentEmbeddingError(f"{len(failed)} of {len(documents)} documents not embedded: {lines}")
        failed_docs = [replace(doc, meta={**doc.meta, "embedding_error": reason}) for doc, reason in failed]
        return {"documents": embedded, "failed_documents": failed_docs}

    @component.output_types(documents=list[Document], failed_documents=list[Document])
    async def run_async(self, documents: list[Document]) -> dict[str, list[Document]]:
        """`run` in a worker thread, so an event loop stays responsive while the model works."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(self.run, documents=documents))
