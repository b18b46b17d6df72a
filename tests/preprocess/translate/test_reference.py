"""The benchmark's reference translator reproduces the generator's own captions, and only those."""

from __future__ import annotations

import collections
import dataclasses

import pytest

from dist_train.preprocess.translate import TranslatorError, WorldReferenceTranslator


@pytest.fixture(scope="module")
def test_scenes(world):
    """{image_id: {language: WorldCaption}} of the test split: every scene captioned in every language."""
    scenes = collections.defaultdict(dict)
    for caption in world.captions["test"]:
        scenes[caption.image_id][caption.language] = caption
    return scenes


def test_translations_equal_the_generators_captions_of_the_same_scene(test_scenes):
    english = [scene["en"] for scene in test_scenes.values()]
    translated = WorldReferenceTranslator(batch_size=5).translate(
        [c.caption for c in english], "en", "de", metas=[c.meta() for c in english])
    same_template = 0
    for en, de_translation in zip(english, translated):
        german = test_scenes[en.image_id]["de"]
        # the generator drew a template per language; the translation keeps the English one
        assert de_translation == dataclasses.replace(german, template=en.template).caption
        if german.template == en.template:
            assert de_translation == german.caption
            same_template += 1
    assert same_template > 0  # some scenes compare with the packed German caption itself
    assert len(set(translated)) == len(translated)


def test_mismatched_training_captions_translate_what_they_say(world):
    mismatched = [c for c in world.captions["train"] if c.mismatched and c.language == "it"]
    assert mismatched
    translated = WorldReferenceTranslator().translate(
        [c.caption for c in mismatched], "it", "ru", metas=[c.meta() for c in mismatched])
    assert translated == [dataclasses.replace(c, language="ru").caption for c in mismatched]


def test_it_refuses_anything_but_benchmark_captions(test_scenes):
    caption = next(iter(test_scenes.values()))["en"]
    meta = caption.meta()
    translator = WorldReferenceTranslator()
    assert translator.name == "world-reference"
    with pytest.raises(TranslatorError, match="no scene"):
        translator.translate([caption.caption], "en", "de", metas=[{k: v for k, v in meta.items() if k != "scene"}])
    with pytest.raises(TranslatorError, match="no scene, said, template"):
        translator.translate(["a photo of a dog"], "en", "de", metas=[{"source": "laion"}])
    with pytest.raises(TranslatorError, match="needs each caption's sample meta"):
        translator.translate([caption.caption], "en", "de")
    with pytest.raises(TranslatorError, match="not what its meta renders to"):
        translator.translate(["a photo of a dog"], "en", "de", metas=[meta])
    with pytest.raises(TranslatorError, match="en->nl"):
        translator.translate([caption.caption], "en", "nl", metas=[meta])
