"""Multilingual VSE++ (Kádár et al., "Lessons learned in multilingual grounded language learning").

VSE++ (Faghri et al.) with one text encoder for every language: word embeddings over the joint
(shared sentencepiece) vocabulary, a GRU whose last state is the caption's embedding, and a linear
projection of precomputed image features into the same space; both sides are L2-normalised, so
scores are cosines. The paper's sizes are 300-d word embeddings and 1024 GRU units (the joint space
is the GRU state, as in VSE++); smaller configs only change the numbers.

Image features are standardised per dimension (fixed buffers, filled from the training split with
`set_image_statistics` before training; identity until then). Not in the paper, whose ImageNet
features are sparse: the benchmark's random-init ResNet features share one dominant direction
(cosine ~0.96 between unrelated images), from which the max-of-hinges loss never leaves (it stays at
2 x margin, every image embedding alike).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dist_train.models.registry import register_model


@dataclass
class VSEConfig:
    """vocab_size: pieces of the shared vocabulary; image_dim: size of the precomputed features."""

    vocab_size: int
    pad_id: int = 0
    word_dim: int = 300
    embed_dim: int = 1024  # GRU units = the joint embedding space
    image_dim: int = 512  # ResNet-18's pooled features (2048 for ResNet-152)
    layers: int = 1
    bos_id: int = 2  # accepted so the objective can pass the vocabulary's ids uniformly
    eos_id: int = 3
    max_length: int = 32
    standardize_image: bool = True  # (features - mean) / std with the training split's statistics

    def __post_init__(self) -> None:
        for key in ("vocab_size", "word_dim", "embed_dim", "image_dim", "layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is outside the vocabulary of {self.vocab_size}")


@register_model("vsepp")
class VSEPlusPlus(nn.Module):
    """GRU caption encoder and linear image projection into one L2-normalised space."""

    config_class = VSEConfig

    def __init__(self, config: VSEConfig):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=config.pad_id)
        self.gru = nn.GRU(config.word_dim, config.embed_dim, num_layers=config.layers, batch_first=True)
        self.image_projection = nn.Linear(config.image_dim, config.embed_dim)
        self.register_buffer("image_mean", torch.zeros(config.image_dim))
        self.register_buffer("image_std", torch.ones(config.image_dim))
        # VSE++'s initialisation: uniform word embeddings, Xavier-uniform image projection
        nn.init.uniform_(self.word_embeddings.weight, -0.1, 0.1)
        with torch.no_grad():
            self.word_embeddings.weight[config.pad_id].zero_()
        bound = (6.0 / (config.image_dim + config.embed_dim)) ** 0.5
        nn.init.uniform_(self.image_projection.weight, -bound, bound)
        nn.init.zeros_(self.image_projection.bias)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) padded token ids -> (B, embed_dim) unit vectors: the GRU's state after the last real token."""
        lengths = (tokens != self.config.pad_id).sum(dim=1).clamp_min(1)
        packed = pack_padded_sequence(self.word_embeddings(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, last = self.gru(packed)  # (layers, B, embed_dim), in the input's order
        return F.normalize(last[-1], dim=-1)

    @torch.no_grad()
    def set_image_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-dimension mean and std of the training images' features (saved with the weights)."""
        if mean.shape != self.image_mean.shape or std.shape != self.image_std.shape:
            raise ValueError(f"image statistics must have shape ({self.config.image_dim},), got "
                             f"{tuple(mean.shape)} and {tuple(std.shape)}")
        self.image_mean.copy_(mean)
        self.image_std.copy_(std.clamp_min(1e-6))

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        """(B, image_dim) precomputed features -> (B, embed_dim) unit vectors."""
        if self.config.standardize_image:
            features = (features - self.image_mean) / self.image_std
        return F.normalize(self.image_projection(features), dim=-1)

    def forward(self, tokens: torch.Tensor | None = None,
                features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = {}
        if tokens is not None:
            out["text"] = self.encode_text(tokens)
        if features is not None:
            out["image"] = self.encode_image(features)
        return out

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by part: word embeddings (the part that grows with the vocabulary) and the rest."""
        parts = {"word_embeddings": self.word_embeddings, "gru": self.gru, "image_projection": self.image_projection}
        counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
        counts["total"] = sum(counts.values())
        return counts

    def config_dict(self) -> dict:
        return asdict(self.config)


__all__ = ["VSEConfig", "VSEPlusPlus"]
