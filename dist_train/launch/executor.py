"""The submitit executor of a launch: SLURM resources from the command line, or the local executor.

Everything submitit and sbatch need to know about the cluster is decided here; the jobs themselves
(`job.py`) only read the task layout SLURM gives them. The sbatch script of a dry run is rendered by
submitit's own template, so it is exactly what `sbatch` would receive.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TIME = "24:00:00"


@dataclass
class SlurmOptions:
    """The resources of one job (or of every job of an array)."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # default: one task per GPU, or 1 on a CPU-only job
    cpus_per_task: int | None = None
    mem: str | None = None  # per node, sbatch's syntax: 64G, 500M
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str = DEFAULT_TIME
    job_name: str = "dist-train"
    sbatch: dict[str, str] = field(default_factory=dict)  # any other #SBATCH option
    max_requeues: int = 20  # time-limit requeues before giving up (preemptions do not count)

    def ntasks_per_node(self) -> int:
        if self.tasks_per_node is not None and self.gpus_per_node and self.tasks_per_node != self.gpus_per_node:
            raise ValueError(f"--tasks-per-node {self.tasks_per_node} with --gpus-per-node {self.gpus_per_node}: "
                             "training runs one task per GPU; give only --gpus-per-node")
        tasks = self.tasks_per_node if self.tasks_per_node is not None else max(self.gpus_per_node, 1)
        if tasks < 1:
            raise ValueError(f"--tasks-per-node {tasks}: must be at least 1")
        return tasks

    def num_tasks(self) -> int:
        return self.nodes * self.ntasks_per_node()


def time_minutes(text: str) -> int:
    """sbatch's time formats ('MM', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS', 'MM:SS') -> whole minutes."""
    m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", text)
    if m is None:
        raise ValueError(f"--time {text!r}: use minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(f"--time {text!r}: must be positive")
    return -(-seconds // 60)


def parse_sbatch_options(items: list[str]) -> dict[str, str]:
    """['exclusive', 'mail-type=END'] -> {'exclusive': True, 'mail-type': 'END'} for extra #SBATCH lines."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.lstrip("-").partition("=")
        if not key:
            raise ValueError(f"--sbatch {item!r}: give KEY=VALUE (e.g. mail-type=END) or a flag (exclusive)")
        out[key] = value if sep else True
    return out


def slurm_parameters(opts: SlurmOptions) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (the names of submitit's sbatch template)."""
    params: dict[str, Any] = {
        "job_name": opts.job_name,
        "nodes": opts.nodes,
        "ntasks_per_node": opts.ntasks_per_node(),
        "time": time_minutes(opts.time),
        # SLURM sends USR2 this long before the time limit: enough to write a checkpoint.
        "signal_delay_s": 120,
    }
    if opts.nodes < 1:
        raise ValueError(f"--nodes {opts.nodes}: must be at least 1")
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    for name in ("cpus_per_task", "partition", "account", "qos", "constraint"):
        value = getattr(opts, name)
        if value is not None:
            params[name] = value
    extra = dict(opts.sbatch)
    if opts.mem is not None:
        extra["mem"] = opts.mem  # as written: submitit's own mem parameter only takes GB
    if extra:
        params["additional_parameters"] = extra
    return params


def make_executor(opts: SlurmOptions, folder: Path, local: bool = False):
    """A SlurmExecutor for `opts`, or with `local` a LocalExecutor running the same tasks on this machine."""
    import submitit

    if local:
        if opts.nodes != 1:
            raise ValueError(f"--local runs on this machine only: --nodes {opts.nodes} must be 1")
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=opts.max_requeues)
        executor.update_parameters(timeout_min=time_minutes(opts.time), tasks_per_node=opts.ntasks_per_node(),
                                   gpus_per_node=opts.gpus_per_node, nodes=1)
        return executor
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_requeues)
    executor.update_parameters(**slurm_parameters(opts))
    return executor


def sbatch_script(opts: SlurmOptions, folder: Path, array_size: int | None = None) -> str:
    """The sbatch script submitit would submit for `opts` (an array of `array_size` jobs for a sweep).

    Rendered without a cluster: the same template and command line as SlurmExecutor's.
    """
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    extra = {"map_count": array_size} if array_size and array_size > 1 else {}
    return _make_sbatch_string(command=command, folder=folder, **slurm_parameters(opts), **extra)
