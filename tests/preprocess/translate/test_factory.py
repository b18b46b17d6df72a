"""Translators are built from config mappings, and config mistakes are errors that name the key."""

from __future__ import annotations

import pytest

from dist_train.preprocess.translate import (CTranslate2Translator, HFTranslator, TranslatorError,
                                             WorldReferenceTranslator, build_translator)


def test_each_backend_is_built_with_its_settings(marian_en_de, converted):
    hf = build_translator({"backend": "hf", "model": str(marian_en_de), "batch_size": 8, "max_length": 5,
                           "min_length": 5, "num_beams": 2, "num_threads": 1, "device": "cpu"})
    assert isinstance(hf, HFTranslator) and hf.batch_size == 8
    assert (hf.max_new_tokens, hf.min_new_tokens, hf.num_beams) == (5, 5, 2)
    assert [len(ids) for ids in hf.generate_ids(["a big red circle"], "en", "de")] == [5]

    ct2 = build_translator({"backend": "ctranslate2", "model": converted["nllb"], "compute_type": "int8",
                            "max_length": 6, "num_beams": 2, "language_codes": {"xx": "deu_Latn"},
                            "device": None})
    assert isinstance(ct2, CTranslate2Translator) and ct2.name == "ctranslate2-int8:nllb-tiny"
    assert (ct2.max_decoding_length, ct2.beam_size) == (6, 2) and ct2.supports("en", "xx")

    world = build_translator({"backend": "world", "batch_size": 64})
    assert isinstance(world, WorldReferenceTranslator) and world.batch_size == 64


@pytest.mark.parametrize("config, message", [
    ({"backend": "hf", "model": "/m", "num_beam": 2}, "num_beam"),
    ({"backend": "ct2", "model": "/m"}, "'ct2'.*'backend'"),
    ({"model": "/m"}, "backend"),
    ({"backend": "hf", "model": "/m", "compute_type": "int8"}, "compute_type do not apply to the hf"),
    ({"backend": "world", "model": "/m"}, "model do not apply to the world"),
    ({"backend": "hf"}, "needs config key 'model'"),
])
def test_config_mistakes_name_the_key(config, message):
    with pytest.raises(TranslatorError, match=message):
        build_translator(config)


def test_a_missing_model_directory_fails_when_the_translator_is_built(tmp_path):
    with pytest.raises(TranslatorError, match=str(tmp_path / "absent")):
        build_translator({"backend": "hf", "model": str(tmp_path / "absent")})
