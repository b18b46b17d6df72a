"""The multilingual VSE++ model: unit-length embeddings in one space, padding-blind caption encoding,
the registry, and parameter counts by part."""

from __future__ import annotations

import pytest
import torch

from dist_train.models.registry import build_model
from dist_train.models.vse import VSEConfig, VSEPlusPlus


def _model(**kw) -> VSEPlusPlus:
    torch.manual_seed(0)
    return build_model("vsepp", {"vocab_size": 50, "word_dim": 8, "embed_dim": 12, "image_dim": 20, **kw})


def test_captions_and_images_land_on_the_unit_sphere_of_one_space():
    model = _model()
    tokens = torch.tensor([[2, 7, 9, 3, 0, 0], [2, 11, 3, 0, 0, 0]])
    out = model(tokens=tokens, features=torch.randn(2, 20))
    assert out["text"].shape == out["image"].shape == (2, 12)
    torch.testing.assert_close(out["text"].norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(out["image"].norm(dim=-1), torch.ones(2))


def test_a_caption_embedding_does_not_depend_on_padding_or_on_its_batch_neighbours():
    model = _model()
    short = torch.tensor([[2, 7, 9, 3]])
    padded = torch.tensor([[2, 7, 9, 3, 0, 0, 0, 0], [2, 5, 6, 8, 10, 12, 14, 3]])
    torch.testing.assert_close(model.encode_text(short)[0], model.encode_text(padded)[0])
    # and it does depend on the words
    assert not torch.allclose(model.encode_text(padded)[0], model.encode_text(padded)[1])


def test_gradients_reach_words_gru_and_image_projection():
    model = _model()
    out = model(tokens=torch.tensor([[2, 7, 9, 3]]), features=torch.randn(1, 20))
    (out["text"] * out["image"]).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    assert model.word_embeddings.weight.grad[0].abs().max() == 0  # the padding row stays zero


def test_parameter_counts_by_part():
    model = _model()
    counts = model.parameter_counts()
    gru = 3 * (8 * 12 + 12 * 12 + 2 * 12)
    assert counts == {"word_embeddings": 50 * 8, "gru": gru, "image_projection": 20 * 12 + 12,
                      "total": 50 * 8 + gru + 20 * 12 + 12}
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_paper_defaults_and_bad_config_errors():
    assert (VSEConfig(vocab_size=10).word_dim, VSEConfig(vocab_size=10).embed_dim) == (300, 1024)
    with pytest.raises(ValueError, match="embed_dim"):
        VSEConfig(vocab_size=10, embed_dim=0)
    with pytest.raises(ValueError, match="unknown vsepp config key"):
        build_model("vsepp", {"vocab_size": 10, "hidden": 3})


def test_image_features_are_standardised_with_the_statistics_it_was_given():
    model = _model()
    features = torch.randn(3, 20) * 4 + 7
    mean, std = features.mean(0), features.std(0)
    plain = model.encode_image((features - mean) / std)
    model.set_image_statistics(mean, std)
    torch.testing.assert_close(model.encode_image(features), plain)
    assert {"image_mean", "image_std"} <= set(model.state_dict())  # saved with the weights
    with pytest.raises(ValueError, match="image statistics"):
        model.set_image_statistics(mean[:3], std)
    off = _model(standardize_image=False)
    off.set_image_statistics(mean, std)
    torch.testing.assert_close(off.encode_image(features), _model().encode_image(features))
