"""The built-in benchmark's splits, following Globetrotter's protocol (paper section 4, appendix B.4).

- train and val: every image is captioned in exactly one language and images are disjoint across
  languages (each language gets its own scenes, split 80/20 into train and val by default sizes);
  a configurable fraction of training captions describe another scene, as web captions often do.
- test: the same scenes captioned in every language, the ground truth for translation by
  retrieval. Test meanings are unique, also up to saying the relation from the other side ("A
  left of B" = "B right of A"), and never occur in train or val, so test sentences are unseen.

Task 2 (`captions_per_language` > 0, Multi30K's task 2 for the visual-pivoting captioner): every
train and val image is captioned in every language, several times per language, and test images
get several references per language. Each caption draws its own construction and its own side of
the relation, so the captions of one image in two languages are independent descriptions of one
fact, not word-for-word translations: what a captioner trained on unpaired captions gets to see.

Everything is a function of the spec and its seed. Specs without task 2 draw exactly the random
numbers they drew before it existed, so their captions, images and shards do not change.
"""

from __future__ import annotations

import json

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .languages import LANGUAGES, N_TEMPLATES, get_captioner
from .meaning import Meaning, all_meanings

SPLITS = ("train", "val", "test")
HARD_TEST_SPLIT = "test_hard"


@dataclass(frozen=True)
class WorldSpec:
    preset: str
    train_per_language: int
    val_per_language: int
    test_scenes: int
    image_size: int
    samples_per_shard: int  # the default shard size for this preset
    languages: tuple[str, ...] = LANGUAGES
    mismatch_fraction: float = 0.1
    seed: int = 0
    # The shared vocabulary `dist-train demo` (and `train` on a missing shards/world-<preset>) trains for
    # this preset; None: the preprocess default (30 000, Globetrotter's, a soft limit). On the demo's
    # 4 480 training captions 30 000 learns 6 257 pieces, whole phrases in ja and zh, so that about half
    # of their test tokens never occur in training; 1 500 leaves none unseen.
    vocab_size: int | None = None
    # A second test split, `test_hard`: this many pairs of scenes that differ in one thing only (one
    # attribute of one group, or the relation), each scene captioned in every language, all unseen in
    # train/val/test. Nearest-neighbour retrieval must then get the relation and every attribute right:
    # the plain test split's scenes rarely share their content words. Drawn from its own random stream,
    # so the other splits do not change with it.
    hard_test_pairs: int = 0
    # Task 2 when > 0: every train and val image is captioned this many times in every language (each
    # caption with its own template and side of the relation), no caption is mismatched
    # (`mismatch_fraction` is ignored), and `train_per_language` / `val_per_language` count images.
    captions_per_language: int = 0
    # Task 2: references per language of each test image (0: `captions_per_language`).
    test_captions_per_language: int = 0

    def __post_init__(self) -> None:
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown:
            raise ValueError(f"the built-in benchmark has no language {', '.join(unknown)}; it has {', '.join(LANGUAGES)}")
        if len(set(self.languages)) != len(self.languages) or not self.languages:
            raise ValueError(f"languages must be distinct and non-empty, got {self.languages}")
        if not 0.0 <= self.mismatch_fraction < 1.0:
            raise ValueError(f"mismatch_fraction must be in [0, 1), got {self.mismatch_fraction}")
        if min(self.train_per_language, self.val_per_language, self.test_scenes, self.hard_test_pairs,
               self.captions_per_language, self.test_captions_per_language) < 0 or self.image_size < 16:
            raise ValueError("sizes must be >= 0 and image_size >= 16")
        if self.test_captions_per_language and not self.captions_per_language:
            raise ValueError("test_captions_per_language is for task 2: set captions_per_language > 0 too")

    @property
    def name(self) -> str:
        return f"world-{self.preset}"

    @property
    def task2(self) -> bool:
        return self.captions_per_language > 0

    @property
    def test_references(self) -> int:
        """Captions per language of each test image: 1, or in task 2 the references per language."""
        return (self.test_captions_per_language or self.captions_per_language) if self.task2 else 1

    def count(self, split: str) -> int:
        """Samples (captions) of `split`."""
        n = {"train": self.train_per_language, "val": self.val_per_language, "test": self.test_scenes,
             HARD_TEST_SPLIT: 2 * self.hard_test_pairs}[split]
        per_image = {"train": self.captions_per_language, "val": self.captions_per_language,
                     "test": self.test_references}.get(split, 1) if self.task2 else 1
        return n * len(self.languages) * per_image

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"] = list(self.languages)
        del d["vocab_size"]  # a preprocessing setting: the packed shards do not depend on it
        # datasets packed before these existed keep their description
        for key in ("hard_test_pairs", "captions_per_language", "test_captions_per_language"):
            if not d[key]:
                del d[key]
        return d


