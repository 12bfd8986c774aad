"""Training data: queries + corpus JSONL (positives by id), a resumable batch sampler, image
loading in DataLoader workers, and the collator that builds model inputs.

Bad input never stops a run and is never dropped silently: bad JSONL lines, queries whose
positives are not in the corpus, and images that fail to load (in a worker, at batch time) become
`ItemError`s that travel with the batch to the trainer, which reports and counts them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ret2_plugin.items import Item, ItemError, read_jsonl


@dataclass
class TrainingData:
    """Queries with at least one positive in the corpus, the corpus, and what was refused."""

    queries: list[Item]
    corpus: list[Item]
    doc_index: dict[str, int]
    queries_file: str
    corpus_file: str
    errors: list[ItemError] = field(default_factory=list)

    @classmethod
    def load(cls, queries_path: str | Path, corpus_path: str | Path, *, require_positives: bool = True) -> TrainingData:
        errors: list[ItemError] = []
        corpus = list(read_jsonl(corpus_path, errors))
        doc_index = {item.id: i for i, item in enumerate(corpus) if item.id is not None}
        queries: list[Item] = []
        for item in read_jsonl(queries_path, errors):
            missing = [p for p in item.positives if p not in doc_index]
            kept = tuple(p for p in item.positives if p in doc_index)
            if not kept and require_positives:
                reason = (
                    "no positives"
                    if not item.positives
                    else f"none of its positives {list(item.positives)} is in the corpus"
                )
                errors.append(ItemError(str(queries_path), item.line or 0, item.id, reason))
                continue
            if missing:
                errors.append(
                    ItemError(
                        str(queries_path), item.line or 0, item.id, f"positives not in the corpus, ignored: {missing}"
                    )
                )
            bad_negs = [n for n in item.negatives if n not in doc_index]
            if bad_negs:
                errors.append(
                    ItemError(
                        str(queries_path), item.line or 0, item.id, f"negatives not in the corpus, ignored: {bad_negs}"
                    )
                )
            negatives = tuple(n for n in item.negatives if n in doc_index and n not in kept)
            queries.append(dataclasses.replace(item, positives=kept, negatives=negatives))
        return cls(queries, corpus, doc_index, str(queries_path), str(corpus_path), errors)


def load_item_image(item: Item, source: str) -> tuple[Item | None, ItemError | None]:
    """Open the item's image (path / URL) so that the processor gets pixels; errors name the item."""
    if not isinstance(item.image, str):
        return item, None
    from ret2_plugin.processing.images import load_image

    try:
        image = load_image(item.image)
    except Exception as exc:  # ImageLoadError names the reason; anything else is reported the same way
        return None, ItemError(source, item.line or 0, item.id, f"image {item.image!r}: {exc}")
    return dataclasses.replace(item, image=image), None


def _stable_seed(*parts: int) -> int:
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class PairDataset(Dataset):
    """Query i -> (query, one positive, up to `num_hard_negatives` hard negatives), images loaded.

    The positive and the negatives are drawn from a generator seeded by (seed, epoch, i), so an
    example does not depend on worker scheduling and a resumed run sees the same examples.
    """

    def __init__(
        self,
        data: TrainingData,
        *,
        num_hard_negatives: int = 0,
        seed: int = 0,
        augment: Callable[[Any, torch.Generator], Any] | None = None,
    ) -> None:
        self.data = data
        self.num_hard_negatives = num_hard_negatives
        self.seed = seed
        self.augment = augment  # e.g. `augment.Augmentation()`: applied to every loaded image
        self.epoch = 0

    def _augmented(self, item: Item | None, gen: torch.Generator) -> Item | None:
        if self.augment is None or item is None or item.image is None or isinstance(item.image, str):
            return item
        return dataclasses.replace(item, image=self.augment(item.image, gen))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.queries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        query = self.data.queries[i]
        gen = torch.Generator().manual_seed(_stable_seed(self.seed, self.epoch, i))
        pos_id = query.positives[int(torch.randint(len(query.positives), (1,), generator=gen))]
        neg_ids: list[str] = []
        if self.num_hard_negatives and query.negatives:
            order = torch.randperm(len(query.negatives), generator=gen).tolist()
            neg_ids = [query.negatives[j] for j in order[: self.num_hard_negatives]]
        errors: list[ItemError] = []
        loaded_query, err = load_item_image(query, self.data.queries_file)
        if err:
            errors.append(err)
        doc_idx = self.data.doc_index[pos_id]
        positive, err = load_item_image(self.data.corpus[doc_idx], self.data.corpus_file)
        if err:
            errors.append(err)
        if loaded_query is None or positive is None:
            return {"skip": True, "errors": errors}
        loaded_query, positive = self._augmented(loaded_query, gen), self._augmented(positive, gen)
        docs = [(doc_idx, positive)]
        for nid in neg_ids:
            nidx = self.data.doc_index[nid]
            neg, err = load_item_image(self.data.corpus[nidx], self.data.corpus_file)
            if err:
                errors.append(err)
            else:
                docs.append((nidx, self._augmented(neg, gen)))
        positive_ids = [self.data.doc_index[p] for p in query.positives]
        return {"skip": False, "query": loaded_query, "positive_ids": positive_ids, "docs": docs, "errors": errors}


