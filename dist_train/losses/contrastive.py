"""L_x: symmetric InfoNCE between images and their captions, over the global batch.

Paper form (eq. 4): for each pair i, -log p(caption i | image i) - log p(image i | caption i), the
two softmaxes running over all captions and all images of the global batch; the two directions are
summed as written. The mean over anchors replaces the paper's sum so that the scale does not grow
with the batch.

Code form (published implementation): captions are scored against both augmented views of every
image; both views of image i are positives for caption i (their log-probabilities averaged), each
view is its own anchor for the image-to-caption direction, and the two directions are averaged
rather than summed, i.e. half the paper form's scale at equal temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dist_train.distributed.gather import gather_rows
from dist_train.distributed.reduce import mean_share
from dist_train.losses.block import DEFAULT_TEMPERATURE, check_form, own_columns


def cross_modal_loss(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    form: str = "paper",
) -> torch.Tensor:
    """This rank's share of L_x.

    text_emb: (n, D) caption embeddings of this rank, L2-normalised.
    image_emb: (n, D), or (n, V, D) with V augmented views; the paper form uses view 0 only.
    Returns a scalar whose average over ranks is the global-batch loss (see ``reduce.mean_share``).
    """
    check_form(form)
    if image_emb.dim() == 2:
        image_emb = image_emb.unsqueeze(1)
    if form == "paper":
        image_emb = image_emb[:, :1]
    texts = gather_rows(text_emb)
    images = gather_rows(image_emb)
    local, total, views = texts.local_count, texts.total, image_emb.shape[1]
    rows = torch.arange(local, device=text_emb.device)
    own = own_columns(local, texts.offset, text_emb.device)

    # Caption anchors against every view of every image: columns ordered view-major (v * total + j).
    image_columns = images.all.transpose(0, 1).reshape(views * total, -1)
    caption_logp = F.log_softmax(texts.local @ image_columns.T / temperature, dim=1)
    caption_to_image = caption_logp.view(local, views, total)[rows, :, own]  # (local, views)

    # Each local image view as an anchor against every caption.
    image_logp = F.log_softmax(images.local @ texts.all.T / temperature, dim=-1)  # (local, views, total)
    image_to_caption = image_logp[rows, :, own]  # (local, views)

    if form == "paper":
        per_anchor = -(caption_to_image[:, 0] + image_to_caption[:, 0])
    else:
        per_anchor = -(caption_to_image.mean(dim=1) + image_to_caption.mean(dim=1)) / 2
    return mean_share(per_anchor.sum(), total)
