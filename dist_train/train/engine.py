"""The training loop: one DeepSpeed engine for every model of the project.

Read top to bottom: set up the process group, the model (by name from the registry), the loader and
the DeepSpeed engine; resume from the latest complete checkpoint if there is one; then step, log,
checkpoint and evaluate until `max_steps`. Runs the same under torchrun, the deepspeed launcher, a
SLURM task, or as one plain process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from dist_train.config import to_dict, without_storage_secrets
from dist_train.data.shards import atomic_write_bytes
from dist_train.distributed.buffers import synchronise_buffers
from dist_train.distributed.env import detect_env, init_distributed
from dist_train.train import checkpoint as ckpt
from dist_train.train.config import TrainConfig
from dist_train.storage import is_url, location
from dist_train.train.tensorboard import TensorBoardLogger

log = logging.getLogger(__name__)


class TrainError(RuntimeError):
    """A training run that cannot start as configured; the message says why and what to do."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup_process_group() -> tuple[int, int, torch.device]:
    """Join (or, for one plain process, create) the process group; returns rank, world size, device."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    env = detect_env()
    if env.is_distributed:
        init_distributed(env=env)
    elif not dist.is_initialized():  # one process: DeepSpeed still wants a process group
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(_free_port())}.items():
            os.environ.setdefault(key, value)
        # An in-memory store: one process needs no rendezvous, so it opens no port at all.
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", store=dist.HashStore(),
                                rank=0, world_size=1)
    device = torch.device("cuda", env.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


# the columns of TensorBoard's HPARAMS tab (the tags a model does not log stay empty)
HPARAM_METRICS = ["loss/total", "eval/sentence_translation", "eval/cross_modal_mean_recall", "eval/mean_recall_A",
                  "eval/sacrebleu"]

# what the experiment config decides; a DeepSpeed JSON that sets them too is overruled (with a warning)
EXPERIMENT_DS_KEYS = ("optimizer", "scheduler", "train_batch_size", "train_micro_batch_size_per_gpu",
                      "gradient_accumulation_steps")


def deepspeed_config(cfg: TrainConfig, total_steps: int, world_size: int, micro_batches: int = 1) -> dict[str, Any]:
    """The engine's JSON from configs/deepspeed plus what this experiment decides (batch, optimizer, schedule).

    micro_batches: backward passes per optimizer step (an objective's gradient-cached sub-batches); DeepSpeed
    counts them as gradient accumulation steps of data.batch_size / micro_batches samples.
    """
    from dist_train.config import find_config

    path = find_config(cfg.deepspeed.config)  # or the shipped file of that name (configs/deepspeed/zero2.json)
    if not path.is_file():
        raise TrainError(f"deepspeed.config: file not found: {path}")
    try:
        ds = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise TrainError(f"deepspeed.config: {path} is not JSON ({e})") from None
    if not isinstance(ds, dict):
        raise TrainError(f"deepspeed.config: {path} must hold a JSON object")
    # a full ds_config of one's own is accepted: what the experiment decides replaces it, said once
    replaced = [key for key in EXPERIMENT_DS_KEYS if key in ds]
    if replaced and (not dist.is_initialized() or dist.get_rank() == 0):
        log.warning("%s sets %s: the experiment config decides these (data.batch_size, optim.*), its values "
                    "replace the file's", path, ", ".join(replaced))
    if cfg.deepspeed.zero_stage is not None:
        ds.setdefault("zero_optimization", {})["stage"] = cfg.deepspeed.zero_stage
    if cfg.deepspeed.precision is not None:
        ds["bf16"] = {"enabled": cfg.deepspeed.precision == "bf16"}
        ds["fp16"] = {"enabled": cfg.deepspeed.precision == "fp16"}
    if cfg.deepspeed.gradient_clipping is not None:
        ds["gradient_clipping"] = cfg.deepspeed.gradient_clipping
    ds["train_micro_batch_size_per_gpu"] = cfg.data.batch_size // micro_batches
    ds["gradient_accumulation_steps"] = micro_batches
    ds["train_batch_size"] = cfg.data.batch_size * world_size
    from dist_train.train.config import OPTIMIZERS

    ds["optimizer"] = {"type": OPTIMIZERS[cfg.optim.name], "params": {
        "lr": cfg.optim.lr, "betas": list(cfg.optim.betas), "eps": cfg.optim.eps,
        "weight_decay": cfg.optim.weight_decay}}
    if cfg.optim.name != "adamw" and not torch.cuda.is_available():
        raise TrainError(f"optim.name={cfg.optim.name}: DeepSpeed's {OPTIMIZERS[cfg.optim.name]} runs on GPUs only "
                         "(a fused CUDA kernel / compressed NCCL communication); use optim.name=adamw here")
    if cfg.optim.name == "onebitadam":
        ds["optimizer"]["params"].update({"freeze_step": cfg.optim.onebit_freeze_steps, "cuda_aware": False,
                                          "comm_backend_name": "nccl"})
    if cfg.optim.name == "adamw" and not torch.cuda.is_available():
        # DeepSpeed's CPU build of FusedAdam keeps beta**t in C++ process state as a running product
        # (beta**t = beta**(t-1) * beta) and a new process starts it from pow(beta, t): the rounding
        # differs at some steps (a resume after step 2, 5, 8 or 11 gives other updates), and no checkpoint
        # holds it. torch's AdamW derives everything from its state_dict, so a resumed run is exact.
        # (The CUDA FusedAdam computes pow(beta, step) at every step and keeps nothing.)
        ds["optimizer"]["params"]["torch_adam"] = True
    warmup = min(cfg.optim.warmup_steps, max(total_steps - 1, 0))
    # DeepSpeed's schedule needs a warm-up of at least one step: none is one that starts at the full rate
    ds["scheduler"] = {"type": "WarmupCosineLR", "params": {
        "total_num_steps": total_steps, "warmup_num_steps": max(warmup, 1),
        "warmup_min_ratio": 0.0 if warmup else 1.0, "cos_min_ratio": cfg.optim.min_lr_ratio, "warmup_type": "linear"}}
    ds.setdefault("steps_per_print", 10**9)
    return ds


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms and embeddings' position tables (the usual split)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _memory_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    if not values:
        return {}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or resume) the run in `cfg.out_dir`; returns a small summary (on every rank)."""
    from dist_train.train.data import build_train_loader, dataset_vocab
    from dist_train.train.objectives import build_objective

    from dist_train.config import apply_storage_options
    from dist_train.train.remote_run import RemoteRun, run_folder

    apply_storage_options(cfg)
    out = run_folder(cfg.out_dir, cfg.checkpoint.staging_dir)
    remote = RemoteRun(cfg.out_dir, out) if is_url(cfg.out_dir) else None
    if remote is not None:  # the run is staged on this node: bring what a resume reads first
        rank, world_size, device = setup_process_group()
        if detect_env().local_rank == 0:
            remote.pull(cfg.checkpoint.resume_from)
        _barrier()
    resume_from = preflight(cfg, record=detect_env().rank == 0)
    vocab_hash = vocab_sha256(f"{cfg.data.shards.rstrip('/')}/spm.model")
    checkpoints = out / "checkpoints"
    import deepspeed

    if remote is None:
        rank, world_size, device = setup_process_group()
    log_file = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(_yaml(without_storage_secrets(to_dict(cfg))))
        log_file = _log_to_file(out / "out.log")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Filling every new allocation only guards against reading uninitialised memory; with
        # DeepSpeed's large gradient buckets it costs a tenth of a step and adds no determinism.
        torch.utils.deterministic.fill_uninitialized_memory = False

    vocab = dataset_vocab(cfg)
    objective = build_objective(cfg, vocab)
    model = objective.build_model()
    if rank == 0:
        config_of = getattr(model, "config_dict", None)
        (out / "model.yaml").write_text(_yaml({"model": cfg.model, "config": config_of() if config_of else {},
                                               "vocab_sha256": vocab_hash}))
        # the run folder keeps the vocabulary its token ids mean (what export ships beside the weights)
        vocab_file = location(cfg.data.shards) / "spm.model"
        if vocab_file.is_file():
            atomic_write_bytes(out / "spm.model", vocab_file.read_bytes())
    loader = build_train_loader(cfg, vocab, rank, world_size)
    steps_per_epoch = loader.steps_per_epoch
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    ds_config = deepspeed_config(cfg, total_steps, world_size, getattr(objective, "micro_batches", 1))
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, model_parameters=getattr(objective, "parameter_groups", parameter_groups)(model, cfg.optim.weight_decay),
        config=ds_config)

    # an objective with a second optimizer (the MMT critic) steps a second engine of its own
    extra_engines = objective.build_engines(cfg, total_steps, world_size) if hasattr(objective, "build_engines") else {}
    step = 0
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + rank)  # augmentation and masking
    resumed = ckpt.load(engine, checkpoints, world_size, tag=resume_from, extra_engines=extra_engines)
    if resumed is not None:
        client_state, rank_state = resumed
        step = int(client_state["step"])
        if hasattr(objective, "load_state_dict"):  # e.g. early stopping's best score and patience
            objective.load_state_dict(client_state.get("objective") or {})
        loader.load_state_dict(rank_state["loader"])
        ckpt.set_rng_state(rank_state["rng"])
        generator.set_state(rank_state["generator"])
    tb = TensorBoardLogger(out / "tb", enabled=rank == 0)
    tb.hparams(without_storage_secrets(to_dict(cfg)), HPARAM_METRICS)
    if rank == 0:
        log.info("training %s: %d steps (%d per epoch), %d processes x batch %d, ZeRO stage %s, from step %d",
                 cfg.model, total_steps, steps_per_epoch, world_size, cfg.data.batch_size,
                 ds_config.get("zero_optimization", {}).get("stage", 0), step)

    def save() -> None:
        synchronise_buffers(engine.module)  # the checkpoint holds rank 0's: make it every rank's
        client_state = {"step": step, "epoch": loader.epoch, "world_size": world_size}
        if hasattr(objective, "state_dict"):
            client_state["objective"] = objective.state_dict()
        ckpt.save(engine, checkpoints, step, client_state=client_state,
                  rank_state={"loader": loader.state_dict(), "rng": ckpt.rng_state(),
                              "generator": generator.get_state()},
                  keep_last=cfg.checkpoint.keep_last, extra_engines=extra_engines)
        if remote is not None:  # every node uploads its ranks' files, then rank 0 the pointer, last
            tag = ckpt.tag_for(step)
            if detect_env().local_rank == 0:
                remote.push_step(tag)
                if rank != 0:  # rank 0 pruned its own staging folder in ckpt.save
                    ckpt.prune(checkpoints, cfg.checkpoint.keep_last, tag)
            _barrier()
            if rank == 0:
                remote.push_run(tag)
            _barrier()

    engine.train()
    window = {"data": 0.0, "compute": 0.0, "samples": 0, "steps": 0}
    sums: dict[str, float] = {}
    last_saved = step
    progress = {"start_step": step, "start_time": time.perf_counter(), "total": total_steps}
    t_data = time.perf_counter()
    batches = iter(loader)
    stopped = _agreed_stop(objective, device)  # a resumed run that had already stopped early
    while step < total_steps and not stopped:
        batch = next(batches)
        t_compute = time.perf_counter()
        window["data"] += t_compute - t_data
        if hasattr(objective, "backward_step"):  # objectives that run their own backward (gradient caching)
            metrics = objective.backward_step(engine, batch, generator, device, step)
        else:
            loss, metrics = objective.loss(engine, batch, generator, device, step)
            engine.backward(loss)
        engine.step()
        step += 1
        window["compute"] += time.perf_counter() - t_compute
        window["samples"] += len(batch["keys"])
        window["steps"] += 1
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        if step % cfg.log.every_steps == 0 or step == total_steps:
            _log_window(tb, engine, scheduler, sums, window, batch, step, device, world_size, progress)
            sums = {}
            window = {"data": 0.0, "compute": 0.0, "samples": 0, "steps": 0}
        if cfg.eval.every_steps and step % cfg.eval.every_steps == 0 and step != total_steps:
            synchronise_buffers(engine.module)  # evaluation spreads its batches over the ranks
            objective.evaluate(engine, cfg, tb, step, device)
            stopped = _agreed_stop(objective, device)
        if step % cfg.checkpoint.every_steps == 0 or step == total_steps:
            save()
            last_saved = step
        t_data = time.perf_counter()
    if last_saved != step:
        save()
    result = {}
    if stopped and rank == 0:
        log.info("stopped early at step %d: %s", step, objective.stop_reason())
    if step == total_steps and not stopped:
        synchronise_buffers(engine.module)  # as saved in the last checkpoint
        result = objective.evaluate(engine, cfg, tb, step, device)
    tb.close()
    if rank == 0:
        log.info("finished at step %d; checkpoints in %s, TensorBoard logs in %s", step,
                 f"{cfg.out_dir.rstrip('/')}/checkpoints (staged in {checkpoints})" if remote else checkpoints,
                 out / "tb")
    if log_file is not None:
        logging.getLogger().removeHandler(log_file)
        log_file.close()
    if remote is not None and rank == 0:  # the final evaluation's TensorBoard summaries and the log
        remote.push_run()
    return {"step": step, "total_steps": total_steps, "eval": result, "stopped_early": stopped}