class ResumableBatchSampler(Sampler[list[int]]):
    """Per-epoch shuffled batches of query indices, sharded over ranks, resumable mid-epoch.

    Every rank gets the same number of full batches (the tail that does not fill one batch on
    every rank is left for the next epoch's shuffle), which keeps DDP ranks in lock-step.
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if n < batch_size * world_size:
            raise ValueError(f"{n} usable queries cannot fill one batch of {batch_size} x {world_size} rank(s)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(_stable_seed(self.seed, self.epoch))
            ).tolist()
        else:
            order = list(range(self.n))
        usable = len(self) * self.batch_size * self.world_size
        mine = order[:usable][self.rank :: self.world_size]
        for b in range(self.start_batch, len(self)):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size]


class PairCollator:
    """Examples -> model inputs. Documents are the positives (one per query, in query order)
    followed by the hard negatives; `query_positive_ids` lists all positives of each query (-1 pad)."""

    def __init__(
        self, processor: Callable[..., dict[str, torch.Tensor]], prompts: dict[str, str] | None = None
    ) -> None:
        self.processor = processor
        self.prompts = dict(prompts or {})  # the model's "query" / "document" prompts, applied as in serving

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        errors = [e for ex in examples for e in ex["errors"]]
        good = [ex for ex in examples if not ex["skip"]]
        if not good:
            return {"size": 0, "errors": errors}
        queries = apply_prompt([ex["query"] for ex in good], self.prompts.get("query"), "query")
        docs = [ex["docs"][0] for ex in good] + [d for ex in good for d in ex["docs"][1:]]
        docs = list(
            zip([i for i, _ in docs], apply_prompt([d for _, d in docs], self.prompts.get("document"), "document"))
        )
        width = max(len(ex["positive_ids"]) for ex in good)
        pos = torch.full((len(good), width), -1, dtype=torch.long)
        for r, ex in enumerate(good):
            pos[r, : len(ex["positive_ids"])] = torch.tensor(ex["positive_ids"], dtype=torch.long)
        return {
            "size": len(good),
            "errors": errors,
            "query_inputs": dict(self.processor(queries, side="query")),
            "doc_inputs": dict(self.processor([d for _, d in docs], side="document")),
            "query_positive_ids": pos,
            "doc_ids": torch.tensor([i for i, _ in docs], dtype=torch.long),
        }


def apply_prompt(items: Sequence[Item], prompt: str | None, side: str) -> list[Item]:
    """The serving path's prompt rule (`encoder.inputs.with_prompt`) applied to training items."""
    if not prompt:
        return list(items)
    from ret2_plugin.encoder.inputs import with_prompt

    return [with_prompt(item, prompt, side) for item in items]  # type: ignore[arg-type]


class EncodeDataset(Dataset):
    """Items to encode for evaluation, images loaded in workers; failures come back as errors."""

    def __init__(self, items: Sequence[Item], source: str) -> None:
        self.items, self.source = items, source

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Item | None, ItemError | None]:
        item, err = load_item_image(self.items[i], self.source)
        return i, item, err


class EncodeCollator:
    def __init__(self, processor: Callable[..., dict[str, torch.Tensor]], side: str) -> None:
        self.processor, self.side = processor, side

    def __call__(self, rows: Sequence[tuple[int, Item | None, ItemError | None]]) -> dict[str, Any]:
        good = [(i, item) for i, item, _ in rows if item is not None]
        out: dict[str, Any] = {"indices": [i for i, _ in good], "errors": [e for _, _, e in rows if e is not None]}
        out["inputs"] = dict(self.processor([item for _, item in good], side=self.side)) if good else None
        return out


def make_loader(
    dataset: Dataset,
    *,
    collate_fn: Callable[..., Any],
    batch_sampler: Sampler | None = None,
    batch_size: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader that never touches the global RNG (its own generator), so resuming is exact."""
    kwargs: dict[str, Any] = dict(
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )
    if batch_sampler is not None:
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs.update(batch_size=batch_size, shuffle=False)
    if num_workers > 0:
        kwargs["prefetch_factor"] = 2
        kwargs["worker_init_fn"] = ignore_sigint
    return DataLoader(dataset, **kwargs)


def ignore_sigint(_worker_id: int = 0) -> None:
    """DataLoader workers ignore Ctrl-C (sent to the whole process group): the main process handles it,
    saves a checkpoint, then shuts the workers down itself."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def move_to(inputs: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
