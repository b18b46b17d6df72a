"""Multilingual VSE++ through `dist-train train`: 2 DeepSpeed processes (ZeRO-2, gloo) on the tiny
ten-language data, evaluated per language; the task draw and the caption pairing of the objective."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dist_train.config import ConfigError, load_config
from dist_train.train.config import TrainConfig, validate
from dist_train.train.data import Vocab
from dist_train.train.objectives import build_objective
from dist_train.train.objectives.vse import caption_pairs, step_task
from tests.conftest import REPO, run_cli

STEPS = 16
LANGUAGES = ["ar", "de", "en", "es", "fr", "it", "ja", "ko", "ru", "zh"]


def _events(out: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = sorted((out / "tb").glob("events.out.tfevents.*"))[:1]
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def vsepp_run(tiny_parallel10, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vsepp") / "run"
    run_cli("train", "--config", REPO / "configs" / "vsepp-tiny.yaml", "--nproc-per-node", "2", f"out_dir={out}",
            f"data.shards={tiny_parallel10}", f"deepspeed.config={REPO / 'configs' / 'deepspeed' / 'zero2.json'}",
            "deepspeed.zero_stage=2", f"max_steps={STEPS}", "epochs=null", "log.every_steps=2",
            "checkpoint.every_steps=8", "optim.lr=0.001", timeout=600)
    return out


def test_two_process_zero2_run_trains_both_tasks_and_evaluates_every_language(vsepp_run):
    out = vsepp_run
    assert (out / "checkpoints" / "latest").read_text() == f"step{STEPS:08d}"
    result = json.loads((out / "eval" / f"retrieval-step{STEPS:08d}.json").read_text())
    assert sorted(result["mean_recall"]) == LANGUAGES
    # 24 test scenes per language: chance of mean recall over R@1/5/10 both ways is (1+5+10)/3/24
    assert result["A_chance"] == pytest.approx(100 * (1 + 5 + 10) / 3 / 24, rel=1e-6)
    for value in [result["A"], *result["mean_recall"].values()]:
        assert 0.0 <= value <= 100.0
    assert result["A"] == pytest.approx(sum(result["mean_recall"].values()) / 10, rel=1e-9)
    counts = result["parameters"]
    assert counts["total"] == counts["word_embeddings"] + counts["gru"] + counts["image_projection"]
    acc = _events(out)
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/total", "stat/c2c_fraction", "eval/mean_recall_A", "eval/mean_recall_A_chance",
                *(f"eval/mean_recall/{lang}" for lang in LANGUAGES)):
        assert tag in tags, tag
    c2c_share = [e.value for e in acc.Scalars("stat/c2c_fraction")]
    assert 0 < sum(c2c_share) / len(c2c_share) < 1  # both tasks ran
    assert acc.Scalars("eval/mean_recall_A")[0].value == pytest.approx(result["A"], rel=1e-5)
    losses = [e.value for e in acc.Scalars("loss/total")]
    assert all(v == v and v >= 0 for v in losses)


def test_the_task_of_a_step_depends_only_on_seed_and_step():
    draws = [step_task(0, step, True, 0.5) for step in range(400)]
    assert draws == [step_task(0, step, True, 0.5) for step in range(400)]
    assert 0.4 < draws.count("c2c") / 400 < 0.6
    assert draws != [step_task(1, step, True, 0.5) for step in range(400)]
    assert {step_task(0, step, False, 0.5) for step in range(50)} == {"c2i"}
    assert {step_task(0, step, True, 1.0) for step in range(50)} == {"c2c"}


def test_captions_of_one_image_are_paired_in_batch_order():
    a, b = caption_pairs(torch.tensor([5, 5, 9, 7, 9, 7, 5, 5, 4]))
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (2, 4), (3, 5), (6, 7)]


def _config(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, REPO / "configs" / "vsepp-tiny.yaml", ("out_dir=x", *overrides), validate)


def test_settings_the_objective_cannot_run_with_are_refused():
    vocab = Vocab("spm.model", 100, 0, 2, 3, 4)
    with pytest.raises(ConfigError, match="data.image_features"):
        build_objective(_config("data.image_features=false"), vocab)
    with pytest.raises(ConfigError, match="data.captions_per_image"):
        build_objective(_config("data.captions_per_image=0"), vocab)
    build_objective(_config("data.captions_per_image=0", "objective.c2c=false"), vocab)  # c2i alone needs no pairs
    with pytest.raises(ConfigError, match="objective.sum_of_hinges_steps"):
        build_objective(_config("objective.sum_of_hinges_steps=-1"), vocab)
    with pytest.raises(ConfigError, match="objective.margn"):
        build_objective(_config("objective.margn=0.1"), vocab)
    with pytest.raises(ConfigError, match="data.captions_per_image"):
        _config("data.captions_per_image=3")  # does not divide the batch of 16
