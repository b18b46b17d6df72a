"""The main job: the whole pipeline on the built-in benchmark, one stage per capability.

Kept a thin driver over the same library calls the subcommands make, so that what the demo shows
is what users run.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import load_config
from .data.pack import PackOptions, pack, summary_table
from .data.sources.world import WorldSource
from .data.verify import verify_dataset
from .preprocess.config import PreprocessConfig, validate
from .preprocess.pipeline import preprocess
from .preprocess.pipeline import summary_table as preprocess_table

STEPS = 2


def run_demo(preset: str = "demo", shards_root: Path = Path("shards"), workers: int | None = None,
             progress: bool = True) -> int:
    return 0 if prepare_world(preset, shards_root, workers, progress, verbose=True) is not None else 1


def prepare_world(preset: str, shards_root: Path = Path("shards"), workers: int | None = None,
                  progress: bool = True, verbose: bool = False) -> Path | None:
    """Pack and preprocess the built-in benchmark (each step skipped when already done); returns the
    training-ready dataset folder, or None when the packed shards fail verification."""
    packed = Path(shards_root) / "packed" / f"world-{preset}"
    ready = Path(shards_root) / f"world-{preset}"
    say = print if verbose else (lambda *a, **k: None)
    say(f"[1/{STEPS}] pack the built-in benchmark ({preset}) into {packed}")
    t0 = time.perf_counter()
    source = WorldSource(preset)
    options = PackOptions(max_samples_per_shard=source.spec.samples_per_shard, progress=progress,
                          **({"workers": workers} if workers is not None else {}))
    summary = pack(source, packed, options)
    report = verify_dataset(packed, progress=False)
    if not report.ok:
        for s in report.bad_shards:
            print(f"FAIL {s.path}: {s.problems}")
        return None
    say(summary_table(summary, packed))
    say(f"verified {len(report.shards)} shards in {time.perf_counter() - t0:.1f}s; "
        f"look at samples with: dist-train shards inspect {packed} --split test -n 14")

    say(f"\n[2/{STEPS}] preprocess with Ray into {ready} (normalise, shared vocabulary, tokens)")
    t0 = time.perf_counter()
    cfg = load_config(PreprocessConfig, None, (), validate)  # the defaults of configs/preprocess/default.yaml
    pre = preprocess(packed, ready, cfg, progress=progress)
    say(preprocess_table(pre, ready))
    say(f"preprocessed in {time.perf_counter() - t0:.1f}s")
    return ready
