"""The built-in benchmark follows Globetrotter's protocol and its images show what captions say."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from dist_train.data.world.dataset import PRESETS, World, caption_in, get_spec
from dist_train.data.world.languages import LANGUAGES, get_captioner
from dist_train.data.world.meaning import Group, Meaning
from dist_train.data.world.render import RGB, layout, render


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(get_spec("tiny", mismatch_fraction=0.25))


def _canonical(m: Meaning):
    return min(repr(m), repr(m.inverted()))


def test_train_and_val_images_have_one_language_and_are_disjoint(world):
    seen_images = collections.Counter()
    for split in ("train", "val"):
        caps = world.captions[split]
        assert len(caps) == world.spec.count(split)
        counts = collections.Counter(c.language for c in caps)
        assert set(counts) == set(LANGUAGES) and len(set(counts.values())) == 1
        seen_images.update(c.image_id for c in caps)
    assert max(seen_images.values()) == 1  # one caption, one language per image; no image in two splits
    seeds = [c.scene_seed for s in ("train", "val", "test") for c in world.captions[s]]
    test_seeds = {c.scene_seed for c in world.captions["test"]}
    assert len(set(seeds)) == len(seeds) - len(world.captions["test"]) + len(test_seeds)


def test_test_split_is_every_scene_in_every_language_with_unique_unseen_meanings(world):
    test = world.captions["test"]
    by_image = collections.defaultdict(list)
    for c in test:
        by_image[c.image_id].append(c)
    assert len(by_image) == world.spec.test_scenes
    for caps in by_image.values():
        assert sorted(c.language for c in caps) == sorted(LANGUAGES)
        assert len({c.said for c in caps}) == 1 and not any(c.mismatched for c in caps)
    test_meanings = [_canonical(caps[0].said) for caps in by_image.values()]
    assert len(set(test_meanings)) == len(test_meanings)
    train_meanings = {_canonical(c.scene) for s in ("train", "val") for c in world.captions[s]}
    train_meanings |= {_canonical(c.said) for s in ("train", "val") for c in world.captions[s]}
    assert not train_meanings & set(test_meanings)


def test_a_fraction_of_training_captions_describe_another_scene(world):
    train = world.captions["train"]
    mismatched = [c for c in train if c.mismatched]
    assert 0.1 < len(mismatched) / len(train) < 0.4
    assert all(_canonical(c.said) != _canonical(c.scene) for c in mismatched)
    assert all(c.said == c.scene for c in train if not c.mismatched)
    assert not any(c.mismatched for c in world.captions["val"])


def test_generation_is_deterministic_from_the_seed():
    a, b = World.generate(PRESETS["tiny"]), World.generate(PRESETS["tiny"])
    assert a.captions == b.captions
    c = World.generate(get_spec("tiny", seed=1))
    assert [x.said for x in c.captions["train"]] != [x.said for x in a.captions["train"]]


def test_captions_are_the_captioner_output_for_what_is_said(world):
    for c in world.captions["test"][:40] + world.captions["train"][:40]:
        assert c.caption == get_captioner(c.language).caption(c.said, c.template)


@pytest.mark.parametrize("relation", ["left_of", "right_of", "above", "below"])
def test_layout_puts_the_subject_on_the_side_the_relation_says(relation):
    m = Meaning(Group(3, "big", "red", "star"), relation, Group(3, "big", "blue", "circle"))
    for seed in range(30):
        _, placed = layout(m, seed, 64)
        subj, obj = placed[:3], placed[3:]
        axis, sign = {"left_of": ("x", 1), "right_of": ("x", -1), "above": ("y", 1), "below": ("y", -1)}[relation]
        gap = min(sign * (getattr(o, axis) - o.r - getattr(s, axis) - s.r) for s in subj for o in obj)
        assert gap >= -1e-6, (seed, placed)  # every subject object lies wholly on its side


def test_rendered_image_shows_the_colours_and_is_deterministic():
    m = Meaning(Group(2, "big", "red", "square"), "left_of", Group(1, "big", "yellow", "circle"))
    img = np.asarray(render(m, 7, 64)).astype(int)
    assert np.array_equal(img, np.asarray(render(m, 7, 64)))
    left, right = img[:, :32].reshape(-1, 3), img[:, 32:].reshape(-1, 3)

    def share(px, rgb):
        return np.mean(np.abs(px - np.array(rgb)).max(axis=1) < 40)

    assert share(left, RGB["red"]) > 0.05 and share(right, RGB["red"]) < 0.01
    assert share(right, RGB["yellow"]) > 0.05 and share(left, RGB["yellow"]) < 0.01


def test_reference_translation_recovers_every_language_of_a_test_scene(world):
    by_image = collections.defaultdict(dict)
    for c in world.captions["test"]:
        by_image[c.image_id][c.language] = c
    for caps in list(by_image.values())[:10]:
        source = caps["en"]
        for lang, c in caps.items():
            assert caption_in(source.meta(), lang, c.template) == c.caption
        assert caption_in(source.meta(), "en") == source.caption


def test_hard_test_split_pairs_unseen_scenes_that_differ_in_one_thing_only():
    from dist_train.data.world.dataset import HARD_TEST_SPLIT, translation_group
    from dist_train.data.world.meaning import INVERSE_RELATION

    plain = World.generate(get_spec("tiny"))
    world = World.generate(get_spec("tiny", hard_test_pairs=20))
    for split in ("train", "val", "test"):  # its own random stream: the other splits stay as they were
        assert [(c.caption_id, c.caption) for c in world.captions[split]] == \
            [(c.caption_id, c.caption) for c in plain.captions[split]]
    hard = world.captions[HARD_TEST_SPLIT]
    languages = world.spec.languages
    assert len(hard) == 2 * 20 * len(languages) == world.spec.count(HARD_TEST_SPLIT)
    scenes = [c.scene for c in hard if c.language == languages[0]]
    seen = {translation_group(c.meta()) for s in ("train", "val", "test") for c in world.captions[s]}
    groups = [translation_group({"said": m.to_dict()}) for m in scenes]
    assert len(set(groups)) == 40 and not set(groups) & seen  # unseen, and no two scenes say the same
    for a, b in zip(scenes[0::2], scenes[1::2]):
        diffs = [f for f in ("count", "size", "colour", "shape") for x, y in ((a.subject, b.subject), (a.obj, b.obj))
                 if getattr(x, f) != getattr(y, f)]
        relation_changed = a.relation != b.relation
        assert len(diffs) + relation_changed == 1, (a, b)
        if relation_changed:
            assert b.relation != INVERSE_RELATION[a.relation]
    # every scene of the split is captioned in every language, all captions of one scene translate each other
    by_image = {}
    for c in hard:
        by_image.setdefault(c.image_id, set()).add((c.language, translation_group(c.meta())))
    assert all(len(v) == len(languages) and len({g for _, g in v}) == 1 for v in by_image.values())
