"""`dist-train launch`: check the runs on the submit host, submit them through submitit, say where they are.

Every point of a sweep is loaded and validated here first, so a wrong key fails before anything
is queued; the built-in benchmark is prepared here too (once, on the submit host) rather than by
every task at once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dist_train.config import ConfigError, config_leaves, find_config, load_config, to_dict
from dist_train.launch.executor import SlurmOptions, check_text, make_executor, sbatch_script, validate_options
from dist_train.launch.sweep import point_name, sweep_points
from dist_train.storage import is_remote, is_url, location
from dist_train.train.config import TrainConfig
from dist_train.train.main import load_train_config


@dataclass
class Run:
    """One training run of a launch: its overrides and where it writes."""

    overrides: list[str]
    out_dir: Path
    point: list[str] = field(default_factory=list)


@dataclass
class Launch:
    """What was submitted: one job per run (array elements for a sweep) and the submitit folder."""

    jobs: list[Any]
    runs: list[Run]
    job_dir: Path


def check_inputs(config: Path | None, overrides: list[str], job_dir: Path | None, **paths: Path | None) -> None:
    """Every path and override of a launch on one line: they reach the sbatch script (the job folder), the
    job's command line or its pickled arguments. Checked before anything is loaded, made or queued."""
    check_text("--config", config or "")
    check_text("--job-dir", job_dir or "")
    for option, path in paths.items():
        check_text(option, path or "")
    for item in overrides:
        check_text(item.partition("=")[0] if "=" in item else "KEY=VALUE", item)


def check_config_values(cfg: Any, where: str) -> None:
    """Every text value of a loaded config (the config file's and the overrides') on one line, named by key."""
    for key, value in config_leaves(to_dict(cfg)):
        if isinstance(value, str):
            check_text(f"{where}: config key {key}", value)


