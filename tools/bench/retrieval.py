"""Chunked retrieval against the full similarity matrix: time and peak memory as N grows.

Sentence translation by retrieval (`dist_train.eval.retrieval.sentence_translation`) scores every
sentence against every other. Chunked, it holds `chunk_size x N` scores at a time; with
`chunk_size = N` the same code scores the full N x N matrix in one go, which is the computation
chunking replaces. Both run in this invocation on the same embeddings (random, seeded, M languages
per group) and must give the same figure.

Peak memory: each measurement runs in a fresh worker process; on CPU it is the process's peak
resident set size (`resource.getrusage(...).ru_maxrss`) minus its resident size just before the
call, i.e. what the call added at its worst, torch's allocations included (tracemalloc would not
see them: torch allocates outside Python's allocator). On CUDA it is
`torch.cuda.max_memory_allocated()` minus the memory allocated before the call.

    python tools/bench/retrieval.py --sizes 2000 8000 32000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MIB = 1024 * 1024


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(n: int, dim: int, languages: int, chunk_size: int, device: str, seed: int) -> dict:
    """One measurement, in its own process so its peak memory is its own."""
    import numpy as np
    import torch

    from dist_train.eval.retrieval import sentence_translation

    generator = torch.Generator().manual_seed(seed)
    groups = n // languages
    centres = torch.randn(groups, dim, generator=generator)
    emb = centres.repeat_interleave(languages, 0)
    emb += 1.5 * torch.randn(emb.shape, generator=generator)
    emb = emb.to(device)
    group_ids = np.repeat(np.arange(groups), languages)
    lang = np.tile([f"l{i:02d}" for i in range(languages)], groups)
    # warm up kernels and allocator on a small problem so the measurement is the call itself
    sentence_translation(emb[: 4 * languages], group_ids[: 4 * languages], lang[: 4 * languages], chunk_size=8)

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _resident_bytes()
    start = time.perf_counter()
    result = sentence_translation(emb, group_ids, lang, chunk_size=chunk_size)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {"seconds": seconds, "peak_bytes": max(peak, 0), "retrieved_positives": result.retrieved_positives,
            "chance": result.chance}


def measure(n: int, chunk_size: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(n), str(chunk_size), "--dim", str(args.dim),
           "--languages", str(args.languages), "--device", args.device, "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed for N={n}, chunk={chunk_size}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python tools/bench/retrieval.py --sizes 2000 8000 32000",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000],
                        help="numbers of sentences N (default: 2000 8000 32000)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="queries per chunk (default: 1024)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (default: 128)")
    parser.add_argument("--languages", type=int, default=14, help="sentences per group, M (default: 14)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", nargs=2, type=int, metavar=("N", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        n, chunk = args.worker
        print(json.dumps(worker(n, args.dim, args.languages, chunk, args.device, args.seed)))
        return

    memory = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS above pre-call RSS"
    print(f"sentence translation by retrieval, D={args.dim}, M={args.languages}, device={args.device}, "
          f"chunk={args.chunk_size}; memory = {memory}, each run in a fresh process")
    header = (f"{'N':>7} {'chunked s':>10} {'full s':>9} {'time chunked/full':>18} "
              f"{'chunked MiB':>12} {'full MiB':>9} {'memory full/chunked':>20} {'N^2 x 4 B MiB':>14}  same result")
    print(header)
    for n in args.sizes:
        n = n - n % args.languages
        chunked = measure(n, min(args.chunk_size, n), args)
        full = measure(n, n, args)
        same = chunked["retrieved_positives"] == full["retrieved_positives"]
        print(f"{n:>7} {chunked['seconds']:>10.3f} {full['seconds']:>9.3f} "
              f"{chunked['seconds'] / full['seconds']:>18.2f} {chunked['peak_bytes'] / MIB:>12.1f} "
              f"{full['peak_bytes'] / MIB:>9.1f} {full['peak_bytes'] / max(chunked['peak_bytes'], 1):>20.1f} "
              f"{n * n * 4 / MIB:>14.1f}  {'yes' if same else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
