"""Peak-memory measurement shared by the benchmarks that run each point in a fresh subprocess.

On CPU, the peak is the rise of the process's peak resident set (VmHWM, reset to the current resident
set through /proc/self/clear_refs) over the resident set before the measured call; `subprocess_env`
tells glibc to return large blocks to the system at once, so the resident set follows live tensors
(slower allocation: time such points in another subprocess with the ordinary allocator). On CUDA,
torch's own peak counter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_bytes(step: Callable[[], object], cuda: bool) -> int:
    """How far memory rises above its current level while `step()` runs."""
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base_kib = resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set to the current one
    step()
    return (resident_kib("VmHWM") - base_kib) * 1024


def subprocess_env(memory: bool) -> dict[str, str]:
    """The environment of a measuring subprocess: the repository importable, and for memory points
    large blocks returned to the system on free."""
    env = dict(os.environ)
    if memory:
        env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env
