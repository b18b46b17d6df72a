"""Input pipeline: samples/s the training loader delivers against the samples/s the training step consumes.

* delivered: rank 0's TrainLoader (1 process, the config's batch size, shards, image size, shuffle buffer)
  iterated for `--epochs` whole epochs with nothing else to do: samples / seconds from creating the
  iterator to receiving the last batch. That includes what training pays too: starting the worker
  processes at every epoch (TrainLoader does not keep them between epochs), reading, decoding, resizing
  and collating. The time to the first batch is shown on its own as well. Rows: the config's
  `data.num_workers`, then 0, 1 and 2 workers.
* consumed: the plain PyTorch training step of tools/bench/engine.py (the objective's model, loss with its
  batched augmentation and masking, backward, clipping, AdamW) on batches of the same size held in memory,
  median over `--steps` steps after `--warmup`, measured in this run before the loader.

The ratio delivered/consumed should be at least 2, so the loader is never the bottleneck. Both are
measured alone: in training, loader workers and the step share the cores (on a 2-core machine that
matters), and with 0 workers the loader runs in the training process, so its time adds to every step
whatever the ratio. The DeepSpeed engine consumes a little more slowly than the plain step (see
tools/bench/engine.py), so the plain step is the stricter reference.

    python tools/bench/loader.py                                   # packs and preprocesses the tiny preset first
    python tools/bench/loader.py --shards /tmp/benchdata/world-tiny --epochs 3
    python tools/bench/loader.py --shards DIR data.batch_size=48 data.image_size=96
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import statistics
import time
from pathlib import Path

import torch

GOAL = 2.0


def _bench_engine():
    """tools/bench/engine.py (its dataset, config and plain-step helpers), imported by path."""
    spec = importlib.util.spec_from_file_location("_bench_engine", Path(__file__).with_name("engine.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loader_rate(cfg, vocab, num_workers: int, epochs: int) -> dict:
    """Iterate `epochs` epochs of rank 0's TrainLoader with `num_workers` workers; no training."""
    from dist_train.train.data import build_train_loader

    cfg = copy.deepcopy(cfg)
    cfg.data.num_workers = num_workers
    loader = build_train_loader(cfg, vocab, 0, 1)
    n_batches = loader.steps_per_epoch * epochs
    samples = 0
    t0 = time.perf_counter()
    first = None
    it = iter(loader)
    try:
        for _ in range(n_batches):
            batch = next(it)
            samples += len(batch["keys"])
            if first is None:
                first = time.perf_counter() - t0
    finally:
        it.close()
    elapsed = time.perf_counter() - t0
    return {"workers": num_workers, "batches": n_batches, "samples": samples, "seconds": elapsed,
            "first": first, "rate": samples / elapsed}


def main() -> None:
    E = _bench_engine()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    E.add_common_args(parser)
    parser.add_argument("--epochs", type=int, default=2, help="whole epochs the loader delivers per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                        help="numbers of loader workers to show besides the config's")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches in memory for the training step")
    args = parser.parse_args()

    E.set_threads(args.threads)
    with E.dataset(args.shards) as (shards, work_dir):
        from dist_train.train.data import dataset_vocab
        from dist_train.train.objectives import GlobetrotterObjective

        cfg = E.load_cfg(args.config, shards, work_dir, args.overrides)
        if cfg.deterministic:  # as train() does
            torch.use_deterministic_algorithms(True, warn_only=True)
        vocab = dataset_vocab(cfg)
        device = torch.device("cpu")

        load0 = os.getloadavg()
        batches = E.prefetch(cfg, vocab, args.batches)
        plain = E.PlainStep(cfg, GlobetrotterObjective(cfg, vocab), device)
        times = E.timed_steps([plain], batches, args.warmup, args.steps)[plain.name]
        step = statistics.median(t[0] for t in times)
        batch_size = len(batches[0]["keys"])
        consumed = batch_size / step
        del plain, batches

        settings = [cfg.data.num_workers] + [w for w in args.workers if w != cfg.data.num_workers]
        rows = [loader_rate(cfg, vocab, w, args.epochs) for w in settings]

        print(f"{shards}: batch {batch_size}, image size {cfg.data.image_size}, shuffle buffer "
              f"{cfg.data.shuffle_buffer}; {torch.get_num_threads()} torch threads on {os.cpu_count()} cores")
        print(f"training step (plain PyTorch, {cfg.model}, batches in memory): median {step * 1e3:.0f} ms over "
              f"{args.steps} steps -> consumes {consumed:.1f} samples/s")
        print(f"loader alone, {args.epochs} epochs per setting (worker start-up at every epoch included):")
        print(f"{'num_workers':<16} {'batches':>8} {'seconds':>8} {'first batch s':>14} {'samples/s':>10} "
              f"{'loader/step':>12}")
        for r in rows:
            label = f"{r['workers']} (config)" if r is rows[0] else str(r["workers"])
            print(f"{label:<16} {r['batches']:>8} {r['seconds']:>8.2f} {r['first']:>14.2f} {r['rate']:>10.1f} "
                  f"{r['rate'] / consumed:>11.2f}x")
        print(E.load_note(load0))
        ratio = rows[0]["rate"] / consumed
        verdict = "meets" if ratio >= GOAL else "misses"
        print(f"ratio loader/consumption with the config's num_workers={rows[0]['workers']}: {ratio:.2f}x "
              f"({verdict} the goal of at least {GOAL:.0f}x)")


if __name__ == "__main__":
    main()
