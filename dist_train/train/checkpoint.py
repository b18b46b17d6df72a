"""Checkpoints: DeepSpeed's own (model, optimizer and ZeRO partitions) plus each rank's state.

A checkpoint `DIR/checkpoints/step00000100/` is complete once every rank has written its part;
only then does rank 0 replace the pointer `DIR/checkpoints/latest` (atomically, the file DeepSpeed's
`load_checkpoint` reads), and prune all but the last K. A crash mid-save leaves the previous
pointer, so a resumed run never loads a half-written checkpoint.

An objective that trains a second model with an optimizer of its own (the MMT critic) has a second
DeepSpeed engine; its files are a subfolder of the same step folder (`step00000100/critic/`), written
before the pointer moves and loaded with the main engine's, so one checkpoint always holds both.

Each rank's `rank_NNNNN.pt` holds what DeepSpeed's client state cannot (it is written by rank 0
only): the RNG states of that rank and the position of its data loader, as tensors and plain values.

Loading a checkpoint never runs code from it: every file is read with `torch.load(weights_only=True)`
(tensors, containers and plain values only), DeepSpeed's own files too (`deepspeed_loads()` holds its
`torch.load` calls to that, with the few plain-data DeepSpeed classes it pickles allowed). A file that
holds anything else, or is corrupt, is refused with a `CheckpointError` naming it. The `latest` pointer
and any tag must name a `stepNNNNNNNN` folder directly inside the checkpoints folder.

Before a checkpoint is loaded, every `.pt` file in it is checked to be a whole torch archive (a file cut
short by a full disk or a copy that stopped loses the archive's central directory at its end, and an empty
file has none): a truncated or empty file is named, with the previous complete checkpoint and the option
that resumes from it (`checkpoint.resume_from=TAG`, or `dist-train export --tag TAG`).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dist_train.data.shards import atomic_write_bytes

log = logging.getLogger(__name__)

LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely (unsafe or corrupt file, bad pointer or tag); the message
    is one line and names the file."""


TAG_PATTERN = re.compile(r"step\d{8,}")


def tag_for(step: int) -> str:
    return f"step{step:08d}"


def checkpoint_folder(checkpoints: Path, tag: str, source: str | None = None) -> Path:
    """`checkpoints/tag`, once `tag` is known to name an existing step folder directly inside `checkpoints`
    (never `../x`, an absolute path or a folder elsewhere through a link). `source`: where the tag came from,
    for the message."""
    checkpoints = Path(checkpoints)
    where = source or "tag"
    if not TAG_PATTERN.fullmatch(tag):
        raise CheckpointError(f"{where}: {tag!r} is not a checkpoint tag: it must name a folder stepNNNNNNNN "
                              f"directly inside {checkpoints}")
    folder = checkpoints / tag
    if not folder.is_dir():
        raise CheckpointError(f"{where}: names {tag}, but {folder} is not there; point it at an existing step "
                              f"folder of {checkpoints} (or remove {checkpoints / LATEST} to start afresh)")
    if folder.resolve().parent != checkpoints.resolve():
        raise CheckpointError(f"{where}: {folder} leads outside {checkpoints} (a link); refusing to load it")
    return folder


def latest_tag(checkpoints: Path) -> str | None:
    """The tag the `latest` pointer names, checked (`checkpoint_folder`); None when there is no pointer."""
    pointer = Path(checkpoints) / LATEST
    if not pointer.is_file():
        return None
    try:
        tag = pointer.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{pointer}: cannot be read as a checkpoint pointer ({_one_line(e)})") from None
    checkpoint_folder(checkpoints, tag, source=str(pointer))
    return tag


def step_folders(checkpoints: Path) -> list[str]:
    """The tags of the step folders directly inside `checkpoints`, oldest first."""
    checkpoints = Path(checkpoints)
    if not checkpoints.is_dir():
        return []
    return sorted(p.name for p in checkpoints.iterdir() if p.is_dir() and TAG_PATTERN.fullmatch(p.name))


