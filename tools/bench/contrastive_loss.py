"""Peak memory and time of the local-block contrastive loss against the naive full-matrix loss.

Each rank of a data-parallel job holds ``--per-rank`` samples; the global batch grows x1, x4, x16 by
adding ranks. Two ways for one rank to compute a loss over the global batch:

* local block (this package): gather the embeddings, score this rank's rows against all columns:
  a (per-rank x global) matrix, memory linear in the global batch;
* naive: score the full (global x global) matrix on every rank, quadratic in the global batch.

Simulated in one process, one rank's view: the local block is the package's own loss with its gather
replaced by "these rows + fixed rows standing for the other ranks" (so the gathered N x D tensor is
allocated as in a real run, but no communication time is counted); the naive loss is the package's
loss over all N rows with gradient. Each (mode, size) runs in a fresh subprocess: peak memory is the
rise of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over the
resident set once the inputs exist, with glibc told to return large blocks to the system at once,
so it counts what torch allocates for the forward and backward pass; time is the median of
``--repeats`` forward + backward passes, in another subprocess with the ordinary allocator. Both
follow one warm-up pass. On CUDA, torch's own peak counter is used.

    python tools/bench/contrastive_loss.py --per-rank 256 --world 4 --scales 1 4 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peak import peak_bytes, subprocess_env  # tools/bench/peak.py

LOSSES = ("cross_modal", "simclr", "transitive")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loss", choices=LOSSES, default="cross_modal", help="which loss to measure")
    parser.add_argument("--per-rank", type=int, default=256, help="samples per rank (fixed as the job grows)")
    parser.add_argument("--world", type=int, default=4, help="ranks at scale x1")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16], help="global batch multipliers")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (the paper's D = 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--measure", nargs=3, metavar=("WHAT", "MODE", "GLOBAL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _loss_call(loss: str, rows, images, image_text):
    from dist_train.losses import cross_modal_loss, simclr_loss, transitive_loss

    if loss == "cross_modal":
        return cross_modal_loss(rows, images)
    if loss == "simclr":
        return simclr_loss(rows, images)
    return transitive_loss(rows, images, image_text).loss


def _simulate_rank_zero(global_size: int) -> None:
    """Make the package's gathers return this rank's rows followed by stand-ins for the other ranks."""
    import torch

    import dist_train.losses.contrastive as contrastive
    import dist_train.losses.simclr as simclr
    import dist_train.losses.transitive as transitive
    from dist_train.distributed.gather import GatheredRows

    stand_ins: dict[tuple, torch.Tensor] = {}

    def gather_rows(x):
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key not in stand_ins:
            stand_ins[key] = torch.randn(global_size - x.shape[0], *x.shape[1:], dtype=x.dtype, device=x.device)
        gathered = torch.cat([x, stand_ins[key]])
        sizes = (x.shape[0], global_size - x.shape[0])
        return GatheredRows(all=gathered, offset=0, local_count=x.shape[0], sizes=sizes)

    for module in (contrastive, simclr, transitive):
        module.gather_rows = gather_rows
    transitive.gather_detached = lambda x: gather_rows(x.detach()).all


def measure(args: argparse.Namespace, what: str, mode: str, global_size: int) -> dict:
    """Peak memory or time of one (mode, global batch) point, in this process."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = global_size if mode == "naive" else args.per_rank
    if mode == "local":
        _simulate_rank_zero(global_size)
    generator = torch.Generator().manual_seed(0)

    def inputs():
        text = F.normalize(torch.randn(rows, args.dim, generator=generator), dim=-1).to(device).requires_grad_()
        image = F.normalize(torch.randn(rows, args.dim, generator=generator), dim=-1).to(device).requires_grad_()
        return text, image, (text.detach() * image.detach()).sum(-1)

    def step(text, image, image_text):
        loss = _loss_call(args.loss, text, image, image_text)
        loss.backward()
        return loss

    cuda = device.type == "cuda"
    step(*inputs())  # warm-up: lazy initialisation is no part of either loss
    if what == "memory":
        text, image, image_text = inputs()
        return {"peak_bytes": peak_bytes(lambda: step(text, image, image_text), cuda)}

    times = []
    for _ in range(args.repeats):
        text, image, image_text = inputs()
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(text, image, image_text)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times)}


def measure_in_subprocess(args: argparse.Namespace, what: str, mode: str, global_size: int) -> dict:
    env = subprocess_env(memory=what == "memory")  # time is measured in another process, see peak.py
    passthrough = [
        f"--loss={args.loss}",
        f"--per-rank={args.per_rank}",
        f"--dim={args.dim}",
        f"--repeats={args.repeats}",
        f"--threads={args.threads}",
        f"--device={args.device}",
    ]
    proc = subprocess.run(
        [sys.executable, __file__, *passthrough, "--measure", what, mode, str(global_size)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} of {mode} N={global_size} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.measure:
        what, mode, global_size = args.measure
        print(json.dumps(measure(args, what, mode, int(global_size))))
        return
    print(
        f"loss={args.loss}  per-rank={args.per_rank}  dim={args.dim}  device={args.device}  threads={args.threads}  "
        "(one rank simulated in one process; communication not timed)"
    )
    header = (
        f"{'scale':>5} {'ranks':>5} {'global':>7} | {'naive MiB':>10} {'local MiB':>10} {'mem x':>7} | "
        f"{'naive ms':>9} {'local ms':>9} {'time x':>7}"
    )
    print(header)
    print("-" * len(header))
    results = []
    for scale in args.scales:
        ranks = args.world * scale
        global_size = ranks * args.per_rank
        naive, local = (
            {
                **measure_in_subprocess(args, "memory", mode, global_size),
                **measure_in_subprocess(args, "time", mode, global_size),
            }
            for mode in ("naive", "local")
        )
        results.append({"scale": scale, "ranks": ranks, "naive": naive, "local": local})
        print(
            f"{scale:>5} {ranks:>5} {global_size:>7} | "
            f"{naive['peak_bytes'] / 2**20:>10.1f} {local['peak_bytes'] / 2**20:>10.1f} "
            f"{naive['peak_bytes'] / max(local['peak_bytes'], 1):>7.1f} | {naive['seconds'] * 1e3:>9.1f} "
            f"{local['seconds'] * 1e3:>9.1f} {naive['seconds'] / local['seconds']:>7.1f}",
            flush=True,
        )
    first = results[0]
    print("growth from x1 (naive / local):")
    for row in results[1:]:
        memory = [row[m]["peak_bytes"] / max(first[m]["peak_bytes"], 1) for m in ("naive", "local")]
        seconds = [row[m]["seconds"] / first[m]["seconds"] for m in ("naive", "local")]
        print(
            f"  x{row['scale']:<3} memory {memory[0]:.1f} / {memory[1]:.1f}   time {seconds[0]:.1f} / {seconds[1]:.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
