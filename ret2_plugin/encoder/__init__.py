"""The ReT model as a sentence-transformers encoder, plus streaming corpus encoding.

- `load_encoder(path_or_id, device=None, precision="float32")` -> `SentenceTransformer`
  (single vector) or `MultiVectorEncoder` (ReT v1 late interaction).
- `ReT2Encoder`: the sentence-transformers module behind it.
- `iter_embeddings(...)`: prefetching, flat-memory encoding of an `Item` stream with per-item errors.
"""

from ret2_plugin.encoder.inputs import to_item, to_items
from ret2_plugin.encoder.loader import load_encoder, write_sentence_transformers_folder
from ret2_plugin.encoder.st_module import ReT2Encoder
from ret2_plugin.encoder.streaming import EncodedBatch, iter_embeddings

__all__ = [
    "EncodedBatch",
    "ReT2Encoder",
    "iter_embeddings",
    "load_encoder",
    "to_item",
    "to_items",
    "write_sentence_transformers_folder",
]
