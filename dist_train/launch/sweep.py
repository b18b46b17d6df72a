"""Sweeps: a grid of config overrides, one run folder per point, submitted as one SLURM job array.

A grid comes from `--sweep key=v1,v2` (repeatable; the product of all of them) and/or a YAML file:
either a mapping of keys to lists of values (a product, like --sweep), or a list of mappings (the
points themselves, for sweeps that are not products):

    # ablations.yaml: every objective term switched off once
    - {objective.visual: 0}
    - {objective.transitive: 0}
    - {objective.cloze: 0}

A point's folder is named from its overrides, `key=value` joined with `,` (as Hydra names its
multirun folders), so `ls` of the sweep's out_dir reads as the grid.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

from dist_train.config import ConfigError


def split_values(text: str) -> list[str]:
    """'1,2,[a,b]' -> ['1', '2', '[a,b]']: commas inside brackets or quotes belong to one value."""
    values, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += ch
    values.append(current)
    return values


def parse_sweep_arg(item: str) -> tuple[str, list[str]]:
    """'objective.visual=0,1' -> ('objective.visual', ['0', '1'])."""
    key, sep, values = item.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ConfigError(f"--sweep {item!r}: give KEY=V1,V2,... (e.g. objective.visual=0,1)")
    parsed = [v.strip() for v in split_values(values)]
    if any(not v for v in parsed):
        raise ConfigError(f"--sweep {item!r}: an empty value")
    return key.strip(), parsed


def _as_override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_as_override_value(v) for v in value) + "]"
    return str(value)


def read_sweep_file(path: Path) -> list[list[str]]:
    """The points of a sweep file, each a list of `key=value` overrides."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--sweep-file: file not found: {path}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if isinstance(data, dict):
        axes = []
        for key, values in data.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{path}: key '{key}' = {values!r}: a grid needs a non-empty list of values")
            axes.append((str(key), [_as_override_value(v) for v in values]))
        return grid(axes)
    if isinstance(data, list) and data and all(isinstance(p, dict) for p in data):
        return [[f"{k}={_as_override_value(v)}" for k, v in point.items()] for point in data]
    raise ConfigError(f"{path}: a sweep file holds a mapping of keys to lists of values, or a list of mappings")


def grid(axes: list[tuple[str, list[str]]]) -> list[list[str]]:
    """The product of the axes, each point as `key=value` overrides in the axes' order."""
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"sweep: a key is swept twice: {sorted(k for k in keys if keys.count(k) > 1)[0]}")
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*(v for _, v in axes))]


def sweep_points(sweep_args: list[str], sweep_file: Path | None) -> list[list[str]]:
    """All points of `--sweep-file` (if any) crossed with all `--sweep` axes; [[]] when there is no sweep."""
    file_points = read_sweep_file(sweep_file) if sweep_file else [[]]
    arg_points = grid([parse_sweep_arg(item) for item in sweep_args]) if sweep_args else [[]]
    points = [a + b for a, b in itertools.product(file_points, arg_points)]
    for point in points:
        keys = [o.split("=", 1)[0] for o in point]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"sweep: a key is set by both --sweep-file and --sweep: {point}")
    return points


def point_name(point: list[str]) -> str:
    """A folder name for one point: 'objective.visual=0,optim.lr=0.001' (unsafe characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(point))[:200] or "run"
