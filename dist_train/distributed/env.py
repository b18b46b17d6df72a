"""Where this process sits in the job, whichever launcher started it.

torchrun and the DeepSpeed launcher export RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR /
MASTER_PORT themselves; an MPI launch (DeepSpeed's ``--launcher openmpi``) exports OMPI_COMM_WORLD_*;
a bare ``srun`` exports only SLURM_* variables, so the master address has to be derived from the
node list and the port from the job id (every task of the job must arrive at the same pair without
talking to each other). Detection reads a plain mapping so that it can be tested with synthetic
environments; ``init_distributed`` is the only function here that touches the process group.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = 29500
# SLURM jobs without MASTER_PORT get a port derived from the job id, inside this range, so that two
# jobs sharing a node are unlikely to collide.
SLURM_PORT_BASE = 20000
SLURM_PORT_SPAN = 20000


@dataclass(frozen=True)
class DistEnv:
    """Rank layout of this process and the rendezvous address of the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str = DEFAULT_MASTER_ADDR
    master_port: int = DEFAULT_MASTER_PORT
    launcher: str = "single"  # "torchrun", "deepspeed", "env", "mpi", "slurm" or "single"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_environ(self) -> dict[str, str]:
        """The torch ``env://`` variables that describe this layout."""
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def detect_env(environ: Mapping[str, str] | None = None, *, use_scontrol: bool = True) -> DistEnv:
    """Read the launcher's variables from ``environ`` (default: ``os.environ``).

    Explicit torch variables win over MPI and SLURM ones: torchrun started inside an ``srun`` step
    sees both, and its own numbering is the one the process group must use.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return _from_torch_vars(env)
    if "OMPI_COMM_WORLD_RANK" in env and "OMPI_COMM_WORLD_SIZE" in env:
        return _from_mpi_vars(env)
    if "SLURM_PROCID" in env and ("SLURM_STEP_NUM_TASKS" in env or "SLURM_NTASKS" in env):
        return _from_slurm_vars(env, use_scontrol=use_scontrol)
    return DistEnv()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    return int(value) if value.strip() else default


def _from_torch_vars(env: Mapping[str, str]) -> DistEnv:
    if "TORCHELASTIC_RUN_ID" in env:
        launcher = "torchrun"
    elif "CROSS_RANK" in env or "LOCAL_SIZE" in env:  # set by deepspeed.launcher.launch
        launcher = "deepspeed"
    else:
        launcher = "env"
    world_size = _int(env, "WORLD_SIZE", 1)
    local_world_size = _int(env, "LOCAL_WORLD_SIZE", _int(env, "LOCAL_SIZE", world_size))
    return DistEnv(
        rank=_int(env, "RANK", 0),
        world_size=world_size,
        local_rank=_int(env, "LOCAL_RANK", 0),
        local_world_size=local_world_size,
        master_addr=env.get("MASTER_ADDR", DEFAULT_MASTER_ADDR),
        master_port=_int(env, "MASTER_PORT", DEFAULT_MASTER_PORT),
        launcher=launcher,
    )


def _from_mpi_vars(env: Mapping[str, str]) -> DistEnv:
    world_size = _int(env, "OMPI_COMM_WORLD_SIZE", 1)
    return DistEnv(
        rank=_int(env, "OMPI_COMM_WORLD_RANK", 0),
        world_size=world_size,
        local_rank=_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", 0),
        local_world_size=_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", world_size),
        # mpirun gives no rendezvous address; the caller (or DeepSpeed's MPI discovery) supplies it.
        master_addr=env.get("MASTER_ADDR", DEFAULT_MASTER_ADDR),
        master_port=_int(env, "MASTER_PORT", DEFAULT_MASTER_PORT),
        launcher="mpi",
    )


def _from_slurm_vars(env: Mapping[str, str], *, use_scontrol: bool) -> DistEnv:
    # Inside an srun step the step's task count is the world; SLURM_NTASKS is the job's.
    world_size = _int(env, "SLURM_STEP_NUM_TASKS", _int(env, "SLURM_NTASKS", 1))
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if env.get("MASTER_ADDR"):
        master_addr = env["MASTER_ADDR"]
    elif nodelist:
        master_addr = first_host(nodelist, use_scontrol=use_scontrol)
    else:
        master_addr = DEFAULT_MASTER_ADDR
    if env.get("MASTER_PORT"):
        master_port = int(env["MASTER_PORT"])
    elif env.get("SLURM_JOB_ID", "").isdigit():
        master_port = SLURM_PORT_BASE + int(env["SLURM_JOB_ID"]) % SLURM_PORT_SPAN
    else:
        master_port = DEFAULT_MASTER_PORT
    tasks_per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
    local_world_size = world_size
    if tasks_per_node:
        counts = expand_tasks_per_node(tasks_per_node)
        node_index = _int(env, "SLURM_NODEID", 0)
        if node_index < len(counts):
            local_world_size = counts[node_index]
    return DistEnv(
        rank=_int(env, "SLURM_PROCID", 0),
        world_size=world_size,
        local_rank=_int(env, "SLURM_LOCALID", 0),
        local_world_size=local_world_size,
        master_addr=master_addr,
        master_port=master_port,
        launcher="slurm",
    )


_HOST_TOKEN = re.compile(r"([^,\[]+)(?:\[([^\]]*)\])?([^,\[]*)")


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand SLURM's compressed host lists: ``gpu[01-03,07],login1`` -> gpu01 gpu02 gpu03 gpu07 login1.

    Handles one bracket group per host name (the forms SLURM prints for ordinary clusters);
    ``scontrol show hostnames`` remains the authority when it is installed.
    """
    hosts: list[str] = []
    position = 0
    nodelist = nodelist.strip()
    while position < len(nodelist):
        match = _HOST_TOKEN.match(nodelist, position)
        if match is None or match.end() == position:
            raise ValueError(f"cannot parse SLURM node list {nodelist!r} at position {position}")
        prefix, ranges, suffix = match.groups()
        if ranges is None:
            hosts.append(prefix + suffix)
        else:
            for part in ranges.split(","):
                first, _, last = part.partition("-")
                if not last:
                    hosts.append(prefix + first + suffix)
                    continue
                width = len(first)  # zero padding is part of the host name: node[08-10]
                for number in range(int(first), int(last) + 1):
                    hosts.append(f"{prefix}{number:0{width}d}{suffix}")
        position = match.end()
        if position < len(nodelist) and nodelist[position] == ",":
            position += 1
    return hosts


