"""Visual pivoting (multilingual captioning as an incidental translator): one image encoder, one
Show-Attend-Tell decoder per language.

Training is ordinary captioning: the image encoder g gives a spatial feature map, and each
language's LSTM decoder f_k attends over its positions to caption the image in language k
(teacher forcing, cross entropy plus Show-Attend-Tell's doubly stochastic attention penalty).
Because all decoders read one feature space, an intermediate feature map z of g (the *pivot*)
carries what the captions of every language have in common. At test time the paper's feedback
propagation exploits that: z is optimised by gradient descent, the model's weights fixed, so that
the decoders of the support languages K assign their given captions a low loss,
`z* = argmin_z sum_{k in K} E_k(t_k, f_k(z))`, and the target language is then decoded from z*.
Started from z = g(image) this uses a second-language caption to improve the caption of an
image; started from z = g(noise) (pixels drawn with the training data's mean and standard
deviation) it translates a caption with no image at all.

The encoder is any network of `dist_train.models.image_encoders` with a pivot split, kept in its
own (torchvision) state-dict layout so `load_resnet_weights(model.encoder, path)` loads ImageNet
files; `encode_pivot` runs it up to `pivot_layer`, `features_from_pivot` from there to its last
spatial map (never the global pool: attention wants positions). Pivot layer names:

- ResNets: "conv1", "maxpool" (the stem's output), "layer1".."layer4" (a stage's output) or a
  block "layer3.0", "layer3.1", ... The paper's "Conv-40" of ResNet-50 (1 stem convolution + 3 x 3
  in layer1 + 4 x 3 in layer2 + 6 x 3 in layer3) is the output of "layer3", the default; its
  held-out alternatives Conv-22 and Conv-49 are "layer2" and "layer4". The stem's "bn1" and "relu"
  are not offered: the stem's ReLU works in place and would overwrite a pivot held there.
- spatial_cnn: "stage1".."stage4", the output of each stride-2 conv/BN/ReLU triple.

The encoder's classifier `fc` is kept only for the weight files' layout: it is built with one
output, frozen and never run (so DDP finds no unused trainable parameter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dist_train.models.beam_search import Hypotheses, beam_search, eval_mode
from dist_train.models.image_encoders import SpatialCNN, build_image_encoder, image_encoder_names
from dist_train.models.registry import register_model
from dist_train.models.resnet import ARCHS as RESNET_ARCHS
from dist_train.models.resnet import ResNet

__all__ = ["LanguageDecoder", "PivotCaptioner", "PivotCaptionerConfig", "pivot_layer_names"]

OPTIMIZERS = ("adam", "sgd")
REDUCTIONS = ("mean", "none")


# --- where the encoder can be split -------------------------------------------------------------------


def _resnet_trunk(blocks: Sequence[int]) -> tuple[list[str], dict[str, int]]:
    """Submodule names that, run in order, are a ResNet up to layer4; pivot name -> unit index."""
    units = ["conv1", "bn1", "relu", "maxpool"]
    pivots = {"conv1": 0, "maxpool": 3}
    for stage, n in enumerate(blocks, start=1):
        for i in range(n):
            pivots[f"layer{stage}.{i}"] = len(units)
            units.append(f"layer{stage}.{i}")
        pivots[f"layer{stage}"] = len(units) - 1
    return units, pivots


def _spatial_trunk(num_modules: int) -> tuple[list[str], dict[str, int]]:
    """SpatialCNN's `features` (conv, BN, ReLU per stage), without its grid pool."""
    units = [f"features.{i}" for i in range(num_modules)]
    return units, {f"stage{k}": 3 * k - 1 for k in range(1, num_modules // 3 + 1)}


def _trunk_of(encoder: nn.Module) -> tuple[list[str], dict[str, int]]:
    if isinstance(encoder, ResNet):
        return _resnet_trunk([len(getattr(encoder, f"layer{s}")) for s in range(1, 5)])
    if isinstance(encoder, SpatialCNN):
        return _spatial_trunk(len(encoder.features))
    raise ValueError(f"image network {type(encoder).__name__} has no pivot split")


def _pivot_table(arch: str) -> dict[str, int]:
    if arch in RESNET_ARCHS:
        return _resnet_trunk(RESNET_ARCHS[arch][1])[1]
    if arch == "spatial_cnn":
        return _spatial_trunk(len(SpatialCNN(num_classes=1).features))[1]
    raise ValueError(f"image_arch {arch!r} has no pivot split; use one of {sorted([*RESNET_ARCHS, 'spatial_cnn'])}")


def pivot_layer_names(arch: str) -> list[str]:
    """Every `pivot_layer` name `arch` accepts, input side first."""
    table = _pivot_table(arch)
    return sorted(table, key=lambda name: (table[name], "." not in name))


def _feature_channels(encoder: nn.Module) -> int:
    if isinstance(encoder, ResNet):
        return encoder.feature_dim
    return [m for m in encoder.features if isinstance(m, nn.BatchNorm2d)][-1].num_features


# --- config -------------------------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass
class PivotCaptionerConfig:
    """Architecture of a visual-pivoting captioner; defaults are the paper's.

    languages: language codes; their order is the language index `caption_loss` etc. accept.
    vocab_sizes: one per language (the same number repeated when one shared vocabulary is used;
        the paper uses 10 000 words per language). pad/bos/eos ids are shared by all of them.
    image_arch: a name of `build_image_encoder` with a pivot split (resnet18..152, spatial_cnn).
    pivot_layer: where `encode_pivot` stops (see the module docstring; `pivot_layer_names(arch)`).
    attention_dim/embed_dim/decoder_dim: 512 each, as in the paper (Xu et al.'s settings).
    dropout: before each decoder's output layer.
    attention_regularisation: weight of the doubly stochastic attention penalty (0 disables).
    max_caption_len: the longest caption `generate` produces, EOS included.
    """

    languages: list[str]
    vocab_sizes: list[int]
    image_arch: str = "resnet50"
    pivot_layer: str = "layer3"
    attention_dim: int = 512
    embed_dim: int = 512
    decoder_dim: int = 512
    dropout: float = 0.5
    attention_regularisation: float = 1.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_caption_len: int = 30

    def __post_init__(self) -> None:
        if isinstance(self.languages, str) or not isinstance(self.languages, Sequence) or not self.languages:
            raise ValueError(f"languages must be a non-empty list of language codes, got {self.languages!r}")
        self.languages = list(self.languages)
        for lang in self.languages:
            if not isinstance(lang, str) or not lang.strip():
                raise ValueError(f"languages must be non-empty strings, got {lang!r}")
        duplicates = sorted({lang for lang in self.languages if self.languages.count(lang) > 1})
        if duplicates:
            raise ValueError(f"languages must be distinct, {duplicates} repeated")
        if isinstance(self.vocab_sizes, (str, int)) or not isinstance(self.vocab_sizes, Sequence):
            raise ValueError(f"vocab_sizes must be a list with one size per language, got {self.vocab_sizes!r}")
        self.vocab_sizes = list(self.vocab_sizes)
        if len(self.vocab_sizes) != len(self.languages):
            raise ValueError(f"vocab_sizes has {len(self.vocab_sizes)} entries for {len(self.languages)} languages")
        for size in self.vocab_sizes:
            _positive_int("vocab_sizes entries", size)
        for name in ("attention_dim", "embed_dim", "decoder_dim", "max_caption_len"):
            _positive_int(name, getattr(self, name))
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        weight = self.attention_regularisation
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"attention_regularisation must be a finite number >= 0, got {weight!r}")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in ids.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
            if value >= min(self.vocab_sizes):
                raise ValueError(f"{name}={value} is outside the smallest vocabulary (size {min(self.vocab_sizes)})")
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"pad_id, bos_id and eos_id must be distinct, got {ids}")
        if self.image_arch not in image_encoder_names():
            raise ValueError(f"image_arch must be one of {image_encoder_names()}, got {self.image_arch!r}")
        table = _pivot_table(self.image_arch)
        if self.pivot_layer not in table:
            stages = [name for name in pivot_layer_names(self.image_arch) if "." not in name]
            blocks = " (or a block such as 'layer3.0')" if self.image_arch in RESNET_ARCHS else ""
            raise ValueError(
                f"pivot_layer must be a layer of {self.image_arch}: one of {stages}{blocks}, got {self.pivot_layer!r}"
            )