PRESETS = {
    # tests: seconds to pack, a few shards per split
    "tiny": WorldSpec("tiny", train_per_language=24, val_per_language=6, test_scenes=24, image_size=64,
                      samples_per_shard=128),
    # the demo: trains in minutes on 2 cores
    "demo": WorldSpec("demo", train_per_language=320, val_per_language=80, test_scenes=100, image_size=64,
                      samples_per_shard=1000, vocab_size=1500),
    # benchmarks and longer experiments
    "large": WorldSpec("large", train_per_language=8000, val_per_language=2000, test_scenes=500, image_size=128,
                       samples_per_shard=5000),
    # task 2, for the visual-pivoting captioner (unpaired captions): 600 training images, each captioned twice
    # in each language (3 600 captions), sized to train in minutes on 2 cores. en, de and fr write words
    # between spaces: on these captions the default vocabulary learns 951 pieces, whole words, none of them
    # unseen in test; 1 000 keeps that and stops phrases from being learnt when --languages adds ja or zh
    "pivot": WorldSpec("pivot", train_per_language=600, val_per_language=100, test_scenes=100, image_size=64,
                       samples_per_shard=1000, languages=("en", "de", "fr"), mismatch_fraction=0.0,
                       vocab_size=1000, captions_per_language=2, test_captions_per_language=5),
    # task 2 for tests
    "pivot-tiny": WorldSpec("pivot-tiny", train_per_language=24, val_per_language=6, test_scenes=12, image_size=64,
                            samples_per_shard=64, languages=("en", "de"), mismatch_fraction=0.0,
                            captions_per_language=2, test_captions_per_language=3),
}


def get_spec(preset: str, **overrides) -> WorldSpec:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class WorldCaption:
    """One sample of the benchmark before rendering and packing."""

    image_id: str
    caption_id: str
    split: str
    language: str
    scene: Meaning  # what the image shows
    scene_seed: int  # layout and colours of the image
    said: Meaning  # what the caption says (differs from `scene` when mismatched)
    template: int
    mismatched: bool = False

    @property
    def caption(self) -> str:
        return get_captioner(self.language).caption(self.said, self.template)

    def meta(self) -> dict:
        return {"scene": self.scene.to_dict(), "said": self.said.to_dict(), "template": self.template,
                "mismatched": self.mismatched, "scene_seed": self.scene_seed}


def caption_in(meta: dict, language: str, template: int | None = None) -> str:
    """The reference translation of a benchmark caption: what it says (from the sample's `meta`),
    captioned in `language`, with the same construction unless `template` is given."""
    said = Meaning.from_dict(meta["said"])
    return get_captioner(language).caption(said, meta["template"] if template is None else template)


def translation_group(meta: dict) -> str:
    """An id shared by all captions that say the same fact, whatever the language, construction or
    side the relation is said from: the benchmark's ground truth of which captions translate each other."""
    said = Meaning.from_dict(meta["said"])
    forms = sorted(json.dumps(m.to_dict(), sort_keys=True) for m in (said, said.inverted()))
    return forms[0]