def incomplete(folder: Path) -> str | None:
    """Why the checkpoint `folder` cannot be whole (a `.pt` file that is empty or not a whole torch archive,
    or no model states at all), naming the file; None when each file is whole. Reads only each archive's
    directory at its end, never the tensors."""
    folder = Path(folder)
    files = sorted(folder.rglob("*.pt"))  # an extra engine's files are in a subfolder
    if not any(f.parent == folder and (f.name.startswith("mp_rank_") or "model_states" in f.name) for f in files):
        return f"{folder} holds no model states (mp_rank_*_model_states.pt)"
    for f in files:
        size = f.stat().st_size
        if size == 0:
            return f"{f} is empty (0 bytes)"
        if not zipfile.is_zipfile(f):
            return f"{f} is truncated or not a torch checkpoint ({size} bytes, no archive directory at its end)"
    return None


def previous_complete(checkpoints: Path, tag: str) -> str | None:
    """The newest step folder older than `tag` whose files are whole, or None."""
    older = [t for t in step_folders(checkpoints) if t < tag]
    for candidate in reversed(older):
        if incomplete(Path(checkpoints) / candidate) is None:
            return candidate
    return None


def _what_to_do(checkpoints: Path, tag: str, option: str) -> str:
    prev = previous_complete(checkpoints, tag)
    if prev is None:
        return (f"no earlier complete checkpoint is left in {checkpoints}; remove {Path(checkpoints) / LATEST} "
                "to start afresh")
    return f"the previous complete checkpoint is {prev}: {option.format(tag=prev)}"


RESUME_OPTION = "resume from it with checkpoint.resume_from={tag}"
EXPORT_OPTION = "export it with --tag {tag}"


def check_complete(checkpoints: Path, tag: str, option: str = RESUME_OPTION) -> None:
    """Raise a CheckpointError naming the truncated or empty file of checkpoint `tag`, with the previous
    complete checkpoint and `option` (how to use it), when `incomplete` finds one."""
    problem = incomplete(Path(checkpoints) / tag)
    if problem is not None:
        raise CheckpointError(f"{problem}; {_what_to_do(checkpoints, tag, option)}")


def resume_tag(checkpoints: Path, requested: str | None = None) -> str | None:
    """The checkpoint a run resumes from: `requested` (checkpoint.resume_from), unless the `latest`
    pointer names a newer complete one (so that the same command can be rerun or requeued once training
    has moved past it); else the one `latest` names; None for a fresh run. Checked to be complete."""
    checkpoints = Path(checkpoints)
    latest = latest_tag(checkpoints)
    if requested is not None:
        checkpoint_folder(checkpoints, requested, source="checkpoint.resume_from")
        if latest is not None and latest > requested and incomplete(checkpoints / latest) is None:
            log.warning("checkpoint.resume_from=%s: the latest checkpoint %s is newer and complete; resuming "
                        "from it", requested, latest)
            return latest
        check_complete(checkpoints, requested)
        return requested
    if latest is not None:
        check_complete(checkpoints, latest)
    return latest


# ---------------------------------------------------------------------------------------- safe loading

