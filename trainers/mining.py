"""Hard negatives mined from the corpus: for each training query, the documents that the starting
model ranks highest among those that are not its positives.

They join the query's own `negatives` and enter its batch as extra documents (`num_hard_negatives`
per query), so every query is contrasted with look-alikes, not only with random in-batch documents.
Mining runs once, before step 1, and is saved to `output_dir/mined_negatives.json`: a resumed run
reads it back instead of mining again with the partly trained model (which keeps resume exact).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from ret2_plugin.atomic import atomic_write_json

from .data import TrainingData
from .evaluation import encode_items, exact_search

FILE_NAME = "mined_negatives.json"


def mine(
    model: Any,
    processor: Any,
    data: TrainingData,
    k: int,
    *,
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    prompts: dict[str, str] | None = None,
) -> list[list[str]]:
    """Per training query (in order), up to `k` document ids: the best-ranked non-positives."""
    docs = encode_items(
        model,
        processor,
        data.corpus,
        side="document",
        source=data.corpus_file,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        prompts=prompts,
    )
    qs = encode_items(
        model,
        processor,
        data.queries,
        side="query",
        source=data.queries_file,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
        prompts=prompts,
    )
    doc_ids = [data.corpus[i].id for i in docs.indices]
    widest = max((len(q.positives) for q in data.queries), default=0)
    top = exact_search(qs.embeddings, docs.embeddings, k + widest).tolist()
    mined: list[list[str]] = [[] for _ in data.queries]
    for row, qi in zip(top, qs.indices):
        positives = set(data.queries[qi].positives)
        mined[qi] = [doc_ids[j] for j in row if doc_ids[j] not in positives][:k]  # type: ignore[misc]
    return mined


def with_negatives(data: TrainingData, mined: list[list[str]]) -> TrainingData:
    """`data` whose queries carry their mined negatives after their own ones (no duplicates)."""
    if len(mined) != len(data.queries):
        raise ValueError(f"{len(mined)} mined lists for {len(data.queries)} queries: the data changed since mining")
    queries = []
    for q, extra in zip(data.queries, mined):
        merged = tuple(
            dict.fromkeys([*q.negatives, *(n for n in extra if n in data.doc_index and n not in q.positives)])
        )
        queries.append(dataclasses.replace(q, negatives=merged))
    return dataclasses.replace(data, queries=queries)


def save(path: Path, data: TrainingData, mined: list[list[str]]) -> None:
    atomic_write_json(
        path, {"queries_file": data.queries_file, "query_ids": [q.id for q in data.queries], "negatives": mined}
    )


def load(path: Path, data: TrainingData) -> list[list[str]] | None:
    """The saved lists if they were mined for these very queries, else None."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("query_ids") != [q.id for q in data.queries]:
        return None
    return [list(x) for x in saved["negatives"]]