# --- one language's decoder ---------------------------------------------------------------------------


class LanguageDecoder(nn.Module):
    """Show-Attend-Tell's decoder: Bahdanau attention over positions, a sigmoid gate on the
    context, an LSTM cell fed the word and the context, h0/c0 from the mean feature."""

    def __init__(self, vocab_size: int, feature_dim: int, attention_dim: int, embed_dim: int,
                 decoder_dim: int, dropout: float, pad_id: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.feature_attention = nn.Linear(feature_dim, attention_dim)
        self.hidden_attention = nn.Linear(decoder_dim, attention_dim)
        self.attention_score = nn.Linear(attention_dim, 1)
        self.gate = nn.Linear(decoder_dim, feature_dim)
        self.lstm = nn.LSTMCell(embed_dim + feature_dim, decoder_dim)
        self.init_h = nn.Linear(feature_dim, decoder_dim)
        self.init_c = nn.Linear(feature_dim, decoder_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(decoder_dim, vocab_size)

    def start(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`features [R, N, C]` -> h0, c0 `[R, decoder_dim]` and the attention's projection of the
        features `[R, N, attention_dim]` (computed once per caption, not per word)."""
        mean = features.mean(dim=1)
        return self.init_h(mean), self.init_c(mean), self.feature_attention(features)

    def step(self, words: torch.Tensor, h: torch.Tensor, c: torch.Tensor, features: torch.Tensor,
             projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One word: `words [R]` (the previous word) -> logits `[R, vocab]`, h, c, attention `[R, N]`."""
        scores = self.attention_score(torch.tanh(projected + self.hidden_attention(h)[:, None])).squeeze(-1)
        alpha = scores.softmax(dim=-1)
        context = torch.sigmoid(self.gate(h)) * (alpha[..., None] * features).sum(dim=1)
        h, c = self.lstm(torch.cat([self.embedding(words), context], dim=-1), (h, c))
        return self.output(self.dropout(h)), h, c, alpha


# --- the model ----------------------------------------------------------------------------------------


@register_model("pivot")
class PivotCaptioner(nn.Module):
    """Image encoder split at the pivot + one `LanguageDecoder` per language (`decoders[i]` is
    `config.languages[i]`'s)."""

    config_class = PivotCaptionerConfig

    def __init__(self, config: PivotCaptionerConfig):
        super().__init__()
        self.config = c = config
        # One output: `fc` is never run, it only keeps the weight files' layout (see the docstring).
        self.encoder = build_image_encoder(c.image_arch, num_classes=1)
        self.encoder.fc.requires_grad_(False)
        units, pivots = _trunk_of(self.encoder)
        split = pivots[c.pivot_layer] + 1
        self._to_pivot, self._from_pivot = units[:split], units[split:]  # names, resolved per call
        self.feature_dim = _feature_channels(self.encoder)
        self.decoders = nn.ModuleList(
            LanguageDecoder(size, self.feature_dim, c.attention_dim, c.embed_dim, c.decoder_dim, c.dropout, c.pad_id)
            for size in c.vocab_sizes
        )
        # The training images' per-channel mean and std in the space the encoder reads (set by the
        # training objective from the data, kept in checkpoints and exports): the noise that starts
        # caption-only pivoting is drawn with them.
        self.register_buffer("pixel_mean", torch.zeros(3))
        self.register_buffer("pixel_std", torch.ones(3))

    def set_pixel_statistics(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> None:
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
            raise ValueError(f"pixel statistics need 3 means and 3 positive stds, got {mean.tolist()}, {std.tolist()}")
        self.pixel_mean.copy_(mean)
        self.pixel_std.copy_(std)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def language_index(self, language: int | str) -> int:
        """Index of a language given by code or by index."""
        languages = self.config.languages
        if isinstance(language, str):
            if language not in languages:
                raise ValueError(f"unknown language {language!r}; this model captions {languages}")
            return languages.index(language)
        if isinstance(language, int) and not isinstance(language, bool) and 0 <= language < len(languages):
            return language
        raise ValueError(f"language must be a code in {languages} or an index below {len(languages)}, got {language!r}")

    def decoder(self, language: int | str) -> LanguageDecoder:
        return self.decoders[self.language_index(language)]

    # --- the encoder, split at the pivot ---------------------------------------------------------------

    def _run(self, names: list[str], x: torch.Tensor) -> torch.Tensor:
        for name in names:
            x = self.encoder.get_submodule(name)(x)
        return x

    def encode_pivot(self, images: torch.Tensor) -> torch.Tensor:
        """`images [B, 3, H, W]` (normalised as the encoder expects) -> z, the output of `pivot_layer`."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        return self._run(self._to_pivot, images)

    def features_from_pivot(self, z: torch.Tensor) -> torch.Tensor:
        """The rest of the encoder up to its last spatial map, flattened: `[B, N = H' * W', C]`."""
        return self._run(self._from_pivot, z).flatten(2).transpose(1, 2)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """`features_from_pivot(encode_pivot(images))`: what the decoders attend over."""
        return self.features_from_pivot(self.encode_pivot(images))

    # --- captioning ------------------------------------------------------------------------------------

    def caption_loss(self, features: torch.Tensor, tokens: torch.Tensor, language: int | str,
                     reduction: str = "mean", attention_regularisation: float | None = None) -> torch.Tensor:
        """Teacher-forced loss of `tokens [B, T]` (BOS ... EOS, right-padded with pad_id) given
        `features [B, N, C]`, under `language`'s decoder.

        Cross entropy over the non-pad targets `tokens[:, 1:]` plus `attention_regularisation`
        (default: the config's) times Show-Attend-Tell's penalty `mean_i (1 - sum_t alpha_ti)^2`
        (sum over the steps that predict a real token; mean over positions, as the common
        PyTorch implementation does, so its scale does not depend on the map size).
        reduction "mean": cross entropy averaged over all target tokens of the batch, plus the
        batch mean of the penalty (the training loss); "none": `[B]`, each sample's mean over its
        own tokens plus its own penalty (what feedback propagation sums, so that each sample's
        pivot gets the gradient it would get alone).
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        decoder = self.decoder(language)
        if features.dim() != 3 or features.shape[2] != self.feature_dim:
            raise ValueError(f"features must be [B, N, {self.feature_dim}], got {tuple(features.shape)}")
        if tokens.dim() != 2 or tokens.shape[0] != features.shape[0] or tokens.shape[1] < 2:
            raise ValueError(
                f"tokens must be [B={features.shape[0]}, T>=2] (BOS ... EOS), got {tuple(tokens.shape)}"
            )
        if tokens.is_floating_point():
            raise ValueError(f"tokens must be integer ids, got {tokens.dtype}")
        weight = self.config.attention_regularisation if attention_regularisation is None else attention_regularisation
        pad = self.config.pad_id
        # Right padding: no step past the longest caption of the batch is needed.
        length = int((tokens != pad).sum(dim=1).max())
        tokens = tokens[:, :max(length, 2)].long()
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        keep = (targets != pad).to(features.dtype)
        h, c, projected = decoder.start(features)
        logits, alphas = [], []
        for t in range(inputs.shape[1]):
            step_logits, h, c, alpha = decoder.step(inputs[:, t], h, c, features, projected)
            logits.append(step_logits)
            alphas.append(alpha)
        logits_bt = torch.stack(logits, dim=1)  # [B, T-1, V]
        nll = F.cross_entropy(logits_bt.flatten(0, 1), targets.flatten(), reduction="none").view_as(keep) * keep
        attention = (torch.stack(alphas, dim=1) * keep[..., None]).sum(dim=1)  # [B, N]
        penalty = ((1.0 - attention) ** 2).mean(dim=1)  # [B]
        if reduction == "none":
            return nll.sum(dim=1) / keep.sum(dim=1).clamp(min=1.0) + weight * penalty
        return nll.sum() / keep.sum().clamp(min=1.0) + weight * penalty.mean()

    def forward(self, images: torch.Tensor, tokens: torch.Tensor | Mapping[int | str, torch.Tensor],
                language: int | str | torch.Tensor | None = None):
        """The training loss of captions `tokens` of `images` in `language` (see `caption_loss`).

        `tokens` may instead map languages to captions of the same images (`language` None): the
        summed loss over them, the images encoded once. One forward through every decoder is what
        DDP wants (a decoder left out of a forward is an unused parameter to it).

        `language` may also be a `[B]` tensor of language indices, one per sample (a training batch of
        unpaired captions, each image with one caption in some language): returns `(loss, per_language
        [L], targets [L])`, the loss averaged over every target token of the batch, each language's own
        mean (0 where the batch has none) and its target-token count.
        """
        features = self.encode(images)
        if isinstance(language, torch.Tensor):
            return self._per_sample_language_loss(features, tokens, language)
        if isinstance(tokens, Mapping):
            if language is not None or not tokens:
                raise ValueError("give either tokens and a language, or a non-empty {language: tokens} mapping")
            return sum((self.caption_loss(features, t, lang) for lang, t in tokens.items()), features.new_zeros(()))
        if language is None:
            raise ValueError("language is required when tokens is a single tensor")
        return self.caption_loss(features, tokens, language)

    def _per_sample_language_loss(self, features: torch.Tensor, tokens: torch.Tensor, languages: torch.Tensor):
        if languages.shape != (features.shape[0],):
            raise ValueError(f"languages must be [B={features.shape[0]}], got {tuple(languages.shape)}")
        n = len(self.config.languages)
        if bool(((languages < 0) | (languages >= n)).any()):
            raise ValueError(f"language indices must be in [0, {n}), got {sorted(set(languages.tolist()))}")
        per_language = features.new_zeros(n)
        targets = features.new_zeros(n)
        total = features.new_zeros(())
        for index in range(n):
            rows = (languages == index).nonzero().flatten()
            if rows.numel() == 0:
                continue
            lang_tokens = tokens[rows]
            count = (lang_tokens[:, 1:] != self.config.pad_id).sum().to(features.dtype)
            loss = self.caption_loss(features[rows], lang_tokens, index)
            total = total + loss * count
            per_language[index] = loss.detach()
            targets[index] = count
        return total / targets.sum().clamp(min=1.0), per_language, targets

    def generate(self, features: torch.Tensor, language: int | str, beam_size: int = 5, max_len: int | None = None,
                 length_penalty: float = 1.0) -> Hypotheses:
        """Beam-search captions of `features [B, N, C]` in `language` (in eval mode): tokens
        without BOS/EOS and their length-normalised log-probabilities. PAD and BOS are never
        generated."""
        decoder = self.decoder(language)
        if features.dim() != 3 or features.shape[2] != self.feature_dim:
            raise ValueError(f"features must be [B, N, {self.feature_dim}], got {tuple(features.shape)}")
        c = self.config
        never = torch.tensor([c.pad_id, c.bos_id], device=features.device)

        def step(last: torch.Tensor, state: tuple[torch.Tensor, ...]):
            h, cell, feats, projected = state
            logits, h, cell, _ = decoder.step(last, h, cell, feats, projected)
            dtype = torch.promote_types(logits.dtype, torch.float32)  # half-precision models sum in fp32
            log_probs = logits.log_softmax(dim=-1, dtype=dtype).index_fill(1, never, float("-inf"))
            return log_probs, (h, cell, feats, projected)

        max_len = c.max_caption_len if max_len is None else max_len
        with eval_mode(self), torch.no_grad():
            h, cell, projected = decoder.start(features)
            return beam_search(step, (h, cell, features, projected), batch_size=features.shape[0], bos_id=c.bos_id,
                               eos_id=c.eos_id, beam_size=beam_size, max_len=max_len, length_penalty=length_penalty)

    # --- feedback propagation --------------------------------------------------------------------------

    def pivot_energy(self, z: torch.Tensor, given: Sequence[tuple[int | str, torch.Tensor]],
                     attention_regularisation: float | None = None) -> torch.Tensor:
        """`[B]`: each sample's sum over the support languages of its given caption's loss
        (`caption_loss(..., reduction="none")`) under that language's decoder, from pivot `z`
        (in the model's current mode; `feedback_propagation` minimises it in eval mode)."""
        if not given:
            raise ValueError("given must hold at least one (language, tokens) pair")
        features = self.features_from_pivot(z)
        energy = features.new_zeros(features.shape[0])
        for language, tokens in given:
            energy = energy + self.caption_loss(features, tokens, language, reduction="none",
                                                attention_regularisation=attention_regularisation)
        return energy

    def feedback_propagation(self, z0: torch.Tensor, given: Sequence[tuple[int | str, torch.Tensor]], steps: int,
                             lr: float, optimizer: str = "adam",
                             attention_regularisation: float | None = None) -> torch.Tensor:
        """The paper's inference: `steps` gradient steps on the pivot alone (from a copy of `z0`) to
        minimise the summed loss of the `given` captions, one `(language, tokens [B, T])` per
        support language; returns the optimised pivot, detached.

        Batched, one pivot per sample: the objective is the sum over samples of each sample's own
        loss, so each pivot gets exactly its own gradient and (Adam and SGD being elementwise) a
        batch gives what each sample gives alone. Runs in eval mode (restored after); the model's
        weights get no gradient and do not change. `attention_regularisation` defaults to the
        config's weight (the training loss); 0 gives the paper's pure cross-entropy energy.
        """
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not given:
            raise ValueError("given must hold at least one (language, tokens) pair")
        for language, tokens in given:
            self.language_index(language)
            if tokens.dim() != 2 or tokens.shape[0] != z0.shape[0]:
                raise ValueError(f"given tokens must be [B={z0.shape[0]}, T], got {tuple(tokens.shape)}")
        with eval_mode(self), torch.inference_mode(False), torch.enable_grad():
            z = z0.detach().clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr) if optimizer == "adam" else torch.optim.SGD([z], lr=lr)
            for _ in range(steps):
                energy = self.pivot_energy(z, given, attention_regularisation).sum()
                (z.grad,) = torch.autograd.grad(energy, [z])
                opt.step()
        return z.detach()

    def noise_pivot(self, batch_size: int, image_size: int | tuple[int, int], pixel_mean: Sequence[float] | None = None,
                    pixel_std: Sequence[float] | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = encode_pivot(xi) for Gaussian noise images xi with per-channel `pixel_mean`/`pixel_std`
        (in the space the encoder reads, i.e. after any normalisation; default: the training images'
        statistics the model holds): the paper's starting pivot when only a caption is given. Eval
        mode, no gradient."""
        pixel_mean = self.pixel_mean.tolist() if pixel_mean is None else pixel_mean
        pixel_std = self.pixel_std.tolist() if pixel_std is None else pixel_std
        _positive_int("batch_size", batch_size)
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        _positive_int("image_size", height)
        _positive_int("image_size", width)
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or any(s < 0 for s in pixel_std):
            raise ValueError(f"pixel_mean and pixel_std need 3 values (std >= 0), got {pixel_mean!r}, {pixel_std!r}")
        weight = next(self.encoder.parameters())
        noise = torch.randn(batch_size, 3, height, width, generator=generator,
                            device=generator.device if generator is not None else weight.device)
        noise = noise.to(device=weight.device, dtype=weight.dtype)
        mean = torch.tensor(pixel_mean, dtype=weight.dtype, device=weight.device).view(1, 3, 1, 1)
        std = torch.tensor(pixel_std, dtype=weight.dtype, device=weight.device).view(1, 3, 1, 1)
        with eval_mode(self), torch.no_grad():
            return self.encode_pivot(noise * std + mean)

    def translate(self, given_tokens: torch.Tensor, source_language: int | str, target_language: int | str,
                  z0: torch.Tensor, steps: int, lr: float, beam_size: int = 5, max_len: int | None = None,
                  length_penalty: float = 1.0, optimizer: str = "adam") -> Hypotheses:
        """Caption in `target_language` from the pivot that feedback propagation fits to
        `given_tokens` in `source_language`, starting from `z0` (an image's pivot or `noise_pivot`)."""
        z = self.feedback_propagation(z0, [(source_language, given_tokens)], steps=steps, lr=lr, optimizer=optimizer)
        with torch.no_grad(), eval_mode(self):
            features = self.features_from_pivot(z)
        return self.generate(features, target_language, beam_size=beam_size, max_len=max_len,
                             length_penalty=length_penalty)
