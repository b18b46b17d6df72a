"""Entry point of one training process (what torchrun, the deepspeed launcher or srun start)."""

from __future__ import annotations

import argparse
import logging
import sys

from dist_train.config import load_config
from dist_train.train.config import TrainConfig, validate


def load_train_config(path: str | None, overrides: list[str]) -> TrainConfig:
    return load_config(TrainConfig, path, overrides, validate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dist_train.train.main")
    parser.add_argument("--config")
    parser.add_argument("overrides", nargs="*")
    args, unknown = parser.parse_known_args(argv)  # launchers may append --local_rank=N
    overrides = [o for o in args.overrides + unknown if not o.startswith("--local_rank")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    from dist_train.train.checkpoint import CheckpointError
    from dist_train.train.engine import train

    try:
        train(load_train_config(args.config, overrides))
    except CheckpointError as e:  # an unsafe or corrupt checkpoint file, or a bad pointer: one line naming it
        print(f"dist-train train: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
