"""Configuration: a YAML file plus `key=value` overrides, checked against a dataclass schema.

Every key has one home (a field of a schema dataclass, with its default); files and the command line
only override. A wrong key or a value of the wrong type fails with a message naming both.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the value."""


def _explain(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    value = getattr(exc, "value", None)
    msg = getattr(exc, "msg", None) or str(exc).splitlines()[0]
    msg = msg.splitlines()[0]
    if key and value is not None:
        return f"config key '{key}' = {value!r}: {msg}"
    if key:
        return f"config key '{key}': {msg}"
    return msg


def load_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    validate: Callable[[Any], None] | None = None,
) -> T:
    """The schema's defaults, updated by the YAML file at `path`, then by `key=value` overrides.

    Returns a structured OmegaConf object that reads like an instance of `schema` and rejects unknown
    keys and wrongly typed values; `validate(cfg)` may add checks that raise ConfigError.
    """
    cfg = OmegaConf.structured(schema)
    try:
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            loaded = OmegaConf.load(path)
            if not isinstance(loaded, DictConfig):
                raise ConfigError(f"{path}: a config file must hold a mapping of keys to values")
            cfg = OmegaConf.merge(cfg, loaded)
        dotlist = []
        for item in overrides:
            if "=" not in item or item.startswith("="):
                raise ConfigError(f"override {item!r} is not of the form key=value")
            dotlist.append(item)
        if dotlist:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc)) from None
    if validate is not None:
        validate(cfg)
    return cfg  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-serialisable dict of a config (or a config section)."""
    if is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return cfg


def require(condition: bool, key: str, value: Any, why: str) -> None:
    """Raise ConfigError naming `key` and `value` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"config key '{key}' = {value!r}: {why}")


def check_known_keys(raw: Any, settings_class: type, prefix: str, what: str, exclude: Iterable[str] = ()) -> None:
    """Raise ConfigError naming `prefix.key` for any key of the mapping `raw` that is not a field of
    the dataclass `settings_class` (free-form config dicts such as `objective` are checked here)."""
    known = {f.name for f in fields(settings_class)} - set(exclude)
    for key in raw:
        if key not in known:
            raise ConfigError(f"config key '{prefix}.{key}' is not {what} (known: {', '.join(sorted(known))})")
