"""Cross-Lingual Consistency (SMALR section 3.4): let a query's translations vote.

SMALR translates a query in language l_i into every other language the model supports and scores
each translation against the candidates; semantically equivalent sentences carry complementary
evidence, so combining their scores beats the original alone. The inputs here are those scores as a
tensor ``scores[l, q, c]``: language l's version of query q against candidate c (NaN where a
translation is missing). The functions are direction-agnostic: for image->text the candidates'
translations give the per-language scores instead.

- CLC-A: "simply averages matching scores over all languages"; no parameters.
- CLC-C: "a small Multilayer Perceptron ... two layers with input size |L| and 32 hidden layer units
  (i.e., it has 352 learnable parameters) and all parameters are initialized with uniform weight",
  trained "separately ... using the validation set for 30 iterations", full batch ("all
  image-sentence pairs at once"), with the bidirectional multimodal triplet loss of SMALR eq. (3):
  L_triplet(I, Q+, Q-) + 1.5 L_triplet(Q, I+, I-), margin 0.05, over the N = 10 most violated
  constraints.

Where SMALR leaves things open we chose:
- 352 parameters for |L| = 10 means no biases: |L| x 32 + 32 x 1 = 352.
- "uniform weight" = every weight equal (1/|L| in the first layer, 1/32 in the second), so the
  untrained classifier is CLC-A; scores are mapped from [-1, 1] to [0, 1] first (as Globetrotter
  B.1 does with cosines) so that the ReLU between the layers keeps them. With equal weights the 32
  hidden units receive equal gradients and stay equal: the classifier learns one weighting of the
  languages, passed through a ReLU. `init_jitter` perturbs the weights to break that symmetry.
- The N = 10 most violated constraints are taken per anchor (query or candidate), as in the
  two-branch networks SMALR follows; missing translations are filled with the mean of the
  available ones before the classifier sees them. Optimiser: Adam, learning rate 0.01.
- The iterate kept is the one (of 0..30) with the best mean recall on the validation set it is
  trained on; iteration 0 is CLC-A. On weakly informative scores the hinge loss is lowest when
  every combined score is equal (each violation is then just the margin, below the violations of
  negatives that outscore their positive), so Adam drives the hidden weights negative, the ReLU
  outputs 0 and all scores tie: recall 0. Keeping the best iterate makes CLC-C at least CLC-A on
  the validation set; `selected_iteration` says which one was kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

HIDDEN_UNITS = 32
TRAIN_ITERATIONS = 30
MARGIN = 0.05
TEXT_TO_IMAGE_WEIGHT = 1.5  # SMALR's lambda_1 on the L_triplet(Q, I+, I-) term
MOST_VIOLATED = 10


def _scores(scores: Any) -> torch.Tensor:
    s = torch.as_tensor(scores, dtype=torch.float32)
    if s.ndim != 3:
        raise ValueError(f"scores must be (languages, queries, candidates), got shape {tuple(s.shape)}")
    return s


def clc_average(scores: Any) -> torch.Tensor:
    """CLC-A: the mean over languages of each (query, candidate) score, ignoring missing (NaN) ones."""
    return torch.nanmean(_scores(scores), dim=0)


def _filled(scores: torch.Tensor) -> torch.Tensor:
    """Missing translations take the mean of the available ones, so they do not move the result."""
    mean = torch.nanmean(scores, dim=0, keepdim=True)
    return torch.where(torch.isnan(scores), mean.expand_as(scores), scores)


class CLCClassifier(nn.Module):
    """CLC-C: |L| per-language scores -> 32 hidden (ReLU) -> one combined score, no biases."""

    def __init__(self, num_languages: int, hidden_units: int = HIDDEN_UNITS, init_jitter: float = 0.0,
                 seed: int = 0):
        super().__init__()
        self.hidden = nn.Linear(num_languages, hidden_units, bias=False)
        self.out = nn.Linear(hidden_units, 1, bias=False)
        with torch.no_grad():
            self.hidden.weight.fill_(1.0 / num_languages)
            self.out.weight.fill_(1.0 / hidden_units)
            if init_jitter:
                g = torch.Generator().manual_seed(seed)
                for w in (self.hidden.weight, self.out.weight):
                    w.mul_(1 + init_jitter * (2 * torch.rand(w.shape, generator=g) - 1))

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """scores: (L, Q, C) cosines -> (Q, C) combined scores."""
        unit = (_filled(scores).permute(1, 2, 0) + 1) / 2
        return self.out(torch.relu(self.hidden(unit))).squeeze(-1)


def _hinge_top_n(positive_scores: torch.Tensor, scores: torch.Tensor, negative: torch.Tensor,
                 margin: float, top_n: int) -> torch.Tensor:
    """Mean over anchors (rows) of the sum of the top_n largest max(0, margin - s+ + s-)."""
    violation = (margin - positive_scores[:, None] + scores).clamp(min=0).masked_fill(~negative, 0.0)
    return torch.topk(violation, min(top_n, violation.shape[1]), dim=1).values.sum(1).mean()


def multimodal_triplet_loss(combined: torch.Tensor, positive: torch.Tensor, margin: float = MARGIN,
                            top_n: int = MOST_VIOLATED, text_to_image_weight: float = TEXT_TO_IMAGE_WEIGHT) -> torch.Tensor:
    """SMALR eq. (3) on a (text queries x images) score matrix with one positive image per text.

    Text anchors: their image against the other images; image anchors: each of their texts against
    the texts of other images. Cosine distance d = 1 - s, so the hinge is margin - s+ + s-.
    """
    target = positive.float().argmax(1)
    text_pos = combined.gather(1, target[:, None]).squeeze(1)
    text_loss = _hinge_top_n(text_pos, combined, ~positive, margin, top_n)
    # image anchors: one row per (image, its text) pair, negatives = texts of other images
    image_rows = combined.T[target]  # (Q, Q): row q = scores of q's image against every text
    image_loss = _hinge_top_n(text_pos, image_rows, ~positive.T[target], margin, top_n)
    return image_loss + text_to_image_weight * text_loss


def mean_recall(combined: torch.Tensor, positive: torch.Tensor) -> float:
    """SMALR's mean recall: the mean of recall@1, 5, 10 in both directions of a (texts x images) score matrix."""
    from dist_train.eval.retrieval import recall_from_scores

    recalls = [*recall_from_scores(combined, positive).values(), *recall_from_scores(combined.T, positive.T).values()]
    return sum(recalls) / len(recalls)


