"""CTranslate2 runs converted models and, in fp32, generates exactly what transformers generates."""

from __future__ import annotations

import pytest

from dist_train.preprocess.translate import CTranslate2Translator, HFTranslator, TranslatorError, convert_model


def _batches(translator, texts, size=16):
    return [ids for i in range(0, len(texts), size) for ids in translator.generate_ids(texts[i:i + size], "en", "de")]


@pytest.mark.parametrize("kind, hf_fixture", [("marian", "marian_en_de"), ("nllb", "nllb")])
def test_fp32_generates_the_same_greedy_tokens_as_transformers(request, converted, english, kind, hf_fixture):
    # Exact equality of token ids, not a tolerance: both backends get the same source ids and
    # compute the same fp32 network. The tiny models' weights are drawn large enough that the
    # best and second-best logits are far apart compared with fp32 rounding (see tiny_models).
    hf = HFTranslator(request.getfixturevalue(hf_fixture), max_new_tokens=20)
    ct2 = CTranslate2Translator(converted[kind], max_decoding_length=20, num_threads=1)
    assert _batches(ct2, english) == _batches(hf, english)
    assert ct2.translate(english, "en", "de") == hf.translate(english, "en", "de")


@pytest.mark.parametrize("kind", ["marian-int8", "nllb-int8"])
def test_int8_models_run(converted, english, kind):
    translator = CTranslate2Translator(converted[kind], compute_type="int8", max_decoding_length=12)
    assert translator.name == f"ctranslate2-int8:{converted[kind].name}"
    outputs = translator.translate(english, "en", "de")
    assert len(outputs) == len(english) and all(isinstance(t, str) and t for t in outputs)


def test_an_fp32_model_can_be_run_in_int8(converted, english):
    outputs = CTranslate2Translator(converted["marian"], compute_type="int8").translate(english[:4], "en", "de")
    assert len(outputs) == 4


def test_conversion_copies_the_tokenizer_and_keeps_its_own_config(converted, marian_en_de, nllb):
    marian_files = {p.name for p in converted["marian"].iterdir()}
    assert {"model.bin", "config.json", "source.spm", "target.spm", "vocab.json", "tokenizer_config.json"} <= marian_files
    assert {"model.bin", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in converted["nllb"].iterdir()}
    assert "model_type" not in (converted["marian"] / "config.json").read_text()  # CTranslate2's, not HF's
    assert not [p for p in converted["marian"].parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_conversion_refuses_to_overwrite_unless_forced(tmp_path, marian_en_de):
    out = convert_model(marian_en_de, tmp_path / "model")
    first = (out / "model.bin").stat().st_mtime_ns
    with pytest.raises(TranslatorError, match=f"{out}.*force=True"):
        convert_model(marian_en_de, out)
    assert convert_model(marian_en_de, out, quantization="int8", force=True) == out
    assert (out / "model.bin").stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_conversion_errors_name_what_is_wrong(tmp_path, marian_en_de, no_network):
    with pytest.raises(TranslatorError, match=str(tmp_path / "nowhere")):
        convert_model(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(TranslatorError, match="int3"):
        convert_model(marian_en_de, tmp_path / "out", quantization="int3")
    assert not (tmp_path / "out").exists()
    assert no_network == []


def test_missing_or_unconverted_directories_are_translator_errors(tmp_path, marian_en_de, no_network):
    with pytest.raises(TranslatorError, match=str(tmp_path / "missing")):
        CTranslate2Translator(tmp_path / "missing")
    with pytest.raises(TranslatorError, match="no model.bin.*convert_model"):
        CTranslate2Translator(marian_en_de)  # a transformers directory, not converted
    assert no_network == []


def test_unsupported_pairs_and_templates(converted, english):
    single = CTranslate2Translator(converted["marian"])
    with pytest.raises(TranslatorError, match="en->fr"):
        single.translate(english[:2], "en", "fr")
    nllb = CTranslate2Translator(converted["nllb"])
    assert nllb.supports("de", "ru") and not nllb.supports("en", "xx")
    template = CTranslate2Translator(converted["marian"].parent / "opus-mt-{src}-{tgt}")
    assert template.translate(english[:6], "en", "de") == single.translate(english[:6], "en", "de")
    with pytest.raises(TranslatorError, match="opus-mt-en-fr"):
        template.translate(english[:2], "en", "fr")


def test_length_sorted_batches_equal_one_at_a_time(converted, english):
    translator = CTranslate2Translator(converted["nllb"], batch_size=5, max_decoding_length=16)
    assert translator.translate(english, "en", "de") == [translator.translate([t], "en", "de")[0] for t in english]
