"""Overlap preprocessing with the model inside sentence-transformers' own `encode`.

sentence-transformers' `_inference` preprocesses batch i, runs the model on it, then preprocesses
batch i+1: the model waits for image decoding. `PrefetchMixin._inference` computes the same
length-sorted batch order up front and a background thread prepares the next `depth` batches while
the model runs; `ReT2Encoder.preprocess` takes a prepared batch when it is the one asked for (matched by
the identity of its inputs, the prompt and the task) and otherwise prepares it itself, so the result
never depends on the prefetch. The prefetcher lives in a context variable, so concurrent `encode`
calls on one model (threads, `asyncio.to_thread`) each use their own. `load_encoder` returns these
subclasses; a folder reloaded with plain `SentenceTransformer(...)` gives identical vectors, without
the overlap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sentence_transformers import MultiVectorEncoder, SentenceTransformer

from ret2_plugin.workers import Prefetcher


class BatchPrefetcher:
    """Prepares `batches` in order on a background thread (`ret2_plugin.workers.Prefetcher`), at most
    `depth` ahead of the consumer."""

    def __init__(
        self, module: Any, batches: list[list[Any]], *, prompt: str | None, task: str | None, depth: int = 2
    ) -> None:
        self.module = module
        self.batches = batches
        self._prompt, self._task = prompt, task
        self._worker = Prefetcher(self._prepared(), depth=depth, name="ret2-encode-prefetch")
        self._ready = iter(self._worker)

    def _prepared(self) -> Iterator[tuple[tuple[Any, ...], Any]]:
        for batch in self.batches:
            key = self._key(batch, self._prompt, self._task)
            try:
                value: Any = self.module.prepare(batch, prompt=self._prompt, task=self._task)
            except Exception as exc:  # raised to the consumer when it reaches this batch
                value = exc
            yield key, value

    @staticmethod
    def _key(batch: Sequence[Any], prompt: str | None, task: str | None) -> tuple[Any, ...]:
        return (tuple(id(x) for x in batch), prompt, task)

    def take(
        self, batch: Sequence[Any], *, prompt: str | None = None, task: str | None = None
    ) -> dict[str, Any] | None:
        """The prepared features for `batch` (with this prompt and task), or None (then the caller
        prepares it) on any mismatch."""
        if self._worker.closed:
            return None
        try:
            key, value = next(self._ready)
        except (StopIteration, RuntimeError):  # exhausted, or the producer is gone: prepare inline
            self.close()
            return None
        if key != self._key(batch, prompt, task):
            self.close()
            return None
        if isinstance(value, Exception):
            raise value
        return value

    def close(self) -> None:
        self._worker.close()


class PrefetchMixin:
    """`_inference` with background batch preparation (see the module docstring)."""

    prefetch_depth = 2

    def _inference(self, inputs: list, **kwargs: Any) -> Any:
        from ret2_plugin.encoder.st_module import ACTIVE_PREFETCHER, ReT2Encoder

        module = self[0]  # type: ignore[index]
        batch_size = kwargs.get("batch_size", 32)
        if not isinstance(module, ReT2Encoder) or len(inputs) <= batch_size:
            return super()._inference(inputs, **kwargs)  # type: ignore[misc]
        # the order sentence-transformers' _inference uses (our module never flattens inputs)
        order = np.argsort([-self._input_length(x) for x in inputs])  # type: ignore[attr-defined]
        ordered = [inputs[i] for i in order]
        batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
        prefetcher = BatchPrefetcher(
            module, batches, prompt=kwargs.get("prompt"), task=kwargs.get("task"), depth=self.prefetch_depth
        )
        token = ACTIVE_PREFETCHER.set(prefetcher)
        try:
            return super()._inference(inputs, **kwargs)  # type: ignore[misc]
        finally:
            ACTIVE_PREFETCHER.reset(token)
            prefetcher.close()


class ReT2SentenceTransformer(PrefetchMixin, SentenceTransformer):
    """A `SentenceTransformer` whose `encode` overlaps image decoding with the model."""


class ReT2MultiVectorEncoder(PrefetchMixin, MultiVectorEncoder):
    """A `MultiVectorEncoder` whose `encode` overlaps image decoding with the model."""
