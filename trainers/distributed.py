"""Distributed helpers: rank queries, process-group setup from torchrun's environment, and an
all-gather that lets gradients flow back to every rank.

Contrastive training needs every rank to score its queries against the documents of ALL ranks
(more negatives per step). A plain `dist.all_gather` cuts the graph; `gather_with_grad` keeps it:
the backward pass sums the gradients that every rank computed for a gathered slice and hands each
rank the part that belongs to its own inputs. Ranks may hold different numbers of rows (a bad item
dropped from one rank's batch): rows are padded to the largest count, gathered, then unpadded.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def init_from_env(backend: str | None = None, timeout_minutes: int = 60) -> bool:
    """Join the process group described by torchrun's variables (WORLD_SIZE, RANK, MASTER_ADDR...).

    Returns True when a group with more than one process was joined; a plain `python` run (no
    WORLD_SIZE, or WORLD_SIZE=1) stays single-process.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return True


def destroy_process_group() -> None:
    """Leave the process group, if any (frees the NCCL / gloo resources before the process exits)."""
    if is_distributed():
        dist.destroy_process_group()


def _gathered_sizes(n: int, device: torch.device) -> list[int]:
    sizes = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(sizes) for _ in range(world_size())]
    dist.all_gather(out, sizes)
    return [int(s.item()) for s in out]


def _pad_rows(x: torch.Tensor, rows: int, value: float = 0) -> torch.Tensor:
    if x.shape[0] == rows:
        return x.contiguous()
    pad = x.new_full((rows - x.shape[0], *x.shape[1:]), value)
    return torch.cat([x, pad], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all-gather equally sized tensors. Backward: all-reduce (sum) the gradients of the
    gathered tensor, then keep this rank's slice: d(sum of every rank's loss)/d(local input)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate `x` from every rank along dim 0, keeping the autograd graph.

    Returns `(gathered, offset)` where `offset` is the row where this rank's own rows start.
    Single process: `(x, 0)`.
    """
    if not is_distributed() or world_size() == 1:
        return x, 0
    sizes = _gathered_sizes(x.shape[0], x.device)
    rows = max(sizes)
    gathered = _GatherWithGrad.apply(_pad_rows(x, rows))
    if all(s == rows for s in sizes):
        return gathered, rank() * rows
    parts = [gathered[r * rows : r * rows + s] for r, s in enumerate(sizes)]
    return torch.cat(parts, dim=0), sum(sizes[: rank()])


def gather_no_grad(x: torch.Tensor, pad_value: float = 0) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0 (ids, masks: no gradient). Trailing dims may
    differ in dim 1 for 2-D integer tensors (padded with `pad_value`)."""
    if not is_distributed() or world_size() == 1:
        return x
    if x.dim() == 2:
        width = torch.tensor([x.shape[1]], device=x.device)
        dist.all_reduce(width, op=dist.ReduceOp.MAX)
        if int(width) > x.shape[1]:
            pad = x.new_full((x.shape[0], int(width) - x.shape[1]), pad_value)
            x = torch.cat([x, pad], dim=1)
    sizes = _gathered_sizes(x.shape[0], x.device)
    rows = max(sizes)
    out = [torch.empty_like(_pad_rows(x, rows, pad_value)) for _ in range(world_size())]
    dist.all_gather(out, _pad_rows(x, rows, pad_value))
    return torch.cat([o[:s] for o, s in zip(out, sizes)], dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum a (detached) tensor over ranks; identity when single-process."""
    if is_distributed() and world_size() > 1:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(x) / world_size()


def all_gather_json(obj: Any, device: torch.device | None = None) -> list[Any]:
    """Gather one JSON-serialisable object from every rank (as UTF-8 bytes in a tensor, no pickle)."""
    if not is_distributed() or world_size() == 1:
        return [obj]
    import json

    device = device or torch.device("cpu")
    data = torch.tensor(list(json.dumps(obj).encode("utf-8")), dtype=torch.uint8, device=device)
    sizes = _gathered_sizes(data.shape[0], device)
    out = [torch.empty(max(sizes), dtype=torch.uint8, device=device) for _ in sizes]
    dist.all_gather(out, _pad_rows(data, max(sizes)))
    return [json.loads(bytes(o[:n].cpu().tolist()).decode("utf-8")) for o, n in zip(out, sizes)]
