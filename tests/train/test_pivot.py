"""The visual-pivoting captioner through the real engine: 2-process DeepSpeed training on the tiny task-2
benchmark with its learning rates as parameter groups, TensorBoard (loss per language, generated captions
as text), a bitwise-exact resume, `dist-train eval` (Table 1) and `dist-train caption` on the run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, run_cli


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", REPO / "configs" / "pivot-tiny.yaml", f"out_dir={out}", f"data.shards={data}",
            "data.num_workers=1", "log.every_steps=2", "checkpoint.every_steps=4", "max_steps=8", "epochs=null",
            "objective.eval_images=4", "objective.pixel_statistics_images=16", *extra]


def _module_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from dist_train.train.checkpoint import safe_load

    return safe_load(checkpoint / "mp_rank_00_model_states.pt")["module"]


@pytest.fixture(scope="module")
def pivot_run(pivot_tiny_preprocessed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pivot") / "run"
    run_cli(*_args(pivot_tiny_preprocessed, out, "--nproc-per-node", "2"), timeout=600)
    return out


def test_two_process_training_logs_each_language_and_generated_captions(pivot_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (pivot_run / "checkpoints" / "latest").read_text() == "step00000008"
    (events,) = sorted((pivot_run / "tb").glob("events.out.tfevents.*"))[:1]
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/caption", "loss/caption_en", "loss/caption_de", "eval/bleu4/en", "eval/cider/de"} <= scalars
    (text,) = [t for t in acc.Tags()["tensors"] if t.startswith("eval/captions")]
    shown = acc.Tensors(text)[-1].tensor_proto.string_val[0].decode()
    assert "**de**" in shown and "**en**" in shown and "reference:" in shown
    report = json.loads((pivot_run / "eval" / "captions-step00000008.json").read_text())
    assert set(report["languages"]) == {"de", "en"} and report["images"] == 4
    # the noise images' statistics were measured on the training images and travel with the weights
    weights = _module_weights(pivot_run / "checkpoints" / "step00000008")
    assert not torch.equal(weights["pixel_std"], torch.ones(3)) and bool((weights["pixel_std"] > 0).all())


def test_encoder_and_decoders_learn_at_their_own_rates(pivot_tiny_preprocessed, tmp_path):
    from dist_train.config import load_config
    from dist_train.train.config import TrainConfig
    from dist_train.train.data import dataset_vocab
    from dist_train.train.objectives import build_objective

    cfg = load_config(TrainConfig, REPO / "configs" / "pivot-tiny.yaml",
                      [f"out_dir={tmp_path}", f"data.shards={pivot_tiny_preprocessed}", "objective.encoder_lr=0.0001",
                       "objective.decoder_lr=0.0004", "objective.pixel_statistics_images=4"])
    objective = build_objective(cfg, dataset_vocab(cfg))
    model = objective.build_model()
    groups = objective.parameter_groups(model, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(n for n, p in model.named_parameters() if p.requires_grad)  # each once
    for group in groups:
        encoder = {names[id(p)].startswith("encoder.") for p in group["params"]}
        assert len(encoder) == 1
        assert group["lr"] == (0.0001 if encoder == {True} else 0.0004)
    assert model.config.languages == ["de", "en"] and model.decoders[0].output.out_features == dataset_vocab(cfg).size


def test_resume_is_bitwise_exact(pivot_tiny_preprocessed, pivot_run, tmp_path):
    import shutil

    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(pivot_run / "checkpoints" / "step00000004", resumed / "checkpoints" / "step00000004")
    (resumed / "checkpoints" / "latest").write_text("step00000004")
    for name in ("config.yaml", "model.yaml", "spm.model"):
        shutil.copy(pivot_run / name, resumed / name)
    proc = run_cli(*_args(pivot_tiny_preprocessed, resumed, "--nproc-per-node", "2"), timeout=600)
    assert re.search(r"resumed from \S+step00000004", proc.stderr), proc.stderr[-2000:]
    a = _module_weights(pivot_run / "checkpoints" / "step00000008")
    b = _module_weights(resumed / "checkpoints" / "step00000008")
    assert a.keys() == b.keys() and [n for n in a if not torch.equal(a[n], b[n])] == []


def test_eval_writes_table_one_and_caption_translates(pivot_run, pivot_tiny_preprocessed, tmp_path):
    out = tmp_path / "eval"
    proc = run_cli("eval", "--checkpoint", pivot_run / "checkpoints", "--shards", pivot_tiny_preprocessed,
                   "--out", out, "--pivot-steps", "3", "--no-meteor")
    assert "image->de" in proc.stdout and "en->de" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    (pair,) = metrics["pivot"]
    assert pair["pair"] == ["de", "en"] and pair["images"] == 12
    expected = {"image->de", "image+en->de", "en->de", "noise->de", "retrieval en->de",
                "image->en", "image+de->en", "de->en", "noise->en", "retrieval de->en"}
    assert set(pair["rows"]) == expected
    assert all(0.0 <= r["bleu4"] <= 1.0 and r["n"] == 12 for r in pair["rows"].values())
    assert metrics["meta"]["settings"]["steps"] == 3
    assert "| image+en->de |" in (out / "report.md").read_text()

    image = next((pivot_tiny_preprocessed / "test").glob("*.tar"))
    from dist_train.data.shards import iter_shard

    first = next(iter_shard(image))
    picture = tmp_path / "x.jpg"
    picture.write_bytes(first["jpg"])
    for extra, mode in ((["--image", picture], "image"),
                        (["--image", picture, "--given", "ein roter Kreis", "--given-lang", "de"], "image+caption"),
                        (["--given", "ein roter Kreis", "--given-lang", "de"], "caption")):
        got = json.loads(run_cli("caption", "--checkpoint", pivot_run / "checkpoints", "--lang", "en", *extra,
                                 "--steps", "2", "--json").stdout)
        assert got["mode"] == mode and got["language"] == "en" and isinstance(got["caption"], str)
    bad = run_cli("caption", "--checkpoint", pivot_run / "checkpoints", "--lang", "ja", "--image", picture,
                  check=False)
    assert bad.returncode != 0 and "not ja" in bad.stderr and "Traceback" not in bad.stderr


def test_the_pivot_translator_translates_through_the_captioner_in_rays_preprocessing(pivot_run,
                                                                                     pivot_tiny_preprocessed, tmp_path):
    import os

    from dist_train.eval.embed import read_split_captions
    from dist_train.preprocess.translate import build_translator

    translator = build_translator({"backend": "pivot", "model": str(pivot_run / "checkpoints"), "batch_size": 2,
                                   "num_beams": 2})
    texts = ["ein roter Kreis", "zwei blaue Sterne über einem Quadrat", "ein Stern"]
    alone = [translator.translate([t], "de", "en")[0] for t in texts]
    assert translator.translate(texts, "de", "en") == alone  # a caption's own noise: batching changes nothing
    assert translator.name == "pivot:run" and not translator.supports("de", "ja")

    packed = pivot_tiny_preprocessed.parent / "packed" / "world-pivot-tiny"
    out = tmp_path / "translated"
    run_cli("-q", "preprocess", "--in", packed, "--out", out, "ray.object_store_memory=300000000",
            "translate.enabled=true", "translate.backend=pivot", f"translate.model={pivot_run / 'checkpoints'}",
            "translate.query_splits=[val]", "translate.query_languages=[en,de]", "translate.num_beams=2",
            env={**os.environ, "RAY_ADDRESS": ""}, timeout=600)
    val = read_split_captions(out, "val")
    for meta, lang in zip(val.metas, val.languages):
        other = "en" if lang == "de" else "de"
        assert isinstance(meta["meta"]["translations"][other], str)
        assert meta["meta"]["translator"] == "pivot:run"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["preprocess"]["translator"] == "pivot:run"
