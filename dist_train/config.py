"""Configuration: a YAML file plus `key=value` overrides, checked against a dataclass schema.

Every key has one home (a field of a schema dataclass, with its default); files and the command line
only override. A wrong key or a value of the wrong type fails with a message naming both. Every failure
to read a config (a missing, empty, undecodable or non-YAML file, a YAML tag that would construct an
object, a value that is not a finite number) is a ConfigError with a one-line message naming the file or
the key, so the command line prints it as one line and exits 2.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

# The configs shipped with the package (the repository's top-level configs/ is a link to this folder),
# found by name from any directory: `--config globetrotter-demo`, `--config configs/globetrotter-demo.yaml`.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


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


def find_config(path: str | Path) -> Path:
    """A config file: `path` itself when it exists, else the shipped config of that name (`globetrotter-demo`,
    `globetrotter-demo.yaml`, `configs/deepspeed/zero2.json`, `preprocess/parallel10`); `path` unchanged
    when neither exists (the caller names it)."""
    given = Path(path)
    if given.exists():
        return given
    name = given.as_posix()
    if name.startswith("configs/"):
        name = name[len("configs/"):]
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        try:
            candidate = candidate.resolve()
        except OSError:
            continue
        if candidate.is_file() and CONFIG_DIR.resolve() in candidate.parents:
            return candidate
    return given


def shipped_configs() -> list[str]:
    """Names of the shipped experiment configs (for messages)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _relative_to_file(loaded: DictConfig, path: Path, keys: Iterable[str]) -> None:
    """Relative paths a config file names (its DeepSpeed JSON, a vocabulary, weights) mean paths beside the
    file, wherever the command runs; a path that is not there keeps its meaning relative to the current
    folder (configs written for the repository's root)."""
    for key in keys:
        value = OmegaConf.select(loaded, key, default=None)
        if not isinstance(value, str) or not value or "://" in value or Path(value).is_absolute():
            continue
        beside = path.parent / value
        if beside.exists():
            OmegaConf.update(loaded, key, str(beside), merge=False)


def load_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    validate: Callable[[Any], None] | None = None,
) -> T:
    """The schema's defaults, updated by the YAML file at `path` (a path, or a shipped config's name),
    then by `key=value` overrides.

    Returns a structured OmegaConf object that reads like an instance of `schema` and rejects unknown
    keys and wrongly typed values; `validate(cfg)` may add checks that raise ConfigError. Relative paths
    the file gives for the schema's `PATH_KEYS` are relative to the file.
    """
    cfg = OmegaConf.structured(schema)
    try:
        if path is not None:
            path = find_config(path)
            loaded = _load_file(path)
            _relative_to_file(loaded, path, getattr(schema, "PATH_KEYS", ()))
            try:
                cfg = OmegaConf.merge(cfg, loaded)
            except OmegaConfBaseException as exc:
                raise ConfigError(f"{path}: {_explain(exc)}") from None
        dotlist = []
        for item in overrides:
            if "=" not in item or item.startswith("="):
                raise ConfigError(f"override {item!r} is not of the form key=value")
            dotlist.append(item)
        if dotlist:
            try:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
            except yaml.YAMLError as exc:
                raise ConfigError(f"overrides {' '.join(dotlist)!r}: not valid YAML ({_yaml_problem(exc)})") from None
        check_finite(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc)) from None
    if validate is not None:
        validate(cfg)
    return cfg  # type: ignore[return-value]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where (line and column, 1-based)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def _load_file(path: Path) -> DictConfig:
    """The mapping a YAML config file holds. OmegaConf's loader is PyYAML's SafeLoader: a tag such as
    `!!python/object/apply:os.system` is refused while parsing, never constructed."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (nor a shipped config of that name: "
                          f"{', '.join(shipped_configs())})")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc})") from None
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise ConfigError(f"config file {path} is empty; it must hold a mapping of keys to values")
    try:
        loaded = OmegaConf.create(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML ({_yaml_problem(exc)})") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config file {path}: {_explain(exc)}") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys to values")
    return loaded


def config_leaves(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every plain value of a config tree: `optim.lr`, `optim.betas[0]`."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from config_leaves(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from config_leaves(v, f"{key}[{i}]")
    else:
        yield key, node


def check_finite(node: Any) -> None:
    """Raise ConfigError naming the first key anywhere in a plain config tree whose value is NaN or
    infinite (`optim.lr=inf` trains a model of NaNs without a single error otherwise)."""
    for key, value in config_leaves(node):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"config key '{key}' = {value!r}: must be a finite number")


def _simple_type(hint: Any) -> tuple[type, bool] | None:
    """(int | float | bool | str, whether None is allowed) for a field annotation, None for any other."""
    optional = False
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            return None
        hint = args[0]
    return (hint, optional) if hint in (int, float, bool, str) else None


def coerce_fields(raw: Mapping[str, Any], settings_class: type, prefix: str) -> dict[str, Any]:
    """The free-form mapping `raw` (e.g. `objective`, `model_config`) with each value checked against the
    type of its field in the dataclass `settings_class`: numbers given as text (`1e-3`, which YAML 1.1
    reads as a string) become numbers, anything else of the wrong type or not finite is a ConfigError
    naming `prefix.key`. Keys without a field, and fields of other types, are passed through."""
    hints = typing.get_type_hints(settings_class)
    out = dict(raw)
    for key, value in raw.items():
        simple = _simple_type(hints.get(key))
        if simple is None:
            continue
        kind, optional = simple
        where = f"config key '{prefix}.{key}' = {value!r}"
        if value is None:
            if not optional:
                raise ConfigError(f"{where}: must be {'a number' if kind in (int, float) else f'a {kind.__name__}'}")
            continue
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: must be true or false")
        elif kind is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: must be a string")
        else:
            if isinstance(value, str):
                try:
                    value = int(value) if kind is int else float(value)
                except ValueError:
                    raise ConfigError(f"{where}: must be {'an integer' if kind is int else 'a number'}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}: must be {'an integer' if kind is int else 'a number'}")
            if kind is int and not isinstance(value, int):
                raise ConfigError(f"{where}: must be an integer")
            if not math.isfinite(value):
                raise ConfigError(f"{where}: must be a finite number")
            out[key] = value
    return out


STORAGE_OPTIONS = "storage_options"


def without_storage_secrets(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict as written to files and logs: `storage_options` values (endpoints, but possibly keys
    and tokens) are replaced by the option names, so no credential reaches config.yaml, a summary or
    TensorBoard."""
    options = d.get(STORAGE_OPTIONS)
    if not options:
        return d
    return {**d, STORAGE_OPTIONS: {proto: sorted(values) if isinstance(values, dict) else "<set>"
                                   for proto, values in options.items()}}


def apply_storage_options(cfg: Any) -> None:
    """The config's `storage_options` ({protocol: {option: value}}) added to fsspec's configuration, here and
    in the processes started from here (as --storage-options does)."""
    options = to_dict(getattr(cfg, STORAGE_OPTIONS, None) or {})
    if options:
        from dist_train.storage import set_storage_options

        set_storage_options(options)


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
