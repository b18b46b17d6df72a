"""The triplet ranking loss against a loop-by-loop rewrite of its formula and VSE++'s full-matrix code,
and two gloo processes over halves of a batch against one process over the whole batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dist_train.losses import triplet_ranking_loss
from tests.distributed.two_ranks import average_over_ranks, run_on_ranks

N, D = 9, 5


def unit_rows(*shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def reference(a, b, margin, hard_negatives, image_weight=1.0, groups=None):
    """Loops over anchors: violations over negatives, reduced per anchor, averaged over anchors."""
    n = a.shape[0]
    groups = list(range(n)) if groups is None else groups.tolist()

    def reduce(violations):
        if hard_negatives == 0:
            return sum(violations)
        top = sorted(violations, reverse=True)[:hard_negatives]
        return sum(top) / len(top) if top else 0.0

    total = 0.0
    for i in range(n):
        negatives = [j for j in range(n) if j != i and groups[j] != groups[i]]
        pos = float(a[i] @ b[i])
        a_anchored = [max(0.0, margin + float(a[i] @ b[j]) - pos) for j in negatives]
        b_anchored = [max(0.0, margin + float(b[i] @ a[j]) - pos) for j in negatives]
        total += reduce(a_anchored) + image_weight * reduce(b_anchored)
    return total / n


@pytest.fixture
def pairs():
    images = unit_rows(N, D, seed=1)
    return F.normalize(images + 0.6 * unit_rows(N, D, seed=2), dim=-1), images


@pytest.mark.parametrize("hard_negatives", [0, 1, 3, 10])
def test_matches_the_formula_written_as_loops(pairs, hard_negatives):
    text, image = pairs
    want = reference(text, image, 0.2, hard_negatives, image_weight=1.5)
    got = triplet_ranking_loss(text, image, margin=0.2, hard_negatives=hard_negatives, image_weight=1.5)
    assert want > 0.01  # some violations, so the comparison is not 0 == 0
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_max_of_hinges_is_the_published_vsepp_code(pairs):
    """VSE++'s ContrastiveLoss(max_violation=True): full score matrix, diagonal cleared, max per row
    and per column, summed (the loss here is the mean, so divide by the batch)."""
    text, image = pairs
    scores = image @ text.T
    diagonal = scores.diag().view(-1, 1)
    cost_caption = (0.2 + scores - diagonal).clamp(min=0)
    cost_image = (0.2 + scores - diagonal.t()).clamp(min=0)
    eye = torch.eye(N, dtype=torch.bool)
    published = cost_caption.masked_fill(eye, 0).max(1)[0].sum() + cost_image.masked_fill(eye, 0).max(0)[0].sum()
    got = triplet_ranking_loss(text, image, margin=0.2, hard_negatives=1)
    assert got.item() == pytest.approx(published.item() / N, rel=1e-12)


def test_captions_of_one_image_are_not_negatives_of_each_other(pairs):
    text, image = pairs
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4])
    image = image[groups]  # each caption's image: one image repeated for each of its captions
    want = reference(text, image, 0.2, 1, groups=groups)
    grouped = triplet_ranking_loss(text, image, hard_negatives=1, group_ids=groups).item()
    assert grouped == pytest.approx(want, rel=1e-12)
    # without the groups, the repeated image counts as a negative of its own other captions
    ungrouped = triplet_ranking_loss(text, image, hard_negatives=1).item()
    assert ungrouped == pytest.approx(reference(text, image, 0.2, 1), rel=1e-12)
    assert ungrouped > want + 0.01


def test_perfectly_separated_pairs_have_zero_loss_and_no_violation_means_no_gradient():
    image = torch.eye(4, dtype=torch.float64)
    text = image.clone().requires_grad_(True)
    loss = triplet_ranking_loss(text, image, margin=0.5, hard_negatives=10, image_weight=1.5)
    loss.backward()
    assert loss.item() == 0.0 and text.grad.abs().max() == 0


def test_bad_shapes_and_settings_are_refused(pairs):
    text, image = pairs
    with pytest.raises(ValueError, match="hard_negatives"):
        triplet_ranking_loss(text, image, hard_negatives=-1)
    with pytest.raises(ValueError, match="text_emb and image_emb"):
        triplet_ranking_loss(text, image[:-1])
    with pytest.raises(ValueError, match="group_ids"):
        triplet_ranking_loss(text, image, group_ids=torch.zeros(3, dtype=torch.long))


# --- two processes == one process over the concatenated batch --------------------------------------------------

BATCH, FEATURES = 12, 6
SPLITS = {"equal": (6, 6), "unequal": (7, 5)}
SCENARIOS = {
    "vsepp": dict(margin=0.2, hard_negatives=1),
    "mule": dict(margin=0.05, hard_negatives=10, image_weight=1.5),
    "sum_of_hinges": dict(margin=0.2, hard_negatives=0),
    "vsepp_groups": dict(margin=0.2, hard_negatives=1, groups=True),
    "mule_groups": dict(margin=0.05, hard_negatives=10, image_weight=1.5, groups=True),
    "caption_caption_groups": dict(margin=0.2, hard_negatives=1, groups=True, caption_caption=True),
}


def make_model() -> nn.Module:
    torch.manual_seed(7)
    return nn.ModuleDict({"text": nn.Linear(FEATURES, 4), "image": nn.Linear(FEATURES, 4)}).double()


def make_batch():
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64)
    return {
        "images": images,
        "captions": images + 0.5 * torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64),
        "other_captions": images + 0.5 * torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64),
        # captions 3k..3k+2 share an image, and groups straddle the rank boundaries of both splits
        "groups": torch.arange(BATCH) // 3,
    }


def run_scenarios(batch) -> dict[str, dict[str, torch.Tensor]]:
    model = make_model()
    results = {}
    for name, spec in SCENARIOS.items():
        spec = dict(spec)
        groups = batch["groups"] if spec.pop("groups", False) else None
        caption_caption = spec.pop("caption_caption", False)
        model.zero_grad()
        text = F.normalize(model["text"](batch["captions"]), dim=-1)
        other = model["text"](batch["other_captions"]) if caption_caption else model["image"](batch["images"])
        loss = triplet_ranking_loss(text, F.normalize(other, dim=-1), group_ids=groups, **spec)
        loss.backward()
        grads = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype)
                           for p in model.parameters()])
        results[name] = {"loss": loss.detach(), "grads": grads}
    return results


def rank_results(rank: int, world: int) -> dict:
    """One rank's view: every scenario on this rank's slice of each split, averaged over ranks."""
    batch = make_batch()
    saved = {}
    for split, sizes in SPLITS.items():
        start = sum(sizes[:rank])
        saved[split] = average_over_ranks(run_scenarios({k: v[start:start + sizes[rank]] for k, v in batch.items()}))
    return saved


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    return run_on_ranks(rank_results, tmp_path_factory.mktemp("triplet-global-batch"))


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_two_ranks_match_one_process_over_the_whole_batch(two_process_results, split, name):
    want = run_scenarios(make_batch())[name]
    got = two_process_results[split][name]
    assert want["loss"] > 0 and want["grads"].abs().max() > 1e-6, "vacuous scenario"
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got["grads"], want["grads"], rtol=1e-9, atol=1e-12)
