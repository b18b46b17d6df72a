"""Launcher detection from synthetic environments."""

from __future__ import annotations

import os
import stat

import pytest
import torch.distributed as dist

from dist_train.distributed.env import (
    SLURM_PORT_BASE,
    DistEnv,
    detect_env,
    expand_nodelist,
    expand_tasks_per_node,
    first_host,
    init_distributed,
)


def test_single_process_without_launcher():
    env = detect_env({"PATH": "/usr/bin", "HOME": "/root"})
    assert env == DistEnv()
    assert not env.is_distributed and env.is_main


def test_torchrun():
    env = detect_env(
        {
            "RANK": "5",
            "WORLD_SIZE": "8",
            "LOCAL_RANK": "1",
            "LOCAL_WORLD_SIZE": "4",
            "MASTER_ADDR": "node-a",
            "MASTER_PORT": "29411",
            "TORCHELASTIC_RUN_ID": "abc",
            "GROUP_RANK": "1",
        }
    )
    assert env == DistEnv(5, 8, 1, 4, "node-a", 29411, "torchrun")
    assert env.is_distributed and not env.is_main


def test_deepspeed_launcher():
    env = detect_env(
        {
            "RANK": "3",
            "WORLD_SIZE": "4",
            "LOCAL_RANK": "1",
            "MASTER_ADDR": "10.0.0.2",
            "MASTER_PORT": "29500",
            "CROSS_RANK": "1",
            "CROSS_SIZE": "2",
            "LOCAL_SIZE": "2",
        }
    )
    assert env == DistEnv(3, 4, 1, 2, "10.0.0.2", 29500, "deepspeed")


def test_mpi_launch():
    env = detect_env(
        {
            "OMPI_COMM_WORLD_RANK": "6",
            "OMPI_COMM_WORLD_SIZE": "8",
            "OMPI_COMM_WORLD_LOCAL_RANK": "2",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
            "MASTER_ADDR": "head",
        }
    )
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size, env.master_addr) == (6, 8, 2, 4, "head")
    assert env.launcher == "mpi"


SLURM_STEP = {
    "SLURM_PROCID": "6",
    "SLURM_NTASKS": "8",
    "SLURM_LOCALID": "2",
    "SLURM_NODEID": "1",
    "SLURM_JOB_ID": "123456",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
    "SLURM_TASKS_PER_NODE": "4(x2)",
}


def test_slurm_srun():
    env = detect_env(SLURM_STEP, use_scontrol=False)
    assert env == DistEnv(6, 8, 2, 4, "gpu07", SLURM_PORT_BASE + 123456 % 20000, "slurm")


def test_slurm_step_values_and_explicit_master_win():
    env = detect_env(
        {**SLURM_STEP, "SLURM_STEP_NUM_TASKS": "2", "MASTER_ADDR": "login", "MASTER_PORT": "1234"},
        use_scontrol=False,
    )
    assert (env.world_size, env.master_addr, env.master_port) == (2, "login", 1234)


def test_torchrun_inside_srun_uses_torchrun_numbering():
    env = detect_env({**SLURM_STEP, "RANK": "1", "WORLD_SIZE": "16", "TORCHELASTIC_RUN_ID": "x"}, use_scontrol=False)
    assert (env.rank, env.world_size, env.launcher) == (1, 16, "torchrun")


@pytest.mark.parametrize(
    ("nodelist", "hosts"),
    [
        ("node17", ["node17"]),
        ("gpu[01-03,07]", ["gpu01", "gpu02", "gpu03", "gpu07"]),
        ("a[8-10],b3,c[1]", ["a8", "a9", "a10", "b3", "c1"]),
        ("node[098-101]", ["node098", "node099", "node100", "node101"]),
        ("rack1-n[2-3]-ib,login", ["rack1-n2-ib", "rack1-n3-ib", "login"]),
    ],
)
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


def test_expand_tasks_per_node():
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert expand_tasks_per_node("8") == [8]
    with pytest.raises(ValueError):
        expand_tasks_per_node("two")


def test_first_host_asks_scontrol_when_installed(tmp_path, monkeypatch):
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = 'show hostnames' ] && printf 'picked-by-scontrol\\nother\\n'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert first_host("weird{syntax}") == "picked-by-scontrol"
    assert first_host("gpu[3-4]", use_scontrol=False) == "gpu3"


def test_init_distributed_is_a_no_op_for_one_process():
    env = init_distributed(env=DistEnv())
    assert env == DistEnv() and not dist.is_initialized()
