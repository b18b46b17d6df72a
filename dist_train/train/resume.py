"""The resume guard: a run folder is resumed only with the settings it was trained with.

A run's `config.yaml` records the resolved config it started (or last resumed) with. Resuming its
checkpoint with settings that change what is trained (batch size, optimizer, seed, data, model, objective,
engine) would silently continue another experiment under the same name, so it is refused with one line
listing each difference, unless `allow_config_change=true` (`dist-train train --allow-config-change`):
then the new config is used, the old one is kept as `config.<step>.yaml` and the change is logged.

Safe to change on resume (they change how the run is watched, saved or stopped, not what it trains):
`log.*`, `eval.*`, `checkpoint.*`, `max_steps` and `epochs` (training longer is what resuming is for; the
cosine schedule is recomputed for the new length, which is logged), `data.prepare_world`,
`deterministic`, `out_dir` and `allow_config_change` itself. `data.num_workers` is not: the data position
saved in each rank's state is counted per loader worker.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import yaml

from dist_train.config import ConfigError

log = logging.getLogger(__name__)

SAFE_PREFIXES = ("log.", "eval.", "checkpoint.", "storage_options")
SAFE_KEYS = {"max_steps", "epochs", "data.prepare_world", "deterministic", "out_dir", "allow_config_change"}
PATH_KEYS = {"data.shards", "deepspeed.config", "model_config.image_weights"}
SCHEDULE_KEYS = ("max_steps", "epochs")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        if not node and prefix:
            out[prefix] = {}
        return out
    return {prefix: node}


def _same(key: str, old: Any, new: Any) -> bool:
    if old == new:
        return True
    if key in PATH_KEYS and isinstance(old, str) and isinstance(new, str):
        return Path(old).resolve() == Path(new).resolve()  # runs/x and /abs/runs/x, seen from here
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
        return float(old) == float(new)
    return False


def is_safe(key: str) -> bool:
    return key in SAFE_KEYS or key.startswith(SAFE_PREFIXES)


def config_differences(saved: Mapping[str, Any], new: Mapping[str, Any], safe: bool = False) -> list[str]:
    """`key: old -> new` for every key whose value differs (only the run-changing ones unless `safe`). A
    key the saved config lacks counts as its default (a run saved before the key existed)."""
    from dist_train.config import to_dict
    from dist_train.train.config import TrainConfig

    defaults = _flatten(to_dict(TrainConfig()))
    a, b = _flatten(saved), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if is_safe(key) != safe:
            continue
        old, value = a.get(key, defaults.get(key, "(unset)")), b.get(key, "(unset)")
        if not _same(key, old, value):
            out.append(f"{key}: {_show(old)} -> {_show(value)}")
    return out


def _show(value: Any) -> str:
    return "null" if value is None else str(value)


def saved_config(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: the run's saved config cannot be read ({' '.join(str(e).split())}); "
                          "restore it or start a new out_dir") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: the run's saved config is not a mapping; restore it or start a new out_dir")
    return saved


def check_resume(new: Mapping[str, Any], out_dir: Path, tag: str, allow: bool, record: bool = False) -> list[str]:
    """Refuse (ConfigError, one line) to resume checkpoint `tag` of the run in `out_dir` with a config
    that changes the run, unless `allow`; with `allow` and `record` (rank 0), keep the old config as
    config.<step>.yaml and log the change (the engine then writes the new config.yaml). Returns the
    differences."""
    saved = saved_config(out_dir)
    if saved is None:
        return []
    changes = config_differences(saved, new)
    for line in config_differences(saved, new, safe=True):
        if record and line.split(":", 1)[0] in SCHEDULE_KEYS:
            log.warning("resuming %s with %s: the learning-rate schedule is recomputed for the new length", tag, line)
    if not changes:
        return []
    where = Path(out_dir) / "config.yaml"
    if not allow:
        raise ConfigError(f"{out_dir} holds a run (checkpoint {tag}) trained with other settings ({where}): "
                          f"{'; '.join(changes)}; resume with its settings, use a new out_dir, or pass "
                          "--allow-config-change (allow_config_change=true) to continue it with these")
    if record:
        step = int(tag[len("step"):])
        kept = Path(out_dir) / f"config.{step:08d}.yaml"
        shutil.copyfile(where, kept)
        log.warning("resuming %s with a changed config (allow_config_change): %s; the old config is kept as %s",
                    tag, "; ".join(changes), kept)
    return changes
