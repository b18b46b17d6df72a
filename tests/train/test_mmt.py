"""Adversarial-reconstruction MMT through the real engine: 2-process DeepSpeed training of Q + G with the critic
as an engine of its own, TensorBoard (translation, critic, Wasserstein, gradient penalty, reconstruction), both
engines in every checkpoint and a bitwise-exact resume, early stopping on validation sacreBLEU with the best
weights kept as an export, and what one step of each reconstruction form updates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_cli

FORMS = ("none", "regression", "g-wgan", "q-waae")


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", REPO / "configs" / "mmt-tiny.yaml", f"out_dir={out}", f"data.shards={data}",
            "max_steps=8", "eval.every_steps=4", "checkpoint.every_steps=4", "log.every_steps=2", *extra]


def _states(path: Path) -> dict:
    from dist_train.train.checkpoint import safe_load

    return safe_load(path / "mp_rank_00_model_states.pt")


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def gwgan_run(tiny_parallel2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mmt") / "run"
    run_cli(*_args(tiny_parallel2, out, "model_config.reconstruction=g-wgan", "--nproc-per-node", "2"), timeout=600)
    return out


def test_two_processes_train_q_g_and_the_critic_and_log_every_term(gwgan_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (gwgan_run / "checkpoints" / "latest").read_text() == "step00000008"
    (events,) = sorted((gwgan_run / "tb").glob("events.out.tfevents.*"))[:1]
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/translation", "loss/critic", "loss/wasserstein", "loss/gradient_penalty", "loss/reconstruction",
            "loss/adversarial", "eval/sacrebleu"} <= scalars
    assert [e.step for e in acc.Scalars("eval/sacrebleu")] == [4, 8]
    assert all(e.value > 0 for e in acc.Scalars("loss/gradient_penalty"))
    (text,) = [t for t in acc.Tags()["tensors"] if t.startswith("eval/translations")]
    assert "reference:" in acc.Tensors(text)[-1].tensor_proto.string_val[0].decode()
    for tag in ("step00000004", "step00000008"):  # one checkpoint holds both engines
        step = gwgan_run / "checkpoints" / tag
        assert not [k for k in _states(step)["module"] if k.startswith("critic.")]
        critic = _states(step / "critic")
        assert {k.split(".")[0] for k in critic["module"]} == {"layers"} and critic["optimizer"] is not None
    report = json.loads((gwgan_run / "eval" / "translations-step00000008.json").read_text())
    assert report["pair"] == "en->de" and report["split"] == "val" and report["sentences"] == 12


def test_the_best_weights_are_an_export_that_translates(gwgan_run, tiny_parallel2, tmp_path):
    import yaml

    from dist_train.train.export import load_model

    best = gwgan_run / "best"
    config = yaml.safe_load((best / "config.yaml").read_text())
    reports = [json.loads(p.read_text()) for p in sorted((gwgan_run / "eval").glob("translations-step*.json"))]
    assert config["selected"]["step"] == reports[-1]["best"]["step"]
    assert config["selected"]["value"] == pytest.approx(reports[-1]["best"]["sacrebleu"])
    model, loaded = load_model(best)
    assert model.critic is None and model.config.reconstruction == "g-wgan" and not model.config.with_critic
    done = run_cli("-q", "eval", "--checkpoint", best, "--shards", tiny_parallel2, "--out", tmp_path / "eval",
                   "--no-meteor", "--beam-size", "2")
    assert "en->de on test" in done.stdout
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["translation"]["sentences"] == 24 and "nrefs:" in metrics["translation"]["sacrebleu_signature"]


def test_resume_is_bitwise_exact_for_q_g_and_the_critic(tiny_parallel2, gwgan_run, tmp_path):
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(gwgan_run / "checkpoints" / "step00000004", resumed / "checkpoints" / "step00000004")
    (resumed / "checkpoints" / "latest").write_text("step00000004")
    for name in ("config.yaml", "model.yaml", "spm.model"):
        shutil.copy(gwgan_run / name, resumed / name)
    proc = run_cli(*_args(tiny_parallel2, resumed, "model_config.reconstruction=g-wgan", "--nproc-per-node", "2"),
                   timeout=600)
    assert re.search(r"resumed from \S+step00000004", proc.stderr), proc.stderr[-2000:]
    a, b = gwgan_run / "checkpoints" / "step00000008", resumed / "checkpoints" / "step00000008"
    assert _equal(_states(a)["module"], _states(b)["module"])
    assert _equal(_states(a / "critic")["module"], _states(b / "critic")["module"])
    assert _equal(_states(a / "critic")["optimizer"], _states(b / "critic")["optimizer"])


def test_training_stops_after_patience_evaluations_without_a_better_score(tiny_parallel2, tmp_path):
    out = tmp_path / "run"
    # a rate too small to change any translation: the second evaluation is no better than the first
    args = _args(tiny_parallel2, out, "model_config.reconstruction=none", "objective.patience=1", "optim.lr=1e-9",
                 "eval.every_steps=2", "max_steps=40", "checkpoint.every_steps=100")
    done = run_cli(*args, timeout=600)
    assert "stopped early at step 4" in done.stderr, done.stderr[-2000:]
    assert (out / "checkpoints" / "latest").read_text() == "step00000004"
    assert yaml_selected(out)["step"] == 2
    again = run_cli(*args, timeout=600)  # a rerun resumes a finished run: nothing more is trained
    assert "stopped early at step 4" in again.stderr and (out / "checkpoints" / "latest").read_text() == "step00000004"


def yaml_selected(out: Path) -> dict:
    import yaml

    return yaml.safe_load((out / "best" / "config.yaml").read_text())["selected"]


@pytest.mark.parametrize("form", FORMS)
def test_one_step_of_each_form_changes_only_what_it_should(form, tiny_parallel2, tmp_path):
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "tests" / "train" / "mmt_one_step.py"), str(tiny_parallel2),
                           str(tmp_path / "run"), form], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")] or [None]
    assert line is not None, done.stderr[-3000:]
    result = json.loads(line[len("RESULT "):])
    assert result["critic_in_model"] is False  # the critic is never part of the translation model's engine
    step = result["q_g_step"]
    assert step["Q"] is True and step["critic_grads"] is False
    if form == "none":
        assert result["engines"] == [] and step["G"] is None and step["D"] is None
        assert step["metrics"] == ["total", "translation"]
    elif form == "regression":
        assert result["engines"] == [] and step["G"] is True and "reconstruction" in step["metrics"]
    else:
        assert result["engines"] == ["critic"]
        assert {k: result["critic_steps"][k] for k in "QGD"} == {"Q": False, "G": False, "D": True}
        assert step["G"] is True and step["D"] is False  # Q and G learn to fool a critic that stays as it is
        assert {"adversarial", "reconstruction"} <= set(step["metrics"])


@pytest.mark.parametrize("override, message", [
    ("data.captions_per_image=0", "data.caption_languages"),
    ("data.caption_languages=[]", "data.caption_languages=[en,de]"),
    ("data.caption_languages=[de,en]", "data.caption_languages=[en,de]"),
    ("data.image_features=false", "data.image_features"),
    ("deepspeed.zero_stage=3", "use stage 0, 1 or 2"),
    ("objective.target_language=fr data.caption_languages=[en,fr]", "no fr captions"),
    ("objective.critic_betas=[0.5]", "objective.critic_betas"),
])
def test_settings_that_cannot_train_fail_in_one_line_before_training(override, message, tiny_parallel2, tmp_path):
    done = run_cli(*_args(tiny_parallel2, tmp_path / "run", *override.split()), check=False, timeout=300)
    assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