def _agreed_stop(objective, device: torch.device) -> bool:
    """Whether the objective stops training now (early stopping; rank 0 evaluates), the same on every rank."""
    if not hasattr(objective, "should_stop"):
        return False
    flag = torch.tensor([1.0 if objective.should_stop() else 0.0], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def preflight(cfg: TrainConfig, record: bool = False) -> str | None:
    """Every check of a run against its dataset and its run folder, before anything is written (also what
    `dist-train train` runs once before it starts local processes): the dataset holds the splits the run
    reads, the objective can evaluate, and a run folder that is resumed is resumed from a whole checkpoint
    with its settings and its vocabulary. Returns the tag to resume from (None: a fresh run). `record`:
    keep the old config as config.<step>.yaml when allow_config_change lets the settings change (rank 0)."""
    from dist_train.train.objectives import check_training_data
    from dist_train.train.resume import check_resume

    from dist_train.train.remote_run import run_folder

    check_dataset(cfg)
    check_training_data(cfg)
    out = run_folder(cfg.out_dir, cfg.checkpoint.staging_dir)
    tag = ckpt.resume_tag(out / "checkpoints", cfg.checkpoint.resume_from)
    if tag is not None:
        check_vocab(out, cfg.data.shards, vocab_sha256(f"{cfg.data.shards.rstrip('/')}/spm.model"))
        check_resume(without_storage_secrets(to_dict(cfg)), out, tag, cfg.allow_config_change, record=record)
    return tag


def check_dataset(cfg: TrainConfig) -> None:
    """The dataset is a preprocessed one and holds the training split and the evaluation split (a run
    must not find after its last step that it cannot evaluate); ConfigError naming the key otherwise."""
    from dist_train.config import ConfigError
    from dist_train.data.shards import list_finished_shards, split_names

    root = location(cfg.data.shards)
    if not (root / "spm.model").is_file():
        raise FileNotFoundError(f"data.shards: {root / 'spm.model'} not found: data.shards must be a dataset made by "
                                "dist-train preprocess (with its vocabulary stage on)")
    for key, split in (("data.split", cfg.data.split), ("eval.split", cfg.eval.split)):
        if not list_finished_shards(root, split):
            splits = [name for name in split_names(root) if list_finished_shards(root, name)]
            raise ConfigError(f"config key '{key}' = {split!r}: {cfg.data.shards} has no finished shards of that "
                              f"split (its splits: {', '.join(splits) or 'none'})")


def vocab_sha256(path: Path) -> str | None:
    """The sha256 of a sentencepiece model file (what a checkpoint's token ids mean), None without one."""
    import hashlib

    path = location(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def check_vocab(out: Path, shards: str, vocab_hash: str | None) -> None:
    """A run is resumed on a dataset with the vocabulary it was trained with (its model.yaml records it):
    the same data.shards preprocessed again with another vocabulary gives its token ids other meanings."""
    from dist_train.config import ConfigError

    path = Path(out) / "model.yaml"
    if not path.is_file():
        return
    import yaml

    try:
        saved = (yaml.safe_load(path.read_text()) or {}).get("vocab_sha256")
    except (yaml.YAMLError, OSError, UnicodeDecodeError, AttributeError):
        return
    if saved and vocab_hash and saved != vocab_hash:
        raise ConfigError(f"data.shards: the vocabulary {Path(shards) / 'spm.model'} (sha256 {vocab_hash[:12]}) is not "
                          f"the one the run in {out} was trained with (sha256 {saved[:12]}, {path}); resume on "
                          "that dataset or start a new out_dir")


def _log_to_file(path: Path) -> logging.Handler:
    """Rank 0's log, also in OUT_DIR/out.log (appended on resume), as open_clip keeps one per run."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.INFO:  # -q: the console stays quiet, the file gets INFO
        for other in root.handlers:
            if other.level == logging.NOTSET:
                other.setLevel(root.getEffectiveLevel())
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress_text(step: int, progress: dict) -> str:
    """'step 40/465 (9%), ETA 3m10s': the remaining steps at the pace of this process's steps so far."""
    total = progress["total"]
    done = step - progress["start_step"]
    text = f"step {step}/{total} ({100 * step // max(total, 1)}%)"
    if done > 0 and step < total:
        elapsed = time.perf_counter() - progress["start_time"]
        text += f", ETA {_duration(elapsed / done * (total - step))}"
    return text


def _log_window(tb: TensorBoardLogger, engine, scheduler, sums, window, batch, step, device, world_size,
                progress: dict) -> None:
    n = max(1, window["steps"])
    per_rank = window["samples"] / max(window["data"] + window["compute"], 1e-9)
    values = {f"loss/{k}": v / n for k, v in sums.items() if not k.startswith("stat/")}
    values.update({k: v / n for k, v in sums.items() if k.startswith("stat/")})
    values.update({
        "perf/samples_per_s_rank": per_rank,
        "perf/data_wait_s": window["data"] / n,
        "perf/compute_s": window["compute"] / n,
        "perf/memory_bytes": _memory_bytes(device),
        "data/corrupt_samples": batch["stats"].get("corrupt_samples", 0),
        "data/corrupt_shards": batch["stats"].get("corrupt_shards", 0),
        "data/repeated_samples": batch["stats"].get("repeated", 0),
    })
    values = _mean_over_ranks(values, device)
    values["perf/samples_per_s_global"] = values["perf/samples_per_s_rank"] * world_size
    values["train/lr"] = scheduler.get_last_lr()[0] if scheduler is not None else 0.0
    grad_norm = engine.get_global_grad_norm()
    if grad_norm is not None:
        values["train/grad_norm"] = float(grad_norm)
    tb.scalars(values, step)
    tb.flush()
    if dist.get_rank() == 0:
        log.info("%s: %s", progress_text(step, progress),
                 ", ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in values.items() if k.startswith("loss/")))


def _yaml(obj: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(obj))
