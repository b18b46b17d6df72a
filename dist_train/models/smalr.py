"""SMALR (Burns et al. 2020): HEM word embeddings in MULE's Embedding Network, MCLM heads, a language adversary.

Image branch (MULE): precomputed crop-averaged CNN features -> FC 2048 + BN + ReLU + dropout ->
FC 512 -> L2 norm. Text branch: HEM universal word embeddings -> GRU (1024) -> FC 512 -> L2 norm,
the GRU's final hidden state being the sentence. The universal embedding (HEM output) is also
summarised as the mean over words, where the neighbourhood constraints and the adversarial language
classifier act (behind a gradient-reversal layer whose scale the objective ramps up).

MCLM (section 3.2, supplementary 7.4): two sentences of the same image in two languages are
masked; their masked representations are concatenated and one fully connected layer, shared by all
language pairs, predicts what is missing from both. Representations ("variants"): `average`, the
mean of the HEM vectors with the masked words removed; `lstm`, an LSTM + FC over the HEM vectors
with masked words replaced by the MASK embedding; `final`, the multimodal model's own text
embedding of the masked sentence (the paper applies MCLM to both the multimodal model's input and
its final language representation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dist_train.models.hem import MASK, PAD, HybridEmbedding
from dist_train.models.registry import register_model

MCLM_VARIANTS = ("average", "lstm", "final")


@dataclass
class SmalrConfig:
    num_words: int  # global word ids, specials included (dist_train.train.hem_vocab)
    num_languages: int
    num_specific: int  # language-specific rows (top-K words of each language, or all in `full` mode)
    num_latent: int  # latent tokens kept after the assignment pretraining
    word_dim: int = 50  # PCA-reduced FastText
    embed_dim: int = 512  # the universal space and the joint space
    feature_dim: int = 2048  # precomputed image features
    image_hidden: int = 2048
    gru_hidden: int = 1024
    dropout: float = 0.2
    adversary_hidden: int = 512
    mclm_variants: list[str] = field(default_factory=lambda: ["average", "lstm", "final"])

    def __post_init__(self) -> None:
        for name in ("num_words", "num_languages", "embed_dim", "feature_dim", "image_hidden", "gru_hidden",
                     "word_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} = {getattr(self, name)}: must be positive")
        unknown = [v for v in self.mclm_variants if v not in MCLM_VARIANTS]
        if unknown:
            raise ValueError(f"mclm_variants = {list(self.mclm_variants)}: unknown {unknown}; use {list(MCLM_VARIANTS)}")


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by -scale on the way back (Ganin & Lempitsky)."""
    return _ReverseGradient.apply(x, float(scale))


def _masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)


@register_model("smalr")
class Smalr(nn.Module):
    config_class = SmalrConfig

    def __init__(self, config: SmalrConfig):
        super().__init__()
        self.config = c = config
        self.hem = HybridEmbedding(c.num_words, c.num_languages, c.num_specific, c.num_latent, c.word_dim, c.embed_dim)
        self.image_branch = nn.Sequential(
            nn.Linear(c.feature_dim, c.image_hidden), nn.BatchNorm1d(c.image_hidden), nn.ReLU(),
            nn.Dropout(c.dropout), nn.Linear(c.image_hidden, c.embed_dim))
        self.gru = nn.GRU(c.embed_dim, c.gru_hidden, batch_first=True)
        self.text_fc = nn.Linear(c.gru_hidden, c.embed_dim)
        self.adversary = nn.Sequential(nn.Linear(c.embed_dim, c.adversary_hidden), nn.ReLU(),
                                       nn.Linear(c.adversary_hidden, c.num_languages))
        self.mclm_heads = nn.ModuleDict({v: nn.Linear(2 * c.embed_dim, 2 * c.embed_dim) for v in c.mclm_variants})
        if "lstm" in c.mclm_variants:
            self.mclm_lstm = nn.LSTM(c.embed_dim, c.embed_dim, batch_first=True)
            self.mclm_lstm_fc = nn.Linear(c.embed_dim, c.embed_dim)

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- branches ----------------------------------------------------------------------------------------

    def encode_image(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_branch(features), dim=-1)

    def _sentence(self, universal: torch.Tensor, lengths: torch.Tensor, rnn: nn.RNNBase) -> torch.Tensor:
        packed = pack_padded_sequence(universal, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = rnn(packed)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # LSTM: (h, c)
        return hidden[-1]

    def encode_text(self, words: torch.Tensor) -> dict[str, torch.Tensor]:
        """words (B, T) global word ids -> the joint-space embedding and the universal embeddings."""
        universal = self.hem(words)
        lengths = (words != PAD).sum(1)
        text = F.normalize(self.text_fc(self._sentence(universal, lengths, self.gru)), dim=-1)
        return {"text": text, "universal": universal, "universal_mean": _masked_mean(universal, words != PAD)}

    def _mclm_rep(self, variant: str, words: torch.Tensor, encoded: dict[str, torch.Tensor]) -> torch.Tensor:
        if variant == "average":
            return _masked_mean(encoded["universal"], (words != PAD) & (words != MASK))
        if variant == "lstm":
            lengths = (words != PAD).sum(1)
            return self.mclm_lstm_fc(self._sentence(encoded["universal"], lengths, self.mclm_lstm))
        return encoded["text"]

    # --- everything one training step needs, in one forward (ZeRO-3 gathers parameters per forward) ------

    def forward(self, words: torch.Tensor, features: torch.Tensor | None = None,
                masked_words: torch.Tensor | None = None, pairs: torch.Tensor | None = None,
                reverse_scale: float = 0.0) -> dict[str, torch.Tensor]:
        """words (B, T); features (B, F); masked_words (B, T), the same sentences with some words set to
        MASK; pairs (P, 2), rows of two sentences of one image in two languages (MCLM); reverse_scale:
        the gradient-reversal factor in front of the language classifier."""
        encoded = self.encode_text(words)
        out = {"text": encoded["text"], "universal_mean": encoded["universal_mean"],
               "language_logits": self.adversary(reverse_gradient(encoded["universal_mean"], reverse_scale))}
        if features is not None:
            out["image"] = self.encode_image(features)
        if masked_words is not None:
            masked = self.encode_text(masked_words)
            out["masked_text"] = masked["text"]
            if pairs is not None and len(pairs):
                rows = pairs.reshape(-1)
                for variant in self.config.mclm_variants:
                    full = self._mclm_rep(variant, words[rows], {k: v[rows] for k, v in encoded.items()})
                    part = self._mclm_rep(variant, masked_words[rows], {k: v[rows] for k, v in masked.items()})
                    joined = part.view(len(pairs), -1)  # [masked a | masked b]
                    predicted = self.mclm_heads[variant](joined).view(len(rows), -1)
                    out[f"mclm_{variant}_masked"] = part
                    out[f"mclm_{variant}_predicted"] = predicted
                    out[f"mclm_{variant}_full"] = full
        return out

    def parameter_counts(self) -> dict[str, int]:
        counts = {f"embedding_{k}": v for k, v in self.hem.parameter_counts().items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        counts["multimodal"] = sum(p.numel() for n, p in self.named_parameters()
                                   if n.startswith(("image_branch", "gru", "text_fc")))
        return counts


__all__ = ["MCLM_VARIANTS", "Smalr", "SmalrConfig", "reverse_gradient"]
