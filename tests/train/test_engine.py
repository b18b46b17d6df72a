"""The DeepSpeed engine with 2 real processes (gloo on CPU): training, checkpoints, exact resume after a
kill, ZeRO-3, TensorBoard read back with TensorBoard's own reader, export."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli

STEPS = 12


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--config", REPO / "configs" / "globetrotter-tiny.yaml", "--nproc-per-node", "2",
        f"out_dir={out}", f"data.shards={data}", f"deepspeed.config={REPO / 'configs' / 'deepspeed' / 'zero2.json'}",
        "model_config.hidden=32", "model_config.layers=1", "model_config.heads=2", "model_config.intermediate=64",
        "model_config.embed_dim=32", "data.image_size=32", "data.batch_size=8", "data.num_workers=1",
        "log.every_steps=2", "checkpoint.every_steps=4", f"max_steps={STEPS}", "epochs=null", "optim.warmup_steps=2",
        "optim.lr=0.0005",  # fast enough for the cloze loss to fall within a dozen steps
        "eval.batch_size=64", "log.projector_sentences=50", *extra,
    ]


def _train(data: Path, out: Path, *extra: str, check: bool = True):
    return run_cli(*_args(data, out, *extra), check=check, timeout=600)


def _events(out: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = sorted((out / "tb").glob("events.out.tfevents.*"))[:1]
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    acc.Reload()
    return acc


def _weights(out: Path) -> dict[str, torch.Tensor]:
    run_cli("export", out / "checkpoints", out / "export", "--force")  # a second export replaces the first
    return load_file(str(out / "export" / "model.safetensors"))


def _deepspeed_zero_to_fp32(out: Path, dest: Path) -> dict[str, torch.Tensor]:
    """DeepSpeed's own converter, the script it writes beside the run's checkpoints, to safetensors."""
    import os

    script = out / "checkpoints" / "zero_to_fp32.py"
    assert script.is_file()
    done = subprocess.run([sys.executable, str(script), str(out / "checkpoints"), str(dest), "--safe_serialization"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert done.returncode == 0, done.stderr[-2000:]
    return load_file(str(dest / "model.safetensors"))


def _assert_same_weights(converted: dict[str, torch.Tensor], exported: dict[str, torch.Tensor]) -> None:
    assert set(converted) == set(exported)
    for name, tensor in exported.items():
        assert torch.equal(converted[name].float(), tensor), name


@pytest.fixture(scope="module")
def zero2_run(tiny_preprocessed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zero2") / "run"
    _train(tiny_preprocessed, out)
    return out


def test_two_process_zero2_run_checkpoints_logs_and_learns(zero2_run):
    out = zero2_run
    checkpoints = out / "checkpoints"
    assert (checkpoints / "latest").read_text() == f"step{STEPS:08d}"
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == ["step00000008", "step00000012"]  # keep 2
    assert sorted(p.name for p in (checkpoints / "step00000012").glob("rank_*.pt")) == ["rank_00000.pt",
                                                                                      "rank_00001.pt"]
    acc = _events(out)
    tags = set(acc.Tags()["scalars"])
    for tag in ("loss/total", "loss/cross_modal", "loss/visual", "loss/transitive", "loss/cloze", "train/lr",
                "train/grad_norm", "perf/samples_per_s_global", "perf/samples_per_s_rank", "perf/data_wait_s",
                "perf/compute_s", "perf/memory_bytes", "stat/alpha_positive_fraction",
                "eval/sentence_translation", "eval/sentence_translation_chance", "eval/cross_modal_mean_recall",
                "eval/cross_modal_mean_recall/ja", "eval/sentence_translation_from/ar"):
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("loss/total")]
    assert steps == list(range(2, STEPS + 1, 2))
    lr = [e.value for e in acc.Scalars("train/lr")]
    assert lr[0] > lr[-1] >= 0  # warm-up then cosine decay to the end
    cloze = [e.value for e in acc.Scalars("loss/cloze")]
    assert cloze[-1] < cloze[0]  # the language model learns within a few steps
    # 24 test scenes x 14 languages: 13 translations among the 312 sentences of the other languages (the
    # headline), or among all 335 other sentences (pooled)
    assert acc.Scalars("eval/sentence_translation_chance")[0].value == pytest.approx(13 / 312 * 100, rel=1e-3)
    assert acc.Scalars("eval/sentence_translation_pooled_chance")[0].value == pytest.approx(13 / 335 * 100, rel=1e-3)
    assert "eval/sentence_translation_pairs" in acc.Tags()["images"]
    assert "eval/alpha" in acc.Tags()["histograms"]
    assert (out / "tb" / "projector_config.pbtxt").is_file()
    # the run's settings in the HPARAMS tab, with the headline metrics as its columns
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.0005)
    assert start.hparams["data.batch_size"].number_value == 8 and start.hparams["model"].string_value == "globetrotter"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "eval/sentence_translation" in {m.name.tag for m in experiment.metric_infos}
    # rank 0's log also lands in OUT/out.log, with the step out of the total, the percentage and an ETA
    log = (out / "out.log").read_text()
    assert f"step 2/{STEPS} (16%), ETA " in log and f"step {STEPS}/{STEPS} (100%): cloze " in log
    assert "finished at step 12" in log


def test_export_gives_weights_loadable_without_deepspeed(zero2_run):
    weights = _weights(zero2_run)
    from dist_train.train.export import load_exported

    model, config = load_exported(zero2_run / "export")
    assert config["model"] == "globetrotter"
    state = model.state_dict()
    for name, tensor in weights.items():
        assert torch.equal(state[name], tensor), name
    tokens = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    emb = model.encode_text(tokens)["text_text"]
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    # the image network on its own initialises another model's (model_config.image_weights)
    from dist_train.models.globetrotter import Globetrotter, GlobetrotterConfig

    other = Globetrotter(GlobetrotterConfig(**{**config["model_config"],
                                               "image_weights": str(zero2_run / "export" / "image_encoder.safetensors")}))
    for name, tensor in model.image_encoder.state_dict().items():
        if not name.startswith("fc."):  # the projection to `hidden` is never kept
            assert torch.equal(other.image_encoder.state_dict()[name], tensor), name


def test_resume_after_kill_matches_uninterrupted_run(tiny_preprocessed, zero2_run, tmp_path):
    out = tmp_path / "killed"
    exe = Path(sys.executable).with_name("dist-train")
    proc = subprocess.Popen([str(exe), *map(str, _args(tiny_preprocessed, out))], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 400
    while not (latest.exists() and latest.read_text() == "step00000004") and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    # a crash: every process of the run dies at once (torchrun's workers run in their own sessions)
    import psutil

    tree = psutil.Process(proc.pid)
    for p in [tree, *tree.children(recursive=True)]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(tree.children(recursive=True) if tree.is_running() else [], timeout=10)
    assert latest.read_text() in ("step00000004", "step00000008")
    assert not (out / "checkpoints" / f"step{STEPS:08d}").exists()
    resumed = _train(tiny_preprocessed, out)
    assert re.search(r"resumed from \S+step0000000[48]", resumed.stderr), resumed.stderr
    reference, again = _weights(zero2_run), _weights(out)
    assert reference.keys() == again.keys()
    different = [name for name in reference if not torch.equal(reference[name], again[name])]
    assert not different


def _module_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)["module"]


def test_resume_from_any_step_matches_uninterrupted_run_one_process(tiny_preprocessed, tmp_path):
    """Resuming must not depend on state that lives only in the process. DeepSpeed's CPU Adam kept
    beta**t as a running product in C++ and recomputed it with pow() in a new process, which rounds
    differently after 5 steps (not after 3, 4, 6 or 7): weights then differed from step 6 on."""
    import shutil

    steps, resume_at = 7, 5
    one_process = [a for a in _args(tiny_preprocessed, tmp_path) if a not in ("--nproc-per-node", "2")
                   and not str(a).startswith(("out_dir=", "max_steps="))]

    def train(out: Path, *extra: str):
        return run_cli(*one_process, f"out_dir={out}", f"max_steps={steps}", *extra, timeout=600)

    reference = tmp_path / "reference"
    train(reference, "checkpoint.every_steps=1", f"checkpoint.keep_last={steps}")
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    tag = f"step{resume_at:08d}"
    shutil.copytree(reference / "checkpoints" / tag, resumed / "checkpoints" / tag)
    (resumed / "checkpoints" / "latest").write_text(tag)
    proc = train(resumed)
    assert re.search(rf"resumed from \S+{tag}", proc.stderr), proc.stderr
    final = f"step{steps:08d}"
    a, b = _module_weights(reference / "checkpoints" / final), _module_weights(resumed / "checkpoints" / final)
    assert a.keys() == b.keys()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []


def test_deepspeeds_own_zero_to_fp32_converts_the_checkpoints_to_safetensors(zero2_run, tmp_path):
    # the cloze head's table is the word embeddings, stored once: safetensors accepts the conversion
    _assert_same_weights(_deepspeed_zero_to_fp32(zero2_run, tmp_path / "fp32"), _weights(zero2_run))


def test_zero3_trains_and_resumes_from_its_checkpoint(tiny_preprocessed, tmp_path):
    out = tmp_path / "zero3"
    _train(tiny_preprocessed, out, "deepspeed.zero_stage=3", "max_steps=8")
    assert (out / "checkpoints" / "latest").read_text() == "step00000008"
    cloze = [e.value for e in _events(out).Scalars("loss/cloze")]
    assert len(cloze) == 4 and cloze[-1] < cloze[0]
    more = _train(tiny_preprocessed, out, "deepspeed.zero_stage=3", "max_steps=12")
    assert re.search(r"resumed from \S+step00000008", more.stderr), more.stderr
    assert (out / "checkpoints" / "latest").read_text() == "step00000012"
    weights = _weights(out)
    assert all(torch.isfinite(t).all() for t in weights.values())
    _assert_same_weights(_deepspeed_zero_to_fp32(out, tmp_path / "fp32"), weights)  # ZeRO-3's partitions too


def test_resume_with_another_process_count_says_what_to_do(zero2_run, tiny_preprocessed, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(zero2_run, out)
    args = [a for a in _args(tiny_preprocessed, out, "max_steps=16") if a not in ("--nproc-per-node", "2")]
    proc = run_cli(*args, check=False, timeout=300)
    assert proc.returncode != 0
    assert "written by 2 processes and this run has 1" in proc.stderr and "ds_to_universal" in proc.stderr


def test_bad_config_key_is_named_before_anything_starts(tiny_preprocessed, tmp_path):
    proc = run_cli("train", "--config", REPO / "configs" / "globetrotter-tiny.yaml", f"out_dir={tmp_path}",
                   "optim.lr=fast", check=False)
    assert proc.returncode == 2 and "optim.lr" in proc.stderr and "fast" in proc.stderr
    proc = run_cli("train", "--config", REPO / "configs" / "globetrotter-tiny.yaml", f"out_dir={tmp_path}",
                   "data.batch_sise=3", check=False)
    assert proc.returncode == 2 and "data.batch_sise" in proc.stderr


@pytest.mark.parametrize("source", ["checkpoints", "export"])
def test_eval_cli_writes_metrics_beside_chance_report_and_heatmap(zero2_run, tiny_preprocessed, tmp_path, source):
    import json

    from PIL import Image

    if source == "export" and not (zero2_run / "export").exists():
        _weights(zero2_run)
    out = tmp_path / "eval"
    proc = run_cli("eval", "--checkpoint", zero2_run / source, "--shards", tiny_preprocessed, "--out", out)
    assert "sentence translation" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    st = metrics["sentence_translation"]
    assert st["num_queries"] == 336 and st["num_positives"] == 336 * 13
    assert set(st["retrieved_positives"]) == {"value", "chance"}
    assert st["protocol"] == "other languages"
    assert st["retrieved_positives"]["chance"] == pytest.approx(13 / 312 * 100, rel=1e-3)
    pooled = metrics["sentence_translation_pooled"]
    assert pooled["protocol"] == "pooled" and pooled["num_queries"] == 336
    assert pooled["retrieved_positives"]["chance"] == pytest.approx(13 / 335 * 100, rel=1e-3)
    assert st["disjoint_script_pairs"]["pairs"] > 0  # e.g. ja-ru, ar-el: no script in common
    assert len(st["by_language_pair"]["languages"]) == 14
    bitext = metrics["bitext_retrieval"]  # 24 test scenes per language: one candidate in 24 is right
    assert bitext["accuracy"]["chance"] == pytest.approx(100 / 24, rel=1e-3)
    assert bitext["disjoint_script_pairs"]["pairs"] == st["disjoint_script_pairs"]["pairs"]
    assert bitext["own_language_neighbours"]["chance"] == pytest.approx(23 / 335 * 100, rel=1e-3)
    assert "per-pair top-1" in proc.stdout
    cm = metrics["cross_modal"]
    assert set(cm["per_language"]) == set(st["by_language_pair"]["languages"])
    assert set(cm["per_language"]["en"]["image_to_text"]["R@1"]) == {"value", "chance"}
    assert cm["average_mean_recall"]["chance"] > 0
    report = (out / "report.md").read_text()
    assert "chance" in report and "sentence_translation_pairs.png" in report
    assert Image.open(out / "sentence_translation_pairs.png").size[0] > 100


def test_eval_writes_tensorboard_summaries_at_the_checkpoint_step(zero2_run, tiny_preprocessed, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "eval"
    run_cli("eval", "--checkpoint", zero2_run / "checkpoints", "--shards", tiny_preprocessed, "--out", out)
    (events,) = list((out / "tb").glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"eval/sentence_translation/retrieved_positives", "eval/sentence_translation/retrieved_positives_chance",
            "eval/cross_modal/average_mean_recall"} <= tags
    assert acc.Scalars("eval/sentence_translation/retrieved_positives")[0].step == STEPS
    assert "eval/sentence_translation_pairs" in acc.Tags()["images"]
