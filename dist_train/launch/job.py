"""What every task of a submitted job runs, and how it survives preemption and the time limit.

`TrainJob` is a submitit callable (like dino's `run_with_submitit.Trainer`): submitit pickles it,
SLURM starts one copy per task, and each copy runs the training engine as one rank. Preemption and
the time limit arrive as SIGUSR2 (`scancel --signal=USR2`, or sbatch's --signal=USR2@120 before the
limit). submitit's handler on rank 0 then calls `checkpoint()`, which returns the same job again,
requeues the job (`scontrol requeue`) and exits; SLURM ends the other tasks. The requeued job
starts from the top and the engine resumes from the latest complete checkpoint (the `latest`
pointer moves only once every rank has written its part, so a save cut short by the signal is
never loaded), which gives bitwise the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _configure_task() -> None:
    """Logging to the task's log file, and torch threads matching the CPUs SLURM gave the task."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    from dist_train.storage import quiet_storage_loggers

    quiet_storage_loggers()
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        import torch

        torch.set_num_threads(int(cpus))


class TrainJob:
    """`dist-train train --config CONFIG KEY=VALUE...` as one rank of a submitit job."""

    def __init__(self, config: str | None, overrides: list[str], workdir: str) -> None:
        self.config = config
        self.overrides = list(overrides)
        self.workdir = workdir  # relative paths in the config mean what they meant on the submit host

    def __call__(self) -> dict[str, Any]:
        import submitit

        os.chdir(self.workdir)
        _configure_task()
        # RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT from SLURM's (or the local executor's)
        # task layout; the engine's env detection reads them like torchrun's.
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        from dist_train.train.engine import train
        from dist_train.storage import is_url
        from dist_train.train.main import load_train_config

        cfg = load_train_config(self.config, self.overrides)
        result = train(cfg)
        result["out_dir"] = cfg.out_dir if is_url(cfg.out_dir) else str(Path(cfg.out_dir).resolve())
        return result

    def checkpoint(self) -> Any:
        """submitit's checkpoint protocol: the same job again; the engine resumes from its checkpoints."""
        import submitit

        log.info("preempted or out of time: requeueing; the run resumes from its latest checkpoint")
        return submitit.helpers.DelayedSubmission(TrainJob(self.config, self.overrides, self.workdir))


class PreprocessJob:
    """`dist-train preprocess` in a one-node allocation: Ray's local cluster on the job's CPUs.

    Preprocessing is resumable by shard (a rerun skips finished shards), so a preempted job is
    simply submitted again through `checkpoint()`.
    """

    def __init__(self, input_dir: str, out_dir: str, config: str | None, overrides: list[str], workdir: str) -> None:
        self.input_dir, self.out_dir, self.config = input_dir, out_dir, config
        self.overrides = list(overrides)
        self.workdir = workdir

    def __call__(self) -> dict[str, Any]:
        os.chdir(self.workdir)
        _configure_task()
        from dist_train.config import load_config
        from dist_train.preprocess.config import PreprocessConfig, validate
        from dist_train.preprocess.pipeline import preprocess

        cfg = load_config(PreprocessConfig, self.config, self.overrides, validate)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cfg.ray.address is None and cfg.ray.num_cpus is None and cpus and cpus.isdigit():
            cfg.ray.num_cpus = int(cpus)  # the allocation's CPUs, not the whole node's
        return preprocess(self.input_dir, self.out_dir, cfg, progress=False)

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(
            PreprocessJob(self.input_dir, self.out_dir, self.config, self.overrides, self.workdir))
