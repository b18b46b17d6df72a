"""The whole pipeline with every path an s3:// URL, through the real `dist-train` command:
pack -> preprocess (Ray) -> 2-process training (DeepSpeed, gloo) with its run folder in the store ->
a resume on a fresh staging folder (another node) -> export and eval read from the store, eval writes to
it, and `shards verify` finding a truncated object."""

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

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    run = f"{bucket}/runs/tiny"
    key = run.removeprefix("s3://")
    first = run_cli(*_args(ready, run, "max_steps=4", "checkpoint.every_steps=2", "checkpoint.keep_last=1",
                           f"checkpoint.staging_dir={tmp_path / 'node-a'}"), timeout=900)
    assert f"checkpoints in {run}/checkpoints (staged in {tmp_path / 'node-a'}" in first.stdout + first.stderr
    assert "Found credentials" not in first.stdout + first.stderr  # the storage libraries' INFO lines stay out
    assert fs.cat(f"{key}/checkpoints/latest").decode() == "step00000004"
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{key}/checkpoints")) == ["latest", "step00000004"]  # pruned
    step_files = {p.rsplit("/", 1)[-1] for p in fs.ls(f"{key}/checkpoints/step00000004")}
    assert {"rank_00000.pt", "rank_00001.pt", "mp_rank_00_model_states.pt"} <= step_files
    assert {"config.yaml", "model.yaml", "spm.model", "out.log"} <= {p.rsplit("/", 1)[-1] for p in fs.ls(key)}
    assert any("events.out.tfevents" in p for p in fs.find(f"{key}/tb"))

    # another node (an empty staging folder) resumes the run from the store alone
    run_cli(*_args(ready, run, "max_steps=6", "checkpoint.every_steps=2", "checkpoint.keep_last=1",
                   f"checkpoint.staging_dir={tmp_path / 'node-b'}"), timeout=900)
    assert fs.cat(f"{key}/checkpoints/latest").decode() == "step00000006"
    log = fs.cat(f"{key}/out.log").decode()
    assert "from step 4" in log and "resumed from" in log

    out = f"{bucket}/eval"
    run_cli("eval", "--checkpoint", f"{run}/checkpoints", "--shards", ready, "--out", out, "--no-word-translation")
    metrics = json.loads(fs.cat(f"{out.removeprefix('s3://')}/metrics.json"))
    assert metrics["sentence_translation"]["num_queries"] == 336  # every caption of the tiny test split
    assert metrics["meta"]["split"] == "test"
    run_cli("export", run + "/checkpoints", f"{bucket}/export")
    assert {"model.safetensors", "config.yaml", "spm.model"} <= {
        p.rsplit("/", 1)[-1] for p in fs.ls(f"{bucket.removeprefix('s3://')}/export")}

    # a truncated object is found by verify, and named
    key = f"{packed.removeprefix('s3://')}/train/train-000001.tar"
    fs.pipe(key, fs.cat(key)[:20000])
    bad = run_cli("shards", "verify", packed, check=False)
    assert bad.returncode == 1
    assert f"FAIL {packed}/train/train-000001.tar" in bad.stdout
    assert "Traceback" not in bad.stderr
