"""Checkpoints: DeepSpeed's own (model, optimizer and ZeRO partitions) plus each rank's state.

A checkpoint `DIR/checkpoints/step00000100/` is complete once every rank has written its part;
only then does rank 0 replace the pointer `DIR/checkpoints/latest` (atomically, the file DeepSpeed's
`load_checkpoint` reads), and prune all but the last K. A crash mid-save leaves the previous
pointer, so a resumed run never loads a half-written checkpoint.

Each rank's `rank_NNNNN.pt` holds what DeepSpeed's client state cannot (it is written by rank 0
only): the RNG states of that rank and the position of its data loader.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dist_train.data.shards import atomic_write_bytes

log = logging.getLogger(__name__)

LATEST = "latest"


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def latest_tag(checkpoints: Path) -> str | None:
    pointer = Path(checkpoints) / LATEST
    if not pointer.is_file():
        return None
    tag = pointer.read_text().strip()
    return tag if (Path(checkpoints) / tag).is_dir() else None


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def save(engine, checkpoints: Path, step: int, client_state: dict[str, Any], rank_state: dict[str, Any],
         keep_last: int) -> Path:
    """Write a complete checkpoint for `step` on every rank, then move the pointer (rank 0)."""
    checkpoints = Path(checkpoints)
    tag = tag_for(step)
    engine.save_checkpoint(str(checkpoints), tag=tag, client_state=client_state, save_latest=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    import io

    buf = io.BytesIO()
    torch.save(rank_state, buf)
    atomic_write_bytes(checkpoints / tag / f"rank_{rank:05d}.pt", buf.getvalue())
    _barrier()  # every rank's files are on disk before the pointer moves
    if rank == 0:
        atomic_write_bytes(checkpoints / LATEST, tag.encode())
        for old in sorted(p for p in checkpoints.iterdir() if p.is_dir() and p.name.startswith("step"))[:-keep_last]:
            if old.name != tag:
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return checkpoints / tag


def load(engine, checkpoints: Path, world_size: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Load the latest complete checkpoint into `engine`; returns (client state, this rank's state),
    or None when there is none. A checkpoint from another number of processes is refused with a
    message that says what to do."""
    checkpoints = Path(checkpoints)
    tag = latest_tag(checkpoints)
    if tag is None:
        return None
    saved_ranks = sorted((checkpoints / tag).glob("rank_*.pt"))
    if len(saved_ranks) != world_size:
        raise RuntimeError(
            f"{checkpoints / tag} was written by {len(saved_ranks)} processes and this run has {world_size}. "
            f"Resume with {len(saved_ranks)} processes, or convert it to DeepSpeed's universal format "
            f"(python -m deepspeed.checkpoint.ds_to_universal --input_folder {checkpoints / tag} "
            f"--output_folder {checkpoints / tag}_universal) and start a new run from the exported weights "
            "(dist-train export), which restarts the optimizer state and the data order."
        )
    _, client_state = engine.load_checkpoint(str(checkpoints), tag=tag)
    rank = dist.get_rank() if dist.is_initialized() else 0
    rank_state = torch.load(checkpoints / tag / f"rank_{rank:05d}.pt", weights_only=False)
    log.info("resumed from %s", checkpoints / tag)
    return client_state, rank_state
