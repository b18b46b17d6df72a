"""Packing throughput against the codec limit.

The packer reads, validates, decodes and re-encodes every image, then writes tar shards and
manifests. The codec limit is the bare cost of the same decode + re-encode with the same library
(Pillow), the same number of worker processes and no shard writing. Both are measured in this run
on the same image files; the ratio says how much of the machine the packer's own work costs.
Goal: packer >= 0.8 x codec limit.

    python tools/bench/pack.py --images 3000 --size 256
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io
import itertools
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dist_train.data.images import DEFAULT_JPEG_QUALITY
from dist_train.data.pack import PackOptions, pack
from dist_train.data.sources.base import FileImage, Source, SourceRecord


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """Photo-like JPEGs: smooth gradients plus sensor-like noise, so the codec has real work to do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        base = np.stack([np.sin(xx * rng.uniform(1, 6) + rng.uniform(0, 6)) for _ in range(3)], -1) * 80 + 128
        pixels = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        p = folder / f"{i:06d}.jpg"
        Image.fromarray(pixels).save(p, quality=92)
        paths.append(p)
    return paths


class FilesSource(Source):
    name = "bench"

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def splits(self):
        return ["train"]

    def count(self, split):
        return len(self.paths)

    def records(self, split):
        for i, p in enumerate(self.paths):
            yield SourceRecord(FileImage(str(p)), f"caption {i}", "en", p.stem, f"c{i}", "train")


def _codec_chunk(paths: list[str]) -> int:
    for p in paths:
        img = Image.open(io.BytesIO(Path(p).read_bytes()))
        img.load()
        out = io.BytesIO()
        img.convert("RGB").save(out, format="JPEG", quality=DEFAULT_JPEG_QUALITY)
    return len(paths)


def codec_limit(paths: list[Path], workers: int, chunk: int) -> float:
    t0 = time.perf_counter()
    chunks = [list(map(str, c)) for c in itertools.batched(paths, chunk)] if hasattr(itertools, "batched") else \
        [list(map(str, paths[i:i + chunk])) for i in range(0, len(paths), chunk)]
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = sum(pool.map(_codec_chunk, chunks))
    assert done == len(paths)
    return time.perf_counter() - t0


def packer(paths: list[Path], workers: int, chunk: int, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = pack(FilesSource(paths), out, PackOptions(workers=workers, chunk_size=chunk, progress=False,
                                                         max_samples_per_shard=1000))
    elapsed = time.perf_counter() - t0
    assert summary["totals"]["written"] == len(paths)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each; the median is reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        paths = make_images(tmp / "images", args.images, args.size)
        codec_s, pack_s = [], []
        for _ in range(args.repeat):
            codec_s.append(codec_limit(paths, args.workers, args.chunk))
            pack_s.append(packer(paths, args.workers, args.chunk, tmp / "out"))
    c, p = statistics.median(codec_s), statistics.median(pack_s)
    per_core = lambda s: args.images / s / args.workers  # noqa: E731
    print(f"{args.images} images of {args.size}x{args.size}, {args.workers} worker(s), median of {args.repeat}")
    print(f"codec limit (decode + re-encode only): {per_core(c):8.1f} images/s per core")
    print(f"packer (validate, re-encode, shards):  {per_core(p):8.1f} images/s per core")
    print(f"ratio packer / codec limit: {c / p:.2f}  (goal >= 0.80)")


if __name__ == "__main__":
    main()
