"""L_v: the SimCLR (NT-Xent) loss between two augmented views of every image, over the global batch.

Paper form (eq. 3, as in SimCLR): all 2N view embeddings are anchors; each anchor's positive is the
other view of its image and its softmax runs over the other 2N - 1 embeddings.

Code form (published implementation): only view-1 embeddings are anchors, scored against both views
of every image with the anchor's own similarity masked; the positive is its view 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dist_train.distributed.gather import gather_rows
from dist_train.distributed.reduce import mean_share
from dist_train.losses.block import DEFAULT_TEMPERATURE, check_form, own_columns


def simclr_loss(
    view1: torch.Tensor,
    view2: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    form: str = "paper",
) -> torch.Tensor:
    """This rank's share of L_v; view1, view2: (n, D) L2-normalised embeddings of the two views."""
    check_form(form)
    if view1.shape != view2.shape:
        raise ValueError(f"the two views must have the same shape, got {tuple(view1.shape)} and {tuple(view2.shape)}")
    first, second = gather_rows(view1), gather_rows(view2)
    local, total = first.local_count, first.total
    columns = torch.cat([first.all, second.all])  # view 1 of image j at j, its view 2 at total + j
    own = own_columns(local, first.offset, view1.device)
    if form == "paper":
        anchors = torch.cat([first.local, second.local])
        anchor_columns = torch.cat([own, own + total])
        positive_columns = torch.cat([own + total, own])
        anchor_count = 2 * total
    else:
        anchors, anchor_columns, positive_columns, anchor_count = first.local, own, own + total, total
    rows = torch.arange(anchors.shape[0], device=view1.device)
    logits = anchors @ columns.T / temperature
    logits[rows, anchor_columns] = float("-inf")
    logp = F.log_softmax(logits, dim=1)
    return mean_share(-logp[rows, positive_columns].sum(), anchor_count)
