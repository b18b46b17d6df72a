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
    """sbatch's time formats ('MM', 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS') -> whole minutes.

    Out-of-range fields are refused rather than carried over (sbatch itself refuses some and wraps others).
    """
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if m is None:
        raise ValueError(f"--time {text!r}: use minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = a, b or 0, c or 0
        if hours >= 24:
            raise ValueError(f"--time {text!r}: hours must be below 24 in D-HH:MM:SS")
    elif c is not None:  # HH:MM:SS
        hours, minutes, seconds = a, b, c
    elif b is not None:  # MM:SS
        hours, minutes, seconds = 0, a, b
        if seconds >= 60:
            raise ValueError(f"--time {text!r}: seconds must be below 60")
    else:  # MM
        hours, minutes, seconds = 0, a, 0
    if (days is not None or c is not None) and (minutes >= 60 or seconds >= 60):
        raise ValueError(f"--time {text!r}: minutes and seconds must be below 60")
    total = (days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"--time {text!r}: must be positive")
    return -(-total // 60)


# Characters that end or split a line (in bash, in sbatch's #SBATCH parser) or that a terminal acts on:
# C0 and C1 controls, DEL, and Unicode's line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_text(option: str, value: object) -> None:
    """A value that reaches the sbatch script, the job's command line or its pickled arguments: one line only."""
    text = str(value)
    bad = _CONTROL.search(text)
    if bad:
        option = _CONTROL.sub("?", option)  # the message itself stays one line
        raise ValueError(f"{option} {text!r}: control character {bad.group()!r} not allowed")


def check_sbatch_value(option: str, value: object) -> None:
    """A #SBATCH value: submitit single-quotes it, and sbatch reads a backslash as an escape even inside quotes."""
    check_text(option, value)
    if "\\" in str(value):
        raise ValueError(f"{option} {str(value)!r}: a backslash is not allowed (sbatch reads it as an escape)")


_MEM = re.compile(r"\d+[KMGTkmgt]?")
# What the launcher writes itself (the task layout, the log files, the array, the preemption signal),
# and sbatch's own spellings of the same options: an --sbatch key may not change them.
LAUNCHER_SBATCH_KEYS = ("nodes", "ntasks", "ntasks-per-node", "tasks-per-node", "output", "error", "open-mode",
                        "array", "signal", "wrap")
# Options that have their own command-line flag: --sbatch may not set them behind the flag's back.
OWN_FLAG_SBATCH_KEYS = {"job-name": "--job-name", "partition": "--partition", "account": "--account",
                        "qos": "--qos", "constraint": "--constraint", "time": "--time", "mem": "--mem",
                        "cpus-per-task": "--cpus-per-task", "gpus-per-node": "--gpus-per-node"}


def parse_sbatch_options(items: list[str]) -> dict[str, Any]:
    """['exclusive', 'mail-type=END'] -> {'exclusive': True, 'mail-type': 'END'} for extra #SBATCH lines.

    Keys are sbatch long options; sbatch accepts unambiguous prefixes of them, so a prefix of a key the
    launcher sets (`out` for `output`) is refused like the key itself.
    """
    out: dict[str, Any] = {}
    for item in items:
        check_sbatch_value("--sbatch", item)
        key, sep, value = item.lstrip("-").partition("=")
        if not key:
            raise ValueError(f"--sbatch {item!r}: give KEY=VALUE (e.g. mail-type=END) or a flag (exclusive)")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise ValueError(f"--sbatch {item!r}: the key must be an sbatch long option such as mail-type")
        taken = [k for k in (*LAUNCHER_SBATCH_KEYS, *OWN_FLAG_SBATCH_KEYS) if k.startswith(key)]
        if taken and taken[0] in OWN_FLAG_SBATCH_KEYS:
            raise ValueError(f"--sbatch {item!r}: use {OWN_FLAG_SBATCH_KEYS[taken[0]]} instead")
        if taken:
            raise ValueError(f"--sbatch {item!r}: the launcher sets --{taken[0]} itself")
        if key in out:
            raise ValueError(f"--sbatch {item!r}: {key} is given twice")
        out[key] = value if sep else True
    return out


def validate_options(opts: SlurmOptions) -> None:
    """Every resource option in range and every text option one safe #SBATCH value; raises naming the option."""
    if opts.nodes < 1:
        raise ValueError(f"--nodes {opts.nodes}: must be at least 1")
    if opts.gpus_per_node < 0:
        raise ValueError(f"--gpus-per-node {opts.gpus_per_node}: must be 0 or more")
    if opts.tasks_per_node is not None and opts.tasks_per_node < 1:
        raise ValueError(f"--tasks-per-node {opts.tasks_per_node}: must be at least 1")
    if opts.cpus_per_task is not None and opts.cpus_per_task < 1:
        raise ValueError(f"--cpus-per-task {opts.cpus_per_task}: must be at least 1")
    if opts.max_requeues < 0:
        raise ValueError(f"--max-requeues {opts.max_requeues}: must be 0 or more")
    for name in ("job_name", "partition", "account", "qos", "constraint", "mem", "time"):
        value = getattr(opts, name)
        if value is not None:
            check_sbatch_value("--" + name.replace("_", "-"), value)
            if not str(value).strip():
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: empty")
    if opts.mem is not None and not _MEM.fullmatch(opts.mem):
        raise ValueError(f"--mem {opts.mem!r}: use a number of megabytes or one with K, M, G or T (e.g. 200G)")
    time_minutes(opts.time)
    for key, value in opts.sbatch.items():
        check_sbatch_value("--sbatch", f"{key}={value}")
    opts.ntasks_per_node()


def slurm_parameters(opts: SlurmOptions) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (the names of submitit's sbatch template)."""
    validate_options(opts)
    params: dict[str, Any] = {
        "job_name": opts.job_name,
        "nodes": opts.nodes,
        "ntasks_per_node": opts.ntasks_per_node(),
        "time": time_minutes(opts.time),
        # SLURM sends USR2 this long before the time limit: enough to write a checkpoint.
        "signal_delay_s": 120,
    }
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

    validate_options(opts)
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
