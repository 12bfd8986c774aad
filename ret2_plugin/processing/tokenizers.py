"""Offline tokenizers: CLIP's BPE from the vocabulary shipped in the `open-clip-torch` wheel.

No hub access is needed to reproduce CLIP token ids (OpenAI CLIP BPE, MIT licence). Install the wheel
with `pip install --no-deps open-clip-torch` (its import needs torchvision, so we only read the file).
"""

from __future__ import annotations

import gzip
import importlib.metadata
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"


def clip_bpe_path() -> Path:
    try:
        dist = importlib.metadata.distribution("open-clip-torch")
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            "CLIP's BPE vocabulary ships in the open-clip-torch wheel: `pip install --no-deps open-clip-torch`"
        ) from exc
    for file in dist.files or ():
        if file.name == _VOCAB_FILE:
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"{_VOCAB_FILE} not found in open-clip-torch {dist.version}")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP reversible byte -> printable unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    with gzip.open(clip_bpe_path(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def clip_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    """The OpenAI CLIP tokenizer (49,408 tokens), built offline."""
    vocab, merges = _clip_vocab_and_merges()
    pairs = [tuple(m.split()) for m in merges]
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=pairs, model_max_length=model_max_length)
    return tokenizer
