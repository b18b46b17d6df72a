"""Peak memory and time of a gradient-cached Globetrotter step against the uncached step, as the batch grows.

One rank's training step (forward and backward of L_x, L_v and L_t over the batch, two augmented
views per image) on the Globetrotter model with random images and captions:

* uncached: one forward over the whole batch with its graph, as `objective.grad_cache_chunk=0` trains;
* cached: `grad_cache_step` with sub-batches of `--chunk` captions, as `objective.grad_cache_chunk=C`
  trains: the activations held at once are a sub-batch's, whatever the batch.

Each (mode, batch) runs in a fresh subprocess. Memory is the rise of the process's peak resident set
over the resident set once the model and inputs exist (the method of `contrastive_loss.py`: VmHWM reset
through /proc/self/clear_refs, glibc returning large blocks at once); time is the median of
`--repeats` steps in another subprocess with the ordinary allocator. On CUDA, torch's peak counter.

    python tools/bench/grad_cache.py --chunk 32 --batches 32 128 512
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


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunk", type=int, default=32, help="captions per cached sub-batch")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512], help="batch sizes per rank")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=24, help="caption length in tokens")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per measurement (median)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument("--measure", nargs=3, metavar=("WHAT", "MODE", "BATCH"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, what: str, mode: str, batch: int) -> dict:
    import torch

    from dist_train.losses import cross_modal_loss, grad_cache_step, simclr_loss, split_batch, transitive_loss
    from dist_train.models.registry import build_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("globetrotter", {"vocab_size": 8000, "hidden": 128, "layers": 2, "heads": 4,
                                         "intermediate": 256, "embed_dim": 64, "max_length": args.tokens}).to(device)
    model.train()
    generator = torch.Generator().manual_seed(1)
    inputs = {"tokens": torch.randint(5, 8000, (batch, args.tokens), generator=generator).to(device),
              "views": torch.rand(batch, 2, 3, args.image_size, args.image_size, generator=generator).to(device)}

    def embed(part):
        out = model(tokens=part["tokens"], images=torch.cat([part["views"][:, 0], part["views"][:, 1]]))
        n = part["tokens"].shape[0]
        return (out["text_cross"], out["text_text"], torch.stack([out["image_cross"][:n], out["image_cross"][n:]], 1),
                torch.stack([out["image_visual"][:n], out["image_visual"][n:]], 1))

    def losses(text_cross, text_text, image_cross, image_visual):
        x = (image_cross[:, 0] * text_cross).sum(-1).detach()
        return (cross_modal_loss(text_cross, image_cross) + simclr_loss(image_visual[:, 0], image_visual[:, 1])
                + transitive_loss(text_text, image_visual[:, 0], image_text_sim=x).loss)

    def step():
        model.zero_grad(set_to_none=True)
        if mode == "cached":
            grad_cache_step(embed, split_batch(inputs, args.chunk), losses, restore_buffers_of=model)
        else:
            losses(*embed(inputs)).backward()

    cuda = device.type == "cuda"
    step()  # warm-up: gradients allocated, lazy initialisation done
    if what == "memory":
        return {"peak_bytes": peak_bytes(step, cuda)}
    times = []
    for _ in range(args.repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times)}


def measure_in_subprocess(args: argparse.Namespace, what: str, mode: str, batch: int) -> dict:
    env = subprocess_env(memory=what == "memory")
    passthrough = [f"--chunk={args.chunk}", f"--image-size={args.image_size}", f"--tokens={args.tokens}",
                   f"--repeats={args.repeats}", f"--threads={args.threads}", f"--device={args.device}"]
    proc = subprocess.run([sys.executable, __file__, *passthrough, "--measure", what, mode, str(batch)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} of {mode} batch {batch} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.measure:
        what, mode, batch = args.measure
        print(json.dumps(measure(args, what, mode, int(batch))))
        return
    print(f"Globetrotter step (L_x + L_v + L_t, 2 views of {args.image_size}px, {args.tokens} tokens), chunk "
          f"{args.chunk}, device={args.device}, threads={args.threads}")
    header = (f"{'batch':>6} | {'uncached MiB':>12} {'cached MiB':>11} {'mem x':>6} | "
              f"{'uncached s':>10} {'cached s':>9} {'time x':>6}")
    print(header)
    print("-" * len(header))
    results = []
    for batch in args.batches:
        uncached, cached = ({**measure_in_subprocess(args, "memory", mode, batch),
                             **measure_in_subprocess(args, "time", mode, batch)} for mode in ("uncached", "cached"))
        results.append({"batch": batch, "uncached": uncached, "cached": cached})
        print(f"{batch:>6} | {uncached['peak_bytes'] / 2**20:>12.1f} {cached['peak_bytes'] / 2**20:>11.1f} "
              f"{uncached['peak_bytes'] / max(cached['peak_bytes'], 1):>6.1f} | {uncached['seconds']:>10.2f} "
              f"{cached['seconds']:>9.2f} {cached['seconds'] / uncached['seconds']:>6.2f}", flush=True)
    print("mem x: uncached peak / cached peak; time x: cached step / uncached step (the second forward's cost)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
