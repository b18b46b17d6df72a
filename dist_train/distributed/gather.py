"""All-gather that carries gradient back to the rank that produced each row.

A contrastive loss over the global batch needs every rank's embeddings as columns. Each rank then
computes only its own rows of the similarity matrix, so the loss on rank r depends on rank s's
embeddings through the gathered columns. The backward of the gather therefore sums, over ranks, the
gradient each rank's loss sends to the gathered tensor, and hands every rank the slice of its own
rows. With every rank computing its share of the global mean (see ``reduce.mean_share``) and the
engine averaging gradients over ranks (DDP, DeepSpeed), the parameter gradient equals the
single-process gradient over the concatenated batch, with no world-size factor: the known failure of
gathering with gradient and then computing the *full* loss on every rank is that each rank's
gradient then counts every other rank's loss too, W times the right value.

Local batch sizes may differ between ranks; rows are padded to the largest for the collective and
the padding is dropped again. Every function is the identity when no process group is running.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


@dataclass(frozen=True)
class GatheredRows:
    """Every rank's rows stacked in rank order, and where this rank's rows sit among them."""

    all: torch.Tensor
    offset: int
    local_count: int
    sizes: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.all.shape[0]

    @property
    def local(self) -> torch.Tensor:
        """This rank's rows, taken from the gathered tensor so both paths share one graph node."""
        return self.all[self.offset : self.offset + self.local_count]


def _row_counts(x: torch.Tensor) -> tuple[int, ...]:
    count = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    return tuple(int(c.item()) for c in counts)


def _all_gather_rows(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    largest = max(sizes)
    x = x.contiguous()
    if x.shape[0] < largest:
        x = torch.cat([x, x.new_zeros((largest - x.shape[0], *x.shape[1:]))])
    buffers = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(buffers, x)
    return torch.cat([buffer[:count] for buffer, count in zip(buffers, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        ctx.sizes = sizes
        ctx.rank = dist.get_rank()
        return _all_gather_rows(x, sizes)

    @staticmethod
    def backward(ctx, grad_all: torch.Tensor):
        # Sum what every rank's loss sent to the gathered tensor, keep our own rows. An all-reduce
        # rather than a reduce-scatter: gloo has no reduce-scatter, and it handles uneven sizes as is.
        grad_all = grad_all.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad_all, op=dist.ReduceOp.SUM)
        offset = sum(ctx.sizes[: ctx.rank])
        return grad_all[offset : offset + ctx.sizes[ctx.rank]], None


def gather_rows(x: torch.Tensor) -> GatheredRows:
    """All-gather ``x`` along dim 0 with gradient; ``.offset`` locates this rank's rows."""
    if not is_distributed():
        return GatheredRows(all=x, offset=0, local_count=x.shape[0], sizes=(x.shape[0],))
    sizes = _row_counts(x)
    gathered = _GatherWithGrad.apply(x, sizes) if x.requires_grad else _all_gather_rows(x, sizes)
    me = dist.get_rank()
    return GatheredRows(all=gathered, offset=sum(sizes[:me]), local_count=sizes[me], sizes=sizes)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0; the backward returns this rank's slice of the rank-summed gradient."""
    return gather_rows(x).all


def gather_detached(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 without gradient (stop-gradient inputs such as alpha, group ids)."""
    return gather_rows(x.detach()).all
