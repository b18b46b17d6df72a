"""Globetrotter's text network: a small BERT-style transformer over the shared vocabulary.

One encoder and one embedding table serve every language, so sub-words shared across languages
share parameters. Layers are post-norm (LayerNorm after each residual sum), as in BERT and the
published Globetrotter code: with 4 layers the training instability that makes deep post-norm
stacks need pre-norm does not arise, keeping the published form keeps the published
hyper-parameters (lr 1e-4, no warm-up) meaningful, and the last layer's output is already
normalised for the heads.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClozeHead", "TextEncoder", "bert_init"]

LAYER_NORM_EPS = 1e-12  # BERT's


def bert_init(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation for one module (use with `Module.apply`): N(0, std) weights, zero
    biases, identity LayerNorms. Convolutions are left alone (the ResNet keeps its He init)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
        # The fused q/k/v projection is a bare parameter, not an nn.Linear.
        nn.init.normal_(module.in_proj_weight, std=std)
        if module.in_proj_bias is not None:
            nn.init.zeros_(module.in_proj_bias)


class ClozeHead(nn.Module):
    """BERT's LM head: transform (Linear, GELU, LayerNorm), then scores against every word
    embedding plus a per-token bias. The output matrix *is* the embedding table (tied), so the
    cloze task trains the word embeddings that the Procrustes word translation later reads.

    The table is passed in at each call rather than held as a second parameter name: a checkpoint
    then stores it once, so DeepSpeed's own `zero_to_fp32.py --safe_serialization` (safetensors
    refuses tensors that share memory) converts the run's checkpoints."""

    def __init__(self, word_embeddings: nn.Embedding):
        super().__init__()
        vocab_size, hidden = word_embeddings.weight.shape
        self.transform = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        )
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        # The random draws of the output Linear this head once built (and then tied), so that a seed
        # gives the same initial weights as before and the results in docs/results.md still reproduce.
        nn.init.kaiming_uniform_(torch.empty(vocab_size, hidden), a=5 ** 0.5)

    def forward(self, hidden: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """`[..., H] -> [..., V]` logits against `table` (the word embeddings, `[V, H]`)."""
        return torch.nn.functional.linear(self.transform(hidden), table) + self.bias


class TextEncoder(nn.Module):
    """Token + learned position embeddings -> LayerNorm -> dropout -> post-norm transformer.

    Input `tokens [B, T]` (int64): BOS (read as `<txt>`) at position 0, EOS after the words, PAD
    after that. PAD positions are excluded as attention keys, so a sentence's hidden states do not
    depend on how much padding its batch needed. Output `[B, T, hidden]`; rows at PAD positions
    are meaningless and must be ignored by poolings.
    """

    def __init__(
        self,
        vocab_size: int,
        hidden: int = 512,
        layers: int = 4,
        heads: int = 4,
        intermediate: int = 1024,
        dropout: float = 0.1,
        max_length: int = 64,
        pad_id: int = 0,
        init_std: float = 0.02,
    ):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.pad_id = pad_id
        self.max_length = max_length
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=pad_id)
        self.position_embeddings = nn.Embedding(max_length, hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=LAYER_NORM_EPS)
        self.embedding_dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=heads,
            dim_feedforward=intermediate,
            dropout=dropout,
            activation="gelu",
            layer_norm_eps=LAYER_NORM_EPS,
            batch_first=True,
            norm_first=False,
        )
        # Nested tensors would only change what PAD rows hold, at the cost of eval and train taking
        # different code paths; keep one path.
        self.layers = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.cloze_head = ClozeHead(self.word_embeddings)
        self.apply(lambda m: bert_init(m, init_std))
        # A second draw for the table, as when the head held it as its own (last-initialised) Linear:
        # the same initial weights, seed for seed, as runs before the head took the table per call.
        nn.init.normal_(self.word_embeddings.weight, std=init_std)
        with torch.no_grad():
            self.word_embeddings.weight[pad_id].zero_()
        self._register_load_state_dict_pre_hook(_drop_tied_name)

    def padding_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """True where `tokens` is PAD (what attention must ignore)."""
        return tokens == self.pad_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")
        length = tokens.shape[1]
        if length > self.max_length:
            raise ValueError(f"{length} tokens exceed the encoder's max_length {self.max_length}")
        positions = torch.arange(length, device=tokens.device)
        x = self.word_embeddings(tokens) + self.position_embeddings(positions)[None]
        x = self.embedding_dropout(self.embedding_norm(x))
        return self.layers(x, src_key_padding_mask=self.padding_mask(tokens))

    def cloze_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for hidden states of any leading shape, `[..., H] -> [..., V]`.

        Pass only the predicted positions (`hidden[labels != -100]`) to avoid a `[B, T, V]`
        tensor: with V = 30 000 that is most of the activation memory of a step.
        """
        return self.cloze_head(hidden, self.word_embeddings.weight)


def _drop_tied_name(state_dict, prefix, *args) -> None:
    """Checkpoints and exports written while the head held the table under a second name
    (`cloze_head.decoder.weight`, the same values as `word_embeddings.weight`) still load."""
    state_dict.pop(f"{prefix}cloze_head.decoder.weight", None)
