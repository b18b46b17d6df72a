"""Loading a checkpoint never runs code from it: a pickle planted in any file that resume, export or eval
reads is refused (one line on stderr naming the file, no traceback, exit code non-zero) and never runs;
the `latest` pointer and `export --tag` only ever name a step folder directly inside the checkpoints
folder. All through the real CLI on a real one-process DeepSpeed checkpoint."""

from __future__ import annotations

import pathlib
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from tests.train.test_engine import _args

STEPS = 2
TAG = f"step{STEPS:08d}"


class Planted:
    """What an attacker pickles: unpickling it calls Path.touch(marker), i.e. runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _train_args(data: Path, out: Path, *extra: str) -> list:
    one_process = [a for a in _args(data, out) if a not in ("--nproc-per-node", "2")
                   and not str(a).startswith(("max_steps=", "checkpoint.every_steps="))]
    return [*one_process, f"max_steps={STEPS}", f"checkpoint.every_steps={STEPS}", *extra]


@pytest.fixture(scope="module")
def run(tiny_preprocessed, tmp_path_factory) -> Path:
    """A real checkpoint of a one-process 2-step run (read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("secure") / "run"
    run_cli(*_train_args(tiny_preprocessed, out), timeout=600)
    assert (out / "checkpoints" / "latest").read_text() == TAG
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


# the file, and where inside its (otherwise intact) dict the payload goes
FILES = {
    "rank_state": ("rank_00000.pt", lambda d: d["loader"]),
    "model_states": ("mp_rank_00_model_states.pt", lambda d: d),
    "optim_states": ("zero_pp_rank_0_mp_rank_00_optim_states.pt", lambda d: d["optimizer_state_dict"]),
}


def _plant(out: Path, kind: str, marker: Path) -> Path:
    name, inner = FILES[kind]
    path = out / "checkpoints" / TAG / name
    state = torch.load(path, weights_only=False)  # our own file, just written
    inner(state)["extra"] = Planted(marker)
    torch.save(state, path)
    return path


def _assert_refused(proc, path: Path, marker: Path) -> None:
    assert not marker.exists(), "the planted pickle ran"
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert str(path) in last and "refused" in last, proc.stderr


def test_planted_pickle_would_run_when_unpickled(run, tmp_path):
    """The payload is real: an unrestricted torch.load runs it (what resume, export and eval did)."""
    marker = tmp_path / "ran"
    path = _plant(_copy(run, tmp_path), "optim_states", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", list(FILES))
def test_resume_refuses_a_planted_pickle(run, tiny_preprocessed, tmp_path, kind):
    out = _copy(run, tmp_path)
    marker = tmp_path / "ran"
    path = _plant(out, kind, marker)
    proc = run_cli(*_train_args(tiny_preprocessed, out, f"max_steps={STEPS + 1}"), check=False, timeout=300)
    _assert_refused(proc, path, marker)


@pytest.mark.parametrize("kind", ["model_states", "optim_states"])
def test_export_and_eval_refuse_a_planted_pickle(run, tiny_preprocessed, tmp_path, kind):
    out = _copy(run, tmp_path)
    marker = tmp_path / "ran"
    path = _plant(out, kind, marker)
    proc = run_cli("export", out / "checkpoints", tmp_path / "export", check=False, timeout=300)
    _assert_refused(proc, path, marker)
    assert not (tmp_path / "export" / "model.safetensors").exists()
    proc = run_cli("eval", "--checkpoint", out / "checkpoints", "--shards", tiny_preprocessed, "--out",
                   tmp_path / "eval", check=False, timeout=300)
    _assert_refused(proc, path, marker)


def test_a_corrupt_file_is_named_in_one_line(run, tmp_path):
    out = _copy(run, tmp_path)
    path = out / "checkpoints" / TAG / FILES["model_states"][0]
    path.write_bytes(path.read_bytes()[: 1000])
    proc = run_cli("export", out / "checkpoints", tmp_path / "export", check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("pointer", ["../outside", "absolute", "step00000099"])
def test_resume_refuses_a_latest_pointer_that_leaves_the_checkpoints(run, tiny_preprocessed, tmp_path, pointer):
    out = _copy(run, tmp_path)
    checkpoints = out / "checkpoints"
    outside = out / "outside"  # a complete checkpoint, but not one of this run's step folders
    shutil.copytree(checkpoints / TAG, outside)
    latest = checkpoints / "latest"
    latest.write_text(str(outside) if pointer == "absolute" else pointer)
    proc = run_cli(*_train_args(tiny_preprocessed, out, f"max_steps={STEPS + 1}"), check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert str(latest) in last, proc.stderr
    assert "resumed from" not in proc.stderr and not (checkpoints / f"step{STEPS + 1:08d}").exists()
    # export reads the same pointer
    proc = run_cli("export", checkpoints, tmp_path / "export", check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and str(latest) in proc.stderr, proc.stderr


@pytest.mark.parametrize("tag", ["../run/checkpoints/" + TAG, "/etc", "step00000099"])
def test_export_refuses_a_tag_outside_the_checkpoints(run, tmp_path, tag):
    proc = run_cli("export", run / "checkpoints", tmp_path / "export", "--tag", tag, check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "--tag" in last and (tag in last or str(run / "checkpoints" / tag) in last), proc.stderr
    assert not (tmp_path / "export").exists()


def test_a_clean_checkpoint_still_resumes_and_exports(run, tiny_preprocessed, tmp_path):
    out = _copy(run, tmp_path)
    proc = run_cli(*_train_args(tiny_preprocessed, out, f"max_steps={STEPS + 1}"), timeout=600)
    assert re.search(rf"resumed from \S+{TAG}", proc.stderr), proc.stderr
    assert (out / "checkpoints" / "latest").read_text() == f"step{STEPS + 1:08d}"
    rank_state = torch.load(out / "checkpoints" / f"step{STEPS + 1:08d}" / "rank_00000.pt", weights_only=True)
    assert rank_state["loader"]["consumed"] > 0
    run_cli("export", out / "checkpoints", tmp_path / "export", "--tag", TAG)
    assert (tmp_path / "export" / "model.safetensors").is_file()
