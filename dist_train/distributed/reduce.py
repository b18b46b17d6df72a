"""Turning a rank's partial sum into the share an averaging engine expects.

DDP and DeepSpeed average gradients over ranks. A loss that is a mean over the global batch must
therefore be returned on each rank as ``world_size * (local sum) / (global count)``: averaging those
shares over ranks gives the global mean, and averaging their gradients gives its gradient. With equal
local batches this is just the local mean; with unequal ones, or with normalisers such as a count of
masked tokens or a sum of weights, the global normaliser must be all-reduced first (without
gradient: it is a count or a stop-gradient quantity).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from dist_train.distributed.gather import is_distributed, world_size

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


def all_reduce_detached(value: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A detached copy of ``value`` reduced over ranks with ``op`` ("sum", "max" or "min")."""
    reduced = value.detach().clone()
    if is_distributed():
        dist.all_reduce(reduced, op=getattr(dist.ReduceOp, _OPS[op]))
    return reduced


def mean_share(local_sum: torch.Tensor, global_normaliser: torch.Tensor | float) -> torch.Tensor:
    """This rank's share of ``(sum over all ranks) / global_normaliser`` under gradient averaging.

    ``global_normaliser`` must already be the same on every rank (a global count or weight sum).
    """
    scale = world_size() / global_normaliser
    if isinstance(scale, torch.Tensor):
        scale = scale.to(device=local_sum.device, dtype=local_sum.dtype)
    return local_sum * scale


def global_count(local_count: int | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Sum of a per-rank count over ranks, as a float tensor on ``device``."""
    count = torch.as_tensor(local_count, dtype=torch.float64, device=device)
    return all_reduce_detached(count, "sum")
