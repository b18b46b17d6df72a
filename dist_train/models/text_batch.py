"""Turning stored caption token ids into model input: padding and cloze masking.

Pure torch so it runs wherever the batch is (a loader worker or the training device) and so model
code and tests need nothing from the data pipeline. Ids follow the shared vocabulary: captions are
stored without BOS/EOS; BOS (id 2) doubles as Globetrotter's `<txt>` token at position 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["IGNORE_INDEX", "ClozeBatch", "mask_for_cloze", "pad_tokens"]

# Label of a position the cloze loss does not predict (torch's cross-entropy default).
IGNORE_INDEX = -100


def _as_id_list(ids: object) -> list[int]:
    if isinstance(ids, torch.Tensor):
        flat = ids.reshape(-1).tolist()
    else:
        flat = np.asarray(ids).reshape(-1).tolist()
    return [int(i) for i in flat]


def pad_tokens(
    sentences: Sequence[object],
    max_length: int,
    bos_id: int = 2,
    eos_id: int = 3,
    pad_id: int = 0,
    pad_to_max_length: bool = False,
) -> torch.Tensor:
    """`[BOS, ids..., EOS, PAD...]` rows as a LongTensor `[B, T]`.

    A caption longer than `max_length - 2` loses its tail but keeps its EOS, so every row still
    marks where the sentence ends. T is the longest row of the batch (short batches cost less), or
    `max_length` with `pad_to_max_length`. An empty caption becomes `[BOS, EOS]`; an empty batch a
    `[0, T]` tensor.
    """
    if max_length < 2:
        raise ValueError(f"max_length must leave room for BOS and EOS, got {max_length}")
    rows = [[bos_id, *_as_id_list(s)[: max_length - 2], eos_id] for s in sentences]
    width = max_length if pad_to_max_length else max((len(r) for r in rows), default=2)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


class ClozeBatch(NamedTuple):
    """Corrupted tokens for the encoder, and targets (`IGNORE_INDEX` where not predicted)."""

    inputs: torch.Tensor
    labels: torch.Tensor


def mask_for_cloze(
    tokens: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    generator: torch.Generator,
    p_predict: float = 1 / 6,
    p_corrupt: float = 0.2,
    p_mask_token: float = 0.8,
    p_random_token: float = 0.1,
) -> ClozeBatch:
    """Globetrotter's token cloze corruption of a padded batch `[B, T]`.

    Every ordinary token (not in `special_ids`, which should hold PAD/BOS/EOS and the mask id) is
    chosen for prediction with `p_predict`; a sentence where none was chosen gets one chosen
    uniformly among its ordinary tokens, so each sentence with any word contributes to L_c. A
    chosen token becomes `<mask>` with `p_mask_token`, a random ordinary token with
    `p_random_token` and stays as it is otherwise (BERT's 80/10/10).

    The published training script also corrupts the *other* ordinary tokens, with `p_corrupt`
    (0.2) and the same mask/random/keep split, without predicting them: the model must cope with
    noisy context. `p_corrupt=0` gives plain BERT masking (what the paper describes).

    Random replacements never draw a special id: a random PAD would silently shorten the sentence
    through the padding mask. (The published code draws from the whole vocabulary, and its
    replacement test, conditioned on "not masked", makes the split 80/2/18; pass
    `p_random_token=0.02` to reproduce that.) All randomness comes from `generator`, drawn on the
    generator's device, so a batch is corrupted identically on any device.
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")
    for name, p in (("p_predict", p_predict), ("p_corrupt", p_corrupt), ("p_mask_token", p_mask_token),
                    ("p_random_token", p_random_token)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability, got {p}")
    if p_mask_token + p_random_token > 1.0:
        raise ValueError("p_mask_token + p_random_token must not exceed 1")
    special = torch.tensor(sorted({int(i) for i in special_ids} | {int(mask_id)}), dtype=torch.long)
    everything = torch.arange(vocab_size)
    replacement_ids = everything[~torch.isin(everything, special)]
    if replacement_ids.numel() == 0:
        raise ValueError("the vocabulary has no ordinary token to draw random replacements from")

    rng_device = generator.device
    ids = tokens.to(rng_device)
    ordinary = ~torch.isin(ids, special.to(device=rng_device, dtype=ids.dtype))

    def uniform() -> torch.Tensor:
        return torch.rand(ids.shape, generator=generator, device=rng_device)

    predict = (uniform() < p_predict) & ordinary
    if p_predict > 0:
        # Sentences with ordinary tokens but no pick: the top random score among its ordinary
        # tokens picks one uniformly.
        needs_one = ~predict.any(dim=1) & ordinary.any(dim=1)
        scores = uniform().masked_fill(~ordinary, -1.0)
        forced = torch.zeros_like(predict)
        forced[torch.arange(ids.shape[0], device=rng_device), scores.argmax(dim=1)] = True
        predict |= forced & needs_one[:, None]

    corrupt = predict | ((uniform() < p_corrupt) & ordinary & ~predict)
    action = uniform()
    to_mask = corrupt & (action < p_mask_token)
    to_random = corrupt & (action >= p_mask_token) & (action < p_mask_token + p_random_token)
    random_ids = replacement_ids.to(rng_device)[
        torch.randint(replacement_ids.numel(), ids.shape, generator=generator, device=rng_device)
    ]

    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    labels = torch.where(predict, ids, torch.full_like(ids, IGNORE_INDEX))
    return ClozeBatch(inputs.to(tokens.device), labels.to(tokens.device))
