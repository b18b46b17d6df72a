"""SMALR's Hybrid Embedding Model (HEM, section 3.1) and the latent-assignment pretraining model.

The K most frequent words of each language keep their own embedding: a PCA-reduced FastText vector
(trainable) through a per-language fully connected layer into the universal space. Every other word
is hard-assigned to one token of a shared latent vocabulary, whose 512-d vectors are trained; the
assignment itself is learned once beforehand (`LatentAssigner`) and then frozen. Three modes share
the code: `hybrid` (SMALR), `agnostic` (only the latent vocabulary: the paper's LA baseline) and
`full` (every word language-specific, MULE's one full vocabulary per language: the comparison for
parameter counts, frequency thresholding and PCA reduction).

Word ids are global (see dist_train.train.hem_vocab): 0 padding, 1 MCLM's mask, 2 unknown, then the
words of each language. The model receives only tensors: which language each id belongs to, its
language-specific row (-1: none) and its latent token (-1: none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD, MASK, UNK = 0, 1, 2
MODES = ("hybrid", "agnostic", "full")


class HybridEmbedding(nn.Module):
    """Global word ids (B, T) -> universal word embeddings (B, T, embed_dim); padding -> 0."""

    def __init__(self, num_words: int, num_languages: int, num_specific: int, num_latent: int, word_dim: int,
                 embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        # A table that no word uses (no specific words in the agnostic mode, no latent tokens in the full
        # one) is not created: it would count as parameters and never receive a gradient.
        self.specific = self.projection = self.projection_bias = self.latent = None
        if num_specific:
            self.specific = nn.Parameter(torch.zeros(num_specific, word_dim))  # PCA-reduced FastText, fine-tuned
            self.projection = nn.Parameter(torch.empty(num_languages, word_dim, embed_dim))
            self.projection_bias = nn.Parameter(torch.zeros(num_languages, embed_dim))
            for w in self.projection:
                nn.init.xavier_uniform_(w)
        if num_latent:
            self.latent = nn.Parameter(torch.randn(num_latent, embed_dim) * embed_dim ** -0.5)
        self.special = nn.Parameter(torch.randn(2, embed_dim) * embed_dim ** -0.5)  # mask, unknown
        self.register_buffer("word_language", torch.full((num_words,), -1, dtype=torch.long))
        self.register_buffer("word_specific", torch.full((num_words,), -1, dtype=torch.long))
        self.register_buffer("word_latent", torch.full((num_words,), -1, dtype=torch.long))

    @torch.no_grad()
    def load_vocabulary(self, word_language, word_specific, word_latent, specific_vectors=None,
                        latent_vectors=None) -> None:
        """Install the fitted vocabulary (buffers) and initial values (PCA vectors, pretrained latent)."""
        for name, value in (("word_language", word_language), ("word_specific", word_specific),
                            ("word_latent", word_latent)):
            value = torch.as_tensor(value, dtype=torch.long)
            if value.shape != getattr(self, name).shape:
                raise ValueError(f"{name}: expected shape {tuple(getattr(self, name).shape)}, got {tuple(value.shape)}")
            getattr(self, name).copy_(value)
        if self.specific is None and bool((self.word_specific >= 0).any()) or \
                self.latent is None and bool((self.word_latent >= 0).any()):
            raise ValueError("the vocabulary uses a table this model was built without (num_specific or num_latent 0)")
        if specific_vectors is not None and self.specific is not None:
            self.specific.copy_(torch.as_tensor(specific_vectors, dtype=self.specific.dtype))
        if latent_vectors is not None and self.latent is not None:
            self.latent.copy_(torch.as_tensor(latent_vectors, dtype=self.latent.dtype))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1)
        out = self.special.new_zeros(flat.shape[0], self.embed_dim)
        specific = self.word_specific[flat]
        latent = self.word_latent[flat]
        language = self.word_language[flat]
        is_specific = specific >= 0
        for lang in torch.unique(language[is_specific]).tolist():
            rows = torch.nonzero(is_specific & (language == lang)).squeeze(1)
            values = self.specific[specific[rows]] @ self.projection[lang] + self.projection_bias[lang]
            out = out.index_put((rows,), values)
        if self.latent is not None:
            rows = torch.nonzero(~is_specific & (latent >= 0)).squeeze(1)
            out = out.index_put((rows,), self.latent[latent[rows]])
        unknown = (flat == UNK) | ((flat > UNK) & ~is_specific & (latent < 0))
        for slot, which in enumerate((flat == MASK, unknown)):
            rows = torch.nonzero(which).squeeze(1)
            out = out.index_put((rows,), self.special[slot].expand(len(rows), -1))
        return out.view(*ids.shape, self.embed_dim)

    def parameter_counts(self) -> dict[str, int]:
        """Embedding parameters: language-specific vectors and projections, the latent vocabulary."""
        specific = sum(p.numel() for p in (self.specific, self.projection, self.projection_bias) if p is not None)
        latent = self.latent.numel() if self.latent is not None else 0
        return {"language_specific": specific, "latent": latent, "special": self.special.numel(),
                "total": specific + latent + self.special.numel()}


def full_vocabulary_parameters(num_words: int, num_languages: int, word_dim: int, embed_dim: int) -> int:
    """Embedding parameters of one full vocabulary per language (every word specific, MULE-style)."""
    return num_words * word_dim + num_languages * (word_dim * embed_dim + embed_dim) + 2 * embed_dim


class LatentAssigner(nn.Module):
    """Learns which latent token each word maps to (SMALR's pretraining step).

    A word's PCA-reduced FastText vector goes through its language's fully connected layer and is
    scored against every latent token (cosine); the word takes the best one, or, with probability
    `explore_p`, a uniformly drawn one of the `explore_top_m` best ("exploration parameters"). A
    sentence is the average of its words' latent vectors. The choice is hard; gradients reach the
    scoring layer through the straight-through estimator (forward: the chosen token's vector;
    backward: as if it were the softmax mixture), which is our choice: the paper does not say how
    the hard attention is trained.
    """

    def __init__(self, num_languages: int, word_dim: int, num_latent: int, embed_dim: int,
                 temperature: float = 0.1):
        super().__init__()
        self.query = nn.Parameter(torch.empty(num_languages, word_dim, embed_dim))
        for w in self.query:
            nn.init.xavier_uniform_(w)
        self.latent = nn.Parameter(torch.randn(num_latent, embed_dim) * embed_dim ** -0.5)
        self.temperature = temperature

    def scores(self, vectors: torch.Tensor, languages: torch.Tensor) -> torch.Tensor:
        """(N, word_dim) vectors of words in `languages` (N,) -> (N, num_latent) cosine scores."""
        query = torch.einsum("nd,nde->ne", vectors, self.query[languages])
        return F.normalize(query, dim=-1) @ F.normalize(self.latent, dim=-1).T

    @staticmethod
    def choose(scores: torch.Tensor, explore_p: float = 0.0, explore_top_m: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        best = scores.argmax(1)
        if explore_p <= 0 or explore_top_m <= 1:
            return best
        top = scores.topk(min(explore_top_m, scores.shape[1]), dim=1).indices
        pick = torch.randint(0, top.shape[1], (scores.shape[0],), generator=generator).to(scores.device)
        explore = torch.rand(scores.shape[0], generator=generator).to(scores.device) < explore_p
        return torch.where(explore, top.gather(1, pick[:, None]).squeeze(1), best)

    def sentence_embeddings(self, ids: torch.Tensor, vectors: torch.Tensor, word_language: torch.Tensor,
                            explore_p: float = 0.0, explore_top_m: int = 1,
                            generator: torch.Generator | None = None) -> torch.Tensor:
        """ids (B, T) global word ids (PAD = 0; ids without a language are skipped) -> (B, embed_dim),
        the mean of the words' chosen latent vectors, L2-normalised."""
        valid = (ids > UNK) & (word_language[ids.clamp(min=0)] >= 0)
        words, inverse = torch.unique(ids[valid], return_inverse=True)
        scores = self.scores(vectors[words], word_language[words])
        chosen = self.choose(scores, explore_p, explore_top_m, generator)
        soft = torch.softmax(scores / self.temperature, dim=1)
        hard = F.one_hot(chosen, scores.shape[1]).to(soft.dtype)
        word_emb = (hard - soft.detach() + soft) @ self.latent  # straight-through
        per_token = word_emb.new_zeros(*ids.shape, word_emb.shape[1])
        per_token[valid] = word_emb[inverse]
        mean = per_token.sum(1) / valid.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(mean, dim=-1)

    @torch.no_grad()
    def assign(self, vectors: torch.Tensor, languages: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """The frozen assignment: each word's best latent token (no exploration)."""
        return torch.cat([self.scores(vectors[i:i + chunk], languages[i:i + chunk]).argmax(1)
                          for i in range(0, vectors.shape[0], chunk)]) if vectors.shape[0] else \
            torch.zeros(0, dtype=torch.long)


def drop_unused_latent(assignment: torch.Tensor, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Renumber the assignment over the latent tokens some word uses; returns it and their vectors."""
    used, renumbered = torch.unique(assignment, return_inverse=True)
    return renumbered, latent[used].detach().clone()


__all__ = ["HybridEmbedding", "LatentAssigner", "MODES", "drop_unused_latent", "full_vocabulary_parameters"]