def plan_train_runs(config: Path | None, overrides: list[str], sweep: list[str], sweep_file: Path | None) -> list[Run]:
    """The runs of a launch, each config loaded and validated; a sweep puts each point in out_dir/<point>."""
    for item in sweep:
        check_text("--sweep", item)
    check_text("--sweep-file", sweep_file or "")
    points = sweep_points(sweep, sweep_file)
    for point in points:  # the --sweep items are checked above: anything else came from the file
        for item in point:
            check_text(f"--sweep-file {sweep_file}", item)
    if load_config(TrainConfig, config, overrides).out_dir is None:  # launch names the run after its config
        overrides = [*overrides, f"out_dir=runs/{Path(config).stem if config else 'run'}"]
    base = load_train_config(str(config) if config else None, overrides)
    check_config_values(base, str(config) if config else "config")
    base_out = location(base.out_dir) if is_url(base.out_dir) else Path(base.out_dir).resolve()  # a URL: staged
    if points == [[]]:
        return [Run([*overrides, f"out_dir={base_out}"], base_out)]
    runs = []
    for point in points:
        out_dir = base_out / point_name(point)
        run = Run([*overrides, *point, f"out_dir={out_dir}"], out_dir, point)
        load_train_config(str(config) if config else None, run.overrides)  # a bad value fails here, naming it
        runs.append(run)
    names = [r.out_dir for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep: two points share a folder name; rename the values ({names})")
    return runs


def default_job_dir(runs: list[Run]) -> Path:
    """submitit's folder (pickles, logs `<jobid>_<task>_log.out`): beside the run, or the sweep's root."""
    root = runs[0].out_dir if len(runs) == 1 and not runs[0].point else runs[0].out_dir.parent
    if is_remote(root):  # a run in object storage: the job folder stays on the shared disk
        return Path.cwd() / f"{root.name}.submitit"
    return root / "submitit"


def launch_train(config: Path | None, overrides: list[str], opts: SlurmOptions, *, sweep: list[str] = (),
                 sweep_file: Path | None = None, job_dir: Path | None = None, local: bool = False,
                 dry_run: bool = False, out: TextIO | None = None) -> Launch | None:
    """Submit `dist-train train` (one job, or a job array over a sweep); None for a dry run."""
    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    from dist_train.cli import ensure_training_data
    from dist_train.launch.job import TrainJob

    validate_options(opts)
    check_inputs(config, list(overrides), job_dir)
    runs = plan_train_runs(config, list(overrides), list(sweep), sweep_file)
    job_dir = Path(job_dir).resolve() if job_dir else default_job_dir(runs)
    check_text("--job-dir", job_dir)  # the default one is made of out_dir and the working folder
    if dry_run:
        out.write(sbatch_script(opts, job_dir, array_size=len(runs) if runs[0].point else None))
        out.write("\n")
        return None
    config_path = str(find_config(config).resolve()) if config else None
    prepared = set()
    for run in runs:
        cfg = load_train_config(config_path, run.overrides)
        if cfg.data.shards not in prepared:
            ensure_training_data(cfg)
            prepared.add(cfg.data.shards)
    executor = make_executor(opts, job_dir, local=local)
    workdir = os.getcwd()
    if len(runs) == 1 and not runs[0].point:
        jobs = [executor.submit(TrainJob(config_path, runs[0].overrides, workdir))]
    else:
        with executor.batch():
            jobs = [executor.submit(TrainJob(config_path, run.overrides, workdir)) for run in runs]
    launched = Launch(jobs, runs, job_dir)
    print_launch(launched, opts, local, out)
    return launched


def launch_preprocess(input_dir: Path, out_dir: Path, config: Path | None, overrides: list[str], opts: SlurmOptions,
                      *, job_dir: Path | None = None, local: bool = False, dry_run: bool = False,
                      out: TextIO | None = None) -> Launch | None:
    """Submit `dist-train preprocess` as a one-node job (Ray runs inside the allocation); None for a dry run."""
    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    from dist_train.launch.job import PreprocessJob
    from dist_train.preprocess.config import PreprocessConfig, validate

    validate_options(opts)
    check_inputs(config, list(overrides), job_dir, **{"--in": input_dir, "--out": out_dir})
    if opts.nodes != 1 or opts.ntasks_per_node() != 1:
        raise ValueError(f"--target preprocess runs one task on one node (got --nodes {opts.nodes}, "
                         f"{opts.ntasks_per_node()} task(s) per node); for a Ray cluster over several nodes "
                         "submit cluster/ray/preprocess.sbatch")
    # a bad key fails before anything is queued
    check_config_values(load_config(PreprocessConfig, config, overrides, validate), str(config) if config else "config")
    # local folders as absolute paths (the job runs elsewhere); URLs (s3://...) as they are
    input_dir, out_dir = (d.resolve() if isinstance(d, Path) else d for d in (location(input_dir), location(out_dir)))
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--in: no such folder: {input_dir}")
    run = Run(list(overrides), out_dir)
    # submitit's folder is local (beside a local out, in the current folder for a URL)
    job_dir = Path(job_dir).resolve() if job_dir else (
        out_dir.parent if isinstance(out_dir, Path) else Path.cwd()) / f"{out_dir.name}.submitit"
    check_text("--job-dir", job_dir)
    if dry_run:
        out.write(sbatch_script(opts, job_dir) + "\n")
        return None
    executor = make_executor(opts, job_dir, local=local)
    job = executor.submit(PreprocessJob(str(input_dir), str(out_dir), str(find_config(config).resolve()) if config else None,
                                        list(overrides), os.getcwd()))
    launched = Launch([job], [run], job_dir)
    where = "locally" if local else "on SLURM (1 node, Ray on its CPUs)"
    out.write(f"submitted job {job.job_id} {where}\n  out:  {out_dir} (summary.json when done)\n"
              f"  logs: {job_dir}/<job id>_0_log.out and .err\n")
    if not local:
        out.write(f"  cancel: dist-train launch --cancel {job.job_id}\n")
    out.flush()
    return launched


def print_launch(launched: Launch, opts: SlurmOptions, local: bool, out: TextIO) -> None:
    jobs, runs = launched.jobs, launched.runs
    where = "locally" if local else f"on SLURM ({opts.nodes} node(s) x {opts.ntasks_per_node()} task(s))"
    if len(jobs) == 1 and not runs[0].point:
        out.write(f"submitted job {jobs[0].job_id} {where}\n")
        out.write(f"  out_dir:     {runs[0].out_dir}\n")
    else:
        array_id = str(jobs[0].job_id).split("_")[0]
        out.write(f"submitted job array {array_id} {where}: {len(jobs)} runs\n")
        for job, run in zip(jobs, runs):
            out.write(f"  job {job.job_id}: {' '.join(run.point)} -> {run.out_dir}\n")
    single = len(runs) == 1 and not runs[0].point
    out.write(f"  logs:        {launched.job_dir}/<job id>_<task>_log.out and .err\n")
    out.write(f"  checkpoints: {runs[0].out_dir / 'checkpoints' if single else '<out_dir>/checkpoints'}\n")
    # A sweep's root holds every point's tb/ folder: TensorBoard shows them side by side.
    out.write(f"  TensorBoard: tensorboard --logdir {runs[0].out_dir / 'tb' if single else runs[0].out_dir.parent}\n")
    if not local:
        ids = " ".join(sorted({str(j.job_id).split('_')[0] for j in jobs}))
        out.write(f"  cancel:      dist-train launch --cancel {ids}\n")
    out.flush()


def wait_for(launched: Launch, out: TextIO | None = None) -> int:
    """Wait for every job; a failed job's remote traceback is printed. Returns the number of failed jobs."""
    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    failed = 0
    for job, run in zip(launched.jobs, launched.runs):
        try:
            results = job.results()
        except Exception as exc:  # submitit's FailedJobError / UncompletedJobError carry the remote traceback
            failed += 1
            out.write(f"job {job.job_id} ({run.out_dir}) failed: {job.state}\n{exc}\n")
            continue
        step = results[0].get("step") if results and isinstance(results[0], dict) else None
        out.write(f"job {job.job_id} finished{'' if step is None else f' at step {step}'}: {run.out_dir}\n")
    out.flush()
    return failed


def cancel(job_ids: list[str], job_dir: Path | None = None, out: TextIO | None = None) -> None:
    """scancel through submitit, for the ids `dist-train launch` printed."""
    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    import re
    import subprocess

    from submitit.slurm.slurm import SlurmJob

    for job_id in job_ids:
        if not re.fullmatch(r"\d+(_\d+)?", str(job_id)):
            raise ValueError(f"--cancel {job_id!r}: not a SLURM job id (1234, or 1234_5 for an array element)")
        try:
            SlurmJob(folder=job_dir or Path.cwd(), job_id=str(job_id)).cancel(check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            raise RuntimeError(f"scancel {job_id} failed: {exc}") from None
        out.write(f"cancelled job {job_id}\n")
    out.flush()
