"""Multimodal machine translation with adversarial visual reconstruction (Q, G and D of the paper
"Adversarial reconstruction for multi-modal machine translation", code: jbdel/adv_rec on nmtpytorch).

Q translates a source sentence x, given the global image features v (ResNet-50 pool5, 2048-d),
into the target sentence y and exposes its final state h_T (eq. 1). A reconstruction module
then tries to rebuild v from h_T alone (eq. 2), an auxiliary task that pushes the sentence
representation to carry what the image shows; it is trained with Q but never used to translate.

Q is nmtpytorch's attentive NMT with a multiplicative visual interaction (appendix A):

- encoder: source embeddings (256) -> bi-GRU (512 per direction), annotations S [B, L, 1024];
  padded positions are packed away (so a sentence encodes the same alone or in a padded batch)
  and masked in the attention and the initial-state mean.
- decoder: a conditional GRU, per step ``h'_t = GRU1(y_{t-1}, h_{t-1})``, attention
  ``a'_t = W_a tanh(W_h h'_t + W_s S)`` (W_h, W_s to `attention_dim` = 1024, no biases, as
  nmtpytorch's "mlp" attention), ``c'_t = sum_i softmax(a'_t)_i s_i``; with `visual_context`
  (the paper's Q) ``i = tanh(W_feat v)`` (1024) gates it, ``c_t = W_c (c'_t * i)`` (eqs. 15-16),
  without it (the text-only baseline) ``c_t = W_c c'_t``; W_c maps 1024 -> 512 (no bias). Then
  ``h_t = GRU2(c_t, h'_t)`` (eq. 11 writes GRU1 twice; the second is GRU2), the bottleneck
  ``b_t = tanh(W_bot h_t)`` (256) and ``p_t = softmax(W_proj b_t)`` (eqs. 17-18).
- initial decoder state: nmtpytorch's ``dec_init: mean_ctx``, ``h_0 = tanh(W_init mean(S))``
  with the mean over each sentence's real positions (W_init has a bias).
- dropout (training only): `dropout_emb` on the source embeddings and `dropout_ctx` on S (0.3
  each, "on embeddings x and annotations S"), `dropout_out` on b_t (0.5); the target embeddings
  get `dropout_emb_target` (0 by default, as the released config's ``dropout_emb_dec``).
- `tied_embeddings`: W_proj shares its weight with the target embeddings (the released config's
  ``tied_emb: 2way``; appendix A does not say, and it needs bottleneck_dim == embed_dim).

The final state h_T is the decoder state after the step that predicts EOS, taken per sample at
its own last real target position (never at a padded step). `final_state="mean"` instead averages
the states of the real steps, which is what the released code actually feeds G and D (there over
all steps, padded ones included).

Reconstruction forms (`reconstruction`; appendix B sizes with hidden_dim 512, feature_dim 2048):

- "none": Q alone.
- "regression": `RegressionHead`, ``v' = tanh(W_rec h_T)`` trained with MSE (Elliott & Kadar's
  "imagination", the ablation "Baseline + G").
- "g-wgan" (Algorithm 1): `ConditionalGenerator` ``v' = tanh(W_rec dropout([z, h_T]))``, z ~ N(0, I)
  with `noise_dim` 128 (W_rec 640 x 2048), and `FeatureCritic`
  ``D(v, h_T) = W3 relu(W2 relu(W1 [v, h_T]))`` (2560 -> 1024 -> 512 -> 1), a WGAN-GP critic.
- "q-waae" (Algorithm 2): `LatentGenerator` ``v' = tanh(W_rec h_T)`` (512 x 2048) trained with MSE,
  and `LatentCritic` ``D(h) = W_adv h`` (512 x 1), which tells h_T from a prior sample h' ~ N(0, I).

The losses are in `dist_train.losses.adversarial`. The model keeps three disjoint parameter
groups so a trainer can build the paper's two optimisers: Q + G (`translation_parameters()` +
`generator_parameters()`, Adam 4e-4) and D (`critic_parameters()`, Adam 2e-4, betas 0.5/0.9).
`forward` runs Q only; G and D are called by the trainer (`reconstruct`, `self.critic`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dist_train.models.beam_search import Hypotheses, beam_search, eval_mode
from dist_train.models.registry import register_model

__all__ = [
    "ConditionalGRUDecoder",
    "ConditionalGenerator",
    "FeatureCritic",
    "LatentCritic",
    "LatentGenerator",
    "MMTConfig",
    "MMTModel",
    "RECONSTRUCTIONS",
    "RegressionHead",
    "TextEncoder",
    "build_critic",
]

RECONSTRUCTIONS = ("none", "regression", "g-wgan", "q-waae")
FINAL_STATES = ("last", "mean")


# --- config -------------------------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _probability(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


@dataclass
class MMTConfig:
    """Architecture of Q and of its reconstruction module; defaults are the paper's.

    source_vocab_size/target_vocab_size: equal when one shared (sentencepiece) vocabulary is used.
    embed_dim: source and target embeddings (256). hidden_dim: each encoder GRU direction and
        both decoder GRUs (512); the annotations S have 2 * hidden_dim.
    attention_dim: what W_s and W_h map to in the attention MLP (1024).
    bottleneck_dim: b_t = tanh(W_bot h_t) (256).
    visual_context: the paper's multimodal Q (c_t = W_c(c'_t * tanh(W_feat v))); False is the
        text-only Q (no W_feat; features are then only the reconstruction target).
    feature_dim: the global image features v (2048, ResNet-50 pool5).
    dropout_emb/dropout_ctx/dropout_out: on source embeddings, annotations S and b_t;
        dropout_emb_target on the target embeddings.
    tied_embeddings: W_proj is the target embedding matrix (needs bottleneck_dim == embed_dim).
    final_state: "last" (h_T at each sample's last real target step) or "mean" (of its real steps).
    max_len: the longest translation `translate` produces, EOS included.
    reconstruction: "none" | "regression" | "g-wgan" | "q-waae" (see the module docstring).
    noise_dim: z of the G-WGAN generator (128: W_rec is (128 + 512) x 2048).
    generator_dropout: on the G-WGAN generator's input [z, h_T], its second source of
        stochasticity (section 4.1; the rate is not given, 0.5 as in Isola et al.).
    critic_hidden_dims: the G-WGAN critic's hidden layers (1024, 512).
    prior_std: standard deviation of the Q-WAAE prior h' ~ N(0, prior_std^2 I) (1, Algorithm 2).
    with_critic: the model holds its critic D (`critic`); the trainer sets False and steps D as an
        engine of its own (`build_critic`), so the translation model's checkpoints and exports are Q + G.
    """

    source_vocab_size: int
    target_vocab_size: int
    embed_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 1024
    bottleneck_dim: int = 256
    visual_context: bool = True
    feature_dim: int = 2048
    dropout_emb: float = 0.3
    dropout_ctx: float = 0.3
    dropout_out: float = 0.5
    dropout_emb_target: float = 0.0
    tied_embeddings: bool = True
    final_state: str = "last"
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_len: int = 50
    reconstruction: str = "none"
    noise_dim: int = 128
    generator_dropout: float = 0.5
    critic_hidden_dims: list[int] = field(default_factory=lambda: [1024, 512])
    prior_std: float = 1.0
    with_critic: bool = True

    def __post_init__(self) -> None:
        for name in ("source_vocab_size", "target_vocab_size", "embed_dim", "hidden_dim", "attention_dim",
                     "bottleneck_dim", "feature_dim", "max_len", "noise_dim"):
            _positive_int(name, getattr(self, name))
        for name in ("dropout_emb", "dropout_ctx", "dropout_out", "dropout_emb_target", "generator_dropout"):
            _probability(name, getattr(self, name))
        for name in ("visual_context", "tied_embeddings", "with_critic"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.tied_embeddings and self.bottleneck_dim != self.embed_dim:
            raise ValueError(
                f"tied_embeddings needs bottleneck_dim == embed_dim, got {self.bottleneck_dim} and {self.embed_dim}"
            )
        if self.final_state not in FINAL_STATES:
            raise ValueError(f"final_state must be one of {FINAL_STATES}, got {self.final_state!r}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {self.reconstruction!r}")
        dims = self.critic_hidden_dims
        if isinstance(dims, (str, int)) or not isinstance(dims, Sequence) or not dims:
            raise ValueError(f"critic_hidden_dims must be a non-empty list of positive integers, got {dims!r}")
        self.critic_hidden_dims = list(dims)
        for size in self.critic_hidden_dims:
            _positive_int("critic_hidden_dims entries", size)
        std = self.prior_std
        if not isinstance(std, (int, float)) or isinstance(std, bool) or not math.isfinite(std) or std <= 0:
            raise ValueError(f"prior_std must be a finite number > 0, got {std!r}")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        smallest = min(self.source_vocab_size, self.target_vocab_size)
        for name, value in ids.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
            if value >= smallest:
                raise ValueError(f"{name}={value} is outside the smallest vocabulary (size {smallest})")
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"pad_id, bos_id and eos_id must be distinct, got {ids}")


# --- Q: encoder and conditional-GRU decoder -----------------------------------------------------------


def _check_tokens(name: str, tokens: torch.Tensor, pad_id: int, min_len: int) -> torch.Tensor:
    """[B, T] integer ids, right-padded, every row with at least `min_len` real tokens -> the mask."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point() or tokens.is_complex():
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"{name} must be an integer tensor [B, T], got {shape}")
    mask = tokens != pad_id
    if tokens.shape[1] and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        raise ValueError(f"{name} must be right-padded with pad_id={pad_id} (a real token follows a pad)")
    if tokens.shape[0] and int(mask.sum(dim=1).min()) < min_len:
        raise ValueError(f"every row of {name} needs at least {min_len} non-pad token(s)")
    return mask