@dataclass
class World:
    """All captions of every split of a spec, generated up front (a few bytes each)."""

    spec: WorldSpec
    captions: dict[str, list[WorldCaption]] = field(default_factory=dict)

    @classmethod
    def generate(cls, spec: WorldSpec) -> "World":
        meanings = all_meanings()
        index = {m: i for i, m in enumerate(meanings)}
        canonical = np.array([min(i, index[m.inverted()]) for i, m in enumerate(meanings)])
        if spec.task2:
            world = cls._task2(spec, meanings, canonical)
            if spec.hard_test_pairs:
                world.captions[HARD_TEST_SPLIT] = world._hard_test(meanings, index, canonical)
            return world
        rng = np.random.default_rng(spec.seed)
        n_scenes = spec.test_scenes + len(spec.languages) * (spec.train_per_language + spec.val_per_language)
        seeds = rng.choice(2**31, size=n_scenes, replace=False)
        seed_iter = iter(seeds.tolist())

        # test: unique meanings up to inversion, each shown as one of its two sayings
        test_classes = rng.choice(np.unique(canonical), size=spec.test_scenes, replace=False)
        test_set = set(test_classes.tolist())
        world = cls(spec, {s: [] for s in SPLITS})
        for j, cls_index in enumerate(test_classes.tolist()):
            m = meanings[cls_index]
            m = m.inverted() if rng.random() < 0.5 else m
            seed = next(seed_iter)
            image_id = f"world-test-{j:06d}"
            for lang in spec.languages:
                t = int(rng.integers(N_TEMPLATES))
                world.captions["test"].append(
                    WorldCaption(image_id, f"{image_id}-{lang}", "test", lang, m, seed, m, t))

        allowed = np.flatnonzero(~np.isin(canonical, list(test_set)))
        per_split = {"train": spec.train_per_language, "val": spec.val_per_language}
        for split, n in per_split.items():
            for i in range(n):  # languages interleaved, so any prefix of a split is balanced
                for lang in spec.languages:
                    scene = meanings[int(rng.choice(allowed))]
                    said, mismatched = scene, False
                    if split == "train" and rng.random() < spec.mismatch_fraction:
                        while canonical[index[said]] == canonical[index[scene]]:
                            said = meanings[int(rng.choice(allowed))]
                        mismatched = True
                    image_id = f"world-{split}-{lang}-{i:06d}"
                    world.captions[split].append(
                        WorldCaption(image_id, image_id, split, lang, scene, next(seed_iter), said,
                                     int(rng.integers(N_TEMPLATES)), mismatched))
        if spec.hard_test_pairs:
            world.captions[HARD_TEST_SPLIT] = world._hard_test(meanings, index, canonical)
        return world

    @classmethod
    def _task2(cls, spec: WorldSpec, meanings, canonical) -> "World":
        """Task 2's splits: every image captioned several times in every language, independently."""
        rng = np.random.default_rng(spec.seed)
        n_images = spec.test_scenes + spec.train_per_language + spec.val_per_language
        seed_iter = iter(rng.choice(2**31, size=n_images, replace=False).tolist())
        world = cls(spec, {s: [] for s in SPLITS})

        def caption_image(split: str, image_id: str, scene: Meaning, per_language: int) -> None:
            seed = next(seed_iter)
            for lang in spec.languages:  # an image's captions are consecutive (loaders group runs by image)
                for k in range(per_language):
                    said = scene.inverted() if rng.random() < 0.5 else scene
                    world.captions[split].append(WorldCaption(image_id, f"{image_id}-{lang}-{k}", split, lang, scene,
                                                              seed, said, int(rng.integers(N_TEMPLATES))))

        # test: unique meanings up to inversion, never in train or val, as in the default protocol
        test_classes = rng.choice(np.unique(canonical), size=spec.test_scenes, replace=False)
        for j, cls_index in enumerate(test_classes.tolist()):
            m = meanings[cls_index]
            caption_image("test", f"world-test-{j:06d}", m.inverted() if rng.random() < 0.5 else m,
                          spec.test_references)
        allowed = np.flatnonzero(~np.isin(canonical, test_classes))
        for split, n in (("train", spec.train_per_language), ("val", spec.val_per_language)):
            for i in range(n):
                caption_image(split, f"world-{split}-{i:06d}", meanings[int(rng.choice(allowed))],
                              spec.captions_per_language)
        return world

    def _hard_test(self, meanings, index, canonical) -> list[WorldCaption]:
        """Pairs of unseen scenes that differ in exactly one attribute of one group, or in the relation only."""
        spec = self.spec
        rng = np.random.default_rng((spec.seed, 1))
        used = {int(canonical[index[m]]) for captions in self.captions.values() for c in captions
                for m in (c.scene, c.said)}
        out: list[WorldCaption] = []
        j = 0
        while j < 2 * spec.hard_test_pairs:
            base = meanings[int(rng.integers(len(meanings)))]
            variant = _one_change(base, rng)
            classes = {int(canonical[index[base]]), int(canonical[index[variant]])} if variant else set()
            if len(classes) < 2 or classes & used:
                continue
            used |= classes
            for m in (base, variant):
                seed = int(rng.integers(2**31))
                image_id = f"world-{HARD_TEST_SPLIT}-{j:06d}"
                for lang in spec.languages:
                    out.append(WorldCaption(image_id, f"{image_id}-{lang}", HARD_TEST_SPLIT, lang, m, seed, m,
                                            int(rng.integers(N_TEMPLATES))))
                j += 1
        return out


def _one_change(m: Meaning, rng: np.random.Generator) -> Meaning | None:
    """`m` with one attribute of one of its groups changed, or with another relation that is not its inverse
    (the inverse says the same fact); None when the change makes the two groups equal."""
    from .meaning import COLOURS, COUNTS, INVERSE_RELATION, RELATIONS, SHAPES, SIZES, Group

    choices = {"count": COUNTS, "size": SIZES, "colour": COLOURS, "shape": SHAPES}
    what = rng.integers(len(choices) * 2 + 1)
    if what == len(choices) * 2:
        others = [r for r in RELATIONS if r not in (m.relation, INVERSE_RELATION[m.relation])]
        return Meaning(m.subject, others[int(rng.integers(len(others)))], m.obj)
    field_name = list(choices)[int(what) // 2]
    group = m.subject if what % 2 == 0 else m.obj
    values = [v for v in choices[field_name] if v != getattr(group, field_name)]
    changed = Group(**{**asdict(group), field_name: values[int(rng.integers(len(values)))]})
    subject, obj = (changed, m.obj) if what % 2 == 0 else (m.subject, changed)
    return Meaning(subject, m.relation, obj) if subject != obj else None
