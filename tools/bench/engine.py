"""Engine overhead: a training step of the DeepSpeed engine (ZeRO-0, ZeRO-2; 1 process) against a plain PyTorch loop.

All three variants train the same model, built by the objective from the same seed, on the same batches
(fetched once from the training loader and kept in memory, so data loading is not timed), with the same
loss (the objective's, including its batched augmentation and cloze masking, from identically seeded
generators) and the same AdamW settings and parameter groups:

* plain:     loss = objective.loss(model, ...); zero_grad; loss.backward(); clip_grad_norm_; AdamW.step()
             (torch.optim.AdamW with the config's lr, betas, eps and weight decay; no LR schedule);
* ZeRO-0/2:  loss = objective.loss(engine, ...); engine.backward(loss); engine.step()
             (the engine and optimizer that `dist-train train` builds: setup_process_group(), a one-process
             gloo group, deepspeed.initialize with deepspeed_config(cfg, ...) and parameter_groups(...)).

Like train(), the run follows the config's `deterministic` (torch.use_deterministic_algorithms), for all
variants alike; `deterministic=false` shows what it costs. A step is timed from the call of the loss to
the return of the optimizer step. To keep a drifting load on a shared machine from favouring one
variant, the variants take turns: after `--warmup` steps each, every round runs one step of each
variant, in an order that rotates from round to round, until each has `--steps` timed steps. The table
gives the median (and the forward / backward / optimizer-step parts, each a median on its own, so they
need not add up to the total) and the ratio DS/plain of the medians; the goal is at most 1.10x.

    python tools/bench/engine.py                                    # packs and preprocesses the tiny preset first
    python tools/bench/engine.py --shards /tmp/benchdata/world-tiny --steps 20
    python tools/bench/engine.py --shards DIR data.batch_size=48    # any key=value of the training config
    python tools/bench/engine.py --shards DIR --threads 1 deepspeed.config=my-zero2.json --stages 2

Shared by tools/bench/loader.py and tools/bench/zero_memory.py: the dataset preparation, the config
loading and the plain step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "globetrotter-tiny.yaml"
GOAL = 1.10


# --- shared by the three benchmarks -------------------------------------------------------------------------

def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", type=Path, help="a preprocessed dataset (default: pack and preprocess the "
                                                    "tiny preset in a temporary folder)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="the training config (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads in the timed process (0: torch's default, as in training; on a "
                             "machine shared with other work 1 is far steadier)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides of the training config (before any option that takes a list, or after --)")


def build_tiny_dataset(work_dir: Path, preset: str = "tiny") -> Path:
    """`dist-train pack world --preset P` then `dist-train preprocess`, in subprocesses (Ray stays out of here)."""
    packed, ready = work_dir / "packed", work_dir / f"world-{preset}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cli = [sys.executable, "-c", "import sys; from dist_train.cli import main; sys.exit(main(sys.argv[1:]))", "-q"]
    t0 = time.perf_counter()
    for args in (["pack", "world", "--preset", preset, "--out", str(packed)],
                 ["preprocess", "--in", str(packed), "--out", str(ready)]):
        done = subprocess.run(cli + args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"dist-train {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"(built the {preset} preset in {ready} in {time.perf_counter() - t0:.0f}s; "
          f"pass --shards {ready} to reuse it while it exists)", flush=True)
    return ready


@contextmanager
def dataset(shards: Path | None) -> Iterator[tuple[Path, Path]]:
    """(the preprocessed dataset, a scratch folder); builds the tiny preset when `shards` is None."""
    work_dir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        yield (shards.resolve() if shards is not None else build_tiny_dataset(work_dir)), work_dir
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def load_cfg(config: Path, shards: Path, work_dir: Path, overrides: list[str]):
    """The training config as `dist-train train` loads it, reading `shards`; paths made independent of the cwd."""
    from dist_train.train.main import load_train_config

    base = [f"data.shards={shards}", f"out_dir={work_dir / 'out'}"]
    cfg = load_train_config(str(config), base + list(overrides))
    ds_json = Path(cfg.deepspeed.config)
    if not ds_json.is_absolute() and not ds_json.is_file() and (REPO / ds_json).is_file():
        cfg.deepspeed.config = str(REPO / ds_json)
    return cfg


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def prefetch(cfg, vocab, n: int) -> list[dict]:
    """The first `n` batches of rank 0's training loader (1 process), kept in memory."""
    from dist_train.train.data import build_train_loader

    loader = build_train_loader(cfg, vocab, 0, 1)
    batches: list[dict] = []
    it = iter(loader)
    try:
        while len(batches) < n:
            batches.append(next(it))
    finally:
        it.close()  # stops the loader's workers
    return batches


