"""Name -> model class, so configs and checkpoints can say which model they hold.

A model class registers itself with `@register_model(name)` and names its config dataclass in a
`config_class` attribute. `build_model` checks a plain config mapping against that dataclass
first, so a misspelt key in a YAML file fails with its name instead of being silently ignored.
Built-in models are imported on first use (their modules import this one to register).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

__all__ = ["MODELS", "build_model", "model_config_class", "register_model"]

MODELS: dict[str, type[nn.Module]] = {}

# Modules that register the models shipped with dist_train.
_BUILTIN_MODULES = ("dist_train.models.globetrotter", "dist_train.models.smalr", "dist_train.models.vse",
                    "dist_train.models.captioner", "dist_train.models.mmt")


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: `@register_model("globetrotter")` over a class with a `config_class`."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        config_class = getattr(cls, "config_class", None)
        if config_class is None or not dataclasses.is_dataclass(config_class):
            raise TypeError(f"{cls.__name__} needs a dataclass `config_class` attribute to be registered")
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {MODELS[name].__name__}")
        MODELS[name] = cls
        return cls

    return register


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def _model_class(name: str) -> type[nn.Module]:
    _load_builtins()
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}") from None


def model_config_class(name: str) -> type:
    """The config dataclass of the model registered as `name`."""
    return _model_class(name).config_class


def build_model(name: str, config: Mapping[str, Any] | Any) -> nn.Module:
    """Build the model registered as `name` from a config mapping (or a config instance).

    Raises ValueError naming any key the config dataclass does not have, or any required key
    that is missing; the dataclass's own checks then validate the values.
    """
    model_class = _model_class(name)
    config_class = model_class.config_class
    if isinstance(config, config_class):
        return model_class(config)
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config for {name!r} must be a mapping or a {config_class.__name__}, got {type(config).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(str(k) for k in config if k not in fields)
    if unknown:
        raise ValueError(
            f"unknown {name} config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(fields))}"
        )
    missing = sorted(
        k for k, f in fields.items()
        if k not in config and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ValueError(f"{name} config is missing required key(s) {', '.join(map(repr, missing))}")
    return model_class(config_class(**dict(config)))
