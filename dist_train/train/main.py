"""Entry point of one training process (what torchrun, the deepspeed launcher or srun start)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dist_train.config import load_config
from dist_train.train.config import TrainConfig, validate

LOG_LEVEL_ENV = "DIST_TRAIN_LOG_LEVEL"  # what `dist-train -q/-v` set for the processes it starts


def load_train_config(path: str | None, overrides: list[str]) -> TrainConfig:
    return load_config(TrainConfig, path, overrides, validate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dist_train.train.main")
    parser.add_argument("--config")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="resume a run with settings that change it (allow_config_change=true)")
    parser.add_argument("overrides", nargs="*")
    args, unknown = parser.parse_known_args(argv)  # launchers may append --local_rank=N
    overrides = [o for o in args.overrides + unknown if not o.startswith("--local_rank")]
    if args.allow_config_change:
        overrides.append("allow_config_change=true")
    logging.basicConfig(level=os.environ.get(LOG_LEVEL_ENV, "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from dist_train.storage import quiet_storage_loggers

    quiet_storage_loggers(verbose=os.environ.get(LOG_LEVEL_ENV) == "DEBUG")
    from dist_train.config import ConfigError
    from dist_train.train.checkpoint import CheckpointError
    from dist_train.train.engine import TrainError, train

    try:
        train(load_train_config(args.config, overrides))
    # a config, dataset, run folder or checkpoint that cannot be used: one line naming it, no traceback
    except (CheckpointError, ConfigError, TrainError, FileNotFoundError) as e:
        print(f"dist-train train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
