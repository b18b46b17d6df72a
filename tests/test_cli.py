"""The `dist-train` command as users run it: help texts, the documented interfaces, kill and resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dist_train.cli import build_parser
from dist_train.data.shards import list_finished_shards, list_shards

from .conftest import run_cli


def _subcommand_paths(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_has_help_with_an_example():
    paths = dict(_subcommand_paths(build_parser()))
    assert {("demo",), ("pack", "world"), ("pack", "coco"), ("pack", "table"), ("pack", "img2dataset"),
            ("pack", "multi30k"), ("shards", "verify"), ("shards", "inspect"), ("shards", "stats")} <= set(paths)
    for path, sub in paths.items():
        text = sub.format_help()
        assert "example:" in text and "dist-train " + path[0] in text.split("example:")[1], path
    out = run_cli("pack", "world", "--help").stdout
    assert "dist-train pack world --preset tiny --out" in out


def test_pack_world_tiny_writes_the_documented_layout(tiny_world):
    for split in ("train", "val", "test"):
        tars = sorted((tiny_world / split).glob("*.tar"))
        assert tars
        assert sorted((tiny_world / split).glob("*.parquet")) == [t.with_suffix(".parquet") for t in tars]
    summary = json.loads((tiny_world / "summary.json").read_text())
    assert summary["totals"]["written"] == 14 * (24 + 6 + 24)


def test_verify_passes_good_shards_and_names_truncated_and_corrupted_ones(tiny_world, tmp_path):
    ok = run_cli("shards", "verify", tiny_world, "--decode")
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad"
    shutil.copytree(tiny_world, bad)
    truncated = list_shards(bad, "train")[1]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    corrupted = list_shards(bad, "test")[0]
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 3] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    proc = run_cli("shards", "verify", bad, check=False)
    assert proc.returncode == 1
    failing = {line.split(":")[0].removeprefix("FAIL ") for line in proc.stdout.splitlines() if line.startswith("FAIL")}
    assert failing == {str(truncated), str(corrupted)}
    one = run_cli("shards", "verify", truncated, check=False)
    assert one.returncode == 1 and str(truncated) in one.stdout


def test_stats_and_inspect_read_the_shards(tiny_world, tmp_path):
    stats = json.loads(run_cli("shards", "stats", tiny_world, "--json").stdout)
    assert stats["splits"]["test"]["samples"] == 14 * 24
    assert stats["splits"]["test"]["languages"]["ja"] == 24
    assert stats["read"] == stats["splits"]["train"]["samples"] + 14 * (6 + 24) and stats["rejected"] == 0
    out = run_cli("shards", "inspect", tiny_world, "--split", "test", "--language", "el", "-n", "3",
                  "--save-images", tmp_path / "imgs").stdout
    assert out.count("[el, test, 64x64, synthetic]") == 3
    assert len(list((tmp_path / "imgs").glob("*.jpg"))) == 3


def test_bad_arguments_are_clear_errors(tmp_path):
    proc = run_cli("pack", "world", "--preset", "tiny", "--languages", "en,xx", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "no language xx" in proc.stderr
    run_cli("-q", "pack", "world", "--preset", "tiny", "--languages", "en", "--out", tmp_path / "o")
    proc = run_cli("pack", "world", "--preset", "tiny", "--languages", "en", "--seed", "3", "--out", tmp_path / "o",
                   check=False)
    assert proc.returncode == 2 and "already holds a dataset" in proc.stderr and "seed" in proc.stderr


def test_killed_pack_resumes_to_the_same_bytes_as_an_uninterrupted_run(tmp_path):
    args = ["-q", "pack", "world", "--preset", "tiny", "--languages", "en,ru,ja", "--train-per-language", "200",
            "--max-samples-per-shard", "20", "--workers", "0"]
    run_cli(*args, "--out", tmp_path / "ref")
    exe = Path(sys.executable).with_name("dist-train")
    proc = subprocess.Popen([str(exe), *args, "--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list_finished_shards(tmp_path / "killed", "train")) < 3:
        assert proc.poll() is None and time.time() < deadline, "pack finished or hung before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = tmp_path / "killed"
    assert not (killed / "summary.json").exists()
    assert len(list_finished_shards(killed, "train")) < 30
    run_cli(*args, "--out", killed)

    def digest(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and p.suffix == ".tar"}

    assert digest(killed) == digest(tmp_path / "ref")
    assert json.loads((killed / "summary.json").read_text())["totals"] == \
        json.loads((tmp_path / "ref" / "summary.json").read_text())["totals"]
    assert run_cli("shards", "verify", killed).returncode == 0


@pytest.mark.timeout(1800)  # seven stages, four trainings; minutes on a loaded 2-core machine
def test_demo_packs_preprocesses_trains_with_two_processes_and_evaluates(tmp_path):
    runs = tmp_path / "runs"
    proc = run_cli("demo", "--preset", "tiny", "--shards-root", tmp_path, "--runs-root", runs, "--workers", "1")
    packed = tmp_path / "packed" / "world-tiny"
    assert (packed / "summary.json").exists()
    assert "756 samples written, 0 rejected (of 756 read)" in proc.stdout
    assert "verified" in proc.stdout
    assert (tmp_path / "world-tiny" / "spm.model").is_file()  # step 2
    run = runs / "globetrotter-tiny"
    assert (run / "checkpoints" / "latest").read_text() == "step00000070"  # step 3: 10 epochs x 7 steps
    assert sorted(p.name for p in (run / "checkpoints" / "step00000070").glob("rank_*.pt")) == [
        "rank_00000.pt", "rank_00001.pt"]  # two processes
    metrics = json.loads((run / "eval" / "metrics.json").read_text())  # step 4
    assert metrics["sentence_translation"]["retrieved_positives"]["chance"] > 0
    for line in ("all pairs", "disjoint scripts", f"tensorboard --logdir {run / 'tb'}"):
        assert line in proc.stdout
    smalr = runs / "smalr-tiny"  # step 5: SMALR on the ten-language version, with CLC
    parallel = tmp_path / "world-tiny-parallel10-globetrotter-features"
    assert (parallel / "train").is_dir()
    # SMALR's image features come from the Globetrotter run's image network, not a random ResNet
    assert f"image network of {run}" in (parallel / "summary.json").read_text()
    assert "random-init" not in (parallel / "summary.json").read_text()
    assert (smalr / "checkpoints" / "latest").read_text() == "step00000006"
    (evaluation,) = (smalr / "eval").glob("smalr_step*.json")
    result = json.loads(evaluation.read_text())
    assert len(result["mean_recall"]) == 10 and "average_mean_recall_clc_a" in result
    assert f"{result['average_mean_recall']:.2f}" in proc.stdout and "CLC-A" in proc.stdout
    pivot = runs / "pivot-tiny"  # step 6: captioners on independent captions, then Table 1 of visual pivoting
    assert (pivot / "checkpoints" / "latest").read_text() == "step00000009"  # 3 epochs x 3 steps (2 ranks x 16 of 96)
    (pair,) = json.loads((pivot / "eval" / "metrics.json").read_text())["pivot"]
    assert pair["pair"] == ["en", "de"] and {"image+de->en", "de->en", "retrieval de->en"} <= set(pair["rows"])
    assert "| image+en->de |" in proc.stdout and "| noise->de |" in proc.stdout
    mmt = runs / "mmt-tiny"  # step 7: en -> de translation with Q-WAAE, its critic in every checkpoint
    assert (mmt / "checkpoints" / "latest").read_text() == "step00000006"
    assert (mmt / "checkpoints" / "step00000006" / "critic").is_dir() and (mmt / "best" / "model.safetensors").is_file()
    translation = json.loads((mmt / "eval-test" / "metrics.json").read_text())["translation"]
    assert translation["pair"] == "en-de" and translation["sentences"] == 24
    assert "en->de on test (24 sentences)" in proc.stdout
