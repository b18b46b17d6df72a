"""One set of module buffers on every rank, before anything reads them outside training.

Data-parallel engines synchronise gradients, not buffers: each rank's BatchNorm updates its running
statistics from its own micro-batches, so the ranks' statistics drift apart. Nothing in training mode
reads them, but an evaluation that spreads its batches over the ranks would run a different model on
each rank, and a checkpoint holds rank 0's statistics only (a resumed run then evaluates differently
from the run that wrote it). Averaging the floating-point buffers over ranks (as timm's
`distribute_bn` does before evaluating) and broadcasting the others from rank 0 makes the ranks agree
with each other and with the checkpoint.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from dist_train.distributed.gather import is_distributed, world_size


@torch.no_grad()
def synchronise_buffers(module: torch.nn.Module) -> int:
    """Average floating-point buffers over ranks and broadcast the others from rank 0; returns the count."""
    buffers = list(module.buffers())
    if not is_distributed() or world_size() == 1:
        return len(buffers)
    for buffer in buffers:
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world_size())
        else:
            dist.broadcast(buffer, src=0)
    return len(buffers)
