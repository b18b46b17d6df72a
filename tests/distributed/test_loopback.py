"""Single-node runs listen on loopback only: the real processes are started and every LISTEN socket of
their process tree is read back with psutil. torchrun through the project's launcher
(`dist-train train --nproc-per-node N` execs it), the project's own rendezvous without torchrun (a
loopback MASTER_ADDR), and the preprocess stage's local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from dist_train.distributed.loopback import is_loopback
from tests.conftest import REPO
from tests.distributed.two_ranks import run_on_ranks


def _listening(pid: int) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of `pid` and its descendants."""
    root = psutil.Process(pid)
    found = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name = " ".join(proc.cmdline()[:3]) or proc.name()
            found += [(name, c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:  # a process that ended meanwhile
            pass
    return found


def _not_loopback(found: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return [entry for entry in found if not is_loopback(entry[1])]


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "localhost", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.2", "fd00::2", "::ffff:10.0.0.1", "vm", ""]))


# One torchrun worker: joins the group through the project's init, exchanges a tensor, and rank 0 (while
# every rank waits at a barrier) writes what the whole tree listens on: the agent and both workers.
WORKER = textwrap.dedent("""
    import json, os, sys
    import psutil, torch, torch.distributed as dist
    from dist_train.distributed.env import init_distributed

    env = init_distributed("gloo", timeout_s=120)
    value = torch.ones(1)
    dist.all_reduce(value)
    if env.rank == 0:
        agent = psutil.Process().parent()
        found = []
        for proc in [agent, *agent.children(recursive=True)]:
            role = "agent" if proc.pid == agent.pid else "worker"
            found += [(role, c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                      if c.status == psutil.CONN_LISTEN]
        json.dump({"listening": found, "sum": value.item(), "gloo_ifname": os.environ.get("GLOO_SOCKET_IFNAME"),
                   "master_addr": os.environ["MASTER_ADDR"]}, open(sys.argv[1], "w"))
    dist.barrier()
    dist.destroy_process_group()
""")


def _torchrun(module: str, tmp_path: Path, extra_env: dict[str, str] | None = None) -> dict:
    script, report = tmp_path / "worker.py", tmp_path / "report.json"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")}
    proc = subprocess.run([sys.executable, "-m", module, "--standalone", "--nproc-per-node=2", str(script), str(report)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**env, "OMP_NUM_THREADS": "1", **(extra_env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


def test_torchrun_through_the_launcher_listens_on_loopback_only(tmp_path):
    report = _torchrun("dist_train.launch.local", tmp_path)
    assert report["sum"] == 2.0
    roles = {role for role, _, _ in report["listening"]}
    assert roles == {"agent", "worker"}, report  # the agent's stores and gloo's pair sockets were all seen
    assert _not_loopback(report["listening"]) == [], report
    assert report["gloo_ifname"] == "lo" and report["master_addr"] == "127.0.0.1"


def test_plain_torchrun_listens_on_every_interface(tmp_path):
    """Why the launcher exists: torchrun's own stores bind `::` even with --standalone."""
    report = _torchrun("torch.distributed.run", tmp_path)
    assert any(role == "agent" and not is_loopback(ip) for role, ip, _ in report["listening"]), report


def test_an_interface_the_user_chose_is_kept():
    from dist_train.distributed.loopback import keep_sockets_on_loopback

    environ = {"GLOO_SOCKET_IFNAME": "ib0", "NCCL_SOCKET_IFNAME": ""}
    keep_sockets_on_loopback(environ)
    assert environ == {"GLOO_SOCKET_IFNAME": "ib0", "NCCL_SOCKET_IFNAME": "lo"}


def _own_listening(rank: int, world: int) -> list:
    """Each rank's own listening sockets, gathered to rank 0 (rank 0 hosts the store)."""
    import torch.distributed as dist

    mine = [(f"rank{rank}", c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet")
            if c.status == psutil.CONN_LISTEN]
    everyone: list = [None] * world
    dist.all_gather_object(everyone, mine)
    return {"listening": [entry for part in everyone for entry in part], "gloo": os.environ.get("GLOO_SOCKET_IFNAME")}


def test_init_distributed_with_a_loopback_master_listens_on_loopback_only(tmp_path, monkeypatch):
    """No torchrun: rank 0 hosts the store itself (srun-like or hand-set RANK/WORLD_SIZE on one machine)."""
    monkeypatch.delenv("GLOO_SOCKET_IFNAME", raising=False)
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    result = run_on_ranks(_own_listening, tmp_path)
    assert {name for name, _, _ in result["listening"]} == {"rank0", "rank1"}, result
    assert _not_loopback(result["listening"]) == [], result
    assert result["gloo"] == "lo"


RAY_SESSION = textwrap.dedent("""
    import json, os, sys, psutil, ray
    from dist_train.preprocess.config import PreprocessConfig
    from dist_train.preprocess.pipeline import ray_session

    cfg = PreprocessConfig()
    cfg.ray.num_cpus, cfg.ray.object_store_memory = 1, 100_000_000
    with ray_session(cfg, progress=False):
        rows = ray.data.range(8).map_batches(lambda b: {"id": b["id"] * 2}).take_all()
        found = []
        for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                found += [(proc.name(), c.laddr.ip, c.laddr.port) for c in proc.net_connections("inet")
                          if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                pass
    json.dump({"listening": found, "rows": len(rows), "var_after": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")},
              open(sys.argv[1], "w"))
""")


def _ray(tmp_path: Path, extra_env: dict[str, str]) -> dict:
    script, report = tmp_path / "ray_session.py", tmp_path / "ray.json"
    script.write_text(RAY_SESSION)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    proc = subprocess.run([sys.executable, str(script), str(report)], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**env, **extra_env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(report.read_text())


def test_local_ray_listens_on_loopback_only(tmp_path):
    report = _ray(tmp_path, {})
    assert report["rows"] == 8
    names = {name for name, _, _ in report["listening"]}
    assert {"gcs_server", "raylet"} <= names, report  # Ray's own servers were seen, not only the driver
    assert _not_loopback(report["listening"]) == [], report
    assert report["var_after"] is None  # restored: a later Ray in the same process may join a cluster


def test_local_ray_keeps_the_users_choice(tmp_path):
    """A user who sets Ray's variable gets Ray's cluster mode: listeners beyond loopback (the check can fail)."""
    report = _ray(tmp_path, {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"})
    assert _not_loopback(report["listening"]), report
