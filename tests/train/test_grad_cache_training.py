"""Gradient caching inside the DeepSpeed engine (2 processes, ZeRO-2): `objective.grad_cache_chunk`
trains with the gradients of the whole global batch, each sub-batch one DeepSpeed micro-batch."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

from tests.conftest import run_cli
from tests.train.test_engine import _args, _events, _module_weights

STEPS = 3


def _run(data: Path, out: Path, *extra: str):
    return run_cli(*_args(data, out, f"max_steps={STEPS}", "log.every_steps=1", "checkpoint.every_steps=100",
                          "model_config.dropout=0.0", *extra), timeout=600)


def _scalars(out: Path, tag: str) -> list[float]:
    return [e.value for e in _events(out).Scalars(tag)]


def test_cached_sub_batches_train_like_the_whole_batch(tiny_preprocessed, tmp_path):
    """Text-only supervised (the transitive loss over translations: contrastive over the global batch, no
    BatchNorm): 4 sub-batches of 2 captions per rank give the losses, gradient norms and weights of
    batches of 8."""
    text = ("objective.text_only=true", "objective.supervised=true")
    whole, cached = tmp_path / "whole", tmp_path / "cached"
    _run(tiny_preprocessed, whole, *text)
    _run(tiny_preprocessed, cached, *text, "objective.grad_cache_chunk=2", "checkpoint.every_steps=1",
         f"checkpoint.keep_last={STEPS}")
    for tag in ("loss/transitive", "loss/cloze", "train/grad_norm"):
        a, b = _scalars(whole, tag), _scalars(cached, tag)
        assert len(a) == len(b) == STEPS
        torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-6, msg=tag)
    final = f"step{STEPS:08d}"
    a = _module_weights(whole / "checkpoints" / final)
    b = _module_weights(cached / "checkpoints" / final)
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5)]
    assert changed == []

    # a cached run resumed from its step-2 checkpoint ends bitwise where the uninterrupted one did
    resumed = tmp_path / "resumed"
    tag = f"step{STEPS - 1:08d}"
    shutil.copytree(cached / "checkpoints" / tag, resumed / "checkpoints" / tag)
    (resumed / "checkpoints" / "latest").write_text(tag)
    proc = _run(tiny_preprocessed, resumed, *text, "objective.grad_cache_chunk=2")
    assert re.search(rf"resumed from \S+{tag}", proc.stderr), proc.stderr
    c = _module_weights(resumed / "checkpoints" / final)
    assert [k for k in b if not torch.equal(b[k], c[k])] == []


def test_image_model_trains_cached_and_counts_each_sub_batch_once_in_batchnorm(tiny_preprocessed, tmp_path):
    out = tmp_path / "run"
    _run(tiny_preprocessed, out, "objective.grad_cache_chunk=4")
    weights = _module_weights(out / "checkpoints" / f"step{STEPS:08d}")
    tracked = [v for k, v in weights.items() if k.endswith("num_batches_tracked")]
    assert tracked and all(int(v) == STEPS * 2 for v in tracked)  # 2 sub-batches per step, one count each
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    for tag in ("loss/cross_modal", "loss/visual", "loss/transitive", "loss/cloze"):
        assert len(_scalars(out, tag)) == STEPS


def test_chunk_must_divide_the_batch(tiny_preprocessed, tmp_path):
    proc = run_cli(*_args(tiny_preprocessed, tmp_path / "bad", "objective.grad_cache_chunk=3"), check=False)
    assert proc.returncode != 0
    assert "objective.grad_cache_chunk" in proc.stderr and "data.batch_size (8)" in proc.stderr
