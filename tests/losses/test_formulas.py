"""Each loss against a brute-force rewrite of its formula (loops, or the published code's full-matrix
steps), single process, float64, small random data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dist_train.losses import cloze_loss, cross_modal_loss, simclr_loss, transitive_loss
from dist_train.losses.transitive import code_alpha, paper_alpha

TAU = 0.1
N, D = 7, 5


def unit_rows(*shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def dot(a, b) -> float:
    return float((a * b).sum())


def log_sum_exp(values) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@pytest.fixture
def batch():
    images = unit_rows(N, D, seed=1)
    # views and captions correlated with their images so that the similarities are not all alike
    return {
        "view1": F.normalize(images + 0.3 * unit_rows(N, D, seed=2), dim=-1),
        "view2": F.normalize(images + 0.3 * unit_rows(N, D, seed=3), dim=-1),
        "text": F.normalize(images + 0.5 * unit_rows(N, D, seed=4), dim=-1),
        "text_text": F.normalize(images + 0.8 * unit_rows(N, D, seed=5), dim=-1),
    }


def test_cross_modal_paper_form(batch):
    image, text = batch["view1"], batch["text"]
    total = 0.0
    for i in range(N):
        image_to_text = [dot(image[i], text[j]) / TAU for j in range(N)]
        text_to_image = [dot(image[j], text[i]) / TAU for j in range(N)]
        positive = dot(image[i], text[i]) / TAU
        total -= (positive - log_sum_exp(image_to_text)) + (positive - log_sum_exp(text_to_image))
    assert cross_modal_loss(text, image, temperature=TAU).item() == pytest.approx(total / N, rel=1e-12)


def test_cross_modal_code_form(batch):
    """The published code's steps: captions x [view 1; view 2], both-direction softmax averaged."""
    text, views = batch["text"], torch.cat([batch["view1"], batch["view2"]])
    similarities = text @ views.T / TAU
    log_softmax = F.log_softmax(similarities, dim=1) / 2 + F.log_softmax(similarities, dim=0) / 2
    expected = -log_softmax[:, N:].diagonal().mean() / 2 - log_softmax[:, :N].diagonal().mean() / 2
    stacked = torch.stack([batch["view1"], batch["view2"]], dim=1)
    got = cross_modal_loss(text, stacked, temperature=TAU, form="code")
    torch.testing.assert_close(got, expected)


def test_cross_modal_paper_form_ignores_extra_views(batch):
    stacked = torch.stack([batch["view1"], batch["view2"]], dim=1)
    first_view_only = cross_modal_loss(batch["text"], batch["view1"])
    torch.testing.assert_close(cross_modal_loss(batch["text"], stacked), first_view_only)


def test_simclr_paper_form(batch):
    embeddings = torch.cat([batch["view1"], batch["view2"]])
    total = 0.0
    for anchor in range(2 * N):
        positive = (anchor + N) % (2 * N)
        others = [dot(embeddings[anchor], embeddings[j]) / TAU for j in range(2 * N) if j != anchor]
        total -= dot(embeddings[anchor], embeddings[positive]) / TAU - log_sum_exp(others)
    got = simclr_loss(batch["view1"], batch["view2"], temperature=TAU)
    assert got.item() == pytest.approx(total / (2 * N), rel=1e-12)


def test_simclr_code_form(batch):
    """View 1 against [view 1; view 2], own similarity pushed to -1e4, positive in the second half."""
    similarities = batch["view1"] @ torch.cat([batch["view1"], batch["view2"]]).T
    similarities[:, :N].fill_diagonal_(-1e4)
    expected = -F.log_softmax(similarities / TAU, dim=1)[:, N:].diagonal().mean()
    torch.testing.assert_close(simclr_loss(batch["view1"], batch["view2"], temperature=TAU, form="code"), expected)


def image_text_similarity(batch):
    return (batch["text"] * batch["view1"]).sum(dim=-1)


def brute_paper_alpha(batch, margin, unit_interval=True):
    image, x = batch["view1"], image_text_similarity(batch).tolist()

    def to_unit(cosine):
        return (cosine + 1) / 2 if unit_interval else max(cosine, 0.0)

    alpha = torch.zeros(N, N, dtype=torch.float64)
    for i in range(N):
        for j in range(N):
            if i != j:
                product = to_unit(x[i]) * to_unit(dot(image[i], image[j])) * to_unit(x[j])
                alpha[i, j] = max(0.0, product ** (1 / 3) - margin) / (1 - margin)
    return alpha


