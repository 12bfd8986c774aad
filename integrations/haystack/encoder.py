"""Loading the encoder for the Haystack embedders (once, on `warm_up`).

Haystack Documents hold one embedding (`list[float]`), so only single-vector models (ReT-2 style) fit;
a ReT v1 late-interaction model (K vectors per item) is refused with a clear error instead of
producing embeddings no Haystack store or retriever can use.
"""

from __future__ import annotations

from typing import Any


def load_single_vector_encoder(
    model: str, *, device: str | None, precision: str, image_workers: int | None = None, image_decode: str = "exact"
) -> Any:
    """`ret2_plugin.load_encoder(model)`, refusing multi-vector models."""
    from ret2_plugin import load_encoder
    from ret2_plugin.search import is_multi_vector

    encoder = load_encoder(
        model, device=device, precision=precision, image_workers=image_workers, image_decode=image_decode
    )
    if is_multi_vector(encoder):
        raise ValueError(
            f"model {model!r} is a multi-vector (ReT v1, late interaction) model: Haystack Documents hold one "
            "embedding per document. Use a single-vector ReT-2 model here, or the ret2 library / CLI, whose "
            "index backends store multi-vector embeddings."
        )
    return encoder
