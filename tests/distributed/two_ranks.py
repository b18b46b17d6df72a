"""Run a function on real gloo processes and collect rank 0's result: the harness of the tests that
compare a global-batch computation over ranks with one process over the whole batch."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.multiprocessing as mp


def average_over_ranks(results: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    """What DDP / DeepSpeed do with gradients (and what logging does with loss shares)."""
    import torch.distributed as dist

    world = dist.get_world_size()
    for values in results.values():
        for key in ("loss", "grads"):
            dist.all_reduce(values[key])
            values[key] /= world
    return results


def _worker(rank: int, world: int, port: int, out_dir: str, fn: Callable[[int, int], Any]) -> None:
    """One rank: join the group, run fn(rank, world), save rank 0's result (write, then rename)."""
    import torch.distributed as dist

    from dist_train.distributed import DistEnv, init_distributed

    try:
        init_distributed("gloo", env=DistEnv(rank=rank, world_size=world, master_port=port), timeout_s=60)
        result = fn(rank, world)
        if rank == 0:  # the test reads the file only once it is complete
            with tempfile.NamedTemporaryFile(dir=out_dir, delete=False) as handle:
                torch.save(result, handle)
            os.replace(handle.name, Path(out_dir) / "results.pt")
    except Exception:
        (Path(out_dir) / f"error-{rank}.txt").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_on_ranks(fn: Callable[[int, int], Any], out_dir: Path, world: int = 2, timeout_s: float = 180) -> Any:
    """fn(rank, world) on `world` spawned processes (fn must be importable: a module-level function);
    returns rank 0's result, or fails with every rank's traceback."""
    context = mp.start_processes(_worker, args=(world, _free_port(), str(out_dir), fn), nprocs=world, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{world}-process run did not finish in {timeout_s} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    errors = sorted(Path(out_dir).glob("error-*.txt"))
    assert not errors, "\n".join(e.read_text() for e in errors)
    return torch.load(Path(out_dir) / "results.pt")
