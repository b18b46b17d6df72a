"""Translation inside the Ray pipeline: tiny MarianMT (HF) and NLLB (CTranslate2) models loaded from
local folders by a real actor pool, for augmentation and for query translations."""

from __future__ import annotations

import json

from dist_train.config import load_config
from dist_train.data.shards import iter_shard, list_finished_shards
from dist_train.preprocess.config import PreprocessConfig, validate
from dist_train.preprocess.pipeline import preprocess


def _config(*overrides: str) -> PreprocessConfig:
    return load_config(PreprocessConfig, None, ["vocab.enabled=false", "tokenize.enabled=false", *overrides],
                       validate)


def _metas(root, split) -> list[dict]:
    out = []
    for tar in list_finished_shards(root, split):
        for raw in iter_shard(tar):
            out.append({**json.loads(raw["json"]), "caption": raw["txt"].decode()})
    return out


def test_hf_marian_pair_models_augment_the_images_captioned_in_the_source_language(
        ray_local, tiny_world, marian_en_de, tmp_path):
    template = str(marian_en_de.parent / "opus-mt-{src}-{tgt}")
    cfg = _config("translate.enabled=true", "translate.backend=hf", f"translate.model={template}",
                  "translate.augment_splits=[train]", "translate.augment_languages=[de]",
                  "translate.source_languages=[en]", "translate.batch_size=8")
    summary = preprocess(tiny_world, tmp_path / "out", cfg, progress=False)
    train = _metas(tmp_path / "out", "train")
    machine = [m for m in train if m["provenance"]["origin"] == "machine"]
    english = {m["caption_id"]: m for m in train if m["language"] == "en"}
    assert len(machine) == len(english) == 24  # each English-captioned train image gains a German caption
    for m in machine:
        p = m["provenance"]
        assert m["language"] == "de" and p["source_language"] == "en" and p["source_caption_id"] in english
        assert p["translator"].startswith("hf:") and m["image_id"] == english[p["source_caption_id"]]["image_id"]
        assert isinstance(m["caption"], str)
    s = summary["splits"]["train"]
    assert s["translated"] == 24 - s["rejects"].get("empty_translation", 0)
    assert s["read"] + s["translated"] == s["written"] + s["rejected"]
    assert summary["preprocess"]["translator"].startswith("hf:")


def test_ctranslate2_nllb_attaches_query_translations(ray_local, tiny_world, converted, tmp_path):
    cfg = _config("translate.enabled=true", "translate.backend=ctranslate2", f"translate.model={converted['nllb-int8']}",
                  "translate.compute_type=int8", "translate.query_splits=[val]", "translate.query_languages=[de,ru]")
    summary = preprocess(tiny_world, tmp_path / "out", cfg, progress=False)
    val = _metas(tmp_path / "out", "val")
    assert len(val) == 84 and summary["splits"]["val"]["translated"] == 0  # queries add no rows
    for m in val:
        want = {"de", "ru"} - {m["language"]}
        assert set(m["meta"]["translations"]) == want
        assert m["meta"]["translator"].startswith("ctranslate2")
    assert all("translations" not in m["meta"] for m in _metas(tmp_path / "out", "test"))


def test_translate_convert_cli_makes_a_ctranslate2_model_the_pipeline_can_load(marian_en_de, tmp_path):
    from dist_train.preprocess.translate import build_translator
    from tests.conftest import run_cli

    out = tmp_path / "ct2-en-de"
    proc = run_cli("translate", "convert", marian_en_de, out, "--quantization", "int8")
    assert str(out) in proc.stdout and (out / "model.bin").is_file()
    again = run_cli("translate", "convert", marian_en_de, out, check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    translator = build_translator({"backend": "ctranslate2", "model": str(out), "compute_type": "int8"})
    assert len(translator.translate(["a red circle", "two blue stars"], "en", "de")) == 2
