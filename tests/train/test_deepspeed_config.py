"""The DeepSpeed JSON the engine builds: a user's full ds_config is accepted (the experiment's keys win,
with a warning naming them) and the optimizer is chosen by optim.name."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from dist_train.config import ConfigError
from dist_train.train.engine import TrainError, deepspeed_config
from dist_train.train.main import load_train_config


def _cfg(tmp_path, *overrides):
    return load_train_config("globetrotter-tiny", [f"out_dir={tmp_path / 'run'}", *overrides])


def test_a_full_ds_config_is_accepted_and_the_experiment_decides_batch_optimizer_and_schedule(tmp_path, caplog):
    own = tmp_path / "ds.json"
    own.write_text(json.dumps({
        "train_batch_size": 4096, "train_micro_batch_size_per_gpu": 512, "gradient_accumulation_steps": 8,
        "optimizer": {"type": "Adam", "params": {"lr": 1.0}}, "scheduler": {"type": "WarmupLR"},
        "zero_optimization": {"stage": 1}, "gradient_clipping": 0.5}))
    cfg = _cfg(tmp_path, f"deepspeed.config={own}", "data.batch_size=16", "optim.lr=0.002")
    with caplog.at_level(logging.WARNING, logger="dist_train.train.engine"):
        ds = deepspeed_config(cfg, total_steps=100, world_size=2)
    assert ds["train_batch_size"] == 32 and ds["train_micro_batch_size_per_gpu"] == 16
    assert ds["gradient_accumulation_steps"] == 1
    assert ds["optimizer"]["type"] == "AdamW" and ds["optimizer"]["params"]["lr"] == 0.002
    assert ds["scheduler"]["type"] == "WarmupCosineLR"
    assert ds["zero_optimization"] == {"stage": 1} and ds["gradient_clipping"] == 0.5  # the file's own keys stay
    (warning,) = [r.getMessage() for r in caplog.records]
    assert ("sets optimizer, scheduler, train_batch_size, train_micro_batch_size_per_gpu, "
            "gradient_accumulation_steps") in warning


@pytest.mark.parametrize("name,kind", [("lamb", "Lamb"), ("onebitadam", "OneBitAdam")])
def test_the_optimizer_is_chosen_by_name(tmp_path, name, kind):
    cfg = _cfg(tmp_path, f"optim.name={name}")
    if torch.cuda.is_available():
        ds = deepspeed_config(cfg, total_steps=100, world_size=2)
        assert ds["optimizer"]["type"] == kind
        if name == "onebitadam":
            assert ds["optimizer"]["params"]["freeze_step"] == 100
    else:  # DeepSpeed's fused LAMB and 1-bit Adam are CUDA/NCCL code: refused in one line, not crashed on
        with pytest.raises(TrainError, match=rf"^optim.name={name}: DeepSpeed's {kind} runs on GPUs only"):
            deepspeed_config(cfg, total_steps=100, world_size=2)


def test_an_unknown_optimizer_or_a_broken_json_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'optim.name' = 'sgd': use one of adamw, lamb, onebitadam"):
        _cfg(tmp_path, "optim.name=sgd")
    broken = tmp_path / "ds.json"
    broken.write_text("{not json")
    with pytest.raises(TrainError, match="is not JSON"):
        deepspeed_config(_cfg(tmp_path, f"deepspeed.config={broken}"), total_steps=10, world_size=1)


@pytest.mark.parametrize("warmup, total", [(0, 100), (5, 1)])
def test_no_warm_up_is_a_schedule_deepspeed_accepts_that_starts_at_the_full_rate(tmp_path, warmup, total):
    from deepspeed.runtime.lr_schedules import WarmupCosineLR

    cfg = _cfg(tmp_path, f"optim.warmup_steps={warmup}", "optim.lr=0.002", "optim.min_lr_ratio=0.5")
    params = deepspeed_config(cfg, total_steps=total, world_size=1)["scheduler"]["params"]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.002)
    schedule = WarmupCosineLR(optimizer, **params)  # DeepSpeed refuses a warm-up of 0 steps
    schedule.step()  # iteration 0
    assert schedule.get_last_lr()[0] == pytest.approx(0.002)  # already at the full rate
    if total > 1:
        for _ in range(total - 1):  # to the last iteration, total - 1
            schedule.step()
        assert schedule.get_last_lr()[0] == pytest.approx(0.001)  # the cosine still ends at min_lr_ratio
