"""Projection heads: map a backbone feature to the unit sphere where a contrastive loss compares.

Globetrotter has one head per loss and modality (text->image, text->text, image->text,
image->image). Each is BERT's prediction-head transform (Linear, GELU, LayerNorm) followed by a
linear map to the 128-d embedding, L2-normalised so that a dot product is a cosine similarity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class ProjectionHead(nn.Module):
    """`Linear(in, hidden) -> activation -> [LayerNorm] -> Linear(hidden, out)`, then L2 norm."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 128,
        hidden_dim: int | None = None,
        activation: str = "gelu",
        layer_norm: bool = True,
        layer_norm_eps: float = 1e-12,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}")
        hidden_dim = hidden_dim or in_dim
        self.transform = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            _ACTIVATIONS[activation](),
            nn.LayerNorm(hidden_dim, eps=layer_norm_eps) if layer_norm else nn.Identity(),
        )
        self.project = nn.Linear(hidden_dim, out_dim)
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`[..., in_dim] -> [..., out_dim]` with unit L2 norm along the last axis."""
        return F.normalize(self.project(self.transform(features)), dim=-1)
