"""Process layout detection and the collectives the global-batch losses need."""

from dist_train.distributed.env import DistEnv, detect_env, init_distributed
from dist_train.distributed.gather import GatheredRows, gather_detached, gather_rows, gather_with_grad
from dist_train.distributed.reduce import all_reduce_detached, mean_share

__all__ = [
    "DistEnv",
    "GatheredRows",
    "all_reduce_detached",
    "detect_env",
    "gather_detached",
    "gather_rows",
    "gather_with_grad",
    "init_distributed",
    "mean_share",
]
