"""Gradient caching gives the gradients of the uncached big batch, dropout included."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dist_train.losses import cross_modal_loss, grad_cache_step, simclr_loss, split_batch, transitive_loss

BATCH, FEATURES, EMBED, CHUNK = 10, 6, 4, 3


class DropoutTwoTower(nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, EMBED))
        self.text = nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, EMBED))

    def forward(self, batch):
        return (
            F.normalize(self.text(batch["text"]), dim=-1),
            F.normalize(self.image(batch["views"][:, 0]), dim=-1),
            F.normalize(self.image(batch["views"][:, 1]), dim=-1),
        )


def contrastive_losses(text, view1, view2):
    return (
        cross_modal_loss(text, view1)
        + simclr_loss(view1, view2)
        + transitive_loss(text, view1, (text * view1).sum(-1), form="code").loss
    )


def make(dropout):
    torch.manual_seed(0)
    model = DropoutTwoTower(dropout).double()
    generator = torch.Generator().manual_seed(1)
    batch = {
        "text": torch.randn(BATCH, FEATURES, generator=generator, dtype=torch.float64),
        "views": torch.randn(BATCH, 2, FEATURES, generator=generator, dtype=torch.float64),
    }
    return model, batch


def grads_of(model):
    return [p.grad.clone() for p in model.parameters()]


def cached_grads(model, batch, seed, **kwargs):
    model.zero_grad()
    torch.manual_seed(seed)
    loss = grad_cache_step(model, split_batch(batch, CHUNK), contrastive_losses, **kwargs)
    return loss, grads_of(model), torch.get_rng_state()


def test_matches_one_big_batch_without_dropout():
    model, batch = make(dropout=0.0)
    contrastive_losses(*model(batch)).backward()
    expected = grads_of(model)
    loss, got, _ = cached_grads(model, batch, seed=5)
    torch.testing.assert_close(loss, contrastive_losses(*model(batch)).detach())
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_matches_big_batch_with_dropout_thanks_to_rng_restore():
    """Reference: the same sub-batch forwards (same dropout draws) kept with their graphs, one loss."""
    model, batch = make(dropout=0.3)
    model.train()
    torch.manual_seed(5)
    outputs = [model(sub_batch) for sub_batch in split_batch(batch, CHUNK)]
    full = [torch.cat(parts) for parts in zip(*outputs)]
    reference_loss = contrastive_losses(*full)
    reference_loss.backward()
    expected, rng_after_reference = grads_of(model), torch.get_rng_state()

    loss, got, rng_after = cached_grads(model, batch, seed=5)
    torch.testing.assert_close(loss, reference_loss.detach())
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    # the generator ends where one embedding pass leaves it, so later draws are unaffected
    assert torch.equal(rng_after, rng_after_reference)

    _, unrestored, _ = cached_grads(model, batch, seed=5, restore_rng=False)
    assert not all(torch.allclose(u, e) for u, e in zip(unrestored, expected)), "dropout should matter here"


def test_no_sync_is_entered_for_all_but_the_last_sub_batch():
    model, batch = make(dropout=0.0)
    entered = []

    class Recorder:
        def __enter__(self):
            entered.append(True)

        def __exit__(self, *exc):
            return False

    grad_cache_step(model, split_batch(batch, CHUNK), contrastive_losses, no_sync=Recorder)
    assert len(entered) == len(split_batch(batch, CHUNK)) - 1 == 3


def test_split_batch_handles_nested_structures():
    batch = {"a": torch.arange(5), "b": (torch.arange(10).view(5, 2), "keep"), "c": [torch.zeros(5, 1)]}
    chunks = split_batch(batch, 2)
    assert [c["a"].tolist() for c in chunks] == [[0, 1], [2, 3], [4]]
    assert chunks[2]["b"][0].tolist() == [[8, 9]] and chunks[1]["b"][1] == "keep"
    assert chunks[2]["c"][0].shape == (1, 1)
    with pytest.raises(ValueError):
        split_batch({"x": "no tensor"}, 2)


def test_batchnorm_running_statistics_are_updated_once_per_sub_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.Linear(8, EMBED)).double()
    batch = torch.randn(BATCH, FEATURES, dtype=torch.float64)
    reference = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.Linear(8, EMBED)).double()
    reference.load_state_dict(model.state_dict())
    for sub_batch in split_batch(batch, 5):
        reference(sub_batch)  # each sub-batch seen once in training mode
    bn, expected = model[1], reference[1]

    def loss_fn(emb):
        return F.normalize(emb, dim=-1).sum()

    grad_cache_step(model, split_batch(batch, 5), loss_fn, restore_buffers_of=model)
    assert int(bn.num_batches_tracked) == len(split_batch(batch, 5)) == 2
    torch.testing.assert_close(bn.running_mean, expected.running_mean)
    torch.testing.assert_close(bn.running_var, expected.running_var)

    model.load_state_dict(reference.state_dict())  # without the restore both passes count
    before = int(bn.num_batches_tracked)
    grad_cache_step(model, split_batch(batch, 5), loss_fn)
    assert int(bn.num_batches_tracked) - before == 4


def test_backward_callback_gets_every_surrogate_and_marks_the_last():
    model, batch = make(dropout=0.0)
    contrastive_losses(*model(batch)).backward()
    expected = grads_of(model)
    model.zero_grad()
    calls = []

    def backward(surrogate, last):
        calls.append(last)
        surrogate.backward()

    grad_cache_step(model, split_batch(batch, CHUNK), contrastive_losses, backward=backward)
    assert calls == [False, False, False, True]
    for g, e in zip(grads_of(model), expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