def brute_code_alpha(batch, margin, use_image_text=True):
    """The published code's steps, literally: outer product rescaled into [0.75, 1.25], max-normalised."""
    alphas = batch["view1"] @ batch["view1"].T
    if use_image_text:
        x = image_text_similarity(batch)
        outer = torch.outer(x, x)
        outer = outer - outer.min()
        outer = outer / outer.max() * 2 * 0.25 + (1 - 0.25)
        alphas = alphas * outer
    alphas.fill_diagonal_(-1e4)
    alphas = alphas / alphas.max()
    return torch.relu(alphas - margin) / (1 - margin)


def brute_transitive_loss(text, alpha, normaliser):
    total = 0.0
    for i in range(N):
        others = [dot(text[i], text[k]) / TAU for k in range(N) if k != i]
        for j in range(N):
            if j != i and alpha[i, j] > 0:
                total -= float(alpha[i, j]) * (dot(text[i], text[j]) / TAU - log_sum_exp(others))
    return total / normaliser


@pytest.mark.parametrize(("margin", "unit_interval"), [(0.6, True), (0.7, True), (0.4, False)])
def test_transitive_paper_form(batch, margin, unit_interval):
    alpha = brute_paper_alpha(batch, margin, unit_interval)
    assert 0 < (alpha > 0).sum() < N * (N - 1), "data should give some positives and some negatives"
    result = transitive_loss(
        batch["text_text"],
        batch["view1"],
        image_text_similarity(batch),
        temperature=TAU,
        margin=margin,
        unit_interval=unit_interval,
    )
    torch.testing.assert_close(result.alpha, alpha)
    assert result.loss.item() == pytest.approx(brute_transitive_loss(batch["text_text"], alpha, N), rel=1e-12)
    assert result.positive_fraction.item() == pytest.approx(float((alpha > 0).sum()) / (N * (N - 1)))
    assert result.mean_positive_alpha.item() == pytest.approx(float(alpha[alpha > 0].mean()))


@pytest.mark.parametrize("use_image_text", [True, False])
def test_transitive_code_form(batch, use_image_text):
    alpha = brute_code_alpha(batch, 0.4, use_image_text)
    x = image_text_similarity(batch) if use_image_text else None
    result = transitive_loss(batch["text_text"], batch["view1"], x, temperature=TAU, form="code")
    torch.testing.assert_close(result.alpha, alpha)
    # the code's normalisation: -sum(alpha * log_softmax) / sum(alpha)
    betas = batch["text_text"] @ batch["text_text"].T
    betas.fill_diagonal_(-1e4)
    expected = -(torch.log_softmax(betas / TAU, dim=1) * alpha).sum() / alpha.sum()
    torch.testing.assert_close(result.loss, expected)


def test_transitive_normalisation_can_be_swapped(batch):
    x = image_text_similarity(batch)
    by_anchor = transitive_loss(batch["text_text"], batch["view1"], x, form="code", normalise_by="anchors")
    by_alpha = transitive_loss(batch["text_text"], batch["view1"], x, form="code")
    torch.testing.assert_close(by_anchor.loss * N, by_alpha.loss * by_alpha.alpha.sum())


def test_paper_alpha_with_images_only_is_the_image_term():
    similarity = torch.tensor([[0.9, -0.2, 0.5]], dtype=torch.float64)
    expected = torch.tensor([[(0.95 - 0.4) / 0.6, 0.0, (0.75 - 0.4) / 0.6]], dtype=torch.float64)
    torch.testing.assert_close(paper_alpha(similarity), expected)


def test_alpha_is_under_stop_gradient(batch):
    for form in ("paper", "code"):
        text = batch["text_text"].clone().requires_grad_()
        image = batch["view1"].clone().requires_grad_()
        x = image_text_similarity(batch).clone().requires_grad_()
        result = transitive_loss(text, image, x, form=form)
        assert not result.alpha.requires_grad
        result.loss.backward()
        assert image.grad is None and x.grad is None, f"{form}: gradient reached the alpha inputs"
        assert text.grad is not None and text.grad.abs().sum() > 0


