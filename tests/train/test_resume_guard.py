"""Resuming a run folder: refused with one line when the settings, the vocabulary or a checkpoint file do
not fit (listing each difference, naming the file and the previous complete checkpoint), allowed with
--allow-config-change or checkpoint.resume_from; export into a non-empty folder needs --force; eval
refuses a dataset of another vocabulary; a missing split stops a run before it starts. All through the
real CLI on a real one-process DeepSpeed run of 2 steps (one checkpoint per step), trained once."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli
from tests.train.test_checkpoint_security import _train_args

STEP1, STEP2, STEP3 = "step00000001", "step00000002", "step00000003"


@pytest.fixture(scope="module")
def data(tiny_preprocessed, tmp_path_factory) -> Path:
    """A copy of the tiny dataset that the tests here may change for a moment (its vocabulary)."""
    out = tmp_path_factory.mktemp("guard-data") / "world-tiny"
    shutil.copytree(tiny_preprocessed, out)
    return out


def _args(data: Path, out: Path, *extra: str) -> list:
    return _train_args(data, out, "checkpoint.every_steps=1", "checkpoint.keep_last=3", *extra)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("guard") / "run"
    run_cli(*_args(data, out), timeout=600)
    assert (out / "checkpoints" / "latest").read_text() == STEP2
    assert (out / "checkpoints" / STEP1).is_dir()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _refused(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip().splitlines()[-1]


def test_resume_with_other_settings_is_refused_listing_every_difference(run, data, tmp_path):
    out = _copy(run, tmp_path)
    saved = (out / "config.yaml").read_bytes()
    proc = run_cli(*_args(data, out, "max_steps=3", "data.batch_size=4", "optim.lr=0.001", "seed=7",
                          "log.every_steps=1"), check=False, timeout=300)
    last = _refused(proc)
    assert "data.batch_size: 8 -> 4" in last and "optim.lr: 0.0005 -> 0.001" in last and "seed: 0 -> 7" in last
    assert "--allow-config-change" in last and "log.every_steps" not in last and "max_steps" not in last
    assert (out / "config.yaml").read_bytes() == saved and not (out / "checkpoints" / STEP3).exists()


def test_allow_config_change_resumes_with_the_new_settings_and_keeps_the_old_config(run, data, tmp_path):
    out = _copy(run, tmp_path)
    args = _args(data, out, "max_steps=3", "optim.lr=0.001")
    proc = run_cli(args[0], "--allow-config-change", *args[1:], timeout=600)
    assert re.search(rf"resumed from \S+{STEP2}", proc.stderr), proc.stderr
    assert "optim.lr: 0.0005 -> 0.001" in proc.stderr  # logged
    assert yaml.safe_load((out / "config.00000002.yaml").read_text())["optim"]["lr"] == 0.0005
    new = yaml.safe_load((out / "config.yaml").read_text())
    assert new["optim"]["lr"] == 0.001 and new["allow_config_change"] is True
    assert (out / "checkpoints" / "latest").read_text() == STEP3


@pytest.mark.parametrize("damage", ["model_half", "model_empty", "rank_empty"])
def test_a_truncated_or_empty_file_is_named_with_the_previous_complete_checkpoint(run, data, tmp_path, damage):
    out = _copy(run, tmp_path)
    name = "rank_00000.pt" if damage.startswith("rank") else "mp_rank_00_model_states.pt"
    path = out / "checkpoints" / STEP2 / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if damage.endswith("half") else b"")
    proc = run_cli(*_args(data, out, "max_steps=3"), check=False, timeout=300)
    last = _refused(proc)
    assert str(path) in last and ("empty" in last if damage.endswith("empty") else "truncated" in last), last
    assert f"checkpoint.resume_from={STEP1}" in last and "resumed from" not in proc.stderr
    proc = run_cli("export", out / "checkpoints", tmp_path / "export", check=False, timeout=300)
    last = _refused(proc)
    assert str(path) in last and f"--tag {STEP1}" in last
    assert not (tmp_path / "export").exists()


def test_resume_from_the_previous_checkpoint_and_safe_changes_pass_the_guard(run, data, tmp_path):
    out = _copy(run, tmp_path)
    path = out / "checkpoints" / STEP2 / "mp_rank_00_model_states.pt"
    path.write_bytes(path.read_bytes()[:1000])
    # log.*, eval.*, checkpoint.* and max_steps may change on resume
    proc = run_cli(*_args(data, out, "max_steps=3", f"checkpoint.resume_from={STEP1}", "log.every_steps=1",
                          "eval.batch_size=32", "checkpoint.keep_last=4"), timeout=600)
    assert re.search(rf"resumed from \S+{STEP1}", proc.stderr), proc.stderr
    assert (out / "checkpoints" / "latest").read_text() == STEP3
    # the same command again: the newer complete checkpoint wins over resume_from (a requeue is safe)
    proc = run_cli(*_args(data, out, "max_steps=3", f"checkpoint.resume_from={STEP1}", "log.every_steps=1",
                          "eval.batch_size=32", "checkpoint.keep_last=4"), timeout=600)
    assert re.search(rf"resumed from \S+{STEP3}", proc.stderr), proc.stderr


def test_resume_on_a_dataset_with_another_vocabulary_is_refused(run, data, tmp_path):
    from dist_train.preprocess.vocab import train_vocab

    out = _copy(run, tmp_path)
    spm = data / "spm.model"
    original = spm.read_bytes()
    try:
        spm.write_bytes(train_vocab(["a few other words", "ganz andere Wörter", "d'autres mots"] * 50, 300))
        last = _refused(run_cli(*_args(data, out, "max_steps=3"), check=False, timeout=300))
        assert str(spm) in last and str(out) in last and "vocabulary" in last
    finally:
        spm.write_bytes(original)


def test_eval_refuses_a_dataset_of_another_vocabulary(run, data, tmp_path):
    from dist_train.preprocess.vocab import train_vocab

    other = tmp_path / "other"
    shutil.copytree(data, other)
    (other / "spm.model").write_bytes(train_vocab(["a few other words", "noch mehr Wörter"] * 50, 300))
    for checkpoint in (run / "checkpoints", ):
        proc = run_cli("eval", "--checkpoint", checkpoint, "--shards", other, "--out", tmp_path / "eval",
                       "--no-word-translation", check=False, timeout=300)
        last = _refused(proc)
        assert str(other / "spm.model") in last and str(checkpoint) in last, last
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("key", ["data.split", "eval.split"])
def test_a_missing_split_stops_the_run_before_it_starts(data, tmp_path, key):
    out = tmp_path / "fresh"
    last = _refused(run_cli(*_args(data, out, f"{key}=tset"), check=False, timeout=300))
    assert f"'{key}' = 'tset'" in last and "test" in last and "train" in last
    assert not out.exists()


def test_export_into_a_non_empty_folder_needs_force(run, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "notes.txt").write_text("mine")
    last = _refused(run_cli("export", run / "checkpoints", export, check=False, timeout=300))
    assert str(export) in last and "--force" in last
    assert sorted(p.name for p in export.iterdir()) == ["notes.txt"]
    run_cli("export", run / "checkpoints", export, "--force", timeout=300)
    assert (export / "model.safetensors").is_file() and (export / "notes.txt").read_text() == "mine"
    assert yaml.safe_load((export / "config.yaml").read_text())["vocab_sha256"]
