"""Padding and cloze masking: exact layouts, and the masking scheme's statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dist_train.models.text_batch import IGNORE_INDEX, mask_for_cloze, pad_tokens

PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4
SPECIAL = (PAD, BOS, EOS, MASK)
VOCAB = 1000


def test_pad_tokens_adds_bos_eos_and_pads_to_longest():
    out = pad_tokens([[5, 6], [7]], max_length=10)
    assert out.dtype == torch.long
    assert out.tolist() == [[BOS, 5, 6, EOS], [BOS, 7, EOS, PAD]]


def test_pad_tokens_accepts_arrays_tensors_and_lists():
    rows = [np.array([5, 6], dtype=np.int32), torch.tensor([7, 8, 9]), [10]]
    assert pad_tokens(rows, max_length=8).tolist() == [
        [BOS, 5, 6, EOS, PAD], [BOS, 7, 8, 9, EOS], [BOS, 10, EOS, PAD, PAD]
    ]


def test_pad_tokens_truncates_but_keeps_eos():
    out = pad_tokens([list(range(10, 30))], max_length=6)
    assert out.tolist() == [[BOS, 10, 11, 12, 13, EOS]]


def test_pad_tokens_empty_caption_and_empty_batch():
    assert pad_tokens([[]], max_length=8).tolist() == [[BOS, EOS]]
    assert pad_tokens([np.array([], dtype=np.int64), [5]], max_length=8).tolist() == [[BOS, EOS, PAD], [BOS, 5, EOS]]
    assert pad_tokens([], max_length=8).shape == (0, 2)
    assert pad_tokens([], max_length=8, pad_to_max_length=True).shape == (0, 8)


def test_pad_tokens_to_max_length_and_custom_ids():
    out = pad_tokens([[5]], max_length=5, bos_id=7, eos_id=8, pad_id=9, pad_to_max_length=True)
    assert out.tolist() == [[7, 5, 8, 9, 9]]
    with pytest.raises(ValueError, match="max_length"):
        pad_tokens([[5]], max_length=1)


def random_batch(n: int, min_words: int, max_words: int, seed: int = 0, width: int = 64) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    captions = [rng.integers(5, VOCAB, size=rng.integers(min_words, max_words + 1)) for _ in range(n)]
    return pad_tokens(captions, max_length=width)


def mask(tokens, seed=0, **kw):
    return mask_for_cloze(tokens, MASK, VOCAB, SPECIAL, torch.Generator().manual_seed(seed), **kw)


def test_masking_statistics_follow_the_published_scheme():
    tokens = random_batch(3000, 30, 60)
    inputs, labels = mask(tokens)
    ordinary = ~torch.isin(tokens, torch.tensor(SPECIAL))
    predicted = labels != IGNORE_INDEX

    assert predicted.float().sum() / ordinary.float().sum() == pytest.approx(1 / 6, abs=0.005)
    assert torch.equal(labels[predicted], tokens[predicted])

    chosen_in, chosen_orig = inputs[predicted], tokens[predicted]
    masked = (chosen_in == MASK).float().mean().item()
    kept = (chosen_in == chosen_orig).float().mean().item()
    replaced = ((chosen_in != MASK) & (chosen_in != chosen_orig)).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.01)
    assert replaced == pytest.approx(0.1, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)

    # The other ordinary tokens: corrupted with p=0.2 (same 80/10/10 split), never predicted.
    other = ordinary & ~predicted
    changed = (inputs[other] != tokens[other]).float().mean().item()
    assert changed == pytest.approx(0.2 * 0.9, abs=0.01)
    assert (inputs[other] == MASK).float().mean().item() == pytest.approx(0.2 * 0.8, abs=0.01)


def test_specials_are_never_masked_predicted_or_drawn():
    tokens = random_batch(2000, 1, 40)
    inputs, labels = mask(tokens, p_predict=0.5, p_corrupt=0.5, p_random_token=0.5, p_mask_token=0.5)
    special = torch.isin(tokens, torch.tensor(SPECIAL))
    assert torch.equal(inputs[special], tokens[special])
    assert (labels[special] == IGNORE_INDEX).all()
    # Random replacements come from ordinary ids only (a random PAD would cut the sentence short).
    assert not torch.isin(inputs[~special], torch.tensor([PAD, BOS, EOS])).any()
    assert ((inputs != PAD).sum(1) == (tokens != PAD).sum(1)).all()


def test_at_least_one_prediction_per_sentence():
    tokens = random_batch(3000, 1, 3)
    _, labels = mask(tokens)
    assert ((labels != IGNORE_INDEX).sum(1) >= 1).all()


def test_sentence_without_words_is_left_alone():
    tokens = pad_tokens([[], [5, 6, 7]], max_length=8)
    inputs, labels = mask(tokens)
    assert torch.equal(inputs[0], tokens[0])
    assert (labels[0] == IGNORE_INDEX).all()
    assert (labels[1] != IGNORE_INDEX).any()


def test_no_extra_corruption_when_switched_off():
    tokens = random_batch(500, 10, 40)
    inputs, labels = mask(tokens, p_corrupt=0.0)
    not_predicted = labels == IGNORE_INDEX
    assert torch.equal(inputs[not_predicted], tokens[not_predicted])


def test_masking_is_determined_by_the_generator():
    tokens = random_batch(64, 3, 30)
    first, again, other = mask(tokens, seed=1), mask(tokens, seed=1), mask(tokens, seed=2)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, other.labels)


def test_rejects_bad_probabilities_and_shapes():
    tokens = random_batch(4, 3, 5)
    with pytest.raises(ValueError):
        mask(tokens, p_predict=1.5)
    with pytest.raises(ValueError):
        mask(tokens, p_mask_token=0.8, p_random_token=0.3)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        mask(tokens[0])
