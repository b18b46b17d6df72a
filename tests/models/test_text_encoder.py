"""The transformer text encoder: shapes, padding independence, the tied cloze head."""

from __future__ import annotations

import pytest
import torch

from dist_train.models.text_batch import pad_tokens
from dist_train.models.text_encoder import TextEncoder

VOCAB = 101


def tiny_encoder(**kw) -> TextEncoder:
    torch.manual_seed(0)
    args = dict(vocab_size=VOCAB, hidden=32, layers=2, heads=4, intermediate=64, max_length=16)
    return TextEncoder(**{**args, **kw})


def test_default_architecture_is_the_published_one():
    enc = TextEncoder(vocab_size=VOCAB)
    assert len(enc.layers.layers) == 4
    layer = enc.layers.layers[0]
    assert layer.self_attn.embed_dim == 512 and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 1024
    assert layer.norm_first is False  # post-norm, as BERT and the published code
    assert enc.max_length == 64 and enc.position_embeddings.num_embeddings == 64


def test_shapes():
    enc = tiny_encoder()
    tokens = pad_tokens([[5, 6, 7], [8]], max_length=16)
    hidden = enc(tokens)
    assert hidden.shape == (2, 5, 32)
    assert enc.cloze_logits(hidden).shape == (2, 5, VOCAB)
    assert enc.cloze_logits(hidden[tokens > 3]).shape == (4, VOCAB)


def test_padding_does_not_change_a_sentence():
    enc = tiny_encoder().eval()
    alone = pad_tokens([[5, 6, 7]], max_length=16)
    batch = pad_tokens([[9, 10, 11, 12, 13, 14, 15, 16], [5, 6, 7]], max_length=16, pad_to_max_length=True)
    with torch.no_grad():
        h_alone, h_batch = enc(alone), enc(batch)
    assert torch.allclose(h_alone[0], h_batch[1, :5], atol=1e-5)


def test_cloze_head_is_tied_to_the_word_embeddings():
    enc = tiny_encoder()
    assert enc.cloze_head.bias.shape == (VOCAB,)
    # the table is stored once: no second name for it in the state dict (safetensors and DeepSpeed's
    # zero_to_fp32 --safe_serialization refuse tensors that share memory)
    assert [k for k in enc.state_dict() if k.endswith("decoder.weight")] == []
    hidden = torch.randn(3, 32)
    expected = torch.nn.functional.linear(enc.cloze_head.transform(hidden), enc.word_embeddings.weight)
    assert torch.allclose(enc.cloze_logits(hidden), expected + enc.cloze_head.bias)
    # a state dict written when the head held the table under its own name still loads
    old = {**enc.state_dict(), "cloze_head.decoder.weight": enc.word_embeddings.weight.clone()}
    tiny_encoder().load_state_dict(old)
    enc.cloze_logits(hidden).logsumexp(-1).sum().backward()
    assert enc.word_embeddings.weight.grad is not None and enc.word_embeddings.weight.grad.abs().sum() > 0


def test_pad_embedding_starts_at_zero():
    assert tiny_encoder().word_embeddings.weight[0].abs().sum() == 0


def test_rejects_sequences_longer_than_the_position_table():
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="max_length"):
        enc(torch.full((1, 17), 5))
    with pytest.raises(ValueError, match="divisible"):
        TextEncoder(vocab_size=VOCAB, hidden=30, heads=4)
