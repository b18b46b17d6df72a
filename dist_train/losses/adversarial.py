"""The adversarial and reconstruction losses of adversarial visual reconstruction for MMT
(G-WGAN, Algorithm 1; Q-WAAE, Algorithm 2), model-agnostic and in plain torch.

Sign convention: every function returns a loss to *minimise*. A Wasserstein critic D (unbounded
scores, no sigmoid) maximises ``E[D(real)] - E[D(fake)]``, i.e. minimises
``critic_loss_wgan = mean(D(fake)) - mean(D(real))``, plus ``lambda_gp * gradient_penalty`` (the
penalty is *added* to the minimised loss). The paper's Algorithm 1 and 2 write the critic's
objective as "ascending D(v) + (1 - D(v')) + lambda_gp GP": ``D(v) + (1 - D(v'))`` is
``D(v) - D(v') + 1``, the same gradient (the "1 -" is a leftover of the log-loss GAN of eq. 4,
a typo), and the penalty must of course be descended, not ascended (Gulrajani et al.; the
released code minimises ``-mean(D(v)) + mean(D(v')) + lambda_gp GP``).

G-WGAN (Algorithm 1): per Q step, `lambda_critic` = 5 critic steps on
``critic_loss_wgan(D(v, h_T), D(G([z, h_T]), h_T)) + 10 * gradient_penalty(D, v, v', h_T)`` with
h_T and v' detached, then Q and G descend ``lambda_a * generator_loss_wgan(D(v', h_T))`` (the
paper's "descending lambda_a D(v')" has the sign flipped: the generator *raises* the critic's
score of its samples) plus the translation loss.

Q-WAAE (Algorithm 2): the latent critic D(h) scores prior samples h' ~ N(0, I) ("real") against
h_T ("fake"); it descends ``latent_critic_loss(D(h'), D(h_T)) + 10 * gradient_penalty(D, h', h_T)``
(the Wasserstein form Algorithm 2's critic line writes). Q and G descend
``lambda_r * reconstruction_mse(G(h_T), v) + lambda_a * latent_generator_loss(D(h_T))`` plus the
translation loss, where Algorithm 2's ``- log D(h_T)`` needs D(h_T) in (0, 1): we read the critic's
score through a sigmoid, ``-log sigmoid(D(h_T))`` (the non-saturating AAE encoder loss of eq. 9;
it rises as the critic's score falls, like the WGAN generator loss, and saturates once h_T scores
well). `latent_generator_loss(..., form="wasserstein")` gives ``-mean(D(h_T))`` instead, what the
released code uses, and `latent_critic_loss(..., form="log")` the log-loss critic of eq. 8
(whose sign the paper also garbles: ``-log D(h') - log(1 - D(h_T))``). The number of critic
steps per Q step is the trainer's (5 for both forms in section 5.1; the released Q-WAAE code
runs one).

All means are over this call's batch (a rank's local batch): with equal per-rank batches, the
gradient average of DDP makes them the global-batch means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "LATENT_FORMS",
    "critic_loss_wgan",
    "generator_loss_wgan",
    "gradient_penalty",
    "latent_critic_loss",
    "latent_generator_loss",
    "reconstruction_mse",
    "wasserstein_estimate",
]

LATENT_FORMS = ("wasserstein", "log")
REDUCTIONS = ("mean", "sum")


def _scores(name: str, d: torch.Tensor) -> torch.Tensor:
    """Critic outputs as [B] (a trailing singleton dim is dropped)."""
    if d.dim() == 2 and d.shape[1] == 1:
        d = d.squeeze(1)
    if d.dim() != 1:
        raise ValueError(f"{name} must be critic scores [B] or [B, 1], got {tuple(d.shape)}")
    return d


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *conditions: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's ``mean_i (||grad_{v_hat} D(v_hat_i, *conditions_i)||_2 - 1)^2`` (eq. 5).

    ``v_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample (drawn from
    `generator` when given). The gradient is taken with respect to v_hat only (a condition such
    as G-WGAN's h_T is held fixed and not part of the norm), with ``create_graph=True`` so the
    penalty trains the critic. `real`, `fake` and `conditions` are detached: the penalty is a
    term of the critic's loss only and sends no gradient to Q or G. `critic(v_hat, *conditions)`
    must score each sample independently (no batch normalisation) and return [B] or [B, 1].
    """
    if real.shape != fake.shape or real.dim() < 1 or real.shape[0] == 0:
        raise ValueError(f"real and fake must have one equal shape [B, ...], got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    real, fake = real.detach(), fake.detach()
    conditions = tuple(c.detach() for c in conditions)
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], generator=generator, device=device)
    eps = eps.to(device=real.device, dtype=real.dtype).view(-1, *([1] * (real.dim() - 1)))
    with torch.enable_grad():
        interpolates = (eps * real + (1 - eps) * fake).requires_grad_(True)
        scores = _scores("critic(v_hat)", critic(interpolates, *conditions))
        (grad,) = torch.autograd.grad(scores, interpolates, grad_outputs=torch.ones_like(scores), create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


def critic_loss_wgan(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """``mean(D(fake)) - mean(D(real))``, minimised by the critic (it separates real from fake by
    scoring real samples higher); add ``lambda_gp * gradient_penalty`` for WGAN-GP."""
    return _scores("d_fake", d_fake).mean() - _scores("d_real", d_real).mean()


def wasserstein_estimate(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """``mean(D(real)) - mean(D(fake))`` detached: the critic's estimate of the Wasserstein
    distance (for logging; ``-critic_loss_wgan``)."""
    return (_scores("d_real", d_real).mean() - _scores("d_fake", d_fake).mean()).detach()


def generator_loss_wgan(d_fake: torch.Tensor) -> torch.Tensor:
    """``-mean(D(fake))``, minimised by the generator (and Q through h_T); the caller scales it
    by lambda_a."""
    return -_scores("d_fake", d_fake).mean()


def latent_critic_loss(d_prior: torch.Tensor, d_code: torch.Tensor, form: str = "wasserstein") -> torch.Tensor:
    """Q-WAAE's latent critic loss, prior samples h' "real", Q's codes h_T "fake".

    "wasserstein" (Algorithm 2): ``mean(D(h_T)) - mean(D(h'))``, plus ``lambda_gp *
    gradient_penalty(critic, h', h_T)`` by the caller. "log" (eq. 8, the AAE's discriminator with
    D's probability ``sigmoid(score)``): ``-mean(log sigmoid(D(h'))) - mean(log(1 - sigmoid(D(h_T))))``.
    """
    if form not in LATENT_FORMS:
        raise ValueError(f"form must be one of {LATENT_FORMS}, got {form!r}")
    d_prior, d_code = _scores("d_prior", d_prior), _scores("d_code", d_code)
    if form == "wasserstein":
        return d_code.mean() - d_prior.mean()
    return F.softplus(-d_prior).mean() + F.softplus(d_code).mean()  # -log sig(x) = softplus(-x)


def latent_generator_loss(d_code: torch.Tensor, form: str = "log") -> torch.Tensor:
    """Q-WAAE's adversarial term for Q (and G), scaled by lambda_a by the caller.

    "log" (Algorithm 2's ``-log D(h_T)``, D's probability ``sigmoid(score)``):
    ``mean(softplus(-D(h_T)))`` (stable for any score). "wasserstein": ``-mean(D(h_T))``.
    """
    if form not in LATENT_FORMS:
        raise ValueError(f"form must be one of {LATENT_FORMS}, got {form!r}")
    d_code = _scores("d_code", d_code)
    if form == "wasserstein":
        return -d_code.mean()
    return F.softplus(-d_code).mean()


def reconstruction_mse(v_rec: torch.Tensor, v: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The reconstruction cost c(v, v') of Algorithm 2 (and the "regression" form).

    "mean": the mean over all elements (``F.mse_loss``, what the released code uses and what the
    paper's lambda_r values were tuned with); "sum": eq. 6's ``||v - v'||^2`` per sample, averaged
    over the batch (feature_dim times larger). The target `v` is data: it is detached.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if v_rec.shape != v.shape or v.dim() < 1:
        raise ValueError(f"v_rec and v must have one shape [B, ...], got {tuple(v_rec.shape)} and {tuple(v.shape)}")
    v = v.detach()
    if reduction == "mean":
        return F.mse_loss(v_rec, v)
    return ((v_rec - v) ** 2).flatten(1).sum(dim=1).mean()
