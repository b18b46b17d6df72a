"""L_c: BERT-style token cloze, cross-entropy on the masked positions only.

Ranks hold different numbers of masked tokens, so the default mean runs over the masked tokens of
the global batch (the same loss and gradient as one process over the whole batch). ``global_mean
=False`` gives the published code's per-rank mean, which weighs a token on a rank with few masked
tokens more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dist_train.distributed.reduce import global_count, mean_share

IGNORE_INDEX = -100


def cloze_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    global_mean: bool = True,
) -> torch.Tensor:
    """This rank's share of L_c; logits (..., V), labels (...) with ``ignore_index`` where not predicted."""
    vocab = logits.shape[-1]
    flat_labels = labels.reshape(-1)
    token_loss_sum = F.cross_entropy(
        logits.reshape(-1, vocab), flat_labels, ignore_index=ignore_index, reduction="sum"
    )
    local_count = (flat_labels != ignore_index).sum()
    if global_mean:
        return mean_share(token_loss_sum, global_count(local_count, logits.device).clamp_min(1))
    return token_loss_sum / local_count.clamp_min(1).to(token_loss_sum.dtype)
