"""Every config error is one line naming the key or the file, exit code 2, no traceback, found before
anything is packed or written; through the real loaders and the real command lines. Nothing here trains."""

from __future__ import annotations

import os
import sys

import pytest

from dist_train.config import ConfigError, load_config
from dist_train.preprocess.config import PreprocessConfig, validate as validate_preprocess
from dist_train.train.main import load_train_config
from tests.conftest import REPO, run_cli

TINY = REPO / "configs" / "globetrotter-tiny.yaml"


def _one_line_error(proc, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    last = lines[-1]
    assert "error:" in last, proc.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, proc.stderr)
    return last


BAD_FILES = {
    "syntax": (b"data:\n  batch_size: [1,\n", "not valid YAML"),
    "scalar list": (b"- 1\n- 2\n", "must hold a mapping"),
    "empty": (b"", "is empty"),
    "comments only": (b"# nothing here\n", "is empty"),
    "not utf-8": (b"data:\n  split: \xff\xfe\n", "not UTF-8"),
    "tab indent": (b"data:\n\tbatch_size: 3\n", "not valid YAML"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_a_bad_config_file_is_a_config_error_naming_it(tmp_path, name):
    content, fragment = BAD_FILES[name]
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_train_config(str(path), ["out_dir=x"])
    assert str(path) in str(e.value) and fragment in str(e.value) and "\n" not in str(e.value)


def test_a_directory_as_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(PreprocessConfig, tmp_path)


def test_a_python_tag_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = run_cli("train", "--config", path, f"out_dir={tmp_path / 'run'}", check=False)
    _one_line_error(proc, str(path), "python/object/apply")
    assert not marker.exists()
    proc = subprocess_main(["--config", str(path), f"out_dir={tmp_path / 'run'}"])
    _one_line_error(proc, str(path))
    assert not marker.exists() and not (tmp_path / "run").exists()


def subprocess_main(args: list[str]):
    import subprocess

    return subprocess.run([sys.executable, "-m", "dist_train.train.main", *args], capture_output=True, text=True,
                          env={**os.environ, "DS_ACCELERATOR": "cpu"}, timeout=300)


NON_FINITE = ["optim.lr=inf", "optim.lr=nan", "optim.eps=-inf", "optim.betas=[0.9,.nan]",
              "data.language_temperature=.inf", "objective.temperature=.inf", "objective.margin=nan",
              "model_config.dropout=.nan", "deepspeed.gradient_clipping=inf", "epochs=inf"]


@pytest.mark.parametrize("override", NON_FINITE)
def test_non_finite_numbers_are_refused_anywhere(override):
    key = override.split("=")[0].split("[")[0]
    with pytest.raises(ConfigError, match="finite") as e:
        load_train_config(str(TINY), ["out_dir=x", override])
    assert f"'{key}" in str(e.value)


OUT_OF_RANGE = {
    "optim.warmup_steps=-10": "optim.warmup_steps", "data.image_size=0": "data.image_size",
    "data.shuffle_buffer=-1": "data.shuffle_buffer", "eval.batch_size=0": "eval.batch_size",
    "eval.every_steps=-1": "eval.every_steps", "log.projector_sentences=-1": "log.projector_sentences",
    "optim.weight_decay=-0.01": "optim.weight_decay", "optim.betas=[0.9,1.0]": "optim.betas",
    "optim.betas=[-0.1,0.9]": "optim.betas", "optim.eps=0": "optim.eps", "optim.min_lr_ratio=1.5": "optim.min_lr_ratio",
    "optim.min_lr_ratio=-0.5": "optim.min_lr_ratio", "data.language_temperature=0": "data.language_temperature",
    "deepspeed.gradient_clipping=-1": "deepspeed.gradient_clipping", "max_steps=0": "max_steps",
    "objective.temperature=fast": "objective.temperature", "objective.cloze=[1]": "objective.cloze",
    "objective.loss_form=other": "objective.loss_form", "objective.augment.hue=0.9": "objective.augment",
    "objective.tempreature=0.1": "objective.tempreature", "model_config.hidden=30": "model_config",
    "model_config.heads=abc": "model_config.heads", "model_config.hiddn=32": "model_config.hiddn",
    "model_config.image_arch=resnet999": "model_config", "model_config.image_weights=/no/such.pth":
        "model_config.image_weights", "checkpoint.resume_from=../elsewhere": "checkpoint.resume_from",
    "model=clip": "model",
}


@pytest.mark.parametrize("override", list(OUT_OF_RANGE))
def test_values_out_of_range_are_named_before_anything_runs(override):
    with pytest.raises(ConfigError) as e:
        load_train_config(str(TINY), ["out_dir=x", override])
    assert f"'{OUT_OF_RANGE[override]}" in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("overrides,key", [
    (["model=smalr", "objective.mask_p=2"], "objective.mask_p"),
    (["model=smalr", "model_config.embed_dim=wide"], "model_config.embed_dim"),
    (["objective.hem.min_count=-1"], "objective.hem.min_count"),
])
def test_smalr_settings_are_checked_by_its_own_classes(overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_train_config(str(REPO / "configs" / "smalr-tiny.yaml"), ["out_dir=x", *overrides])


def test_numbers_written_as_text_in_free_form_sections_become_numbers():
    cfg = load_train_config(str(TINY), ["out_dir=x", "objective.temperature=1e-2", "model_config.layers=2"])
    assert cfg.objective["temperature"] == 0.01 and isinstance(cfg.objective["temperature"], float)
    assert cfg.model_config["layers"] == 2


@pytest.mark.parametrize("override,key", [
    ("vocab.size=0", "vocab.size"), ("vocab.max_sentences=0", "vocab.max_sentences"),
    ("vocab.temperature=.inf", "vocab.temperature"), ("translate.batch_size=0", "translate.batch_size"),
    ("features.batch_size=-1", "features.batch_size"), ("features.resize=16", "features.resize"),
    ("translate.num_beams=0", "translate.num_beams"), ("ray.num_cpus=0", "ray.num_cpus"),
    ("ray.object_store_memory=-5", "ray.object_store_memory"), ("images.max_pixels=0", "images.max_pixels"),
    ("vocab.model=/no/such/spm.model", "vocab.model"), ("translate.num_threads=0", "translate.num_threads"),
])
def test_preprocess_settings_out_of_range_are_named(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(PreprocessConfig, None, [override], validate_preprocess)


def test_train_cli_refuses_before_the_benchmark_is_packed_or_the_run_folder_written(tmp_path):
    shards, out = tmp_path / "shards" / "world-tiny", tmp_path / "run"
    for bad in ("optim.lr=inf", "data.image_size=0", "model_config.hidden=30"):
        proc = run_cli("train", "--config", TINY, f"out_dir={out}", f"data.shards={shards}", bad, check=False)
        _one_line_error(proc, bad.split("=")[0])
        assert not shards.parent.exists() and not out.exists()


def test_preprocess_cli_names_a_bad_file_and_a_bad_value(tmp_path):
    config = tmp_path / "pre.yaml"
    config.write_text("vocab: {size: [\n")
    proc = run_cli("preprocess", "--in", tmp_path, "--out", tmp_path / "out", "--config", config, check=False)
    _one_line_error(proc, str(config), "not valid YAML")
    proc = run_cli("preprocess", "--in", tmp_path, "--out", tmp_path / "out", "features.batch_size=0", check=False)
    _one_line_error(proc, "features.batch_size")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["0", "-3"])
def test_eval_batch_size_must_be_positive(tmp_path, size):
    proc = run_cli("eval", "--checkpoint", tmp_path, "--shards", tmp_path, "--out", tmp_path / "eval",
                   "--batch-size", size, check=False)
    _one_line_error(proc, f"--batch-size {size}")
    assert not (tmp_path / "eval").exists()


def test_train_cli_flag_allow_config_change_becomes_an_override():
    from dist_train.cli import build_parser

    args = build_parser().parse_args(["train", "--allow-config-change", "out_dir=x", "seed=1"])
    assert args.overrides == ["allow_config_change=true", "out_dir=x", "seed=1"]
    assert load_train_config(str(TINY), args.overrides).allow_config_change is True
    assert build_parser().parse_args(["train", "out_dir=x"]).overrides == ["out_dir=x"]
