"""The transformers backend loads real MarianMT and NLLB directories and translates with them."""

from __future__ import annotations

import json
import shutil

import pytest

from dist_train.preprocess.translate import HFTranslator, TranslatorError


def _check_outputs(texts, outputs):
    assert len(outputs) == len(texts)
    assert all(isinstance(t, str) and t for t in outputs)  # special tokens never generated: no empty output
    assert len(set(outputs)) > len(texts) // 4  # depends on the input, not one fixed string


@pytest.mark.parametrize("fixture, name", [("marian_en_de", "hf:opus-mt-en-de"), ("nllb", "hf:nllb-tiny")])
def test_models_load_from_their_directories_and_translate_deterministically(request, english, fixture, name):
    model_dir = request.getfixturevalue(fixture)
    first = HFTranslator(model_dir, max_new_tokens=16, num_threads=1)
    assert first.name == name
    outputs = first.translate(english, "en", "de")
    _check_outputs(english, outputs)
    assert HFTranslator(model_dir, max_new_tokens=16, num_threads=1).translate(english, "en", "de") == outputs


def test_nllb_target_language_steers_the_output(nllb, english):
    translator = HFTranslator(nllb, max_new_tokens=12)
    assert translator.supports("en", "de") and translator.supports("de", "ru")
    assert translator.translate(english[:8], "en", "de") != translator.translate(english[:8], "en", "fr")


def test_template_picks_the_model_of_each_pair(marian_en_de, marian_en_fr, english):
    template = marian_en_de.parent / "opus-mt-{src}-{tgt}"
    family = HFTranslator(template, max_new_tokens=12)
    assert family.name == "hf:opus-mt-{src}-{tgt}"
    assert family.supports("en", "de") and family.supports("en", "fr") and not family.supports("en", "es")
    to_de, to_fr = family.translate(english, "en", "de"), family.translate(english, "en", "fr")
    assert to_de == HFTranslator(marian_en_de, max_new_tokens=12).translate(english, "en", "de")
    assert to_fr == HFTranslator(marian_en_fr, max_new_tokens=12).translate(english, "en", "fr")
    assert to_de != to_fr
    with pytest.raises(TranslatorError, match="opus-mt-en-es"):
        family.translate(english[:2], "en", "es")


@pytest.mark.parametrize("fixture", ["marian_en_de", "nllb"])
def test_length_sorted_batches_come_back_in_input_order_and_equal_one_at_a_time(request, english, fixture):
    # batch_size 7 does not divide 54, and sorting reorders the captions, so any slip in putting
    # results back shows up as a mismatch with the one-at-a-time results
    model_dir = request.getfixturevalue(fixture)
    batched = HFTranslator(model_dir, batch_size=7, max_new_tokens=16)
    one_by_one = [batched.translate([text], "en", "de")[0] for text in english]
    assert batched.translate(english, "en", "de") == one_by_one
    assert sorted(english, key=len) != english  # the input really was out of length order


def test_a_missing_model_directory_names_the_path_without_touching_the_network(tmp_path, no_network):
    missing = tmp_path / "opus-mt-en-xx"
    with pytest.raises(TranslatorError, match=str(missing)):
        HFTranslator(missing)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(TranslatorError, match="no config.json"):
        HFTranslator(not_a_model)
    assert no_network == []


def test_unsupported_pairs_are_refused_with_the_pair_in_the_message(marian_en_de, nllb, no_network):
    marian = HFTranslator(marian_en_de)
    assert marian.supports("en", "de") and not marian.supports("en", "fr") and not marian.supports("de", "en")
    with pytest.raises(TranslatorError, match="en->fr"):
        marian.translate(["a red circle"], "en", "fr")
    many = HFTranslator(nllb)
    assert not many.supports("en", "xx")
    with pytest.raises(TranslatorError, match=r"en->xx.*language_codes"):
        many.translate(["a red circle"], "en", "xx")
    # an override maps an unknown code onto one the model has
    assert HFTranslator(nllb, language_codes={"xx": "deu_Latn"}).supports("en", "xx")
    assert no_network == []


def test_a_pair_model_without_declared_languages_takes_them_from_its_directory_name(marian_en_de, tmp_path):
    copy = shutil.copytree(marian_en_de, tmp_path / "opus-mt-en-de")
    config_file = copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    assert (config.pop("source_lang"), config.pop("target_lang")) == ("en", "de")
    config_file.write_text(json.dumps(config))
    translator = HFTranslator(copy)
    assert translator.supports("en", "de") and not translator.supports("en", "fr")


def test_bad_settings_are_translator_errors(marian_en_de):
    with pytest.raises(TranslatorError, match="batch_size"):
        HFTranslator(marian_en_de, batch_size=0)
    with pytest.raises(TranslatorError, match="min_new_tokens"):
        HFTranslator(marian_en_de, max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(TranslatorError, match="2 texts but 1 metas"):
        HFTranslator(marian_en_de).translate(["a", "b"], "en", "de", metas=[{}])


def test_min_and_max_new_tokens_fix_the_output_length(marian_en_de, english):
    translator = HFTranslator(marian_en_de, max_new_tokens=9, min_new_tokens=9)
    ids = translator.generate_ids(english[:5], "en", "de")
    assert [len(i) for i in ids] == [9] * 5


def test_a_multi_target_pair_model_is_steered_by_its_language_token(tmp_path, corpus, english):
    from dist_train.preprocess.translate import build_tiny_marian

    model_dir = build_tiny_marian(tmp_path / "opus-mt-en-ROMANCE", corpus["en"], corpus["fr"] + corpus["es"],
                                  target_lang=None, target_language_tokens=("fra", "spa"))
    translator = HFTranslator(model_dir, max_new_tokens=12)
    assert translator.supports("en", "fr") and translator.supports("en", "es")
    assert not translator.supports("en", "de") and not translator.supports("de", "fr")
    assert translator.translate(english, "en", "fr") != translator.translate(english, "en", "es")
