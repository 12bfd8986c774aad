"""Retrieval evaluation by exact search: Recall@1/5/10, MRR@10, nDCG@10.

Recall@k is the hit rate used by ReT / M-BEIR / M2KR (a query counts when at least one of its
positives is in the top k). nDCG uses binary relevance. Items whose image fails to load are
reported; a failed document is left out of the index, a failed query out of the average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ret2_plugin.items import Item, ItemError

from .losses import similarity

RECALL_KS = (1, 5, 10)


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return 1.0 if any(r in relevant for r in ranked[:k]) else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    for pos, r in enumerate(ranked[:k], start=1):
        if r in relevant:
            return 1.0 / pos
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(pos + 1) for pos, r in enumerate(ranked[:k], start=1) if r in relevant)
    ideal = sum(1.0 / math.log2(pos + 1) for pos in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def retrieval_metrics(rankings: Sequence[Sequence[str]], relevants: Sequence[set[str]]) -> dict[str, float]:
    """Average the metrics over queries (`rankings[i]` is the ranked id list of query i)."""
    if not rankings:
        raise ValueError("no query to evaluate")
    n = len(rankings)
    out = {f"recall@{k}": sum(recall_at_k(r, rel, k) for r, rel in zip(rankings, relevants)) / n for k in RECALL_KS}
    out["mrr@10"] = sum(mrr_at_k(r, rel) for r, rel in zip(rankings, relevants)) / n
    out["ndcg@10"] = sum(ndcg_at_k(r, rel) for r, rel in zip(rankings, relevants)) / n
    return out


@dataclass
class Encoded:
    embeddings: torch.Tensor  # L2-normalised, [N, D] or [N, K, D], float32 on CPU
    indices: list[int]  # positions in the input list that were encoded
    errors: list[ItemError] = field(default_factory=list)


def as_encoder(
    model: Any, processor: Any, *, prompts: dict[str, str] | None = None, image_workers: int | None = None
) -> Any:
    """A training-time `ReT2Model` + processor as the serving encoder (`ReT2Encoder`, inside a
    `SentenceTransformer` when there are prompts to apply), so evaluation measures what serves."""
    from ret2_plugin.encoder import ReT2Encoder

    module = ReT2Encoder(model, processor, image_workers=image_workers)
    if not prompts:
        return module
    from sentence_transformers import SentenceTransformer

    device = next(model.parameters()).device
    return SentenceTransformer(modules=[module], prompts=dict(prompts), device=str(device))


def _torch_module(encoder: Any) -> torch.nn.Module:
    return encoder[0].model if hasattr(encoder, "__getitem__") else getattr(encoder, "model", encoder)


def encode_items(
    model: Any,
    processor: Any,
    items: Sequence[Item],
    *,
    side: str,
    source: str,
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    prompts: dict[str, str] | None = None,
) -> Encoded:
    """Encode items through the serving path (`ret2_plugin.encoder.iter_embeddings`: prompts, later
    modules, image decoding on worker threads, per-item errors). `model` is a `ReT2Model` with its
    `processor` (training), or an encoder from `load_encoder` with `processor=None` (`ret2 eval`)."""
    from ret2_plugin.encoder import iter_embeddings

    encoder = (
        model if processor is None else as_encoder(model, processor, prompts=prompts, image_workers=max(1, num_workers))
    )
    torch_model = _torch_module(encoder)
    was_training = torch_model.training
    positions = {id(item): i for i, item in enumerate(items)}
    chunks: list[torch.Tensor] = []
    indices: list[int] = []
    errors: list[ItemError] = []
    try:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            for batch in iter_embeddings(
                encoder,
                list(items),
                side=side,  # type: ignore[arg-type]
                batch_size=batch_size,
                num_workers=max(1, num_workers),
            ):
                errors.extend(ItemError(source, item.line or 0, item.id, reason) for item, reason in batch.errors)
                if batch.items:
                    chunks.append(torch.from_numpy(batch.embeddings))
                    indices.extend(positions[id(item)] for item in batch.items)
    finally:
        torch_model.train(was_training)
    if not chunks:
        raise ValueError(f"nothing in {source} could be encoded ({len(errors)} errors)")
    return Encoded(torch.cat(chunks), indices, errors)


def exact_search(
    queries: torch.Tensor, documents: torch.Tensor, top_k: int, chunk: int = 256, max_elements: int = 1 << 26
) -> torch.Tensor:
    """Indices `[Nq, min(top_k, Nd)]` of the best documents per query (dot product or MaxSim).

    Queries go `chunk` at a time and documents in slices sized so that one score block (MaxSim:
    `[queries, documents, K, K']`) holds at most `max_elements` values (256 MB in float32; unsliced,
    256 queries x 10k documents x 32 x 32 tokens is ~10 GB); each slice's top k is merged in."""
    k = min(top_k, documents.shape[0])
    per_pair = queries.shape[1] * documents.shape[1] if queries.dim() == 3 and documents.dim() == 3 else 1
    q_chunk = max(1, min(chunk, max_elements // per_pair))
    d_chunk = max(k, max_elements // (q_chunk * per_pair))
    out = []
    for start in range(0, queries.shape[0], q_chunk):
        q = queries[start : start + q_chunk]
        best_scores = best_idx = None
        for d in range(0, documents.shape[0], d_chunk):
            scores = similarity(q, documents[d : d + d_chunk])
            top = scores.topk(min(k, scores.shape[1]), dim=1)
            idx = top.indices + d
            if best_scores is not None:
                merged = torch.cat([best_scores, top.values], dim=1).topk(k, dim=1)
                idx = torch.cat([best_idx, idx], dim=1).gather(1, merged.indices)
                top = merged
            best_scores, best_idx = top.values, idx
        out.append(best_idx)
    return torch.cat(out)


def evaluate(
    model: Any,
    processor: Any,
    queries: Sequence[Item],
    corpus: Sequence[Item],
    *,
    device: torch.device,
    queries_file: str = "queries",
    corpus_file: str = "corpus",
    batch_size: int = 32,
    num_workers: int = 0,
    autocast_dtype: torch.dtype | None = None,
    top_k: int = 10,
    prompts: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Encode corpus and queries (see `encode_items`: a ReT2Model + processor, or an encoder with
    processor=None), search exactly, return the metrics plus counts and errors."""
    options = dict(
        device=device, batch_size=batch_size, num_workers=num_workers, autocast_dtype=autocast_dtype, prompts=prompts
    )
    docs = encode_items(model, processor, corpus, side="document", source=corpus_file, **options)  # type: ignore[arg-type]
    qs = encode_items(model, processor, queries, side="query", source=queries_file, **options)  # type: ignore[arg-type]
    doc_ids = [corpus[i].id for i in docs.indices]
    top = exact_search(qs.embeddings, docs.embeddings, top_k)
    rankings = [[doc_ids[j] for j in row] for row in top.tolist()]
    relevants = [set(queries[i].positives) for i in qs.indices]
    metrics = retrieval_metrics(rankings, relevants)
    errors = docs.errors + qs.errors
    return {
        **metrics,
        "num_queries": len(qs.indices),
        "num_documents": len(doc_ids),
        "num_errors": len(errors),
        "errors": [e.to_dict() for e in errors],
    }
