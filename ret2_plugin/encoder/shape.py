"""What an encoder's vectors look like (width, single or multi-vector), for any encoder: ours (the
`ReT2Config` says) or a plugin's (sentence-transformers' own answers)."""

from __future__ import annotations

from typing import Any

from ret2_plugin.modeling import ReT2Config, ReT2Model


def model_config(encoder: Any) -> ReT2Config | None:
    """The `ReT2Config` of the ReT model inside a sentence-transformers encoder; None for an encoder
    without one (a plugin's encoder)."""
    modules = getattr(encoder, "modules", None)
    for module in modules() if callable(modules) else ():
        if isinstance(module, ReT2Model):
            return module.config
    return None


def is_multi_vector(encoder: Any) -> bool:
    """Late-interaction (`[K, D]` per item) or single vector: the ReT config says, else the
    encoder's class (sentence-transformers' `MultiVectorEncoder`) or its `multi_vector` attribute."""
    config = model_config(encoder)
    if config is not None:
        return config.multi_vector
    if any(cls.__name__ == "MultiVectorEncoder" for cls in type(encoder).__mro__):
        return True
    return bool(getattr(encoder, "multi_vector", False))


def embedding_dim(encoder: Any) -> int:
    """Width of one vector (after the encoder's later modules and `truncate_dim`)."""
    for getter in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        dim = getattr(encoder, getter, None)
        if callable(dim) and dim():
            return int(dim())
    config = model_config(encoder)
    if config is not None:
        return int(config.embedding_dim)
    raise TypeError(f"cannot tell the embedding width of {type(encoder).__name__} (no get_embedding_dimension())")