def test_code_and_paper_alpha_differ_as_documented(batch):
    """Paper: cube root of [0,1]-mapped similarities, margin on that. Code: raw product, divided by
    its batch max before the margin, so its largest alpha is exactly 1; the paper's stays below 1."""
    x = image_text_similarity(batch)
    paper = transitive_loss(batch["text_text"], batch["view1"], x).alpha
    code = transitive_loss(batch["text_text"], batch["view1"], x, form="code").alpha
    assert not torch.allclose(paper, code)
    assert code.max().item() == pytest.approx(1.0, abs=1e-12)
    assert 0 < paper.max().item() < 1
    # without the cube root the paper's alpha would be far smaller: the root is really taken
    off_diagonal = ~torch.eye(N, dtype=torch.bool)
    image = batch["view1"]
    raw_product = ((x[:, None] + 1) / 2) * ((image @ image.T + 1) / 2) * ((x[None, :] + 1) / 2)
    no_root = ((raw_product - 0.4).clamp_min(0) / 0.6)[off_diagonal]
    assert (paper[off_diagonal] >= no_root).all() and (paper[off_diagonal] > no_root).any()
    # both are symmetric, as the paper notes (alpha_ij = alpha_ji)
    torch.testing.assert_close(paper, paper.T)
    torch.testing.assert_close(code, code.T)
    # the code's image-text factor moves alpha by at most +-25 %: with identical images and no margin,
    # alpha = factor / largest factor lies in [0.75 / 1.25, 1]
    own = torch.eye(N, dtype=torch.bool)
    factor_only = code_alpha(torch.ones(N, N, dtype=torch.float64), own, x, x, margin=0.0)[~own]
    assert factor_only.min() >= 0.6 - 1e-12 and factor_only.max() == pytest.approx(1.0)
    assert factor_only.min() < 0.9, "the factor should actually vary on this data"


def test_supervised_alpha_is_one_exactly_on_translation_pairs(batch):
    groups = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    result = transitive_loss(batch["text_text"], group_ids=groups, temperature=TAU)
    expected = torch.tensor(
        [[float(groups[i] == groups[j] and i != j) for j in range(N)] for i in range(N)], dtype=torch.float64
    )
    assert torch.equal(result.alpha, expected)
    pairs = int(expected.sum())  # 3 captions of group 0 -> 6 ordered pairs, group 1 -> 2
    assert pairs == 8
    assert result.positive_fraction.item() == pytest.approx(pairs / (N * (N - 1)))
    assert result.mean_positive_alpha.item() == 1.0
    assert result.loss.item() == pytest.approx(brute_transitive_loss(batch["text_text"], expected, N), rel=1e-12)


def test_transitive_with_no_positive_pair_is_zero_not_nan(batch):
    groups = torch.arange(N)
    for form in ("paper", "code"):
        result = transitive_loss(batch["text_text"], group_ids=groups, form=form)
        assert result.loss.item() == 0.0 and result.positive_fraction.item() == 0.0


def test_cloze_on_masked_positions_only():
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 5, 9, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 9, (3, 5), generator=generator)
    labels[0, 1:] = -100
    labels[2, ::2] = -100
    total, count = 0.0, 0
    for b in range(3):
        for t in range(5):
            if labels[b, t] != -100:
                total -= float(logits[b, t, labels[b, t]]) - log_sum_exp(logits[b, t].tolist())
                count += 1
    assert cloze_loss(logits, labels).item() == pytest.approx(total / count, rel=1e-12)
    assert cloze_loss(logits, labels, global_mean=False).item() == pytest.approx(total / count, rel=1e-12)
    relabelled = labels.masked_fill(labels == -100, -1)
    assert cloze_loss(logits, relabelled, ignore_index=-1).item() == pytest.approx(total / count, rel=1e-12)


def test_cloze_without_masked_tokens_is_zero():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = cloze_loss(logits, torch.full((2, 3), -100))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().sum() == 0


@pytest.mark.parametrize("form", ["paper", "code"])
def test_losses_are_finite_in_low_precision_autocast(batch, form):
    """Masking with -inf must not produce NaN (0 * -inf) in any form."""
    views = torch.stack([batch["view1"], batch["view2"]], 1).float()
    text = batch["text"].float()
    values = [
        cross_modal_loss(text, views, form=form),
        simclr_loss(views[:, 0], views[:, 1], form=form),
        transitive_loss(text, views[:, 0], (text * views[:, 0]).sum(-1), form=form).loss,
    ]
    assert all(torch.isfinite(v) for v in values)


def test_unknown_form_is_rejected(batch):
    with pytest.raises(ValueError, match="form"):
        simclr_loss(batch["view1"], batch["view2"], form="cube")
