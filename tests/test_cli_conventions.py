"""What users of the field expect of the command: --version, the resolved config, -q/-v after the
subcommand, help without the heavy libraries, configs found by name, dataset folders that other tools read."""

from __future__ import annotations

import os

import json
import subprocess
import sys

import pyarrow.parquet as pq
import yaml

from dist_train import __version__
from dist_train.cli import build_parser, main
from tests.conftest import REPO, run_cli


def test_version():
    assert run_cli("--version").stdout.strip() == f"dist-train {__version__}"


def test_help_loads_neither_torch_nor_webdataset_nor_ray():
    # building the parser builds every subcommand's help (each source's options included)
    code = ("import sys; from dist_train.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'webdataset', 'ray', 'deepspeed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_quiet_and_verbose_are_accepted_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["shards", "stats", "-q", "x"]).quiet is True
    assert parser.parse_args(["-q", "shards", "stats", "x"]).quiet is True
    assert parser.parse_args(["shards", "stats", "x"]).quiet is False
    assert parser.parse_args(["train", "-v", "out_dir=x"]).verbose is True


def test_print_config_shows_every_default_and_runs_nothing(tmp_path, capsys):
    assert main(["train", "--config", str(REPO / "configs" / "globetrotter-tiny.yaml"), "--print-config",
                 f"out_dir={tmp_path / 'run'}", "optim.lr=0.002"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.002 and printed["out_dir"] == str(tmp_path / "run")
    assert printed["checkpoint"]["keep_last"] == 2 and "eval" in printed and "deepspeed" in printed  # the defaults
    assert not (tmp_path / "run").exists()


def test_storage_options_in_a_config_reach_fsspec_and_never_a_file(tmp_path, capsys, monkeypatch):
    import fsspec.config

    from dist_train.config import apply_storage_options, load_config, to_dict, without_storage_secrets
    from dist_train.train.config import TrainConfig

    monkeypatch.setattr(fsspec.config, "conf", {})
    monkeypatch.setenv("FSSPEC_S3", "{}")  # restored after the test: the options must not reach later tests
    cfg = load_config(TrainConfig, REPO / "configs" / "globetrotter-tiny.yaml",
                      [f"out_dir={tmp_path}", "storage_options.s3.endpoint_url=http://127.0.0.1:9",
                       "storage_options.s3.secret=S3CR3T"])
    apply_storage_options(cfg)
    assert fsspec.config.conf["s3"] == {"endpoint_url": "http://127.0.0.1:9", "secret": "S3CR3T"}
    assert "S3CR3T" in os.environ["FSSPEC_S3"]  # what torchrun's workers and Ray's tasks read
    assert without_storage_secrets(to_dict(cfg))["storage_options"] == {"s3": ["endpoint_url", "secret"]}
    assert main(["train", "--config", str(REPO / "configs" / "globetrotter-tiny.yaml"), "--print-config",
                 f"out_dir={tmp_path}", "storage_options.s3.secret=S3CR3T"]) == 0
    printed = capsys.readouterr().out
    assert "S3CR3T" not in printed and "- secret" in printed


def test_configs_are_found_by_name_and_their_paths_beside_them(tmp_path, monkeypatch):
    from dist_train.train.main import load_train_config

    monkeypatch.chdir(tmp_path)  # not the repository: no configs/ here
    cfg = load_train_config("globetrotter-tiny", ["out_dir=run"])
    assert cfg.model == "globetrotter"
    cfg = load_train_config("configs/globetrotter-tiny.yaml", ["out_dir=run"])  # as the README writes it
    assert cfg.model == "globetrotter"
    # a config of one's own names its DeepSpeed JSON beside it
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "zero1.json").write_text('{"zero_optimization": {"stage": 1}}')
    (tmp_path / "exp" / "my.yaml").write_text("deepspeed:\n  config: zero1.json\nmax_steps: 3\n")
    cfg = load_train_config(str(tmp_path / "exp" / "my.yaml"), ["out_dir=run"])
    assert cfg.deepspeed.config == str(tmp_path / "exp" / "zero1.json")
    from dist_train.train.engine import deepspeed_config

    assert deepspeed_config(load_train_config("globetrotter-tiny", ["out_dir=run"]), 10, 1)["zero_optimization"][
        "stage"] == 2  # the shipped configs/deepspeed/zero2.json, found from anywhere


def test_a_packed_folder_carries_sizes_a_table_per_split_and_a_card(tiny_world):
    import webdataset as wds

    summary = json.loads((tiny_world / "summary.json").read_text())
    for split, s in summary["splits"].items():
        sizes = json.loads((tiny_world / split / "sizes.json").read_text())
        assert sum(sizes.values()) == s["written"] and len(sizes) == s["shards"]
        table = pq.read_table(tiny_world / f"{split}.parquet")
        assert table.num_rows == s["written"] and set(table.column("shard").to_pylist()) == set(sizes)
    urls = sorted(str(p) for p in (tiny_world / "train").glob("*.tar"))
    assert sum(1 for _ in wds.WebDataset(urls, shardshuffle=False)) == summary["splits"]["train"]["written"]
    card = (tiny_world / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert {c["split"]: c["path"] for c in header["configs"][0]["data_files"]} == {
        "train": "train/*.tar", "val": "val/*.tar", "test": "test/*.tar"}
    assert set(header["language"]) == set(summary["totals"]["languages"])
    assert 'load_dataset("webdataset"' in card
