"""The main job: the whole pipeline on the built-in benchmark, one stage per capability.

Kept a thin driver over the same library calls the subcommands make, so that what the demo shows
is what users run.
"""

from __future__ import annotations

import time
from pathlib import Path

from .data.pack import PackOptions, pack, summary_table
from .data.sources.world import WorldSource
from .data.verify import verify_dataset


def run_demo(preset: str = "demo", shards_root: Path = Path("shards"), workers: int | None = None,
             progress: bool = True) -> int:
    packed = Path(shards_root) / "packed" / f"world-{preset}"
    print(f"[1/1] pack the built-in benchmark ({preset}) into {packed}")
    t0 = time.perf_counter()
    source = WorldSource(preset)
    options = PackOptions(max_samples_per_shard=source.spec.samples_per_shard, progress=progress,
                          **({"workers": workers} if workers is not None else {}))
    summary = pack(source, packed, options)
    report = verify_dataset(packed, progress=False)
    if not report.ok:
        for s in report.bad_shards:
            print(f"FAIL {s.path}: {s.problems}")
        return 1
    print(summary_table(summary, packed))
    print(f"verified {len(report.shards)} shards in {time.perf_counter() - t0:.1f}s; "
          f"look at samples with: dist-train shards inspect {packed} --split test -n 14")
    return 0
