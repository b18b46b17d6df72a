"""Globetrotter (Suris et al.): text and image encoders whose 128-d embeddings meet in one space.

Four projection heads, one per loss and side (the paper's and the published code's modules):
- `text_cross` (text -> image, read from the `<txt>`/BOS token) and `image_cross` meet in L_x;
- `image_visual` compares two augmented views of an image in L_v and gives the image-image
  similarity of the transitive alpha;
- `text_text` (mean over the sentence's tokens in the published code) is the sentence embedding
  trained by L_t and used for translation retrieval.
The cloze head (L_c) is tied to the word embeddings. All embeddings are L2-normalised.

`text_heads: shared` builds one text head for L_x, L_t and retrieval, which is what the published
code's forward does without `--two_heads_modality`: with two heads, the head that retrieval reads
is trained by L_t alone and L_x never shapes it, so the images cannot organise the text space that
translation is measured in. `image_heads: shared` does the same on the image side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from dist_train.models.heads import ProjectionHead
from dist_train.models.image_encoders import build_image_encoder, image_encoder_names
from dist_train.models.registry import register_model
from dist_train.models.resnet import load_resnet_weights
from dist_train.models.text_encoder import TextEncoder, bert_init

__all__ = ["Globetrotter", "GlobetrotterConfig"]

TEXT_POOLINGS = ("mean", "first")
IMAGE_HEADS = ("separate", "shared")
TEXT_HEADS = ("separate", "shared")


@dataclass
class GlobetrotterConfig:
    """Architecture of a Globetrotter model; defaults are the paper's (and the published code's).

    vocab_size: pieces in the shared sentencepiece vocabulary (the paper uses 30 000).
    image_arch: the image network, by name from `dist_train.models.image_encoders` (resnet18 as in
        the paper; spatial_cnn for small rendered scenes, where a global pool loses the relations).
    image_weights: local path of weights for the image network: a torchvision ImageNet file for the
        ResNets (.pth or .safetensors), or the image network of an earlier run (`dist-train export`'s
        `image_encoder.safetensors`); None leaves it randomly initialised. Its `fc` is never kept.
    text_pooling: what the text-text head reads: "mean" over the sentence's tokens (words and EOS,
        not the `<txt>` token), as the published code does; "first" reads the `<txt>` token, as the
        paper's appendix B.3 describes its single prediction head.
    image_heads: "separate" gives L_v and L_x their own image head (the four heads the paper and
        the code build); "shared" feeds both from one head, which is what the published code's
        forward pass actually does (it calls the image->image head twice).
    text_heads: "separate" builds the text->image head (reads `<txt>`) and the text-text head
        (reads `text_pooling`), as the paper describes; "shared" feeds L_x, L_t and retrieval from
        one head that reads `text_pooling`, as the published code's default forward does.
    text_only: the paper's text-only baseline: no image network and no text->image head are built.
    pad_id/bos_id/eos_id/mask_id: ids of the shared vocabulary (`mask_id` is
        `piece_to_id("<mask>")`, 4 in vocabularies trained by `dist-train preprocess`).
    """

    vocab_size: int
    hidden: int = 512
    layers: int = 4
    heads: int = 4
    intermediate: int = 1024
    dropout: float = 0.1
    max_length: int = 64
    embed_dim: int = 128
    image_arch: str = "resnet18"
    image_weights: str | None = None
    image_heads: str = "separate"
    text_heads: str = "separate"
    text_pooling: str = "mean"
    text_only: bool = False
    init_std: float = 0.02
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    mask_id: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden", "layers", "heads", "intermediate", "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_length < 2:
            raise ValueError(f"max_length must hold at least BOS and EOS, got {self.max_length}")
        if self.text_pooling not in TEXT_POOLINGS:
            raise ValueError(f"text_pooling must be one of {TEXT_POOLINGS}, got {self.text_pooling!r}")
        if self.image_heads not in IMAGE_HEADS:
            raise ValueError(f"image_heads must be one of {IMAGE_HEADS}, got {self.image_heads!r}")
        if self.text_heads not in TEXT_HEADS:
            raise ValueError(f"text_heads must be one of {TEXT_HEADS}, got {self.text_heads!r}")
        if self.image_arch not in image_encoder_names():
            raise ValueError(f"image_arch must be one of {image_encoder_names()}, got {self.image_arch!r}")
        if self.text_only and self.image_weights is not None:
            raise ValueError("image_weights given for a text_only model, which has no image network")
        ids = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id, "mask_id": self.mask_id}
        for name, value in ids.items():
            if not 0 <= value < self.vocab_size:
                raise ValueError(f"{name}={value} is outside the vocabulary (size {self.vocab_size})")
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"special token ids must be distinct, got {ids}")

    @property
    def special_ids(self) -> tuple[int, int, int, int]:
        """Ids cloze masking must never choose or draw."""
        return (self.pad_id, self.bos_id, self.eos_id, self.mask_id)


@register_model("globetrotter")
class Globetrotter(nn.Module):
    """Text encoder + image network + projection heads (four, or fewer when shared) + tied cloze head."""

    config_class = GlobetrotterConfig

    def __init__(self, config: GlobetrotterConfig):
        super().__init__()
        self.config = config
        c = config
        self.text_encoder = TextEncoder(
            vocab_size=c.vocab_size, hidden=c.hidden, layers=c.layers, heads=c.heads,
            intermediate=c.intermediate, dropout=c.dropout, max_length=c.max_length, pad_id=c.pad_id,
            init_std=c.init_std,
        )
        self.text_text_head = ProjectionHead(c.hidden, c.embed_dim)
        if not c.text_only:
            if c.text_heads == "separate":
                self.text_cross_head = ProjectionHead(c.hidden, c.embed_dim)
            # An image network whose classifier `fc` is the projection of its features to `hidden` (as
            # in the published code: its heads then read hidden-sized image features).
            self.image_encoder = build_image_encoder(c.image_arch, num_classes=c.hidden)
            self.image_cross_head = ProjectionHead(c.hidden, c.embed_dim)
            if c.image_heads == "separate":
                self.image_visual_head = ProjectionHead(c.hidden, c.embed_dim)
        for module in self._bert_initialised():
            module.apply(lambda m: bert_init(m, c.init_std))
        if c.image_weights is not None:
            load_resnet_weights(self.image_encoder, c.image_weights)
            # A 1000-way ImageNet classifier would fit a hidden=1000 projection: never keep it.
            bert_init(self.image_encoder.fc, c.init_std)

    def _bert_initialised(self) -> list[nn.Module]:
        modules: list[nn.Module] = [self.text_text_head]
        if not self.config.text_only:
            if self.config.text_heads == "separate":
                modules.append(self.text_cross_head)
            modules += [self.image_encoder.fc, self.image_cross_head]
            if self.config.image_heads == "separate":
                modules.append(self.image_visual_head)
        return modules

    @property
    def has_images(self) -> bool:
        return not self.config.text_only

    def encode_image(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """`images [B, 3, H, W]` float, ImageNet-normalised -> `image_cross` (L_x) and
        `image_visual` (L_v, alpha), both `[B, embed_dim]`, unit norm. Encode both augmented views
        of a batch in one call (concatenated) so BatchNorm sees them together."""
        if self.config.text_only:
            raise RuntimeError("this Globetrotter model is text_only: it has no image network")
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, H, W], got {images.dtype} {tuple(images.shape)}")
        features = self.image_encoder(images)
        cross = self.image_cross_head(features)
        visual = self.image_visual_head(features) if self.config.image_heads == "separate" else cross
        return {"image_cross": cross, "image_visual": visual}

    def pool_text(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """What the text-text head reads: the `<txt>` token, or the mean over positions 1.. that
        are not PAD (the sentence's words and its EOS)."""
        if self.config.text_pooling == "first":
            return hidden[:, 0]
        keep = (tokens != self.config.pad_id)
        keep[:, 0] = False
        weights = keep.to(hidden.dtype)
        return (hidden * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)

    def encode_text(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """`tokens [B, T]` (BOS/`<txt>` first, EOS, PAD) -> `text_text` (L_t, translation
        retrieval), `text_cross` (L_x; absent when text_only), both `[B, embed_dim]` unit norm, and
        `hidden [B, T, hidden]` for the cloze head."""
        hidden = self.text_encoder(tokens)
        out = {"text_text": self.text_text_head(self.pool_text(hidden, tokens)), "hidden": hidden}
        if not self.config.text_only:
            shared = self.config.text_heads == "shared"
            out["text_cross"] = out["text_text"] if shared else self.text_cross_head(hidden[:, 0])
        return out

    def cloze_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """`[..., hidden] -> [..., vocab_size]`; see `TextEncoder.cloze_logits`."""
        return self.text_encoder.cloze_logits(hidden)

    def forward(
        self,
        tokens: torch.Tensor,
        images: torch.Tensor | None = None,
        cloze_positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Everything one training step needs, through `forward` so DDP's hooks see it.

        Returns `encode_text`'s outputs, `encode_image`'s when `images` is given, and
        `cloze_logits [N, V]` for the N positions where the bool `cloze_positions [B, T]` is True.
        """
        out = self.encode_text(tokens)
        if images is not None:
            out.update(self.encode_image(images))
        if cloze_positions is not None:
            out["cloze_logits"] = self.cloze_logits(out["hidden"][cloze_positions])
        return out

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level part and in total; a tied tensor is counted once."""
        seen: set[int] = set()
        counts: dict[str, int] = {}
        for name, child in self.named_children():
            n = 0
            for p in child.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    n += p.numel()
            counts[name] = n
        counts["total"] = sum(counts.values())
        return counts

    def config_dict(self) -> dict:
        return asdict(self.config)
