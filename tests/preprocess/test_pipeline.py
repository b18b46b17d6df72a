"""`dist-train preprocess`: layout, counts, vocabulary, tokens, rejects, resume, translation and features
through a real local Ray."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dist_train.config import ConfigError, load_config
from dist_train.data.schema import Sample
from dist_train.data.shards import (ShardWriter, iter_shard, list_finished_shards, list_shards, manifest_path,
                                    read_manifest, read_shard_info)
from dist_train.data.verify import verify_dataset
from dist_train.data.world.dataset import caption_in
from dist_train.preprocess.captions import normalize_caption
from dist_train.preprocess.config import PreprocessConfig, validate
from dist_train.preprocess.pipeline import PreprocessError, preprocess
from dist_train.preprocess.vocab import MASK_PIECE, balanced_sample, language_quotas, load_vocab
from tests.conftest import run_cli


def _config(*overrides: str) -> PreprocessConfig:
    return load_config(PreprocessConfig, None, overrides, validate)


def _samples(root: Path, split: str) -> list[dict]:
    out = []
    for tar in list_finished_shards(root, split):
        out.extend(iter_shard(tar))
    return out


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


# --- the CLI on the tiny benchmark -------------------------------------------------------------------------


def test_cli_writes_the_packer_layout_with_vocabulary_and_counts_that_add_up(tiny_world, tiny_preprocessed):
    out = tiny_preprocessed
    summary = json.loads((out / "summary.json").read_text())
    packed = json.loads((tiny_world / "summary.json").read_text())
    for split, s in summary["splits"].items():
        assert s["read"] == packed["splits"][split]["written"]
        assert s["read"] + s["translated"] == s["written"] + s["rejected"]
        # one output shard per input shard, same names, each with its manifest
        assert [t.name for t in list_shards(out, split)] == [t.name for t in list_finished_shards(tiny_world, split)]
    assert summary["totals"]["written"] == 756 and summary["totals"]["rejected"] == 0
    assert verify_dataset(out, decode_images=True).ok
    assert summary["preprocess"]["vocab"]["size"] > 100
    assert set(summary["preprocess"]["stages"]) == {"read", "images", "captions", "tokenize", "write"}


def test_tokens_are_the_vocabulary_encoding_of_the_normalised_caption(tiny_preprocessed):
    sp = load_vocab((tiny_preprocessed / "spm.model").read_bytes())
    assert sp.pad_id() == 0 and sp.piece_to_id(MASK_PIECE) > 3
    samples = _samples(tiny_preprocessed, "test")
    assert {json.loads(s["json"])["language"] for s in samples} >= {"ja", "ar", "ru", "hi", "zh"}
    unknown = 0
    for s in samples:
        tokens = _npy(s["tokens.npy"])
        assert tokens.dtype == np.int32 and tokens.ndim == 1 and len(tokens) > 0
        caption = s["txt"].decode()
        assert caption == normalize_caption(caption)
        assert sp.decode(tokens.tolist()) == caption
        unknown += int((tokens == sp.unk_id()).sum())
    assert unknown == 0  # every script of the test split is covered by the vocabulary trained on train


def test_rerun_on_the_same_output_does_no_work(tiny_world, tiny_preprocessed, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_preprocessed, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in ("summary.json", "rejects.parquet")}
    proc = run_cli("preprocess", "--in", tiny_world, "--out", out)
    assert "0 shards to do, 7 already finished" in proc.stderr
    assert "Started a local Ray" not in proc.stderr  # nothing to do: Ray is not even started
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in ("summary.json", "rejects.parquet")}
    assert before == after


def test_rerun_with_other_settings_is_refused(tiny_world, tiny_preprocessed, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_preprocessed, out)
    proc = run_cli("preprocess", "--in", tiny_world, "--out", out, "vocab.size=500", check=False)
    assert proc.returncode == 2 and "vocab.size: 30000 -> 500" in proc.stderr


def test_bad_config_key_and_value_are_named():
    with pytest.raises(ConfigError, match="vocab.sise"):
        _config("vocab.sise=10")
    with pytest.raises(ConfigError, match="vocab.size.*'many'"):
        _config("vocab.size=many")
    with pytest.raises(ConfigError, match="translate.model"):
        _config("translate.enabled=true", "translate.augment_splits=[test]", "translate.augment_languages=[de]")
    proc = run_cli("preprocess", "--in", "x", "--out", "y", "translate.backend=babelfish", check=False)
    assert proc.returncode == 2 and "translate.backend" in proc.stderr and "babelfish" in proc.stderr


def test_missing_translation_model_is_a_clear_error_before_any_work(tiny_world, tmp_path):
    cfg = _config("translate.enabled=true", "translate.model=/nonexistent/opus-mt-en-de",
                  "translate.augment_splits=[test]", "translate.augment_languages=[de]")
    with pytest.raises(PreprocessError, match="/nonexistent/opus-mt-en-de"):
        preprocess(tiny_world, tmp_path / "out", cfg, progress=False)
    assert not (tmp_path / "out" / "test").exists()


# --- vocabulary sampling -----------------------------------------------------------------------------------


def test_temperature_lifts_small_languages():
    counts = {"en": 9000, "de": 900, "ja": 100}
    natural = language_quotas(counts, temperature=1.0, total=1000)
    assert natural == {"de": 90, "en": 900, "ja": 10}
    flat = language_quotas(counts, temperature=1e6, total=999)
    assert flat == {"de": 333, "en": 333, "ja": 333}
    t2 = language_quotas(counts, temperature=2.0, total=1000)
    assert natural["ja"] < t2["ja"] < flat["ja"] and t2["en"] < natural["en"]


def test_balanced_sample_repeats_small_languages_and_is_deterministic():
    captions = {"en": [f"e{i}" for i in range(50)], "ja": ["j0", "j1"]}
    sample, quotas = balanced_sample(captions, temperature=1e6, max_sentences=40, seed=3)
    assert quotas == {"en": 20, "ja": 20}
    assert sorted(s for s in sample if s.startswith("j")) == ["j0"] * 10 + ["j1"] * 10
    assert balanced_sample(captions, 1e6, 40, seed=3)[0] == sample
    assert balanced_sample({k: v[::-1] for k, v in captions.items()}, 1e6, 40, seed=3)[0] == sample


# --- bad input, crash and resume (in-process, on a shared local Ray) ----------------------------------------


def _bad_input(tiny_world: Path, root: Path) -> Path:
    """A packed-format copy of two train shards: one with an undecodable image and a blank caption,
    one truncated part-way."""
    for split in ("train",):
        tars = list_finished_shards(tiny_world, split)[:2]
        for n, tar in enumerate(tars):
            writer = ShardWriter(root, split, n)
            info = read_shard_info(manifest_path(tar))
            for i, raw in enumerate(iter_shard(tar)):
                s = Sample.from_wds(raw)
                if n == 0 and i == 3:
                    s = replace(s, image=b"this is not a jpeg")
                if n == 0 and i == 5:
                    s = replace(s, caption=" \u3000\t ")
                writer.write(s, info.input_start + i, s.to_wds())
            writer.commit(info.input_start, info.input_end, rejected=0)
    second = list_finished_shards(root, "train")[1]
    data = second.read_bytes()
    second.write_bytes(data[: len(data) // 2])
    return root


def test_bad_samples_are_rejected_with_reasons_and_counts_add_up(ray_local, tiny_world, tmp_path):
    src = _bad_input(tiny_world, tmp_path / "in")
    out = tmp_path / "out"
    summary = preprocess(src, out, _config(), progress=False)
    s = summary["splits"]["train"]
    assert s["rejects"] == {"empty_caption": 1, "undecodable_image": 1}
    assert s["read"] == s["written"] + s["rejected"]
    assert s["read"] < 2 * 128 and s["read"] > 128  # the truncated shard kept what it read before the break
    assert len(summary["source_errors"]) == 1 and summary["source_errors"][0]["shard"] == "train-000001.tar"
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    assert {(r["stage"], r["reason"]) for r in rejects} == {("images", "undecodable_image"),
                                                          ("captions", "empty_caption")}
    written = {json.loads(r["json"])["caption_id"] for r in _samples(out, "train")}
    assert not written & {r["caption_id"] for r in rejects}


def test_rerun_after_a_crash_rewrites_only_missing_shards_byte_identically(ray_local, tiny_world, tiny_preprocessed,
                                                                             tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_preprocessed, out)
    # The state a crash leaves: a finished shard, a shard whose tar landed but not its manifest,
    # a half-written temporary tar, and no summary.
    lost = out / "test" / "test-000001.tar"
    manifest_path(lost).unlink()
    (out / "test" / "test-000002.tar.tmp-12345").write_bytes(b"partial")
    for p in (out / "test" / "test-000002.tar", manifest_path(out / "test" / "test-000002.tar"), out / "summary.json"):
        p.unlink()
    keep = (out / "train" / "train-000000.tar").stat().st_mtime_ns
    cfg = _config("ray.object_store_memory=300000000")
    summary = preprocess(tiny_world, out, cfg, progress=False)
    assert summary["totals"]["written"] == 756
    for name in ("test-000001.tar", "test-000002.tar"):
        assert (out / "test" / name).read_bytes() == (tiny_preprocessed / "test" / name).read_bytes()
    assert not list((out / "test").glob("*.tmp-*"))
    assert (out / "train" / "train-000000.tar").stat().st_mtime_ns == keep
    keys = [k for split in ("train", "val", "test") for tar in list_finished_shards(out, split)
            for k in read_manifest(manifest_path(tar), ["key"]).column("key").to_pylist()]
    assert len(keys) == len(set(keys)) == 756


# --- translation with the benchmark's reference translator ---------------------------------------------------


def test_augmenting_with_the_reference_translator_gives_every_image_each_language(ray_local, tiny_world, tmp_path):
    cfg = _config("translate.enabled=true", "translate.backend=world", "translate.augment_splits=[train]",
                  "translate.augment_languages=[en,de,ja]", "translate.query_splits=[test]",
                  "translate.query_languages=[en,ar]")
    out = tmp_path / "out"
    summary = preprocess(tiny_world, out, cfg, progress=False)
    train = _samples(out, "train")
    by_image: dict[str, dict[str, dict]] = {}
    for raw in train:
        md = json.loads(raw["json"])
        by_image.setdefault(md["image_id"], {})[md["language"]] = {**md, "caption": raw["txt"].decode(),
                                                                   "tokens": _npy(raw["tokens.npy"])}
    added = 0
    for image_id, langs in by_image.items():
        human = [md for md in langs.values() if md["provenance"]["origin"] != "machine"]
        assert len(human) == 1  # train images have one language each in the benchmark
        assert set(langs) == {"en", "de", "ja", human[0]["language"]}
        for lang, md in langs.items():
            if md["provenance"]["origin"] == "machine":
                added += 1
                assert md["provenance"]["source_language"] == human[0]["language"]
                assert md["provenance"]["source_caption_id"] == human[0]["caption_id"]
                assert md["provenance"]["translator"] == "world-reference"
                assert md["caption"] == normalize_caption(caption_in(human[0]["meta"], lang))
    s = summary["splits"]["train"]
    assert s["translated"] == added > 0 and s["read"] + s["translated"] == s["written"] + s["rejected"]
    assert s["origins"]["machine"] == added
    # (c) every test caption carries its translations into the other query languages
    for raw in _samples(out, "test"):
        md = json.loads(raw["json"])
        want = {"en", "ar"} - {md["language"]}
        assert set(md["meta"]["translations"]) == want
        for lang in want:
            assert md["meta"]["translations"][lang] == normalize_caption(caption_in(md["meta"], lang))
    # the benchmark's 336 train images have one caption each; each gains the languages of en/de/ja it lacks
    assert len(by_image) == 336 and s["written"] == 336 + 3 * (336 - 72) + 2 * 72


# --- image features ---------------------------------------------------------------------------------------------


def test_feature_stage_stores_one_vector_per_image(ray_local, tiny_world, tmp_path):
    cfg = _config("features.enabled=true", "features.image_size=32", "features.resize=32", "features.crops=center",
                  "vocab.enabled=false", "tokenize.enabled=false")
    out = tmp_path / "out"
    summary = preprocess(tiny_world, out, cfg, progress=False)
    assert summary["preprocess"]["features"]["arch"] == "resnet18"
    by_image: dict[str, list[np.ndarray]] = {}
    for raw in _samples(out, "test"):
        assert "tokens.npy" not in raw
        feats = _npy(raw["features.npy"])
        assert feats.shape == (512,) and feats.dtype == np.float16 and np.isfinite(feats).all()
        by_image.setdefault(json.loads(raw["json"])["image_id"], []).append(feats)
    assert len(by_image) == 24
    for feats in by_image.values():
        assert len(feats) == 14 and all(np.array_equal(f, feats[0]) for f in feats)
    distinct = {f[0].tobytes() for f in by_image.values()}
    assert len(distinct) == 24


def test_features_come_from_the_image_network_of_a_training_run(ray_local, tiny_world, tmp_path):
    """features.checkpoint: a run's own image network (here an export of a spatial-CNN Globetrotter) extracts
    the features, exactly as the model's forward_features computes them."""
    import torch
    import yaml
    from PIL import Image
    from safetensors.torch import save_file

    from dist_train.models.globetrotter import Globetrotter, GlobetrotterConfig
    from dist_train.preprocess.image_features import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(3)
    model_config = dict(vocab_size=50, hidden=32, layers=1, heads=2, intermediate=32, embed_dim=8,
                        image_arch="spatial_cnn")
    model = Globetrotter(GlobetrotterConfig(**model_config)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a wrongly loaded network shows
        for m in model.image_encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    export = tmp_path / "export"
    export.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "text_encoder.cloze_head.decoder.weight"}
    save_file(state, str(export / "model.safetensors"))  # the tied cloze head is stored once, as export does
    (export / "config.yaml").write_text(yaml.safe_dump({"model": "globetrotter", "model_config": model_config}))

    cfg = _config("features.enabled=true", f"features.checkpoint={export}", "features.image_size=64",
                  "features.resize=64", "features.crops=center", "vocab.enabled=false", "tokenize.enabled=false")
    out = tmp_path / "out"
    summary = preprocess(tiny_world, out, cfg, progress=False)
    described = summary["preprocess"]["features"]
    assert described["arch"] == "spatial_cnn" and described["feature_dim"] == 128 * 16
    assert described["weights"] == f"image network of {export}"
    raw = _samples(out, "test")[0]
    pixels = torch.from_numpy(np.asarray(Image.open(io.BytesIO(raw["jpg"])).convert("RGB"), dtype=np.float32).copy())
    x = (pixels.permute(2, 0, 1)[None] / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = model.image_encoder.forward_features(x)[0].numpy()
    np.testing.assert_allclose(_npy(raw["features.npy"]).astype(np.float32), expected, rtol=2e-2, atol=2e-3)
    with pytest.raises(PreprocessError, match="features.checkpoint"):
        preprocess(tiny_world, tmp_path / "other", _config("features.enabled=true",
                                                           f"features.checkpoint={tmp_path / 'missing'}"),
                   progress=False)


def test_feature_stage_rejects_an_undecodable_image_when_the_image_stage_is_off(ray_local, tiny_world, tmp_path):
    src = _bad_input(tiny_world, tmp_path / "in")
    cfg = _config("images.enabled=false", "features.enabled=true", "features.image_size=32", "features.resize=32",
                  "features.crops=center", "vocab.enabled=false", "tokenize.enabled=false")
    summary = preprocess(src, tmp_path / "out", cfg, progress=False)
    s = summary["splits"]["train"]
    assert s["rejects"] == {"empty_caption": 1, "undecodable_image": 1}
    assert s["read"] == s["written"] + s["rejected"]
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert {(r["stage"], r["reason"]) for r in rejects} == {("features", "undecodable_image"),
                                                          ("captions", "empty_caption")}
