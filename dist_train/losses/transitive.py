"""L_t: the transitive text-text loss, whose soft positives alpha come from the images.

Two captions i, j (of any languages) are pulled together as much as the path
caption i -> image i -> image j -> caption j is trusted. alpha is a target, not a prediction, so it
is computed under stop-gradient: no gradient reaches the image-image or image-text similarities
through it (those are trained by L_v and L_x).

    L_t = -sum_i sum_{j != i} alpha_ij log softmax_{k != i}(beta_ik / tau)_j,   beta = text-text cosine

alpha forms (both with margin m = 0.4, ``f(x) = max(0, x - m) / (1 - m)``):

* paper (eq. 2): ``alpha_ij = f(cbrt(x_ii * v_ij * x_jj))``, the similarities first mapped from
  [-1, 1] to [0, 1] (appendix B.1; ``unit_interval=False`` clamps negative cosines to 0 instead); the
  cube root is the geometric mean of the three, so without image-text similarities the image-image
  term is used on its own.
* code (published implementation): ``a_ij = v_ij`` (raw dot product), optionally times the outer
  product x_ii * x_jj rescaled from its range over the batch into [0.75, 1.25]; the own pair is
  excluded, a is divided by its largest entry over the global batch, then ``f`` is applied. No cube
  root and no [0, 1] mapping; the largest off-diagonal alpha of every batch is exactly 1.
* supervised baseline: alpha_ij = 1 when captions i and j are translations of each other (same group
  id), else 0.

Normalisation: the paper form averages over anchors (the paper writes a plain sum), the code form
divides by the sum of alpha over the global batch; either can be chosen with ``normalise_by``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dist_train.distributed.gather import gather_detached, gather_rows
from dist_train.distributed.reduce import all_reduce_detached, mean_share
from dist_train.losses.block import DEFAULT_TEMPERATURE, check_form, own_pair_mask

DEFAULT_MARGIN = 0.4
# Code form: the image-text factor moves alpha by at most +-25 %.
CODE_IMAGE_TEXT_SPREAD = 0.25
_TINY = 1e-12


@dataclass(frozen=True)
class TransitiveLossOutput:
    """The loss share and what is worth logging about the soft positives (all detached but loss)."""

    loss: torch.Tensor
    alpha: torch.Tensor  # (local rows, global batch); 0 on each row's own caption
    positive_fraction: torch.Tensor  # share of the global batch's N(N-1) caption pairs with alpha > 0
    mean_positive_alpha: torch.Tensor  # mean alpha over those pairs (0 when there are none)


def margin_ramp(x: torch.Tensor, margin: float) -> torch.Tensor:
    """f(x) = max(0, x - m) / (1 - m): pairs below the margin are no positives at all."""
    return (x - margin).clamp_min(0) / (1 - margin)


def to_unit_interval(similarity: torch.Tensor) -> torch.Tensor:
    """Cosine similarity mapped from [-1, 1] to [0, 1], as the paper does before taking products."""
    return ((similarity + 1) / 2).clamp(0, 1)


def paper_alpha(
    image_sim: torch.Tensor,
    row_image_text_sim: torch.Tensor | None = None,
    column_image_text_sim: torch.Tensor | None = None,
    *,
    margin: float = DEFAULT_MARGIN,
    unit_interval: bool = True,
) -> torch.Tensor:
    """f(cbrt(x_ii v_ij x_jj)) for a block; image_sim: (rows, cols) cosines, x: per-row / per-column.

    unit_interval=False clamps negative cosines to 0 instead of mapping [-1, 1] onto [0, 1]: with the
    mapping, m = 0.4 only rejects paths whose geometric-mean cosine is below -0.2.
    """
    to_unit = to_unit_interval if unit_interval else (lambda similarity: similarity.clamp(0, 1))
    if row_image_text_sim is None:
        return margin_ramp(to_unit(image_sim), margin)
    product = to_unit(row_image_text_sim)[:, None] * to_unit(image_sim) * to_unit(column_image_text_sim)[None, :]
    return margin_ramp(product.pow(1 / 3), margin)


def code_alpha(
    image_sim: torch.Tensor,
    own_pairs: torch.Tensor,
    row_image_text_sim: torch.Tensor | None = None,
    all_image_text_sim: torch.Tensor | None = None,
    *,
    margin: float = DEFAULT_MARGIN,
) -> torch.Tensor:
    """The published code's alpha for a block (rows x all columns); batch-wide max and range are global.

    own_pairs masks each row's own column; all_image_text_sim holds x for every column of the global
    batch (the rescaling range of x_ii x_jj is taken over the whole N x N outer product).
    """
    weight = image_sim
    if row_image_text_sim is not None:
        low_x, high_x = all_image_text_sim.min(), all_image_text_sim.max()
        corners = torch.stack([low_x * low_x, low_x * high_x, high_x * high_x])  # extremes of x_i x_j
        low, high = corners.min(), corners.max()
        outer = row_image_text_sim[:, None] * all_image_text_sim[None, :]
        spread = CODE_IMAGE_TEXT_SPREAD
        weight = weight * ((outer - low) / (high - low).clamp_min(_TINY) * 2 * spread + (1 - spread))
    weight = weight.masked_fill(own_pairs, float("-inf"))
    local_max = weight.max() if weight.numel() else weight.new_tensor(float("-inf"))
    batch_max = all_reduce_detached(local_max, "max")
    return margin_ramp(weight / batch_max.clamp_min(_TINY), margin).masked_fill(own_pairs, 0.0)


def supervised_alpha(row_groups: torch.Tensor, column_groups: torch.Tensor, own_pairs: torch.Tensor) -> torch.Tensor:
    """1 for captions that are translations of each other (same group id), 0 otherwise and on the own pair."""
    same = row_groups[:, None] == column_groups[None, :]
    return (same & ~own_pairs).to(torch.get_default_dtype())


def transitive_loss(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor | None = None,
    image_text_sim: torch.Tensor | None = None,
    *,
    group_ids: torch.Tensor | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    margin: float = DEFAULT_MARGIN,
    form: str = "paper",
    normalise_by: str | None = None,
    unit_interval: bool = True,
) -> TransitiveLossOutput:
    """This rank's share of L_t over the global batch.

    text_emb: (n, D) text-text embeddings, L2-normalised (the only input that receives gradient).
    image_emb: (n, D) image embeddings for v_ij (or (n, V, D): view 0 is used), L2-normalised.
    image_text_sim: (n,) x_ii, each sample's image-caption similarity; optional.
    group_ids: (n,) integer ids shared by captions that translate each other: the supervised baseline
        (alpha from the ids; image inputs ignored).
    normalise_by: "anchors" (divide by N) or "alpha" (divide by the sum of alpha); default: "anchors"
        for the paper form, "alpha" for the code form.
    unit_interval: paper form only; see ``paper_alpha``.
    """
    check_form(form)
    normalise_by = normalise_by or ("anchors" if form == "paper" else "alpha")
    if normalise_by not in ("anchors", "alpha"):
        raise ValueError(f"normalise_by must be 'anchors' or 'alpha', not {normalise_by!r}")
    texts = gather_rows(text_emb)
    local, total = texts.local_count, texts.total
    own_pairs = own_pair_mask(local, total, texts.offset, text_emb.device)

    with torch.no_grad():
        if group_ids is not None:
            group_ids = group_ids.to(text_emb.device)
            alpha = supervised_alpha(group_ids, gather_detached(group_ids), own_pairs)
        else:
            if image_emb is None:
                raise ValueError("transitive_loss needs image_emb, or group_ids for the supervised baseline")
            image_rows = (image_emb[:, 0] if image_emb.dim() == 3 else image_emb).detach()
            image_sim = image_rows @ gather_detached(image_rows).T
            row_x = all_x = None
            if image_text_sim is not None:
                row_x = image_text_sim.detach().to(image_sim.dtype)
                all_x = gather_detached(row_x)
            if form == "paper":
                alpha = paper_alpha(image_sim, row_x, all_x, margin=margin, unit_interval=unit_interval)
                alpha = alpha.masked_fill(own_pairs, 0.0)
            else:
                alpha = code_alpha(image_sim, own_pairs, row_x, all_x, margin=margin)
        # statistics in float64: pair counts pass 2**24 at N = 4096 and overflow float16 much sooner
        local_stats = torch.stack([alpha.sum(dtype=torch.float64), (alpha > 0).sum().to(torch.float64)])
        alpha_sum, positive_count = all_reduce_detached(local_stats, "sum")
        alpha = alpha.to(text_emb.dtype)

    beta = texts.local @ texts.all.T / temperature
    logp = F.log_softmax(beta.masked_fill(own_pairs, float("-inf")), dim=1).masked_fill(own_pairs, 0.0)
    weighted = -(alpha * logp).sum()
    normaliser = total if normalise_by == "anchors" else alpha_sum.clamp_min(_TINY)
    pair_count = max(total * (total - 1), 1)
    return TransitiveLossOutput(
        loss=mean_share(weighted, normaliser),
        alpha=alpha,
        positive_fraction=positive_count / pair_count,
        mean_positive_alpha=alpha_sum / positive_count.clamp_min(1),
    )
