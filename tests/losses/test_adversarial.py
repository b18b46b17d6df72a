"""The adversarial reconstruction losses: the gradient penalty against hand-computed values on its
interpolates, its gradient for the critic, the WGAN and Q-WAAE signs, and one training step of each
form on a tiny MMT model touching only the parameters it should."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dist_train.losses.adversarial import (
    critic_loss_wgan,
    generator_loss_wgan,
    gradient_penalty,
    latent_critic_loss,
    latent_generator_loss,
    reconstruction_mse,
    wasserstein_estimate,
)
from dist_train.models.mmt import MMTConfig, MMTModel

FEATURES, HIDDEN = 12, 16


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def linear_critic(weight: torch.Tensor) -> nn.Linear:
    critic = nn.Linear(weight.numel(), 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(weight.view(1, -1))
    return critic


# --- the gradient penalty -------------------------------------------------------------------------------


def test_penalty_of_a_linear_critic_is_norm_minus_one_squared_whatever_eps():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, generator=g) * 0.7
    critic = linear_critic(w)
    real, fake = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    expected = (float(w.norm()) - 1) ** 2
    assert abs(float(w.norm()) - 1) > 0.2
    for seed in range(4):
        penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(seed))
        assert float(penalty.detach()) == pytest.approx(expected, rel=1e-5)
    # a unit-norm linear critic is exactly 1-Lipschitz: no penalty
    assert float(gradient_penalty(linear_critic(w / w.norm()), real, fake).detach()) == pytest.approx(0.0, abs=1e-10)


def test_conditions_are_held_fixed_and_left_out_of_the_norm():
    g = torch.Generator().manual_seed(1)
    w, u = torch.randn(5, generator=g), torch.randn(3, generator=g) * 4

    def critic(v, h):
        return v @ w + h @ u

    real, fake, h = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g), torch.randn(4, 3, generator=g)
    h.requires_grad_(True)
    penalty = gradient_penalty(critic, real, fake, h)
    assert float(penalty) == pytest.approx((float(w.norm()) - 1) ** 2, rel=1e-5)
    assert not penalty.requires_grad  # nothing trainable in this critic; h, real, fake are detached


def test_penalty_is_taken_on_per_sample_interpolates():
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(7, 4, 3, generator=g), torch.randn(7, 4, 3, generator=g)
    seen = []

    def critic(x):  # D(x) = ||x||^2 / 2: grad = x, so the penalty is mean((||v_hat|| - 1)^2)
        seen.append(x.detach().clone())
        return 0.5 * (x ** 2).flatten(1).sum(1)

    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    (v_hat,) = seen
    eps = torch.rand(7, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(v_hat, eps.view(-1, 1, 1) * real + (1 - eps.view(-1, 1, 1)) * fake)
    ratio = ((v_hat - fake) / (real - fake)).flatten(1)  # one eps per sample, in [0, 1]
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    assert bool(((ratio >= 0) & (ratio <= 1)).all()) and ratio[:, 0].unique().numel() == 7
    expected = ((v_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(penalty, expected)
    # same generator seed, same interpolates; the critic's [B, 1] output is accepted too
    again = gradient_penalty(lambda x: critic(x)[:, None], real, fake, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(again, penalty)


def test_penalty_trains_the_critic_and_only_the_critic():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, generator=g) * 2
    critic = linear_critic(w)
    real = torch.randn(5, 6, generator=g, requires_grad=True)
    fake = torch.randn(5, 6, generator=g, requires_grad=True)
    penalty = gradient_penalty(critic, real, fake)
    penalty.backward()
    norm = w.norm()
    torch.testing.assert_close(critic.weight.grad.view(-1), 2 * (norm - 1) * w / norm)
    assert real.grad is None and fake.grad is None


def test_optimising_the_penalty_pushes_gradient_norms_at_interpolates_to_one():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    g = torch.Generator().manual_seed(4)
    real, fake = torch.randn(64, 8, generator=g) + 1.0, torch.randn(64, 8, generator=g) - 1.0

    def distance_from_one() -> float:
        x = (0.5 * real + 0.5 * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x)
        return float((grad.norm(dim=1) - 1).abs().mean())

    before = distance_from_one()
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for step in range(150):
        loss = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = distance_from_one()
    assert before > 0.3 and after < 0.1 * before, (before, after)


def test_penalty_checks_shapes():
    with pytest.raises(ValueError, match="real and fake"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="critic"):
        gradient_penalty(lambda x: x, torch.zeros(3, 2), torch.zeros(3, 2))


# --- WGAN and Q-WAAE losses -------------------------------------------------------------------------------


def test_wgan_losses_signs():
    d_real, d_fake = torch.tensor([3.0, 1.0]), torch.tensor([[-1.0], [0.0]])
    assert float(critic_loss_wgan(d_real, d_fake)) == pytest.approx(-0.5 - 2.0)
    assert float(wasserstein_estimate(d_real, d_fake)) == pytest.approx(2.5)
    assert float(generator_loss_wgan(d_fake)) == pytest.approx(0.5)
    score = torch.tensor([0.0], requires_grad=True)
    generator_loss_wgan(score).backward()
    assert float(score.grad) < 0  # descending it raises the critic's score of the fake


def test_critic_loss_falls_as_the_critic_separates_real_from_fake():
    g = torch.Generator().manual_seed(6)
    real, fake = torch.randn(32, 4, generator=g) + 2.0, torch.randn(32, 4, generator=g) - 2.0
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.5, 0.9))
    losses, estimates = [], []
    for step in range(60):
        d_real, d_fake = critic(real).squeeze(1), critic(fake).squeeze(1)
        loss = critic_loss_wgan(d_real, d_fake) + 10 * gradient_penalty(critic, real, fake)
        losses.append(float(critic_loss_wgan(d_real, d_fake).detach()))
        estimates.append(float(wasserstein_estimate(d_real, d_fake)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0] - 1.0 and estimates[-1] > 1.0
    assert losses[-1] == pytest.approx(-estimates[-1])


def test_latent_losses_follow_algorithm_2():
    d_prior, d_code = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.3, -2.0, 1.0])
    # Wasserstein critic: prior samples are "real", Q's codes "fake"
    assert float(latent_critic_loss(d_prior, d_code)) == pytest.approx(float(d_code.mean() - d_prior.mean()))
    bce = (F.binary_cross_entropy_with_logits(d_prior, torch.ones(3))
           + F.binary_cross_entropy_with_logits(d_code, torch.zeros(3)))
    assert float(latent_critic_loss(d_prior, d_code, form="log")) == pytest.approx(float(bce))
    # -log D(h_T) with D = sigmoid(score)
    expected = -torch.log(torch.sigmoid(d_code)).mean()
    assert float(latent_generator_loss(d_code)) == pytest.approx(float(expected), rel=1e-6)
    assert float(latent_generator_loss(d_code, form="wasserstein")) == pytest.approx(float(-d_code.mean()))
    extreme = latent_generator_loss(torch.tensor([-200.0, 200.0]))
    assert math.isfinite(float(extreme)) and float(extreme) == pytest.approx(100.0)
    scores = torch.linspace(-5, 5, 11)
    values = [float(latent_generator_loss(s.view(1))) for s in scores]
    assert all(a > b for a, b in zip(values, values[1:]))  # Q gains by raising the critic's score of h_T
    with pytest.raises(ValueError, match="form"):
        latent_generator_loss(d_code, form="hinge")
    with pytest.raises(ValueError, match="form"):
        latent_critic_loss(d_prior, d_code, form="bce")


def test_reconstruction_mse():
    g = torch.Generator().manual_seed(7)
    v_rec = torch.randn(4, 6, generator=g, requires_grad=True)
    v = torch.randn(4, 6, generator=g, requires_grad=True)
    torch.testing.assert_close(reconstruction_mse(v_rec, v), F.mse_loss(v_rec, v))
    torch.testing.assert_close(reconstruction_mse(v_rec, v, reduction="sum"), ((v_rec - v) ** 2).sum(1).mean())
    reconstruction_mse(v_rec, v).backward()
    assert v_rec.grad is not None and v.grad is None
    with pytest.raises(ValueError, match="one shape"):
        reconstruction_mse(v_rec, v[:, :3])


# --- one step of each form on a tiny MMT model ------------------------------------------------------------


def tiny_model(form: str) -> MMTModel:
    torch.manual_seed(0)
    return MMTModel(MMTConfig(source_vocab_size=15, target_vocab_size=15, embed_dim=8, hidden_dim=HIDDEN,
                              attention_dim=16, bottleneck_dim=8, feature_dim=FEATURES, noise_dim=4,
                              critic_hidden_dims=[16, 8], reconstruction=form))


def batch():
    src = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0], [3, 4, 10, 2]])
    tgt = torch.tensor([[1, 11, 12, 2, 0], [1, 13, 2, 0, 0], [1, 3, 4, 5, 2]])
    return src, tgt, torch.rand(3, FEATURES, generator=torch.Generator().manual_seed(0)) * 2 - 1


def snapshot(model: MMTModel) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model: MMTModel, before: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}


def group_names(model: MMTModel, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def critic_step(model: MMTModel, opt: torch.optim.Optimizer) -> None:
    model.zero_grad(set_to_none=True)
    src, tgt, v = batch()
    h = model(src, tgt, v)["h_T"].detach()
    if model.config.reconstruction == "g-wgan":
        fake = model.reconstruct(h).detach()
        loss = critic_loss_wgan(model.critic(v, h), model.critic(fake, h)) + 10 * gradient_penalty(
            model.critic, v, fake, h)
    else:
        prior = model.sample_prior(h.shape[0], like=h)
        loss = latent_critic_loss(model.critic(prior), model.critic(h)) + 10 * gradient_penalty(model.critic, prior, h)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in model.translation_parameters() + model.generator_parameters())
    opt.step()


def q_and_g_step(model: MMTModel, opt: torch.optim.Optimizer, lambda_a: float = 0.2, lambda_r: float = 0.2) -> None:
    src, tgt, v = batch()
    out = model(src, tgt, v)
    h = out["h_T"]
    form = model.config.reconstruction
    if form == "g-wgan":
        aux = lambda_a * generator_loss_wgan(model.critic(model.reconstruct(h), h))
    elif form == "q-waae":
        aux = lambda_r * reconstruction_mse(model.reconstruct(h), v) + lambda_a * latent_generator_loss(model.critic(h))
    else:
        aux = lambda_r * reconstruction_mse(model.reconstruct(h), v)
    opt.zero_grad()
    (out["loss"] + aux).backward()
    opt.step()
    for p in model.critic_parameters():  # the critic's gradient from this loss is never applied
        p.grad = None


@pytest.mark.parametrize("form", ["g-wgan", "q-waae"])
def test_critic_step_changes_only_the_critic(form):
    model = tiny_model(form)
    model.train()
    opt = torch.optim.Adam(model.critic_parameters(), lr=2e-4, betas=(0.5, 0.9))
    before = snapshot(model)
    critic_step(model, opt)
    moved, critic = changed(model, before), group_names(model, model.critic_parameters())
    # the critic's output bias cancels in mean(D(fake)) - mean(D(real)) and has no input gradient
    last_bias = [n for n, _ in model.named_parameters() if n in critic and n.endswith("bias")][-1]
    assert moved == critic - {last_bias}
    assert float(model.get_parameter(last_bias).grad.abs()) == 0


@pytest.mark.parametrize("form", ["regression", "g-wgan", "q-waae"])
def test_q_and_g_step_leaves_the_critic_unchanged(form):
    model = tiny_model(form)
    model.train()
    opt = torch.optim.Adam(model.translation_parameters() + model.generator_parameters(), lr=4e-4)
    before = snapshot(model)
    q_and_g_step(model, opt)
    moved = changed(model, before)
    critic = group_names(model, model.critic_parameters())
    generator = group_names(model, model.generator_parameters())
    q = group_names(model, model.translation_parameters())
    assert not moved & critic
    assert generator <= moved
    assert q <= moved, sorted(q - moved)


@pytest.mark.parametrize("form", ["g-wgan", "q-waae"])
def test_adversarial_term_alone_reaches_q_through_h_T(form):
    model = tiny_model(form)
    model.train()
    src, tgt, v = batch()
    h = model(src, tgt, v)["h_T"]
    if form == "g-wgan":
        generator_loss_wgan(model.critic(model.reconstruct(h), h)).backward()
    else:
        latent_generator_loss(model.critic(h)).backward()
    for name in ("encoder.rnn.weight_ih_l0", "decoder.gru1.weight_hh", "decoder.gru2.weight_ih"):
        assert float(model.get_parameter(name).grad.abs().sum()) > 0, name
    # only Q's state h_T is judged: the output layer plays no part in it
    assert model.decoder.output.bias.grad is None


def test_alternating_training_runs_a_few_rounds():
    model = tiny_model("g-wgan")
    model.train()
    opt_qg = torch.optim.Adam(model.translation_parameters() + model.generator_parameters(), lr=4e-4)
    opt_d = torch.optim.Adam(model.critic_parameters(), lr=2e-4, betas=(0.5, 0.9))
    for _ in range(2):
        for _ in range(5):  # lambda_critic = 5
            critic_step(model, opt_d)
        q_and_g_step(model, opt_qg)
    assert all(torch.isfinite(p).all() for p in model.parameters())