def _deepspeed_globals() -> list:
    """The classes DeepSpeed 0.19 pickles into its checkpoints besides tensors and containers (found by
    reading the pickles of ZeRO 0-3 checkpoints), all plain data without a `__reduce__` or `__setstate__`
    of their own: unpickling one only creates an instance and sets its attributes to the saved plain
    values (ZeroStageEnum: looks up the enum member by its int value)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [
        LossScaler,         # optimizer states (ZeRO 1-3): the static loss scale (cur_scale, dynamic)
        DynamicLossScaler,  # the same under fp16: scale, window, hysteresis counters and a dtype
        ZeroStageEnum,      # optimizer states: the ZeRO stage that wrote them
        fragment_address,   # optimizer states (ZeRO 1-2): param_slice_mappings, a dataclass (numel, start)
    ]


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _load_error(path, e: Exception) -> CheckpointError:
    found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global by default|\. Please|\n|$)",
                      str(e))
    if found:
        detail = found.group(1).strip()
        if Path(path).name.startswith("rank_") and "GLOBAL numpy." in detail:
            return CheckpointError(
                f"{path}: refused to load: it holds pickled numpy objects ({detail}), as rank files written "
                "before RNG states were stored as tensors did; resume from a checkpoint written by this version "
                "or start the run afresh from its exported weights")
        return CheckpointError(
            f"{path}: refused to load: it holds pickled code or objects that are not tensors or plain values "
            f"({detail}); a checkpoint of this project never does, so the file is corrupt or was tampered with")
    return CheckpointError(f"{path}: cannot be read as a checkpoint ({_one_line(e)})")


_torch_load = torch.load  # the real one, also while deepspeed_loads() replaces it


def safe_load(path, map_location="cpu", **kw) -> Any:
    """`torch.load(path, weights_only=True)` with DeepSpeed's plain-data classes allowed; anything else in
    the file, or a corrupt file, raises a CheckpointError naming it."""
    with torch.serialization.safe_globals(_deepspeed_globals()):
        try:
            return _torch_load(path, map_location=map_location, weights_only=True, **kw)
        except Exception as e:
            raise _load_error(path, e) from None


@contextlib.contextmanager
def deepspeed_loads():
    """Within it, every `torch.load` (those DeepSpeed's `load_checkpoint` and `zero_to_fp32` make with
    weights_only=False) is a `safe_load`."""

    def guarded(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, **kw):
        if pickle_module is not None:
            raise CheckpointError(f"{f}: refused to load with a custom pickle module")
        return safe_load(f, map_location=map_location, mmap=mmap, **kw)

    previous = torch.load
    torch.load = guarded
    try:
        yield
    finally:
        torch.load = previous


# ----------------------------------------------------------------------------------- RNG and rank state

def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    state = {"python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def save(engine, checkpoints: Path, step: int, client_state: dict[str, Any], rank_state: dict[str, Any],
         keep_last: int, extra_engines: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint for `step` on every rank, then move the pointer (rank 0).
    `extra_engines`: {name: engine} saved into the step folder's subfolder `name`."""
    checkpoints = Path(checkpoints)
    tag = tag_for(step)
    engine.save_checkpoint(str(checkpoints), tag=tag, client_state=client_state, save_latest=False)
    for name, extra in (extra_engines or {}).items():
        extra.save_checkpoint(str(checkpoints / tag), tag=name, save_latest=False)
    rank = dist.get_rank() if dist.is_initialized() else 0
    import io

    buf = io.BytesIO()
    torch.save(rank_state, buf)
    atomic_write_bytes(checkpoints / tag / f"rank_{rank:05d}.pt", buf.getvalue())
    _barrier()  # every rank's files are on disk before the pointer moves
    if rank == 0:
        atomic_write_bytes(checkpoints / LATEST, tag.encode())
        prune(checkpoints, keep_last, tag)
    _barrier()
    return checkpoints / tag


def prune(checkpoints: Path, keep_last: int, tag: str) -> None:
    """Delete all but the newest `keep_last` step folders (never `tag`, the one just written)."""
    for old in sorted(p for p in Path(checkpoints).iterdir() if p.is_dir() and TAG_PATTERN.fullmatch(p.name))[:-keep_last]:
        if old.name != tag:
            shutil.rmtree(old, ignore_errors=True)


def load(engine, checkpoints: Path, world_size: int, tag: str | None = None,
         extra_engines: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Load checkpoint `tag` (default: `resume_tag`, the latest complete checkpoint) into `engine`; returns
    (client state, this rank's state), or None when there is none. A checkpoint from another number of
    processes is refused with a message that says what to do; a truncated, empty, unsafe or corrupt file,
    or a pointer that names no step folder directly inside `checkpoints`, with a CheckpointError naming it."""
    checkpoints = Path(checkpoints)
    if tag is None:
        tag = resume_tag(checkpoints)
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
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        rank_state = safe_load(checkpoints / tag / f"rank_{rank:05d}.pt")
        with deepspeed_loads():
            load_path, client_state = engine.load_checkpoint(str(checkpoints), tag=tag)
            for name, extra in (extra_engines or {}).items():
                if not (checkpoints / tag / name).is_dir():
                    raise CheckpointError(f"{checkpoints / tag} has no {name}/ folder: it was not written by this "
                                          f"objective (its {name} engine is saved there)")
                extra_path, _ = extra.load_checkpoint(str(checkpoints / tag), tag=name)
                if extra_path is None:
                    raise CheckpointError(f"{checkpoints / tag / name}: DeepSpeed found no model states in it")
    except CheckpointError as e:
        if "refused to load" in str(e):
            raise
        raise CheckpointError(f"{e}; {_what_to_do(checkpoints, tag, RESUME_OPTION)}") from None
    if load_path is None or client_state is None:
        raise CheckpointError(f"{checkpoints / tag}: DeepSpeed found no model states in it (see its warning above)")
    log.info("resumed from %s", checkpoints / tag)
    return client_state, rank_state
