"""The model registry: configs are checked key by key before a model is built."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch import nn

from dist_train.models import registry
from dist_train.models.globetrotter import Globetrotter, GlobetrotterConfig
from dist_train.models.registry import build_model, model_config_class, register_model

TINY = dict(vocab_size=50, hidden=16, layers=1, heads=2, intermediate=32, max_length=8, embed_dim=8, text_only=True)


def test_builds_globetrotter_from_a_plain_mapping():
    model = build_model("globetrotter", TINY)
    assert isinstance(model, Globetrotter)
    assert model.config == GlobetrotterConfig(**TINY)
    assert model_config_class("globetrotter") is GlobetrotterConfig
    assert "globetrotter" in registry.MODELS


def test_accepts_a_config_instance():
    assert isinstance(build_model("globetrotter", GlobetrotterConfig(**TINY)), Globetrotter)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="'hiden'") as err:
        build_model("globetrotter", {**TINY, "hiden": 64})
    assert "valid keys" in str(err.value) and "hidden" in str(err.value)


def test_missing_required_key_is_named():
    config = {k: v for k, v in TINY.items() if k != "vocab_size"}
    with pytest.raises(ValueError, match="vocab_size"):
        build_model("globetrotter", config)


def test_bad_value_is_reported_by_the_config():
    with pytest.raises(ValueError, match="text_pooling"):
        build_model("globetrotter", {**TINY, "text_pooling": "cls"})


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ValueError, match="globetrotter"):
        build_model("smalr-not-yet", {})
    with pytest.raises(ValueError, match="unknown model"):
        model_config_class("nope")


def test_registration_rules(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))

    @dataclass
    class ToyConfig:
        width: int = 3

    @register_model("toy")
    class Toy(nn.Module):
        config_class = ToyConfig

        def __init__(self, config):
            super().__init__()
            self.layer = nn.Linear(config.width, 1)

    assert build_model("toy", {"width": 5}).layer.in_features == 5
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy")(type("Other", (nn.Module,), {"config_class": ToyConfig}))
    with pytest.raises(TypeError, match="config_class"):
        register_model("bare")(type("Bare", (nn.Module,), {}))
