"""Items -> model inputs: tokenizers, image loading and validation, the processor."""

from ret2_plugin.processing.images import ImageLoadError, load_image
from ret2_plugin.processing.processor import ReT2Processor
from ret2_plugin.processing.tokenizers import clip_tokenizer

__all__ = ["ImageLoadError", "ReT2Processor", "clip_tokenizer", "load_image"]
