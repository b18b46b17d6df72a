"""Cross-Lingual Consistency: averaging translations' scores helps; the classifier learns weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dist_train.eval.clc import (CLCClassifier, clc_average, clc_classifier_scores, multimodal_triplet_loss,
                                 train_clc_classifier)
from dist_train.eval.retrieval import recall_chance_from_mask, recall_from_scores


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def translated_queries(seed: int, images: int = 80, dim: int = 32, noise=(1.6, 1.6, 1.6, 1.6)):
    """One text query per image, in len(noise) languages: each translation is the image plus its
    own independent noise, so each carries the signal and averaging cancels noise.
    A noise level of None makes that language unrelated to the image (pure noise)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(images, dim))
    scores = []
    for level in noise:
        text = rng.normal(size=(images, dim)) * 3 if level is None else img + level * rng.normal(size=(images, dim))
        scores.append(unit(text) @ unit(img).T)
    return torch.tensor(np.stack(scores), dtype=torch.float32), torch.eye(images, dtype=torch.bool)


def test_clc_average_beats_every_single_language():
    scores, positive = translated_queries(0)
    averaged = recall_from_scores(clc_average(scores), positive)
    for lang in range(scores.shape[0]):
        alone = recall_from_scores(scores[lang], positive)
        assert averaged[1] > alone[1] + 10
        assert averaged[5] >= alone[5]
    assert averaged[1] > recall_chance_from_mask(positive)[1] * 5


def test_clc_average_is_the_mean_and_skips_missing_translations():
    scores = torch.tensor([[[0.2, 0.4]], [[0.6, float("nan")]], [[0.1, 0.1]]])
    torch.testing.assert_close(clc_average(scores), torch.tensor([[0.3, 0.25]]))


def test_classifier_has_smalr_size_and_starts_as_the_average():
    model = CLCClassifier(10)
    assert sum(p.numel() for p in model.parameters()) == 352  # SMALR: |L| = 10 inputs, 32 hidden
    scores, _ = translated_queries(1, noise=(1.0,) * 10)
    combined = clc_classifier_scores(model, scores)
    # (mean + 1) / 2: same ranking as CLC-A, exactly
    torch.testing.assert_close(combined, (clc_average(scores) + 1) / 2)


def test_classifier_learns_to_ignore_a_useless_language():
    noise = (2.5, 2.5, 2.5, None)
    val_scores, val_positive = translated_queries(2, noise=noise)
    test_scores, test_positive = translated_queries(3, noise=noise)
    model = train_clc_classifier(val_scores, val_positive)
    learned = recall_from_scores(clc_classifier_scores(model, test_scores), test_positive)
    averaged = recall_from_scores(clc_average(test_scores), test_positive)
    assert learned[1] > averaged[1] + 5
    weights = (model.out.weight @ model.hidden.weight).detach().squeeze(0)
    assert weights[3] < 0.5 * weights[:3].min()  # the unrelated language lost its say


def test_training_lowers_the_validation_loss():
    val_scores, val_positive = translated_queries(4, noise=(1.0, 2.0, None))
    untrained = CLCClassifier(3)
    trained = train_clc_classifier(val_scores, val_positive, init_jitter=0.1)
    with torch.no_grad():
        before = multimodal_triplet_loss(untrained(val_scores), val_positive)
        after = multimodal_triplet_loss(trained(val_scores), val_positive)
    assert after < before


def test_triplet_loss_against_loops():
    rng = np.random.default_rng(5)
    scores = torch.tensor(rng.uniform(-1, 1, size=(6, 4)), dtype=torch.float32)
    image_of = [0, 1, 2, 3, 0, 1]
    positive = torch.zeros(6, 4, dtype=torch.bool)
    positive[range(6), image_of] = True
    margin, top_n = 0.3, 2

    def top_sum(values):
        return sum(sorted(values, reverse=True)[:top_n])

    text_terms, image_terms = [], []
    for q in range(6):
        s_pos = float(scores[q, image_of[q]])
        text_terms.append(top_sum([max(0.0, margin - s_pos + float(scores[q, c])) for c in range(4) if c != image_of[q]]))
        image_terms.append(top_sum([max(0.0, margin - s_pos + float(scores[o, image_of[q]]))
                                    for o in range(6) if image_of[o] != image_of[q]] + [0.0] * 6))
    expected = np.mean(image_terms) + 1.5 * np.mean(text_terms)
    got = multimodal_triplet_loss(scores, positive, margin=margin, top_n=top_n)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_weak_scores_collapse_the_last_iterate_and_the_best_one_is_kept():
    """On scores that carry little signal the hinge is lowest when all combined scores tie: the last
    iterate is constant (recall 0); the kept iterate is the best on validation, at least CLC-A there."""
    from dist_train.eval.clc import mean_recall
    from dist_train.train.objectives.smalr import classifier_is_constant

    val_scores, val_positive = translated_queries(2, noise=(12.0,) * 4)
    last = train_clc_classifier(val_scores, val_positive, keep_best=False)
    assert classifier_is_constant(last, 4) and last.selected_iteration == 30
    kept = train_clc_classifier(val_scores, val_positive)
    assert not classifier_is_constant(kept, 4)
    assert 0 <= kept.selected_iteration < 30
    assert mean_recall(clc_classifier_scores(kept, val_scores), val_positive) >= mean_recall(
        clc_average(val_scores), val_positive)
    test_scores, test_positive = translated_queries(3, noise=(12.0,) * 4)
    assert mean_recall(clc_classifier_scores(kept, test_scores), test_positive) > 5 * mean_recall(
        clc_classifier_scores(last, test_scores), test_positive) + 1
