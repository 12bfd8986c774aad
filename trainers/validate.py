"""Check every input of a training run before step 1, so that failures come first, not late.

`validate_run` parses every line of the training and evaluation files, opens and fully decodes
every referenced image (in a thread pool), checks that every positive / negative id is in its
corpus and that the evaluation settings can build an evaluation split. It returns the cleaned data
(items whose image cannot be opened are left out, queries left without a positive too) and a
per-item report (file, line, id, reason). `--strict` turns any reported item into an error before
training; an evaluation split that cannot be built is always an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ret2_plugin.items import Item, ItemError

from .data import TrainingData, load_item_image


class DataValidationError(ValueError):
    """Raised before training (strict mode, or data that cannot train / evaluate at all)."""

    def __init__(self, message: str, errors: Sequence[ItemError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


@dataclass
class ValidationReport:
    """What was checked and what was refused; `errors` are per item (file, line, id, reason)."""

    checked: dict[str, int] = field(default_factory=dict)  # file -> items read
    images_checked: int = 0
    errors: list[ItemError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "images_checked": self.images_checked,
            "num_errors": len(self.errors),
            "errors": [e.to_dict() for e in self.errors],
        }

    def lines(self, limit: int = 50) -> list[str]:
        """Human-readable report lines: `file:line (id=...): reason`."""
        out = [f"{e.file}:{e.line} (id={e.id!r}): {e.reason}" for e in self.errors[:limit]]
        if len(self.errors) > limit:
            out.append(f"... and {len(self.errors) - limit} more (see validation_report.json)")
        return out


def _check_images(items: Sequence[Item], source: str, workers: int) -> tuple[set[int], list[ItemError]]:
    """Indices of items whose image opens and decodes; errors for the others."""

    def one(i: int) -> tuple[int, ItemError | None]:
        _, err = load_item_image(items[i], source)
        return i, err

    with_image = [i for i, item in enumerate(items) if isinstance(item.image, str)]
    bad: list[ItemError] = []
    failed: set[int] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, err in pool.map(one, with_image):
            if err is not None:
                failed.add(i)
                bad.append(err)
    return {i for i in range(len(items)) if i not in failed}, bad


def _clean(data: TrainingData, workers: int, report: ValidationReport, *, split: str) -> TrainingData:
    """Drop documents and queries whose image fails; queries left without a positive are refused."""
    report.checked[data.corpus_file] = max(report.checked.get(data.corpus_file, 0), len(data.corpus))
    report.checked[data.queries_file] = len(data.queries) + sum(1 for e in data.errors if e.file == data.queries_file)
    ok_docs, doc_errors = _check_images(data.corpus, data.corpus_file, workers)
    ok_queries, query_errors = _check_images(data.queries, data.queries_file, workers)
    report.images_checked += sum(isinstance(x.image, str) for x in (*data.corpus, *data.queries))
    corpus = [d for i, d in enumerate(data.corpus) if i in ok_docs]
    doc_index = {d.id: i for i, d in enumerate(corpus) if d.id is not None}
    queries: list[Item] = []
    errors = list(data.errors) + doc_errors + query_errors
    for i, q in enumerate(data.queries):
        if i not in ok_queries:
            continue
        positives = tuple(p for p in q.positives if p in doc_index)
        if not positives:
            errors.append(
                ItemError(
                    data.queries_file,
                    q.line or 0,
                    q.id,
                    f"every positive {list(q.positives)} has an image that cannot be opened ({split} query left out)",
                )
            )
            continue
        queries.append(
            dataclasses.replace(q, positives=positives, negatives=tuple(n for n in q.negatives if n in doc_index))
        )
    return TrainingData(queries, corpus, doc_index, data.queries_file, data.corpus_file, errors)


def validate_run(
    queries: str,
    corpus: str,
    eval_queries: str | None = None,
    eval_corpus: str | None = None,
    *,
    image_workers: int = 4,
    min_train_queries: int = 1,
) -> tuple[TrainingData, TrainingData | None, ValidationReport]:
    """Load and check the training (and evaluation) data; see the module docstring."""
    report = ValidationReport()
    train = _clean(TrainingData.load(queries, corpus), image_workers, report, split="training")
    evaluation = None
    if eval_queries:
        target = eval_corpus or corpus
        evaluation = _clean(TrainingData.load(eval_queries, target), image_workers, report, split="evaluation")
    seen: set[tuple[str, int, str | None, str]] = set()
    for data in (train, evaluation):
        for e in data.errors if data else []:
            key = (e.file, e.line, e.id, e.reason)
            if key not in seen:
                seen.add(key)
                report.errors.append(e)
    if len(train.queries) < min_train_queries:
        raise DataValidationError(
            f"{queries}: {len(train.queries)} usable training queries, at least {min_train_queries} needed "
            f"(one batch); {len(report.errors)} item(s) refused",
            report.errors,
        )
    if evaluation is not None:
        assert eval_queries is not None
        if not evaluation.queries:
            raise DataValidationError(
                f"cannot build the evaluation split: no query in {eval_queries} has a usable positive in "
                f"{eval_corpus or corpus}"
                + (
                    ""
                    if eval_corpus
                    else " (eval_corpus is not set, so the training corpus "
                    "is used: set eval_corpus to the corpus its positives are in)"
                ),
                report.errors,
            )
        if not evaluation.corpus:
            raise DataValidationError(
                f"cannot build the evaluation split: {eval_corpus or corpus} has no usable document", report.errors
            )
    return train, evaluation, report