def first_host(nodelist: str, *, use_scontrol: bool = True) -> str:
    """First host of a SLURM node list: where rank 0 runs, hence the rendezvous address."""
    if use_scontrol and shutil.which("scontrol"):
        try:
            shown = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30, check=True
            ).stdout.split()
            if shown:
                return shown[0]
        except (subprocess.SubprocessError, OSError):
            pass  # fall back to parsing the simple forms ourselves
    return expand_nodelist(nodelist)[0]


def expand_tasks_per_node(spec: str) -> list[int]:
    """``2(x3),1`` -> [2, 2, 2, 1]: SLURM's per-node task counts, one entry per node."""
    counts: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError(f"cannot parse SLURM tasks-per-node {spec!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def default_backend() -> str:
    """nccl where CUDA is available (the only fast GPU collective), gloo everywhere else."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init_distributed(backend: str | None = None, *, env: DistEnv | None = None, timeout_s: float = 1800) -> DistEnv:
    """Join the process group described by the launcher's variables; no-op for one process.

    The torch ``env://`` variables are filled in (never overwritten) so that libraries that read them
    later, DeepSpeed among them, see the same layout under SLURM or MPI as under torchrun. A
    rendezvous on a loopback address means every rank runs on this machine: rank 0's store then
    listens on 127.0.0.1 only and gloo/NCCL use `lo` (torch would listen on every interface).
    """
    import torch
    import torch.distributed as dist

    from dist_train.distributed.loopback import is_loopback, keep_sockets_on_loopback, tcp_store

    env = env or detect_env()
    if not env.is_distributed or dist.is_initialized():
        return env
    for name, value in env.as_environ().items():
        os.environ.setdefault(name, value)
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    timeout = timedelta(seconds=timeout_s)
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent serves the store
    if is_loopback(env.master_addr):
        keep_sockets_on_loopback()
    if is_loopback(env.master_addr) and not agent_store:
        store = tcp_store(env.master_addr, env.master_port, world_size=env.world_size, is_master=env.rank == 0,
                          timeout=timeout)
        dist.init_process_group(backend=backend, store=store, rank=env.rank, world_size=env.world_size,
                                timeout=timeout)
        return env
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{env.master_addr}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timeout,
    )
    return env