class TextEncoder(nn.Module):
    """Source embeddings -> dropout -> bi-GRU over the real positions -> dropout: S [B, L, 2H]."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, dropout_emb: float, dropout_ctx: float,
                 pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.rnn = nn.GRU(embed_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.dropout_emb = nn.Dropout(dropout_emb)
        self.dropout_ctx = nn.Dropout(dropout_ctx)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1)
        embedded = self.dropout_emb(self.embedding(tokens))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        annotations, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=tokens.shape[1])
        return self.dropout_ctx(annotations)


class ConditionalGRUDecoder(nn.Module):
    """nmtpytorch's conditional GRU decoder with the multiplicative visual context (appendix A).

    The decoding state is a dict of tensors with one row per sentence (what `beam_search` reorders):
    "h" the decoder state, "annotations" S, "projected" W_s S, "mask" the real source positions and,
    with the visual context, "visual" tanh(W_feat v).
    """

    def __init__(self, config: MMTConfig):
        super().__init__()
        c = config
        context_dim = 2 * c.hidden_dim
        self.embedding = nn.Embedding(c.target_vocab_size, c.embed_dim, padding_idx=c.pad_id)
        self.dropout_emb = nn.Dropout(c.dropout_emb_target)
        self.init_state = nn.Linear(context_dim, c.hidden_dim)  # h_0 = tanh(W_init mean(S))
        self.gru1 = nn.GRUCell(c.embed_dim, c.hidden_dim)
        self.context_attention = nn.Linear(context_dim, c.attention_dim, bias=False)  # W_s
        self.hidden_attention = nn.Linear(c.hidden_dim, c.attention_dim, bias=False)  # W_h
        self.attention_score = nn.Linear(c.attention_dim, 1, bias=False)  # W_a
        # W_feat: v -> the annotation size, so that it gates c'_t elementwise (eq. 15).
        self.visual_projection = nn.Linear(c.feature_dim, context_dim) if c.visual_context else None
        self.context_projection = nn.Linear(context_dim, c.hidden_dim, bias=False)  # W_c
        self.gru2 = nn.GRUCell(c.hidden_dim, c.hidden_dim)
        self.bottleneck = nn.Linear(c.hidden_dim, c.bottleneck_dim)  # W_bot
        nn.init.zeros_(self.bottleneck.bias)  # nmtpytorch's hid2out (bias_zero=True)
        self.dropout_out = nn.Dropout(c.dropout_out)
        self.output = nn.Linear(c.bottleneck_dim, c.target_vocab_size)  # W_proj
        if c.tied_embeddings:
            self.output.weight = self.embedding.weight

    def start(self, annotations: torch.Tensor, mask: torch.Tensor,
              features: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The state before the first target word: h_0 and the per-sentence precomputations."""
        keep = mask.to(annotations.dtype)[..., None]
        mean = (annotations * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
        state = {"h": torch.tanh(self.init_state(mean)), "annotations": annotations,
                 "projected": self.context_attention(annotations), "mask": mask}
        if self.visual_projection is not None:
            state["visual"] = torch.tanh(self.visual_projection(features))
        return state

    def step(self, words: torch.Tensor, state: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """One target word: `words [R]` (the previous one) -> logits [R, V], the new state, attention [R, L]."""
        h1 = self.gru1(self.dropout_emb(self.embedding(words)), state["h"])
        scores = self.attention_score(torch.tanh(state["projected"] + self.hidden_attention(h1)[:, None])).squeeze(-1)
        alpha = scores.masked_fill(~state["mask"], float("-inf")).softmax(dim=-1)
        context = torch.bmm(alpha[:, None], state["annotations"]).squeeze(1)  # c'_t [R, 2H]
        if "visual" in state:
            context = context * state["visual"]
        h = self.gru2(self.context_projection(context), h1)
        logits = self.output(self.dropout_out(torch.tanh(self.bottleneck(h))))
        return logits, {**state, "h": h}, alpha


# --- reconstruction modules (appendix B) ----------------------------------------------------------------


class RegressionHead(nn.Module):
    """v' = tanh(W_rec h_T): the regression ("imagination") reconstruction."""

    def __init__(self, hidden_dim: int, feature_dim: int):
        super().__init__()
        self.linear = nn.Linear(hidden_dim, feature_dim)  # W_rec, hidden_dim x feature_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(h))


class LatentGenerator(RegressionHead):
    """Q-WAAE's G, v' = tanh(W_rec h_T) (W_rec 512 x 2048): the same map as `RegressionHead`,
    trained with MSE while the latent critic shapes h_T."""


class ConditionalGenerator(nn.Module):
    """G-WGAN's G, v' = tanh(W_rec dropout([z, h_T])) with z ~ N(0, I) (W_rec 640 x 2048)."""

    def __init__(self, hidden_dim: int, noise_dim: int, feature_dim: int, dropout: float):
        super().__init__()
        self.noise_dim = noise_dim
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(noise_dim + hidden_dim, feature_dim)

    def sample_noise(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I), [B, noise_dim], on h's device and dtype."""
        device = generator.device if generator is not None else h.device
        z = torch.randn(h.shape[0], self.noise_dim, generator=generator, device=device)
        return z.to(device=h.device, dtype=h.dtype)

    def forward(self, h: torch.Tensor, z: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if z is None:
            z = self.sample_noise(h, generator)
        if z.shape != (h.shape[0], self.noise_dim):
            raise ValueError(f"noise must be [B={h.shape[0]}, {self.noise_dim}], got {tuple(z.shape)}")
        return torch.tanh(self.linear(self.dropout(torch.cat([z, h], dim=-1))))


class FeatureCritic(nn.Module):
    """G-WGAN's D(v, h_T) = W3 relu(W2 relu(W1 [v, h_T])) -> [B] (unbounded: a Wasserstein critic).
    No batch normalisation (the paper found it did not help, and WGAN-GP's per-sample gradient
    penalty needs samples scored independently)."""

    def __init__(self, feature_dim: int, hidden_dim: int, hidden_dims: Sequence[int]):
        super().__init__()
        sizes = [feature_dim + hidden_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([v, h], dim=-1)).squeeze(-1)


class LatentCritic(nn.Module):
    """Q-WAAE's D(h) = W_adv h -> [B], a single linear layer (W_adv 512 x 1, plus a bias: it
    cancels in the Wasserstein terms and only shifts the sigmoid of `latent_generator_loss`)."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.linear = nn.Linear(hidden_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h).squeeze(-1)


def build_critic(config: MMTConfig) -> nn.Module | None:
    """The critic D of a reconstruction form: `FeatureCritic` for "g-wgan", `LatentCritic` for "q-waae",
    None for the forms without one."""
    if config.reconstruction == "g-wgan":
        return FeatureCritic(config.feature_dim, config.hidden_dim, config.critic_hidden_dims)
    if config.reconstruction == "q-waae":
        return LatentCritic(config.hidden_dim)
    return None


# --- the model ----------------------------------------------------------------------------------------


@register_model("mmt")
class MMTModel(nn.Module):
    """Q (`encoder`, `decoder`) plus the configured `generator` and `critic` (None when the form
    has none): "regression" and "q-waae"/"g-wgan" generators, "g-wgan"/"q-waae" critics."""

    config_class = MMTConfig

    def __init__(self, config: MMTConfig):
        super().__init__()
        self.config = c = config
        self.encoder = TextEncoder(c.source_vocab_size, c.embed_dim, c.hidden_dim, c.dropout_emb, c.dropout_ctx,
                                   c.pad_id)
        self.decoder = ConditionalGRUDecoder(c)
        self.generator: nn.Module | None = None
        self.critic: nn.Module | None = None
        if c.reconstruction == "regression":
            self.generator = RegressionHead(c.hidden_dim, c.feature_dim)
        elif c.reconstruction == "g-wgan":
            self.generator = ConditionalGenerator(c.hidden_dim, c.noise_dim, c.feature_dim, c.generator_dropout)
        elif c.reconstruction == "q-waae":
            self.generator = LatentGenerator(c.hidden_dim, c.feature_dim)
        if c.with_critic:
            self.critic = build_critic(c)

    def config_dict(self) -> dict:
        return asdict(self.config)

    # --- parameter groups (Q + G in one optimiser, D in the other) ---------------------------------------

    def translation_parameters(self) -> list[nn.Parameter]:
        """Q's parameters (encoder and decoder; a tied matrix once)."""
        seen: set[int] = set()
        params = []
        for module in (self.encoder, self.decoder):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def generator_parameters(self) -> list[nn.Parameter]:
        return [] if self.generator is None else list(self.generator.parameters())

    def critic_parameters(self) -> list[nn.Parameter]:
        return [] if self.critic is None else list(self.critic.parameters())

    # --- Q ----------------------------------------------------------------------------------------------

    def _check_features(self, features: torch.Tensor | None, batch: int, required: bool) -> torch.Tensor | None:
        if features is None:
            if required:
                raise ValueError("features are required: this Q reads the image (visual_context=True)")
            return None
        dim = self.config.feature_dim
        if not isinstance(features, torch.Tensor) or features.shape != (batch, dim) or not features.is_floating_point():
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be float [B={batch}, {dim}], got {shape}")
        return features

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`src [B, L]` (right-padded with pad_id, >= 1 real token per row) -> (S [B, L, 2H], mask [B, L])
        with S zero at padded positions (before dropout)."""
        mask = _check_tokens("src", src, self.config.pad_id, 1)
        return self.encoder(src.long(), mask), mask

    def decode_state(self, src: torch.Tensor, features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The decoding state of `decode_step` for `src` (and `features`, read when visual_context)."""
        annotations, mask = self.encode(src)
        features = self._check_features(features, src.shape[0], self.config.visual_context)
        return self.decoder.start(annotations, mask, features)

    def decode_step(self, last_tokens: torch.Tensor, state: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`beam_search`'s step: `last_tokens [R]` -> (log_probs [R, V] with PAD and BOS at -inf, state)."""
        logits, state, _ = self.decoder.step(last_tokens, state)
        dtype = torch.promote_types(logits.dtype, torch.float32)  # half-precision models sum in fp32
        never = torch.tensor([self.config.pad_id, self.config.bos_id], device=logits.device)
        return logits.log_softmax(dim=-1, dtype=dtype).index_fill(1, never, float("-inf")), state

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, features: torch.Tensor | None = None,
                return_logits: bool = False) -> dict[str, torch.Tensor]:
        """Teacher-forced pass of Q over `tgt [B, T]` (BOS ... EOS, right-padded with pad_id).

        Returns "loss" (cross entropy averaged over every non-pad target token of the batch),
        "num_tokens" (their count, for weighting across ranks or batches), "h_T" [B, H] (the final
        state, see `final_state`) and, when `return_logits`, "logits" [B, T', V] for targets
        tgt[:, 1:T'+1] (T' = the longest row's target count; padded positions hold junk).
        `features [B, feature_dim]` are required when visual_context, ignored otherwise.
        """
        c = self.config
        state = self.decode_state(src, features)
        target_mask = _check_tokens("tgt", tgt, c.pad_id, 2)
        if tgt.shape[0] != src.shape[0]:
            raise ValueError(f"tgt has {tgt.shape[0]} rows for {src.shape[0]} source sentences")
        length = int(target_mask.sum(dim=1).max())  # right padding: no step past the longest row
        tgt = tgt[:, :length].long()
        inputs, targets, keep = tgt[:, :-1], tgt[:, 1:], target_mask[:, 1:length]
        logits, states = [], []
        for t in range(inputs.shape[1]):
            step_logits, state, _ = self.decoder.step(inputs[:, t], state)
            logits.append(step_logits)
            states.append(state["h"])
        logits_bt = torch.stack(logits, dim=1)  # [B, T-1, V]
        hs = torch.stack(states, dim=1)  # [B, T-1, H]: hs[:, t] predicted targets[:, t]
        weights = keep.to(hs.dtype)
        nll = F.cross_entropy(logits_bt.flatten(0, 1).float(), targets.flatten(), reduction="none").view_as(keep)
        num_tokens = weights.sum()
        loss = (nll * weights).sum() / num_tokens.clamp(min=1.0)
        if c.final_state == "last":
            last = keep.sum(dim=1) - 1  # the step that predicted each sample's EOS (its last real target)
            h_T = hs[torch.arange(hs.shape[0], device=hs.device), last]
        else:
            h_T = (hs * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        out = {"loss": loss, "num_tokens": num_tokens.detach(), "h_T": h_T}
        if return_logits:
            out["logits"] = logits_bt
        return out

    def translation_loss(self, src: torch.Tensor, tgt: torch.Tensor,
                         features: torch.Tensor | None = None) -> torch.Tensor:
        """L_Q: the token-mean cross entropy of `forward`."""
        return self(src, tgt, features)["loss"]

    # --- reconstruction helpers -------------------------------------------------------------------------

    def reconstruct(self, h_T: torch.Tensor, noise: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """v' = G(h_T) ([B, feature_dim]); for "g-wgan" G([z, h_T]) with `noise` z (drawn when None,
        from `generator` if given)."""
        if self.generator is None:
            raise ValueError("reconstruction='none' has no generator")
        if isinstance(self.generator, ConditionalGenerator):
            return self.generator(h_T, noise, generator=generator)
        if noise is not None:
            raise ValueError(f"reconstruction={self.config.reconstruction!r} takes no noise")
        return self.generator(h_T)

    def sample_prior(self, batch_size: int, like: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Q-WAAE's "true" latent codes h' ~ N(0, prior_std^2 I), [batch_size, hidden_dim] (on `like`'s
        device and dtype). Note h_T of a GRU lies in (-1, 1) while N(0, 1) does not: the critic
        can always tell some prior samples apart; that is the paper's choice."""
        _positive_int("batch_size", batch_size)
        ref = like if like is not None else next(self.parameters())
        device = generator.device if generator is not None else ref.device
        h = torch.randn(batch_size, self.config.hidden_dim, generator=generator, device=device)
        return (h * self.config.prior_std).to(device=ref.device, dtype=ref.dtype)

    # --- translation ------------------------------------------------------------------------------------

    def translate(self, src: torch.Tensor, features: torch.Tensor | None = None, beam_size: int = 5,
                  max_len: int | None = None, length_penalty: float = 1.0) -> Hypotheses:
        """Beam-search translations of `src [B, L]` (in eval mode, no gradient) with the project's
        `beam_search`: tokens without BOS/EOS, never PAD or BOS, and their length-normalised
        log-probabilities. `beam_size=1` is greedy decoding."""
        c = self.config
        max_len = c.max_len if max_len is None else max_len
        with eval_mode(self), torch.no_grad():
            state = self.decode_state(src, features)
            return beam_search(self.decode_step, state, batch_size=src.shape[0], bos_id=c.bos_id, eos_id=c.eos_id,
                               beam_size=beam_size, max_len=max_len, length_penalty=length_penalty)
