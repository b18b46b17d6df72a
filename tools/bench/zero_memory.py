"""ZeRO memory: what each rank holds for parameters, fp32 master weights and optimizer state at ZeRO stages 0-3.

Runs `--nproc` processes (default 2; gloo on CPU) under torch.distributed.run. For every stage it builds
the model afresh from the same seed, then the engine exactly as `dist-train train` does
(deepspeed_config(cfg, ...) from configs/deepspeed/zero<stage>.json, parameter_groups(...),
deepspeed.initialize), takes one training step (objective loss, engine.backward, engine.step) on one
batch of the rank's own part of the training split, and then counts, per rank, the bytes of:

* parameters: the storage behind the model's parameters. ZeRO 0-2 keep every parameter on every rank
  (ZeRO 1/2 in flat, padded buffers that the parameters are views of); ZeRO-3 keeps `p.ds_tensor`, this
  rank's partition of each parameter (flat, padded buffers), plus `p.data` of the parameters that stay
  gathered between steps (those under stage3_param_persistence_threshold of zero3.json; the others
  have an empty `p.data` outside forward and backward);
* fp32 master: the fp32 weights the optimizer updates, as DeepSpeed holds them. Stage 0 in fp32: none,
  the optimizer updates the model's parameters themselves; ZeRO 1/2:
  `engine.optimizer.single_partition_of_fp32_groups` (this rank's partition, a copy even in fp32);
  ZeRO-3: `engine.optimizer.fp32_partitioned_groups_flat` (DeepSpeed means to reuse the parameter
  partition for it when that is already fp32 on the optimizer's device, but its test compares a
  torch.device with a device name string and fails, so in fp32 it is a copy too; should it ever share
  the parameters' storage, a note says so and the total counts it once). For bf16/fp16 the stage-0
  wrappers' fp32 groups would be counted the same way, but `deepspeed.precision=bf16` does not get
  through a step here: the objective feeds fp32 images to the bf16 model (the code path of train());
* optimizer state: every tensor in the state of the torch optimizer that does the update
  (`engine.optimizer` at stage 0, `engine.optimizer.optimizer` inside the ZeRO wrappers; for the
  config's AdamW, DeepSpeed builds its FusedAdam, with torch AdamW's state layout): exp_avg and
  exp_avg_sq, one pair per parameter at stage 0 and per flat partition under ZeRO, plus any step
  counters kept as tensors (DeepSpeed's FusedAdam keeps its step in the param group: none here).

Bytes are those of distinct storages (untyped_storage().nbytes(), padding included), each storage counted
once within a column; the total counts each storage once across columns. Not counted: gradients and
ZeRO's gradient and communication buckets, activations, the allocator's caches, the process itself.
The ratios divide each stage's per-rank bytes by stage 0's on the same rank.

    python tools/bench/zero_memory.py                               # packs and preprocesses the tiny preset first
    python tools/bench/zero_memory.py --shards /tmp/benchdata/world-tiny --nproc 2
    python tools/bench/zero_memory.py --shards DIR model_config.hidden=256
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

MASTER_ATTRS = ("single_partition_of_fp32_groups",  # ZeRO 1/2
                "fp32_partitioned_groups_flat",  # ZeRO 3
                "fp32_groups_flat_partition",  # stage 0 with bf16 (BF16_Optimizer)
                "fp32_groups_flat")  # stage 0 with fp16 (FP16_Optimizer)


def _bench_engine():
    spec = importlib.util.spec_from_file_location("_bench_engine", Path(__file__).with_name("engine.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _storages(tensors) -> dict[tuple[int, str], int]:
    """{(storage address, device): bytes} of the distinct storages behind `tensors`."""
    out: dict[tuple[int, str], int] = {}
    for t in tensors:
        s = t.untyped_storage()
        if s.nbytes():
            out[(s.data_ptr(), str(t.device))] = s.nbytes()
    return out


def held_bytes(engine, stage: int) -> dict[str, int]:
    params = list(engine.module.parameters())
    param_tensors = [p.data for p in params]
    persistent = 0
    if stage == 3:
        param_tensors += [p.ds_tensor for p in params]
        persistent = sum(s for s in _storages(p.data for p in params).values())
    opt = engine.optimizer
    master_tensors = []
    for attr in MASTER_ATTRS:
        if hasattr(opt, attr):
            master_tensors = list(_tensors(getattr(opt, attr)))
            break
    inner = getattr(opt, "optimizer", opt)
    state_tensors = list(_tensors(list(inner.state.values())))
    moments = [v for st in inner.state.values() for k, v in st.items()
               if k in ("exp_avg", "exp_avg_sq") and isinstance(v, torch.Tensor)]
    p, m, s = _storages(param_tensors), _storages(master_tensors), _storages(state_tensors)
    every = {**p, **m, **s}
    return {"params": sum(p.values()), "persistent": persistent, "master": sum(m.values()),
            "master_is_params": bool(m) and set(m) <= set(p), "state": sum(s.values()),
            "moments": sum(_storages(moments).values()), "total": sum(every.values()),
            "numel": sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in params),
            "optimizer": type(opt).__name__ + (f"/{type(inner).__name__}" if inner is not opt else "")}


def worker(args) -> None:
    import warnings

    import deepspeed
    import torch.distributed as dist

    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")  # DeepSpeed's collectives

    E = _bench_engine()
    from dist_train.train.data import build_train_loader, dataset_vocab
    from dist_train.train.engine import deepspeed_config, parameter_groups, setup_process_group
    from dist_train.train.objectives import GlobetrotterObjective

    rank, world, device = setup_process_group()
    cfg = E.load_cfg(args.config, args.shards, args.work_dir, args.overrides)
    vocab = dataset_vocab(cfg)
    one = copy.deepcopy(cfg)
    one.data.num_workers = 0
    it = iter(build_train_loader(one, vocab, rank, world))
    batch = next(it)
    it.close()

    results = {}
    for stage in args.stages:
        c = copy.deepcopy(cfg)
        ds_json = Path(args.ds_json_dir) / f"zero{stage}.json"
        if ds_json.is_file():
            c.deepspeed.config = str(ds_json)
        c.deepspeed.zero_stage = stage
        objective = GlobetrotterObjective(c, vocab)
        torch.manual_seed(c.seed)
        model = objective.build_model()
        engine, _, _, _ = deepspeed.initialize(model=model, config=deepspeed_config(c, 10, world),
                                               model_parameters=parameter_groups(model, c.optim.weight_decay))
        engine.train()
        generator = torch.Generator().manual_seed(c.seed * 1000 + rank)
        loss, _ = objective.loss(engine, batch, generator, device, 0)
        engine.backward(loss)
        engine.step()
        results[stage] = {**held_bytes(engine, stage), "json": str(c.deepspeed.config)}
        if hasattr(engine, "destroy"):
            engine.destroy()
        del engine, model, objective
        gc.collect()
        dist.barrier()

    gathered = [None] * world
    dist.all_gather_object(gathered, results)
    if rank == 0:
        report(gathered, args.stages, world)
    dist.barrier()
    dist.destroy_process_group()


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f}"


def report(per_rank: list[dict], stages: list[int], world: int) -> None:
    first = per_rank[0][stages[0]]
    print(f"{world} processes; model: {first['numel'] / 1e6:.2f} M parameters = {_mib(first['numel'] * 4)} MiB "
          f"in fp32; bytes per rank after one step, MiB")
    print("ratio columns: param = parameters, state = optimizer state, st+mst = optimizer state + fp32 master "
          "(what ZeRO 1/2 partition), total = all three (each storage once)")
    base_stage = 0 if 0 in stages else stages[0]
    cols = ("params", "master", "state", "total")
    for stage in stages:
        r0 = per_rank[0][stage]
        print(f"\nZeRO stage {stage} ({Path(r0['json']).name}; optimizer {r0['optimizer']})")
        print(f"{'rank':<6} {'parameters':>11} {'fp32 master':>12} {'opt. state':>11} {'total':>9}   "
              f"ratios to stage {base_stage}: {'param':>6} {'state':>6} {'st+mst':>6} {'total':>6}")
        for rank, results in enumerate(per_rank):
            r, b = results[stage], results[base_stage]
            ratios = [r["params"] / b["params"], r["state"] / b["state"],
                      (r["state"] + (0 if r["master_is_params"] else r["master"]))
                      / (b["state"] + (0 if b["master_is_params"] else b["master"])),
                      r["total"] / b["total"]]
            print(f"{rank:<6} " + " ".join(f"{_mib(r[c]):>{w}}" for c, w in zip(cols, (11, 12, 11, 9)))
                  + f"   {'':>19}" + " ".join(f"{x:>6.3f}" for x in ratios))
        notes = []
        if r0["persistent"]:
            notes.append(f"parameters include {_mib(r0['persistent'])} MiB of small parameters kept whole "
                         "(stage3_param_persistence_threshold)")
        if r0["master_is_params"]:
            notes.append("the fp32 master partition is the parameter partition itself (same storage): "
                         "counted once in the total")
        if r0["state"] != r0["moments"]:
            notes.append(f"optimizer state includes {_mib(r0['state'] - r0['moments'])} MiB besides exp_avg/exp_avg_sq")
        for n in notes:
            print(f"  note: {n}")
    print(f"\nsummary (mean over ranks, MiB; ratio of the total to stage {base_stage}'s):")
    print(f"{'stage':<6} {'parameters':>11} {'fp32 master':>12} {'opt. state':>11} {'total':>9} {'ratio':>7}")
    base = sum(r[base_stage]["total"] for r in per_rank) / world
    for stage in stages:
        mean = {c: sum(r[stage][c] for r in per_rank) / world for c in cols}
        print(f"{stage:<6} " + " ".join(f"{_mib(mean[c]):>{w}}" for c, w in zip(cols, (11, 12, 11, 9)))
              + f" {mean['total'] / base:>6.3f}x")


def main() -> None:
    E = _bench_engine()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    E.add_common_args(parser)
    parser.add_argument("--nproc", type=int, default=2, help="processes (ranks)")
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3], help="ZeRO stages")
    parser.add_argument("--ds-json-dir", type=Path, default=E.REPO / "configs" / "deepspeed",
                        help="where zero<stage>.json are (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the workers are stopped")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        E.set_threads(args.threads)
        worker(args)
        return

    with E.dataset(args.shards) as (shards, work_dir):
        env = dict(os.environ)
        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
        env.setdefault("OMP_NUM_THREADS", "1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
               str(Path(__file__).resolve()), *args.overrides, "--worker", "--shards", str(shards),
               "--config", str(args.config), "--work-dir", str(work_dir), "--ds-json-dir", str(args.ds_json_dir),
               "--threads", str(args.threads), "--stages", *map(str, args.stages)]
        try:
            done = subprocess.run(cmd, env=env, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            sys.exit(f"the workers did not finish in {args.timeout:.0f}s")
        if done.returncode != 0:
            sys.exit(f"the workers failed (exit status {done.returncode}): {' '.join(cmd)}")


if __name__ == "__main__":
    main()
