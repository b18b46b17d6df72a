"""Preprocessing throughput: the Ray Data pipeline against a plain single-process loop doing the same work.

Both run the same stage functions (read + validate + re-encode + normalise, then tokenise + write) on the
same packed shards with the same vocabulary, in the same run. On one small machine Ray is expected to
cost something (scheduling, serialisation between stages); the ratio tells users what they pay for the
ability to scale out over many nodes.

    python tools/bench/preprocess.py                      # packs the built-in `demo` preset (7 000 samples)
    python tools/bench/preprocess.py --in shards/packed/world-demo --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from dist_train.config import load_config, to_dict  # noqa: E402
from dist_train.data.pack import PackOptions, available_cpus, pack  # noqa: E402
from dist_train.data.sources.world import WorldSource  # noqa: E402
from dist_train.data.shards import list_finished_shards, manifest_path, read_shard_info  # noqa: E402
from dist_train.preprocess.config import PreprocessConfig, validate  # noqa: E402
from dist_train.preprocess.pipeline import _input_shards, _run, _tasks  # noqa: E402
from dist_train.preprocess.stages import read_and_clean, tokenize_and_write  # noqa: E402
from dist_train.preprocess.vocab import train_vocab  # noqa: E402
from dist_train.preprocess.work import ShardWork  # noqa: E402


def plain_loop(in_dir: Path, out: Path, cfg: PreprocessConfig, vocab: bytes) -> None:
    conf = to_dict(cfg)
    tasks, _ = _tasks(_input_shards(in_dir), out, cfg)
    for task in tasks:
        work = read_and_clean(ShardWork.loads(task["payload"]), conf["images"], conf["captions"])
        tokenize_and_write(work, str(out), vocab)


def ray_pipeline(in_dir: Path, out: Path, cfg: PreprocessConfig, vocab: bytes) -> None:
    tasks, _ = _tasks(_input_shards(in_dir), out, cfg)
    _run(tasks, out, cfg, vocab, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in", dest="input", type=Path, help="packed dataset (default: pack the demo preset)")
    parser.add_argument("--preset", default="demo", help="built-in preset to pack when --in is not given")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each (the median is reported)")
    parser.add_argument("--max-side", type=int, default=48, help="resize images (makes the image stage do work)")
    args = parser.parse_args()

    import ray

    work_dir = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))
    try:
        in_dir = args.input
        if in_dir is None:
            in_dir = work_dir / "packed"
            source = WorldSource(args.preset)
            pack(source, in_dir, PackOptions(max_samples_per_shard=source.spec.samples_per_shard, progress=False))
        cfg = load_config(PreprocessConfig, None, [f"images.max_side={args.max_side}"], validate)
        n_shards = len(_tasks(_input_shards(in_dir), work_dir / "probe", cfg)[0])
        vocab = train_vocab(["a small corpus for a vocabulary", "eine kleine Sammlung"] * 50, 1000)

        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=available_cpus(), log_to_driver=False, include_dashboard=False)
        ray_start = time.perf_counter() - t0
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        timings: dict[str, list[float]] = {"plain": [], "ray": []}
        for i in range(args.repeat + 1):  # the first round warms up caches and Ray's workers
            for name, fn in (("plain", plain_loop), ("ray", ray_pipeline)):
                out = work_dir / f"{name}-{i}"
                t0 = time.perf_counter()
                fn(in_dir, out, cfg, vocab)
                elapsed = time.perf_counter() - t0
                if i:
                    timings[name].append(elapsed)
                shutil.rmtree(out)
        total = sum(read_shard_info(manifest_path(t)).num_samples
                    for split in ("train", "val", "test") for t in list_finished_shards(in_dir, split))
        plain = statistics.median(timings["plain"])
        ray_t = statistics.median(timings["ray"])
        print(f"{total} samples in {n_shards} shards, {available_cpus()} cores, images resized to {args.max_side}px")
        print(f"{'pipeline':<24} {'seconds':>8} {'samples/s':>10}")
        print(f"{'plain single process':<24} {plain:>8.2f} {total / plain:>10.0f}")
        print(f"{'Ray Data (local)':<24} {ray_t:>8.2f} {total / ray_t:>10.0f}")
        print(f"Ray start-up (once per run, not in the figures): {ray_start:.1f}s")
        print(f"ratio ray/plain: {plain / ray_t:.2f}x the single-process throughput")
    finally:
        ray.shutdown()
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
