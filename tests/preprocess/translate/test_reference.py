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


def test_machine_translations_keep_their_source_captions_translation_group(test_scenes):
    """The translate stage (augmentation) copies the source caption's group into its translations;
    a source without one leaves them none, and `caption_group` then pairs them by the source caption id."""
    from dist_train.data.schema import Sample
    from dist_train.preprocess.stages import TranslateStage
    from dist_train.preprocess.work import Row, ShardWork
    from dist_train.train.data import caption_group

    english = [scene["en"] for scene in list(test_scenes.values())[:2]]
    samples = [Sample(key=c.caption_id, image=b"", caption=c.caption, language="en", image_id=c.image_id,
                      caption_id=c.caption_id, source="world-tiny", split="train", width=8, height=8,
                      meta=c.meta(), translation_group=group) for c, group in zip(english, ("pair-0", None))]
    work = ShardWork(split="train", index=0, input_tar="", input_start=0, input_end=2,
                     augment_plan={s.caption_id: ["de"] for s in samples},
                     rows=[Row(sample=s, input_index=i) for i, s in enumerate(samples)])
    out = TranslateStage({"backend": "world", "batch_size": 8})(work)
    machine = {row.sample.provenance.source_caption_id: row.sample for row in out.rows
               if row.sample.provenance.origin == "machine"}
    assert set(machine) == {s.caption_id for s in samples}
    grouped, ungrouped = machine[samples[0].caption_id], machine[samples[1].caption_id]
    assert grouped.language == "de" and grouped.translation_group == "pair-0"
    assert caption_group(grouped.metadata()) == caption_group(samples[0].metadata()) == "group:pair-0"
    assert ungrouped.translation_group is None
    without_meta = [{**s.metadata(), "meta": {}} for s in (samples[1], ungrouped)]  # as a real dataset's caption
    assert caption_group(without_meta[0]) == caption_group(without_meta[1]) == f"caption:{samples[1].caption_id}"