def clip_value(cfg) -> float | None:
    from dist_train.train.engine import deepspeed_config

    return deepspeed_config(cfg, 1, 1).get("gradient_clipping")


class PlainStep:
    """The baseline: the objective's model and loss with torch.optim.AdamW, no DeepSpeed."""

    name = "plain PyTorch"

    def __init__(self, cfg, objective, device: torch.device):
        from dist_train.train.engine import parameter_groups

        torch.manual_seed(cfg.seed)
        self.model = objective.build_model().to(device)
        self.model.train()
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(parameter_groups(self.model, o.weight_decay), lr=o.lr,
                                           betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.clip = clip_value(cfg)
        self.objective, self.device = objective, device
        self.generator = torch.Generator().manual_seed(cfg.seed * 1000)
        self.step_index = 0
        self.optimizer_name = f"{type(self.optimizer).__module__}.{type(self.optimizer).__name__}"

    def __call__(self, batch: dict) -> tuple[float, float, float]:
        """One training step; (forward, backward, optimizer) seconds."""
        t0 = time.perf_counter()
        loss, _ = self.objective.loss(self.model, batch, self.generator, self.device, self.step_index)
        t1 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        t3 = time.perf_counter()
        self.step_index += 1
        return t1 - t0, t2 - t1, t3 - t2


def timed_steps(variants: list, batches: list[dict], warmup: int, steps: int) -> dict[str, list[tuple]]:
    """`warmup` untimed steps of each variant, then rounds of one step each (order rotating) until each has
    `steps` timed steps; every variant sees the same sequence of batches."""
    for v in variants:
        for i in range(warmup):
            v(batches[i % len(batches)])
    times: dict[str, list[tuple]] = {v.name: [] for v in variants}
    for r in range(steps):
        batch = batches[(warmup + r) % len(batches)]
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            t0 = time.perf_counter()
            parts = v(batch)
            times[v.name].append((time.perf_counter() - t0, *parts))
    return times


def precision(ds_config: dict) -> str:
    for name in ("bf16", "fp16"):
        if ds_config.get(name, {}).get("enabled"):
            return name
    return "fp32"


def load_note(start: tuple[float, ...]) -> str:
    """The machine's 1-minute load average at the start and the end: more than its cores means other work
    competed for them (and torch's threads may have slowed down far more than in proportion)."""
    end = os.getloadavg()
    busy = max(start[0], end[0]) > (os.cpu_count() or 1)
    busy = "; the machine was busy: treat the figures with care" if busy else ""
    return f"load average {start[0]:.1f} at the start, {end[0]:.1f} at the end, on {os.cpu_count()} cores{busy}"


def median_parts(samples: list[tuple]) -> tuple[float, ...]:
    return tuple(statistics.median(s[i] for s in samples) for i in range(len(samples[0])))


# --- this benchmark --------------------------------------------------------------------------------------------

class DeepSpeedStep:
    """The engine as `dist-train train` builds it, with the ZeRO stage forced."""

    def __init__(self, cfg, objective, device: torch.device, stage: int, total_steps: int):
        import deepspeed

        from dist_train.train.engine import deepspeed_config, parameter_groups

        cfg.deepspeed.zero_stage = stage
        self.name = f"DeepSpeed ZeRO-{stage}"
        torch.manual_seed(cfg.seed)
        model = objective.build_model()
        self.config = deepspeed_config(cfg, total_steps, 1)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=parameter_groups(model, cfg.optim.weight_decay), config=self.config)
        self.engine.train()
        self.objective, self.device = objective, device
        self.generator = torch.Generator().manual_seed(cfg.seed * 1000)
        self.step_index = 0
        opt = self.engine.optimizer
        inner = getattr(opt, "optimizer", None)
        self.optimizer_name = type(opt).__name__ + (f" around {type(inner).__module__}.{type(inner).__name__}"
                                                    if inner is not None else f" ({type(opt).__module__})")

    def __call__(self, batch: dict) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        loss, _ = self.objective.loss(self.engine, batch, self.generator, self.device, self.step_index)
        t1 = time.perf_counter()
        self.engine.backward(loss)
        t2 = time.perf_counter()
        self.engine.step()
        t3 = time.perf_counter()
        self.step_index += 1
        return t1 - t0, t2 - t1, t3 - t2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches kept in memory (used in turn)")
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 2], help="ZeRO stages to compare")
    args = parser.parse_args()

    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")
    set_threads(args.threads)
    with dataset(args.shards) as (shards, work_dir):
        import copy

        from dist_train.train.data import dataset_vocab
        from dist_train.train.engine import setup_process_group
        from dist_train.train.objectives import GlobetrotterObjective

        cfg = load_cfg(args.config, shards, work_dir, args.overrides)
        if cfg.deterministic:  # as train() does
            torch.use_deterministic_algorithms(True, warn_only=True)
        _, _, device = setup_process_group()
        vocab = dataset_vocab(cfg)
        batches = prefetch(cfg, vocab, args.batches)
        total_steps = args.warmup + args.steps
        plain = PlainStep(cfg, GlobetrotterObjective(cfg, vocab), device)
        variants: list[Any] = [plain]
        for stage in args.stages:
            variants.append(DeepSpeedStep(copy.deepcopy(cfg), GlobetrotterObjective(cfg, vocab), device, stage,
                                          total_steps))
        n_params = sum(p.numel() for p in plain.model.parameters())
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        times = timed_steps(variants, batches, args.warmup, args.steps)
        elapsed = time.perf_counter() - t0

        batch_size = len(batches[0]["keys"])
        print(f"model {cfg.model}: {n_params / 1e6:.2f} M parameters; batch {batch_size} ({args.batches} distinct "
              f"batches in memory); {torch.get_num_threads()} torch threads on {os.cpu_count()} cores, {device}; "
              f"DeepSpeed precision {precision(variants[-1].config) if len(variants) > 1 else '-'}, "
              f"gradient clipping {plain.clip}")
        print(f"{args.steps} timed steps per variant after {args.warmup} warm-up steps, interleaved "
              f"({elapsed:.0f}s; {load_note(load0)}); medians in milliseconds:")
        print(f"{'variant':<20} {'step':>8} {'forward':>8} {'backward':>9} {'opt.step':>9} {'samples/s':>10} "
              f"{'min step':>9} {'max step':>9}")
        medians = {}
        for v in variants:
            samples = times[v.name]
            med = median_parts(samples)
            medians[v.name] = med[0]
            steps_only = [s[0] for s in samples]
            print(f"{v.name:<20} {med[0] * 1e3:>8.1f} {med[1] * 1e3:>8.1f} {med[2] * 1e3:>9.1f} {med[3] * 1e3:>9.1f} "
                  f"{batch_size / med[0]:>10.1f} {min(steps_only) * 1e3:>9.1f} {max(steps_only) * 1e3:>9.1f}")
        print("optimizers: " + "; ".join(f"{v.name}: {v.optimizer_name}" for v in variants))
        base = medians[plain.name]
        for v in variants[1:]:
            ratio = medians[v.name] / base
            verdict = "meets" if ratio <= GOAL else "misses"
            print(f"ratio {v.name}/plain: {ratio:.3f}x ({verdict} the goal of at most {GOAL:.2f}x)")


if __name__ == "__main__":
    main()
