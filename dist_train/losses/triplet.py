"""Bidirectional hinge (triplet ranking) loss over the global batch: VSE++, MULE and SMALR.

For a pair (a_i, b_i) of the global batch (a caption and its image, or two captions of one image) and
cosine scores s, each anchor's violations are ``[margin + s(a_i, b_j) - s(a_i, b_i)]_+`` over its
negatives j (the a-anchored direction) and ``[margin + s(b_i, a_j) - s(b_i, a_i)]_+`` (the b-anchored
direction). Per anchor the violations are reduced to one number by ``hard_negatives``:

* 1: the hardest negative only, VSE++'s max of hinges (Faghri et al., margin 0.2);
* N > 1: the mean of the N largest violations, MULE's and SMALR's form (N = 10, margin 0.05, the
  image-anchored direction weighted 1.5, i.e. ``image_weight=1.5`` with images as ``b``);
* 0: the sum over every negative, VSE0's sum of hinges, kept for comparison.

Anchors with fewer than N negatives average over those they have. The loss is
``mean_i (a-anchored_i + image_weight * b-anchored_i)``: the mean over the global batch where VSE++
sums, so that its scale does not grow with the batch (only the effect of gradient clipping differs).

Negatives: every other column, except columns that share the row's ``group_ids`` entry. Captions of
one image in several languages (or one image repeated for each of its captions) are thus neither
positives nor negatives of each other; only the own pair is the positive. Without group ids, a
repeated image would be its own hardest negative at violation exactly ``margin``.

Each rank computes its rows against the gathered columns and returns its share (``mean_share``).
"""

from __future__ import annotations

import torch

from dist_train.distributed.gather import gather_detached, gather_rows
from dist_train.distributed.reduce import mean_share
from dist_train.losses.block import own_pair_mask

VSEPP_MARGIN = 0.2
MULE_MARGIN = 0.05
MULE_HARD_NEGATIVES = 10
MULE_IMAGE_WEIGHT = 1.5


def _anchor_violations(anchors: torch.Tensor, columns: torch.Tensor, positive: torch.Tensor,
                       excluded: torch.Tensor, margin: float, hard_negatives: int) -> torch.Tensor:
    """Per-anchor reduced violations; anchors (n, D) x columns (N, D), positive (n,), excluded (n, N)."""
    violations = (margin + anchors @ columns.T - positive[:, None]).clamp_min(0)
    violations = violations.masked_fill(excluded, 0.0)
    if hard_negatives == 0:
        return violations.sum(dim=1)
    k = min(hard_negatives, columns.shape[0])
    top = violations.topk(k, dim=1).values  # excluded entries are 0 and never beat a real violation's place
    # average over the anchor's negatives that exist (a row with fewer than k negatives divides by that)
    negatives = (~excluded).sum(dim=1).clamp(min=1, max=k).to(top.dtype)
    return top.sum(dim=1) / negatives


def triplet_ranking_loss(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor,
    *,
    margin: float = VSEPP_MARGIN,
    hard_negatives: int = 1,
    image_weight: float = 1.0,
    group_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """This rank's share of the bidirectional hinge loss between paired rows.

    text_emb, image_emb: (n, D) this rank's pairs, L2-normalised; ``image_emb`` may also hold captions
    (caption-caption ranking), ``image_weight`` then weights the direction anchored on them.
    group_ids: (n,) int ids; columns sharing a row's id are not its negatives (see module docstring).
    """
    if text_emb.shape != image_emb.shape or text_emb.dim() != 2:
        raise ValueError(f"text_emb and image_emb must both be (n, D), got {tuple(text_emb.shape)} and "
                         f"{tuple(image_emb.shape)}")
    if hard_negatives < 0:
        raise ValueError(f"hard_negatives must be >= 0 (0 sums every violation), got {hard_negatives}")
    texts = gather_rows(text_emb)
    images = gather_rows(image_emb)
    local, total, offset = texts.local_count, texts.total, texts.offset
    device = text_emb.device
    excluded = own_pair_mask(local, total, offset, device)
    if group_ids is not None:
        if group_ids.shape != (local,):
            raise ValueError(f"group_ids must be ({local},), got {tuple(group_ids.shape)}")
        all_groups = gather_detached(group_ids.to(device))
        excluded = excluded | (group_ids.to(device)[:, None] == all_groups[None, :])
    positive = (texts.local * images.local).sum(dim=-1)
    text_anchored = _anchor_violations(texts.local, images.all, positive, excluded, margin, hard_negatives)
    image_anchored = _anchor_violations(images.local, texts.all, positive, excluded, margin, hard_negatives)
    per_anchor = text_anchored + image_weight * image_anchored
    return mean_share(per_anchor.sum(), total)
