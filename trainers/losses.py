"""Contrastive InfoNCE for ReT / ReT-2: in-batch (and hard) negatives gathered from every rank,
symmetric, with soft multi-positive targets.

Targets are built from ids, not positions: column j is a positive for query i when document id
`doc_ids[j]` is one of the query's positive ids. When the same document appears several times in
the global batch (two queries share a target) or a query has several positives in the batch, the
target mass is spread uniformly over all matching columns (ReT v1's soft labels). The document ->
query direction uses the transpose of the same score matrix, normalised over the global queries;
document rows with no positive query (hard negatives) take no part in it.

Scaling across ranks: each rank returns `loss = world_size * (sum of its rows' losses) / (global
number of rows)`. DistributedDataParallel averages gradients over ranks, so the step equals the
gradient of the global-batch mean; `global_loss` carries that mean for logging.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed as du


def similarity(queries: Tensor, documents: Tensor) -> Tensor:
    """Score matrix `[Nq, Nd]`: dot product for `[N, D]` inputs, late interaction (MaxSim, summed
    over query tokens) for `[N, K, D]` inputs. Inputs are expected L2-normalised."""
    if queries.dim() == 2 and documents.dim() == 2:
        return queries @ documents.T
    if queries.dim() == 3 and documents.dim() == 3:
        tokens = torch.einsum("qkd,pjd->qpkj", queries, documents)
        return tokens.max(dim=-1).values.sum(dim=-1)
    raise ValueError(f"query and document features disagree: {tuple(queries.shape)} vs {tuple(documents.shape)}")


def target_matrix(query_positive_ids: Tensor, doc_ids: Tensor) -> Tensor:
    """Boolean `[Nq, Nd]`: document column j is a positive of query i. `query_positive_ids` is
    `[Nq, P]` padded with -1; `doc_ids` is `[Nd]` (negative ids never match)."""
    if query_positive_ids.dim() == 1:
        query_positive_ids = query_positive_ids[:, None]
    hit = (query_positive_ids[:, :, None] == doc_ids[None, None, :]) & (query_positive_ids[:, :, None] >= 0)
    return hit.any(dim=1)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row cross-entropy against a target spread uniformly over the True columns of `targets`.
    Returns `(loss [N], valid [N] bool)`; rows without any positive have loss 0 and valid False."""
    weights = targets.to(logits.dtype)
    counts = weights.sum(dim=1, keepdim=True)
    probs = weights / counts.clamp(min=1)
    loss = -(probs * F.log_softmax(logits, dim=1)).sum(dim=1)
    return loss, counts.squeeze(1) > 0


@dataclass
class LossOutput:
    loss: Tensor  # this rank's contribution (backward on it); see the module docstring
    global_loss: Tensor  # detached mean over the global batch (same on every rank)
    loss_q2d: Tensor  # detached, global
    loss_d2q: Tensor | None  # detached, global; None when not symmetric
    accuracy: Tensor  # detached: share of global queries whose top-1 in-batch document is a positive
    temperature: float


class ContrastiveLoss(nn.Module):
    """InfoNCE with a fixed or learnable temperature (learnable: CLIP's log-scale, clamped)."""

    def __init__(
        self,
        temperature: float = 0.05,
        *,
        learnable_temperature: bool = False,
        symmetric: bool = True,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        init = torch.tensor(math.log(1.0 / temperature), dtype=torch.float32)
        if learnable_temperature:
            self.log_scale = nn.Parameter(init)
        else:
            self.register_buffer("log_scale", init)
        self.symmetric = symmetric
        self.max_log_scale = math.log(max_logit_scale)

    def logit_scale(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def forward(
        self,
        query_features: Tensor,
        doc_features: Tensor,
        query_positive_ids: Tensor,
        doc_ids: Tensor,
    ) -> LossOutput:
        """`query_features` `[Bq, D]` / `[Bq, K, D]` and `doc_features` `[Bd, ...]` are this rank's
        raw (un-normalised) outputs; ids are integer tensors (see `target_matrix`)."""
        ws = du.world_size()
        q = F.normalize(query_features.float(), dim=-1)
        d = F.normalize(doc_features.float(), dim=-1)
        scale = self.logit_scale()

        d_all, _ = du.gather_with_grad(d)
        doc_ids_all = du.gather_no_grad(doc_ids, pad_value=-1)
        logits_q = similarity(q, d_all) * scale
        targets_q = target_matrix(query_positive_ids, doc_ids_all)
        rows_q, valid_q = soft_cross_entropy(logits_q, targets_q)
        n_q = du.all_reduce_sum(valid_q.sum().float().detach()).clamp(min=1)
        loss_q = (rows_q * valid_q).sum() * ws / n_q
        with torch.no_grad():
            top1 = targets_q.gather(1, logits_q.argmax(dim=1, keepdim=True)).squeeze(1) & valid_q
            accuracy = du.all_reduce_sum(top1.sum().float()) / n_q
            loss_q2d = du.all_reduce_mean(loss_q.detach())

        if not self.symmetric:
            return LossOutput(loss_q, loss_q2d, loss_q2d, None, accuracy, float(1.0 / scale.item()))

        q_all, _ = du.gather_with_grad(q)
        qpos_all = du.gather_no_grad(
            query_positive_ids if query_positive_ids.dim() == 2 else query_positive_ids[:, None], pad_value=-1
        )
        logits_d = similarity(q_all, d).T * scale  # [Bd_local, Nq_global]
        targets_d = target_matrix(qpos_all, doc_ids).T
        rows_d, valid_d = soft_cross_entropy(logits_d, targets_d)
        n_d = du.all_reduce_sum(valid_d.sum().float().detach()).clamp(min=1)
        loss_d = (rows_d * valid_d).sum() * ws / n_d
        loss = (loss_q + loss_d) / 2
        with torch.no_grad():
            loss_d2q = du.all_reduce_mean(loss_d.detach())
            global_loss = (loss_q2d + loss_d2q) / 2
        return LossOutput(loss, global_loss, loss_q2d, loss_d2q, accuracy, float(1.0 / scale.item()))
