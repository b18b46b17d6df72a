"""The losses of Globetrotter, and the triplet ranking loss of VSE++, MULE and SMALR, each computed over
the global batch as local rows x global columns.

Every loss returns this rank's share: averaged over ranks (as DDP and DeepSpeed average gradients)
it is the loss of one process over the concatenated batch. Embeddings are expected L2-normalised.
"""

from dist_train.losses.adversarial import (critic_loss_wgan, generator_loss_wgan, gradient_penalty, latent_critic_loss,
                                           latent_generator_loss, reconstruction_mse, wasserstein_estimate)
from dist_train.losses.cloze import cloze_loss
from dist_train.losses.contrastive import cross_modal_loss
from dist_train.losses.grad_cache import grad_cache_step, split_batch
from dist_train.losses.simclr import simclr_loss
from dist_train.losses.smalr import adversarial_ramp, language_adversary_loss, mclm_loss, neighbourhood_loss
from dist_train.losses.transitive import TransitiveLossOutput, code_alpha, paper_alpha, transitive_loss
from dist_train.losses.triplet import triplet_ranking_loss

__all__ = [
    "adversarial_ramp",
    "critic_loss_wgan",
    "generator_loss_wgan",
    "gradient_penalty",
    "latent_critic_loss",
    "latent_generator_loss",
    "reconstruction_mse",
    "wasserstein_estimate",
    "language_adversary_loss",
    "mclm_loss",
    "neighbourhood_loss",
    "TransitiveLossOutput",
    "cloze_loss",
    "code_alpha",
    "cross_modal_loss",
    "grad_cache_step",
    "paper_alpha",
    "simclr_loss",
    "split_batch",
    "transitive_loss",
    "triplet_ranking_loss",
]
