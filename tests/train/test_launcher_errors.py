"""`dist-train train --nproc-per-node 2` ends in lines, not tracebacks: a worker that refuses its input
(a planted pickle, a `latest` pointer out of the run) prints its one-line error and the run exits with
the worker's code plus one line saying which rank; SIGTERM stops the agent and its workers in one line.
Through the real CLI, with 2 real gloo processes on the tiny benchmark."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from tests.conftest import run_cli
from tests.train.test_checkpoint_security import Planted
from tests.train.test_engine import _args

STEPS = 2
TAG = f"step{STEPS:08d}"


def _two_process_args(data: Path, out: Path, *extra: str) -> list:
    base = [a for a in _args(data, out) if not str(a).startswith(("max_steps=", "checkpoint.every_steps="))]
    return [*base, f"checkpoint.every_steps={STEPS}", *extra]


@pytest.fixture(scope="module")
def run(tiny_preprocessed, tmp_path_factory) -> Path:
    """A real 2-process checkpoint after 2 steps (read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("launcher") / "run"
    run_cli(*_two_process_args(tiny_preprocessed, out, f"max_steps={STEPS}"), timeout=600)
    assert (out / "checkpoints" / "latest").read_text() == TAG
    return out


def _assert_one_line_failure(proc: subprocess.CompletedProcess, named: Path, rank: int | None = None) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    ranks = "[01]" if rank is None else str(rank)
    import re

    assert re.fullmatch(rf"dist-train train: error: rank {ranks} exited with code 2 \(its message is above\)",
                        lines[-1]), proc.stderr
    assert any(str(named) in line and line.startswith("dist-train train: error: ") for line in lines[:-1]), proc.stderr


def test_a_pickle_planted_in_one_ranks_state_ends_the_run_in_one_line(run, tiny_preprocessed, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    marker = tmp_path / "ran"
    path = out / "checkpoints" / TAG / "rank_00001.pt"
    state = torch.load(path, weights_only=False)  # our own file, just written
    state["loader"]["extra"] = Planted(marker)
    torch.save(state, path)
    proc = run_cli(*_two_process_args(tiny_preprocessed, out, f"max_steps={STEPS + 1}"), check=False, timeout=300)
    assert not marker.exists(), "the planted pickle ran"
    _assert_one_line_failure(proc, path, rank=1)
    assert not (out / "checkpoints" / f"step{STEPS + 1:08d}").exists()


def test_a_latest_pointer_out_of_the_run_ends_the_run_in_one_line(tiny_preprocessed, tmp_path):
    out = tmp_path / "run"
    latest = out / "checkpoints" / "latest"
    latest.parent.mkdir(parents=True)
    latest.write_text("../../elsewhere")
    proc = run_cli(*_two_process_args(tiny_preprocessed, out, f"max_steps={STEPS}"), check=False, timeout=300)
    # found by the checks `dist-train train` runs before it starts any process: one line, no rank's
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"dist-train train: error: {latest}: '../../elsewhere' is not a checkpoint tag")
    assert sorted(p.name for p in latest.parent.iterdir()) == ["latest"]


def test_sigterm_stops_the_agent_and_its_workers_in_one_line(tiny_preprocessed, tmp_path):
    """The launcher is exec'd by `dist-train train`: the shell's (or SLURM's) SIGTERM reaches torchrun's agent."""
    exe = Path(sys.executable).with_name("dist-train")
    proc = subprocess.Popen([str(exe), *map(str, _two_process_args(tiny_preprocessed, tmp_path / "run", "max_steps=100000"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        latest = tmp_path / "run" / "checkpoints" / "latest"
        deadline = time.time() + 300
        while not latest.exists():  # training has started on both ranks
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        agent = psutil.Process(proc.pid)
        workers = [w for w in agent.children() if "dist_train.launch.worker" in " ".join(w.cmdline())]
        assert len(workers) == 2
        everything = agent.children(recursive=True)  # with the workers' data loader processes
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
        assert "Traceback" not in stderr, stderr
        assert stderr.strip().splitlines()[-1] == \
            "dist-train train: stopped by SIGTERM; rerun the same command to resume"
        _, alive = psutil.wait_procs(everything, timeout=30)
        assert alive == []
    finally:  # a failed assertion leaves no training behind
        if proc.poll() is None:
            for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                p.kill()
            proc.wait()


def test_nproc_per_node_below_one_is_refused(tmp_path):
    proc = run_cli("train", "--nproc-per-node", "0", "out_dir=" + str(tmp_path / "x"), check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["dist-train train: error: --nproc-per-node 0: must be at least 1"]
    assert not (tmp_path / "x").exists()
