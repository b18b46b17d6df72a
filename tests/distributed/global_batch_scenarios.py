"""A small two-tower model, a batch, and every loss of the package run on it.

Shared by the 2-process worker (each rank on its slice of the batch) and by the single-process
reference in the test (the whole batch), so both sides compute exactly the same things.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dist_train.losses import cloze_loss, cross_modal_loss, grad_cache_step, simclr_loss, split_batch, transitive_loss

BATCH = 12
SPLITS = {"equal": (6, 6), "unequal": (7, 5)}
FEATURES, TOKENS, VOCAB, EMBED = 6, 4, 11, 5


class TinyTwoTower(nn.Module):
    """Image tower, text tower with a text-image and a text-text head, and a cloze head."""

    def __init__(self):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(FEATURES, 8), nn.Tanh(), nn.Linear(8, EMBED))
        self.text_body = nn.Linear(FEATURES, 8)
        self.text_to_image = nn.Linear(8, EMBED)
        self.text_to_text = nn.Linear(8, EMBED)
        self.cloze = nn.Linear(8, VOCAB)

    def embed(self, batch):
        hidden = torch.tanh(self.text_body(batch["tokens"]))  # (n, tokens, 8)
        pooled = hidden.mean(dim=1)
        return {
            "view1": F.normalize(self.image(batch["view1"]), dim=-1),
            "view2": F.normalize(self.image(batch["view2"]), dim=-1),
            "text_image": F.normalize(self.text_to_image(pooled), dim=-1),
            "text_text": F.normalize(self.text_to_text(pooled), dim=-1),
            "cloze_logits": self.cloze(hidden),
        }


def make_model() -> TinyTwoTower:
    torch.manual_seed(1234)
    return TinyTwoTower().double()


def make_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(99)
    images = torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, VOCAB, (BATCH, TOKENS), generator=generator)
    masked = torch.rand(BATCH, TOKENS, generator=generator) < 0.4
    masked[:7, 0] = True  # rank 0 of the unequal split holds more masked tokens than rank 1
    masked[9] = False  # a caption with nothing to predict
    return {
        "view1": images + 0.1 * torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64),
        "view2": images + 0.1 * torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64),
        "tokens": torch.randn(BATCH, TOKENS, FEATURES, generator=generator, dtype=torch.float64),
        "labels": labels.masked_fill(~masked, -100),
        # captions 2k and 2k+1 translate each other, and pairs straddle the rank boundaries
        "groups": torch.arange(BATCH) // 2,
    }


def slice_batch(batch, start: int, stop: int):
    return {key: value[start:stop] for key, value in batch.items()}


def _image_text_sim(out):
    return (out["text_image"] * out["view1"]).sum(dim=-1)


def _transitive(form, **kwargs):
    def loss(out, batch):
        result = transitive_loss(out["text_text"], out["view1"], _image_text_sim(out), form=form, **kwargs)
        return result.loss, {"positive_fraction": result.positive_fraction, "mean_alpha": result.mean_positive_alpha}

    return loss


def _supervised(out, batch):
    result = transitive_loss(out["text_text"], group_ids=batch["groups"])
    return result.loss, {"positive_fraction": result.positive_fraction}


def _total(out, batch):
    """The four losses together, as the engine will combine them (paper weights 0.2)."""
    return (
        _transitive("paper")(out, batch)[0]
        + 0.2 * simclr_loss(out["view1"], out["view2"])
        + 0.2 * cross_modal_loss(out["text_image"], out["view1"])
        + 0.2 * cloze_loss(out["cloze_logits"], batch["labels"])
    ), {}


SCENARIOS = {
    "cross_modal_paper": lambda out, batch: (cross_modal_loss(out["text_image"], out["view1"]), {}),
    "cross_modal_code": lambda out, batch: (
        cross_modal_loss(out["text_image"], torch.stack([out["view1"], out["view2"]], 1), form="code"),
        {},
    ),
    "simclr_paper": lambda out, batch: (simclr_loss(out["view1"], out["view2"]), {}),
    "simclr_code": lambda out, batch: (simclr_loss(out["view1"], out["view2"], form="code"), {}),
    "transitive_paper": _transitive("paper", margin=0.6),
    "transitive_paper_image_only": lambda out, batch: (
        transitive_loss(out["text_text"], out["view1"], margin=0.5).loss,
        {},
    ),
    "transitive_code": _transitive("code"),
    "transitive_code_paper_norm": _transitive("code", normalise_by="anchors"),
    "transitive_supervised": _supervised,
    "cloze": lambda out, batch: (cloze_loss(out["cloze_logits"], batch["labels"]), {}),
    "total": _total,
}


def _grad_cache_loss(text_image, view1, view2):
    return cross_modal_loss(text_image, view1) + simclr_loss(view1, view2) + transitive_loss(
        text_image, view1, form="code"
    ).loss


def run_grad_cache(model, batch, chunk_size: int):
    """The contrastive losses through gradient caching; returns the loss."""

    def embed(sub_batch):
        out = model.embed(sub_batch)
        return out["text_image"], out["view1"], out["view2"]

    return grad_cache_step(embed, split_batch(batch, chunk_size), _grad_cache_loss)


def run_grad_cache_reference(model, batch):
    out = model.embed(batch)
    loss = _grad_cache_loss(out["text_image"], out["view1"], out["view2"])
    loss.backward()
    return loss


def flat_grads(model) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in model.parameters()])


def run_scenarios(batch, grad_cache_chunk: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Loss, parameter gradients and logged extras of every scenario on ``batch`` (this rank's rows)."""
    model = make_model()
    results = {}
    for name, scenario in SCENARIOS.items():
        model.zero_grad()
        loss, extras = scenario(model.embed(batch), batch)
        loss.backward()
        results[name] = {"loss": loss.detach(), "grads": flat_grads(model).clone(), **extras}
    model.zero_grad()
    if grad_cache_chunk is None:
        loss = run_grad_cache_reference(model, batch)
    else:
        loss = run_grad_cache(model, batch, grad_cache_chunk)
    results["grad_cache"] = {"loss": loss.detach(), "grads": flat_grads(model).clone()}
    return results


def rank_results(rank: int, world: int) -> dict:
    """One rank's view: every scenario on this rank's slice of each split, averaged over ranks."""
    from tests.distributed.two_ranks import average_over_ranks

    batch = make_batch()
    saved = {}
    for split_name, sizes in SPLITS.items():
        start = sum(sizes[:rank])
        saved[split_name] = average_over_ranks(run_scenarios(slice_batch(batch, start, start + sizes[rank]),
                                                             grad_cache_chunk=3))
    return saved