def train_clc_classifier(val_scores: Any, val_positive: Any, iterations: int = TRAIN_ITERATIONS,
                         learning_rate: float = 0.01, init_jitter: float = 0.0, seed: int = 0,
                         keep_best: bool = True) -> CLCClassifier:
    """Fit CLC-C on validation scores (L, Q, C) of text queries against images, full batch.

    val_positive: (Q, C) bool, True for each text's image (exactly one per row).
    keep_best: return the iterate with the best validation mean recall (see the module's notes), not the last.
    """
    scores = _scores(val_scores)
    positive = torch.as_tensor(val_positive, dtype=torch.bool)
    if positive.shape != scores.shape[1:] or not bool((positive.sum(1) == 1).all()):
        raise ValueError("val_positive must be (queries, candidates) with one positive per query")
    model = CLCClassifier(scores.shape[0], init_jitter=init_jitter, seed=seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    for iteration in range(iterations + 1):
        combined = model(scores)
        if keep_best:
            recall = mean_recall(combined.detach(), positive)
            if recall > best[0]:
                best = (recall, iteration, {k: v.clone() for k, v in model.state_dict().items()})
        if iteration == iterations:
            break
        optimiser.zero_grad()
        loss = multimodal_triplet_loss(combined, positive)
        loss.backward()
        optimiser.step()
    model.selected_iteration = iterations
    if keep_best:
        model.load_state_dict(best[2])
        model.selected_iteration = best[1]
    return model.eval()


@torch.no_grad()
def clc_classifier_scores(model: CLCClassifier, scores: Any) -> torch.Tensor:
    """CLC-C: the trained classifier's combined (Q, C) scores."""
    return model(_scores(scores))
