"""The whole pipeline with every dataset path an s3:// URL, through the real `dist-train` command:
pack -> preprocess (Ray) -> 2-process training (DeepSpeed, gloo) -> eval, and `shards verify` finding
a truncated object. The run folder (checkpoints, TensorBoard) stays on local disk, where DeepSpeed
writes."""

from __future__ import annotations

import json
import os

from tests.conftest import run_cli
from tests.train.test_engine import _args


def test_pack_preprocess_train_and_eval_with_datasets_in_s3(bucket, tmp_path):
    import s3fs

    packed, ready = f"{bucket}/packed/world-tiny", f"{bucket}/world-tiny"
    run_cli("-q", "pack", "world", "--preset", "tiny", "--out", packed, "--workers", "0")
    assert "OK 7 shard(s), 756 samples" in run_cli("shards", "verify", packed).stdout
    run_cli("-q", "preprocess", "--in", packed, "--out", ready, "ray.object_store_memory=300000000",
            env={**os.environ, "RAY_ADDRESS": ""}, timeout=900)
    summary = json.loads(s3fs.S3FileSystem(skip_instance_cache=True).cat(f"{ready.removeprefix('s3://')}/summary.json"))
    assert summary["totals"]["written"] == 756 and summary["totals"]["read"] == 756

    run = tmp_path / "run"
    run_cli(*_args(ready, run, "max_steps=4", "checkpoint.every_steps=4"), timeout=900)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step00000004"

    out = tmp_path / "eval"
    run_cli("eval", "--checkpoint", run / "checkpoints", "--shards", ready, "--out", out, "--no-word-translation")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sentence_translation"]["num_queries"] == 336  # every caption of the tiny test split

    # a truncated object is found by verify, and named
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    key = f"{packed.removeprefix('s3://')}/train/train-000001.tar"
    fs.pipe(key, fs.cat(key)[:20000])
    bad = run_cli("shards", "verify", packed, check=False)
    assert bad.returncode == 1
    assert f"FAIL {packed}/train/train-000001.tar" in bad.stdout
    assert "Traceback" not in bad.stderr
