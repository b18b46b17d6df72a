"""SMALR's MCLM loss, neighbourhood constraints, adversarial loss and ramp, against their formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dist_train.losses.smalr import adversarial_ramp, language_adversary_loss, mclm_loss, neighbourhood_loss


def test_mclm_loss_is_eq2_summed_over_the_pair_and_averaged_over_pairs():
    g = torch.Generator().manual_seed(0)
    masked, predicted, full = (torch.randn(6, 5, generator=g) for _ in range(3))
    expected = sum(float((F.normalize(masked[i] + predicted[i], dim=0) - F.normalize(full[i], dim=0)).norm())
                   for i in range(6)) / 3
    assert float(mclm_loss(masked, predicted, full)) == pytest.approx(expected, rel=1e-6)


def test_mclm_loss_is_zero_for_a_perfect_reconstruction_and_moves_only_the_prediction():
    full = torch.randn(4, 3)
    masked = torch.randn(4, 3)
    predicted = (full * 2 - masked).requires_grad_()
    target = full.clone().requires_grad_()
    loss = mclm_loss(masked, predicted, target)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    (mclm_loss(masked, predicted + 1, target)).backward()
    assert target.grad is None and predicted.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        mclm_loss(masked[:3], predicted[:3], full[:3])


def test_neighbourhood_loss_is_zero_for_separated_pairs_and_positive_for_swapped_ones():
    a = torch.eye(4)
    assert float(neighbourhood_loss(a, a.clone(), margin=0.05)) == 0.0
    swapped = a[[1, 0, 2, 3]]
    # rows 0 and 1 are each nearer the other's partner: violations margin + 1 in both directions
    loss = float(neighbourhood_loss(a, swapped, margin=0.05, hard_negatives=1))
    assert loss == pytest.approx(2 * 2 * 1.05 / 4)


def test_ramp_follows_mule():
    assert adversarial_ramp(0.0) == 0.0
    assert adversarial_ramp(0.5, 2.0) == pytest.approx((2 / (1 + math.exp(-5)) - 1) * 2)
    assert adversarial_ramp(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)
    assert adversarial_ramp(3.0) == adversarial_ramp(1.0)
    assert all(adversarial_ramp(p / 10) < adversarial_ramp((p + 1) / 10) for p in range(10))


def test_language_adversary_loss_is_the_cross_entropy():
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    assert float(language_adversary_loss(logits, labels)) == pytest.approx(float(F.cross_entropy(logits, labels)))
