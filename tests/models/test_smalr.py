"""The SMALR model: branches, MCLM heads, gradient reversal, registry."""

from __future__ import annotations

import pytest
import torch

from dist_train.models.hem import MASK
from dist_train.models.registry import build_model
from dist_train.models.smalr import Smalr, SmalrConfig, reverse_gradient


def tiny_model(**overrides) -> Smalr:
    cfg = dict(num_words=13, num_languages=2, num_specific=6, num_latent=3, word_dim=4, embed_dim=8, feature_dim=5,
               image_hidden=16, gru_hidden=12, adversary_hidden=6)
    cfg.update(overrides)
    model = build_model("smalr", cfg)
    language = torch.tensor([-1, -1, -1] + [0] * 5 + [1] * 5)
    specific = torch.tensor([-1, -1, -1, 0, 1, 2, -1, -1, 3, 4, 5, -1, -1])
    latent = torch.tensor([-1] * 6 + [0, 1] + [-1] * 3 + [1, 2])
    model.hem.load_vocabulary(language, specific, latent, torch.randn(6, 4), torch.randn(3, 8))
    return model


def test_registry_builds_smalr_and_names_a_wrong_key():
    assert isinstance(tiny_model(), Smalr)
    with pytest.raises(ValueError, match="gru_size"):
        build_model("smalr", dict(num_words=5, num_languages=1, num_specific=1, num_latent=1, gru_size=3))
    with pytest.raises(ValueError, match="mclm_variants"):
        SmalrConfig(num_words=5, num_languages=1, num_specific=1, num_latent=1, mclm_variants=["bert"])


def test_forward_gives_unit_embeddings_and_mclm_predictions_for_each_pair():
    torch.manual_seed(0)
    model = tiny_model().eval()
    words = torch.tensor([[3, 4, 6, 0], [8, 11, 12, 9], [5, 7, 0, 0], [10, 9, 8, 0]])
    masked = words.clone()
    masked[:, 0] = MASK
    out = model(words, torch.randn(4, 5), masked, torch.tensor([[0, 1], [2, 3]]), reverse_scale=0.5)
    for key in ("text", "image", "masked_text"):
        assert out[key].shape == (4, 8)
        torch.testing.assert_close(out[key].norm(dim=-1), torch.ones(4))
    assert out["language_logits"].shape == (4, 2)
    for variant in ("average", "lstm", "final"):
        assert out[f"mclm_{variant}_predicted"].shape == (4, 8)
    # the pair's prediction depends on both sentences: changing sentence 1 changes sentence 0's prediction
    masked2 = masked.clone()
    masked2[1, 1] = 6
    out2 = model(words, torch.randn(4, 5), masked2, torch.tensor([[0, 1], [2, 3]]))
    assert not torch.allclose(out["mclm_average_predicted"][0], out2["mclm_average_predicted"][0])
    torch.testing.assert_close(out["mclm_average_predicted"][2:], out2["mclm_average_predicted"][2:])


def test_padding_does_not_change_the_sentence_embedding():
    model = tiny_model().eval()
    short = model.encode_text(torch.tensor([[3, 6, 9]]))["text"]
    padded = model.encode_text(torch.tensor([[3, 6, 9, 0, 0, 0]]))["text"]
    torch.testing.assert_close(short, padded)


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (reverse_gradient(x, 0.25) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.25, -0.5, -0.75]))


def test_adversary_is_trained_towards_and_encoder_away_from_language_prediction():
    model = tiny_model()
    words = torch.tensor([[3, 4, 6], [8, 9, 11]])
    logits = model(words, reverse_scale=1.0)["language_logits"]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    loss.backward()
    adversary_grad = model.adversary[0].weight.grad.clone()
    encoder_grad = model.hem.specific.grad.clone()
    model.zero_grad()
    logits = model(words, reverse_scale=0.0)["language_logits"]
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    torch.testing.assert_close(model.adversary[0].weight.grad, adversary_grad)  # the classifier is not reversed
    assert model.hem.specific.grad.abs().sum() == 0 and encoder_grad.abs().sum() > 0


def test_parameter_counts_cover_the_model():
    model = tiny_model(mclm_variants=[])
    counts = model.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["embedding_total"] == sum(p.numel() for p in model.hem.parameters())
    assert not hasattr(model, "mclm_lstm") and len(model.mclm_heads) == 0
