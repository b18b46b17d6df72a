"""SMALR's alignment losses beside the triplet loss: MCLM (eq. 2), neighbourhood constraints, the
adversarial language classifier and its ramp.

Each returns this rank's share of the global-batch loss (averaged over ranks by the engine, see
`dist_train.distributed.reduce.mean_share`). The neighbourhood constraints are the triplet loss of
`dist_train.losses.triplet` between sentences of one image (sentence-sentence ranking).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dist_train.distributed.reduce import global_count, mean_share
from dist_train.losses.triplet import MULE_HARD_NEGATIVES, MULE_MARGIN, triplet_ranking_loss


def mclm_loss(masked: torch.Tensor, predicted: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Eq. (2) summed over the two sentences of each pair, averaged over pairs:
    ``|| l2(S^m + S') - l2(S) ||`` per sentence, rows ordered (a_1, b_1, a_2, b_2, ...).

    The target S is the unmasked sentence's representation; we stop its gradient (the prediction should
    move towards the sentence, not the sentence towards the prediction), which the paper leaves open.
    """
    if not (masked.shape == predicted.shape == full.shape) or masked.shape[0] % 2:
        raise ValueError("masked, predicted and full must be (2P, D) with the two sentences of each pair in turn")
    distance = (F.normalize(masked + predicted, dim=-1) - F.normalize(full.detach(), dim=-1)).norm(dim=-1)
    pairs = masked.shape[0] // 2
    return mean_share(distance.sum(), global_count(pairs, masked.device).to(distance.dtype))


def neighbourhood_loss(sentences_a: torch.Tensor, sentences_b: torch.Tensor, group_ids: torch.Tensor | None = None,
                       *, margin: float = MULE_MARGIN, hard_negatives: int = MULE_HARD_NEGATIVES) -> torch.Tensor:
    """L_nc: sentence a_i must be nearer its paired sentence b_i (same image, another language) than
    other sentences, both directions with equal weight; rows are L2-normalised here."""
    return triplet_ranking_loss(F.normalize(sentences_a, dim=-1), F.normalize(sentences_b, dim=-1), margin=margin,
                                hard_negatives=hard_negatives, image_weight=1.0, group_ids=group_ids)


def adversarial_ramp(progress: float, domain_adapt: float = 1.0) -> float:
    """MULE's gradient-reversal factor ``(2 / (1 + exp(-10 p)) - 1) * domain_adapt``, p in [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0) * domain_adapt


def language_adversary_loss(logits: torch.Tensor, languages: torch.Tensor) -> torch.Tensor:
    """L_adv: cross-entropy of the language classifier. The classifier minimises it; the encoder sees
    its gradient reversed (and scaled by the ramp) through the model's gradient-reversal layer."""
    per_row = F.cross_entropy(logits.float(), languages, reduction="sum")
    return mean_share(per_row, global_count(languages.shape[0], logits.device).to(per_row.dtype))


__all__ = ["adversarial_ramp", "language_adversary_loss", "mclm_loss", "neighbourhood_loss"]
