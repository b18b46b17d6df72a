"""`dist-train launch` against a real single-node Slurm (cluster/local-slurm/start.sh): a 2-task training
job, a job array, preemption with requeue and exact resume, a failing job's traceback, cancel, a
preprocessing job, the plain-sbatch DeepSpeed template, and the dry-run script (no cluster needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_cli

STEPS = 12
TINY = REPO / "configs" / "globetrotter-tiny.yaml"


def _slurm_state() -> str | None:
    """None when a Slurm controller with an idle (or busy) node answers, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "sbatch/sinfo are not installed"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if states.returncode != 0:
        return f"sinfo failed: {states.stderr.strip()}"
    if not any(s.strip().rstrip("*") in ("idle", "mix", "alloc", "comp") for s in states.stdout.split()):
        return f"no usable node (sinfo says {states.stdout.split()})"
    return None


@pytest.fixture(scope="session")
def slurm():
    """The local cluster must be up; without it these tests skip, unless DIST_TRAIN_REQUIRE_SLURM=1 (CI)."""
    problem = _slurm_state()
    if problem:
        message = f"no local Slurm ({problem}); start one with: bash cluster/local-slurm/start.sh"
        if os.environ.get("DIST_TRAIN_REQUIRE_SLURM") == "1":
            pytest.fail(message + " (DIST_TRAIN_REQUIRE_SLURM=1)")
        pytest.skip(message)
    from submitit.core.core import Job

    saved, Job._results_timeout_s = Job._results_timeout_s, 2  # a cancelled job reports back in 2 s, not 15
    yield
    Job._results_timeout_s = saved


@pytest.fixture
def cancel_leftovers():
    """Job ids a test submits; any still queued or running when it ends are cancelled."""
    ids: list[str] = []
    yield ids
    for job_id in ids:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30)


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """A small model, so that one 2-task job takes well under a minute on 2 cores."""
    return [
        "--config", TINY, f"out_dir={out}", f"data.shards={data}",
        f"deepspeed.config={REPO / 'configs' / 'deepspeed' / 'zero2.json'}",
        "model_config.hidden=32", "model_config.layers=1", "model_config.heads=2", "model_config.intermediate=64",
        "model_config.embed_dim=32", "data.image_size=32", "data.batch_size=8", "data.num_workers=1",
        "log.every_steps=2", "checkpoint.every_steps=4", f"max_steps={STEPS}", "epochs=null", "optim.warmup_steps=2",
        "optim.lr=0.0005", "eval.batch_size=64", "log.projector_sentences=50", *extra,
    ]


def _launch(*args, check=True):
    # --time 60: submitit counts a USR2 in the last 10 minutes of the limit as a timeout, not a preemption.
    return run_cli("launch", "--cpus-per-task", "1", "--time", "60", *args, check=check, timeout=600)


def _job_id(stdout: str) -> str:
    match = re.search(r"submitted job (?:array )?(\d+)", stdout)
    assert match, stdout
    return match.group(1)


