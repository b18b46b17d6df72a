"""The tiny model builders write real-format directories, deterministically from the seed."""

from __future__ import annotations

import json

from transformers import AutoConfig

from dist_train.preprocess.translate import build_tiny_marian, build_tiny_nllb


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_inputs_and_seed_give_identical_directories(tmp_path, corpus):
    a = build_tiny_marian(tmp_path / "a", corpus["en"], corpus["de"], seed=3)
    b = build_tiny_marian(tmp_path / "b", corpus["en"], corpus["de"], seed=3)
    c = build_tiny_marian(tmp_path / "c", corpus["en"], corpus["de"], seed=4)
    assert _files(a) == _files(b)
    assert _files(a)["model.safetensors"] != _files(c)["model.safetensors"]
    sentences = {lang: corpus[lang] for lang in ("en", "ja")}
    assert _files(build_tiny_nllb(tmp_path / "n1", sentences)) == _files(build_tiny_nllb(tmp_path / "n2", sentences))


def test_marian_vocabulary_has_the_opus_mt_layout(marian_en_de):
    vocab = json.loads((marian_en_de / "vocab.json").read_text())
    assert vocab["</s>"] == 0 and vocab["<unk>"] == 1 and vocab["<pad>"] == len(vocab) - 1
    config = AutoConfig.from_pretrained(marian_en_de, local_files_only=True)
    assert config.model_type == "marian" and config.vocab_size == len(vocab)
    assert config.decoder_start_token_id == config.pad_token_id == vocab["<pad>"]


def test_opus_mt_sized_dimensions_are_allowed(tmp_path, corpus):
    out = build_tiny_marian(tmp_path / "big", corpus["en"][:20], corpus["de"][:20], d_model=512, layers=1)
    config = AutoConfig.from_pretrained(out, local_files_only=True)
    assert (config.d_model, config.encoder_attention_heads, config.encoder_ffn_dim) == (512, 8, 2048)
