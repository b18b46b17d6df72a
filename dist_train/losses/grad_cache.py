"""Gradient caching (Gao et al. 2021): a contrastive batch larger than the activations that fit.

A contrastive loss couples every sample with every other, so the batch cannot simply be split into
accumulation steps. But the loss only touches the embeddings, which are small. So:

1. embed each sub-batch without building a graph and keep the embeddings;
2. compute the loss over all cached embeddings with gradient on the embeddings only;
3. run each sub-batch forward again, this time with a graph, and backpropagate the cached
   embedding gradients through it (``backward(sum(embedding * cached_grad))``).

Parameter gradients equal those of one forward over the whole batch, provided the second forward
of each sub-batch computes the same function as the first: the RNG state is captured before each
first-pass forward and restored before its second pass, so dropout draws the same masks. After the
step the RNG is left where the first pass left it, as if the batch had been embedded once.

The loss may itself be distributed (``gather_with_grad`` inside): its collectives run once, in step 2.

Layers that couple the samples of a batch (BatchNorm in training mode) see one sub-batch at a time,
as each rank's micro-batch does in data-parallel training; their running statistics would be updated
twice per sub-batch (once per pass), so ``restore_buffers_of`` puts the buffers back after the first
pass and only the second pass updates them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Embeddings = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass
class RngState:
    """CPU and CUDA generator states, captured together so a forward can be replayed exactly."""

    cpu: torch.Tensor
    cuda: list[torch.Tensor] | None

    @classmethod
    def capture(cls) -> RngState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(cpu=torch.get_rng_state(), cuda=cuda)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def split_batch(batch: Any, chunk_size: int) -> list[Any]:
    """Split tensors (possibly nested in tuples, lists and dicts) along dim 0 into chunks."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")

    def leading_size(item: Any) -> int | None:
        if isinstance(item, torch.Tensor):
            return item.shape[0]
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, (list, tuple)) else ()
        for child in children:
            size = leading_size(child)
            if size is not None:
                return size
        return None

    def take(item: Any, start: int, stop: int) -> Any:
        if isinstance(item, torch.Tensor):
            return item[start:stop]
        if isinstance(item, Mapping):
            return {key: take(value, start, stop) for key, value in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(take(value, start, stop) for value in item)
        return item  # non-tensor leaves (flags, names) go to every chunk unchanged

    size = leading_size(batch)
    if size is None:
        raise ValueError("split_batch found no tensor to split")
    return [take(batch, start, min(start + chunk_size, size)) for start in range(0, size, chunk_size)]


def _as_tuple(outputs: Embeddings) -> tuple[torch.Tensor, ...]:
    return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)


def grad_cache_step(
    model_fn: Callable[[Any], Embeddings],
    sub_batches: Sequence[Any],
    loss_fn: Callable[..., Any],
    *,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    backward: Callable[[torch.Tensor, bool], None] | None = None,
    restore_buffers_of: torch.nn.Module | None = None,
    restore_rng: bool = True,
) -> Any:
    """Accumulate into the parameters' ``.grad`` the gradient of ``loss_fn`` over the whole batch.

    model_fn(sub_batch) returns one embedding tensor or a tuple of them (rows along dim 0).
    loss_fn(*embeddings) gets each output concatenated over sub-batches, in order, and returns the
    loss tensor, or a tuple / list / object whose first element (or ``.loss``) is the loss; whatever it
    returns is returned, its loss already backpropagated.
    no_sync: e.g. ``ddp_model.no_sync``, entered for every sub-batch backward but the last so DDP
        reduces gradients once.
    backward(surrogate, last): runs the backward of each sub-batch's surrogate (default
        ``surrogate.backward()``); a DeepSpeed engine marks all but the last as inside the
        accumulation and runs ``engine.backward`` (see ``train/objectives/globetrotter.py``).
    restore_buffers_of: a module whose buffers (BatchNorm running statistics) are put back after the
        first pass, so that each sub-batch updates them once, in its second pass.
    restore_rng: replay each sub-batch's RNG state in the second forward (off only to show why).
    """
    if not sub_batches:
        raise ValueError("grad_cache_step needs at least one sub-batch")
    rng_states: list[RngState] = []
    cached: list[tuple[torch.Tensor, ...]] = []
    buffers = ([b.detach().clone() for b in restore_buffers_of.buffers()]
               if restore_buffers_of is not None else [])
    with torch.no_grad():
        for sub_batch in sub_batches:
            rng_states.append(RngState.capture())
            cached.append(tuple(out.detach() for out in _as_tuple(model_fn(sub_batch))))
    rng_after_first_pass = RngState.capture()
    if restore_buffers_of is not None:
        with torch.no_grad():
            for buffer, saved in zip(restore_buffers_of.buffers(), buffers):
                buffer.copy_(saved)

    output_count = len(cached[0])
    full = [torch.cat([chunk[k] for chunk in cached]).requires_grad_() for k in range(output_count)]
    result = loss_fn(*full)
    loss = _loss_of(result)
    loss.backward()
    grads = [emb.grad if emb.grad is not None else torch.zeros_like(emb) for emb in full]

    starts = [0] * output_count  # each output may have its own row count per sub-batch
    for index, (sub_batch, rng_state) in enumerate(zip(sub_batches, rng_states)):
        if restore_rng:
            rng_state.restore()
        last = index == len(sub_batches) - 1
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            outputs = _as_tuple(model_fn(sub_batch))
            surrogate = sum(
                (out * grad[start : start + out.shape[0]]).sum() for out, grad, start in zip(outputs, grads, starts)
            )
            if backward is None:
                surrogate.backward()
            else:
                backward(surrogate, last)
        starts = [start + out.shape[0] for start, out in zip(starts, outputs)]
    rng_after_first_pass.restore()
    return result


def _loss_of(result: Any) -> torch.Tensor:
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, (tuple, list)):
        return result[0]
    return result.loss