def _sacct_states(job_id: str) -> list[str]:
    """Every record of the job (and of its array elements), requeued incarnations included."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-D", "-j", job_id, "-o", "JobID,State"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def _wait_until_done(job_id: str, timeout_s: float = 400) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"], capture_output=True,
                             text=True, timeout=30).stdout.split()
        if out and out[0] not in ("PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING",
                                  "RESIZING", "SUSPENDED"):
            return out[0]
        time.sleep(1)
    raise AssertionError(f"job {job_id} still not done after {timeout_s}s: {_sacct_states(job_id)}")


def _weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from dist_train.train.export import export

    return load_file(str(export(out / "checkpoints", out / "export") / "model.safetensors"))


def test_dry_run_prints_the_sbatch_script_with_nodes_and_tasks_per_node(tmp_path):
    result = run_cli("launch", "--dry-run", "--nodes", "2", "--gpus-per-node", "4", "--config", TINY, cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --nodes=2" in lines
    assert "#SBATCH --ntasks-per-node=4" in lines
    assert "#SBATCH --gpus-per-node=4" in lines
    assert "#SBATCH --signal=USR2@120" in lines  # time to checkpoint before the limit
    assert any(line.startswith("srun ") and "submitit.core._submit" in line for line in lines)
    assert not (tmp_path / "runs").exists()  # nothing prepared, nothing submitted
    sweep = run_cli("launch", "--dry-run", "--tasks-per-node", "2", "--partition", "cpu", "--sbatch", "exclusive",
                    "--mem", "8G", "--sweep", "objective.visual=0,1", "--sweep", "optim.lr=1e-4,3e-4,1e-3",
                    "--config", TINY, "out_dir=runs/sw", cwd=tmp_path).stdout.splitlines()
    assert "#SBATCH --array=0-5%6" in sweep  # 2 x 3 points, one array
    for line in ("#SBATCH --ntasks-per-node=2", "#SBATCH --partition=cpu", "#SBATCH --exclusive", "#SBATCH --mem=8G"):
        assert line in sweep, line


def test_bad_override_is_refused_before_anything_is_submitted(tmp_path):
    result = run_cli("launch", "--config", TINY, "--sweep", "optim.lr=1e-4,oops", f"out_dir={tmp_path / 'x'}",
                     check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert "optim.lr" in result.stderr and "oops" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def reference_job(slurm, tiny_preprocessed, tmp_path_factory):
    """An uninterrupted 2-task job, submitted and waited for through `dist-train launch --wait`."""
    out = tmp_path_factory.mktemp("slurm") / "reference"
    result = _launch("--wait", "--tasks-per-node", "2", *_train_args(tiny_preprocessed, out))
    return out, result.stdout


def test_two_task_job_trains_and_writes_checkpoints_and_tensorboard(reference_job):
    out, stdout = reference_job
    job_id = _job_id(stdout)
    assert f"checkpoints: {out / 'checkpoints'}" in stdout
    assert f"tensorboard --logdir {out / 'tb'}" in stdout
    assert f"job {job_id} finished at step {STEPS}" in stdout
    assert (out / "checkpoints" / "latest").read_text() == f"step{STEPS:08d}"
    assert sorted(p.name for p in (out / "checkpoints" / f"step{STEPS:08d}").glob("rank_*.pt")) == \
        ["rank_00000.pt", "rank_00001.pt"]  # two ranks, one per task
    assert list((out / "tb").glob("events.out.tfevents.*"))
    logs = out / "submitit"
    assert (logs / f"{job_id}_0_log.out").is_file() and (logs / f"{job_id}_1_log.err").is_file()
    assert _wait_until_done(job_id, 60) == "COMPLETED"  # the results come back before SLURM closes the job
    assert _sacct_states(job_id) == [f"{job_id}|COMPLETED"]


def test_preempted_job_requeues_and_ends_with_the_uninterrupted_weights(reference_job, tiny_preprocessed,
                                                                        tmp_path, cancel_leftovers):
    reference, _ = reference_job
    out = tmp_path / "preempted"
    job_id = _job_id(_launch("--tasks-per-node", "2", *_train_args(tiny_preprocessed, out)).stdout)
    cancel_leftovers.append(job_id)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not (latest.exists() and latest.read_text() == "step00000004"):
        assert time.time() < deadline, f"no checkpoint: {_sacct_states(job_id)}"
        time.sleep(0.2)
    # What SLURM sends before preempting a job or at the end of its time (sbatch --signal=USR2@120).
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    assert _wait_until_done(job_id) == "COMPLETED"
    assert _sacct_states(job_id) == [f"{job_id}|REQUEUED", f"{job_id}|COMPLETED"]
    log = (out / "submitit" / f"{job_id}_0_log.err").read_text()
    # submitit logs "Requeued job N" after `scontrol requeue` returns, unless Slurm has already stopped the
    # step for the requeue ("DUE TO JOB REQUEUE"): either line, beside sacct's REQUEUED state above
    assert "this job is preempted" in log
    assert f"Requeued job {job_id}" in log or f"JOB {job_id} ON" in log and "DUE TO JOB REQUEUE" in log
    assert re.search(r"resumed from \S+step0000000[48]", log), log[-3000:]
    assert (latest.read_text()) == f"step{STEPS:08d}"
    expected, got = _weights(reference), _weights(out)
    assert expected.keys() == got.keys()
    assert [name for name in expected if not torch.equal(expected[name], got[name])] == []


def test_sweep_runs_every_point_as_a_job_array(slurm, tiny_preprocessed, tmp_path):
    root = tmp_path / "sweep"
    result = _launch("--wait", "--tasks-per-node", "1", "--sweep", "optim.lr=0.0005,0.001",
                     *_train_args(tiny_preprocessed, root, "max_steps=4"))
    array_id = _job_id(result.stdout)
    for index, lr in enumerate(["0.0005", "0.001"]):
        run = root / f"optim.lr={lr}"
        assert (run / "checkpoints" / "latest").read_text() == "step00000004"
        assert f"lr: {lr}" in (run / "config.yaml").read_text()
        assert f"job {array_id}_{index} finished at step 4: {run}" in result.stdout
    assert _wait_until_done(f"{array_id}_0", 60) == _wait_until_done(f"{array_id}_1", 60) == "COMPLETED"
    assert sorted(_sacct_states(array_id)) == [f"{array_id}_0|COMPLETED", f"{array_id}_1|COMPLETED"]
    assert f"tensorboard --logdir {root}" in result.stdout


def test_failing_job_reports_its_remote_traceback(slurm, tiny_preprocessed, tmp_path):
    result = _launch("--wait", "--tasks-per-node", "1",
                     *_train_args(tiny_preprocessed, tmp_path / "fails", "deepspeed.config=/nonexistent/zero9.json"),
                     check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed" in result.stdout
    assert "Traceback" in result.stdout
    assert "deepspeed.config: file not found: /nonexistent/zero9.json" in result.stdout
    assert "TrainError" in result.stdout  # the exception raised on the node, with its own frames


def test_cancel_stops_a_running_job(slurm, tiny_preprocessed, tmp_path, cancel_leftovers):
    from submitit import SlurmJob
    from submitit.core.utils import UncompletedJobError

    out = tmp_path / "cancelled"
    job_id = _job_id(_launch("--tasks-per-node", "1", *_train_args(tiny_preprocessed, out, "max_steps=100000")).stdout)
    cancel_leftovers.append(job_id)
    job = SlurmJob(folder=out / "submitit", job_id=job_id)
    deadline = time.time() + 120
    while job.get_info(mode="force").get("State") != "RUNNING":
        assert time.time() < deadline, job.state
        time.sleep(0.5)
    result = run_cli("launch", "--cancel", job_id)
    assert f"cancelled job {job_id}" in result.stdout
    assert _wait_until_done(job_id, 60).startswith("CANCELLED")
    with pytest.raises(UncompletedJobError):
        job.result()


def test_preprocess_job_runs_the_ray_pipeline_in_the_allocation(slurm, tiny_world, tmp_path):
    out = tmp_path / "world-tiny"
    result = _launch("--wait", "--target", "preprocess", "--in", tiny_world, "--out", out,
                     "ray.object_store_memory=300000000")
    assert f"job {_job_id(result.stdout)} finished" in result.stdout
    assert (out / "spm.model").is_file()
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"]["train"]["written"] > 0


def test_plain_sbatch_deepspeed_template_trains_with_one_rank_per_task(slurm, tiny_preprocessed, tmp_path):
    template = REPO / "cluster" / "sbatch" / "deepspeed-multinode.sbatch"
    subprocess.run(["bash", "-n", str(template)], check=True)
    out = tmp_path / "plain"
    # The CPU variant: command-line options override the template's GPU lines.
    proc = subprocess.run(
        ["sbatch", "--wait", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0",
         "--cpus-per-task=1", "--mem=2G", "--time=10", f"--output={tmp_path}/%j.out", str(template),
         *map(str, _train_args(tiny_preprocessed, out))],
        env={**os.environ, "DIST_TRAIN_VENV": sys.prefix}, capture_output=True, text=True, timeout=600, cwd=REPO)
    job_id = proc.stdout.strip().split(";")[0]
    log = (tmp_path / f"{job_id}.out").read_text() if job_id else ""
    assert proc.returncode == 0, proc.stderr + log[-3000:]
    assert "1 node(s) x 2 task(s); rendezvous" in log
    assert (out / "checkpoints" / "latest").read_text() == f"step{STEPS:08d}"
    assert sorted(p.name for p in (out / "checkpoints" / f"step{STEPS:08d}").glob("rank_*.pt")) == \
        ["rank_00000.pt", "rank_00001.pt"]
