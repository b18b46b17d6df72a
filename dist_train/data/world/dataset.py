"""The built-in benchmark's splits, following Globetrotter's protocol (paper section 4, appendix B.4).

- train and val: every image is captioned in exactly one language and images are disjoint across
  languages (each language gets its own scenes, split 80/20 into train and val by default sizes);
  a configurable fraction of training captions describe another scene, as web captions often do.
- test: the same scenes captioned in every language, the ground truth for translation by
  retrieval. Test meanings are unique, also up to saying the relation from the other side ("A
  left of B" = "B right of A"), and never occur in train or val, so test sentences are unseen.

Everything is a function of the spec and its seed.
"""

from __future__ import annotations

import json

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .languages import LANGUAGES, N_TEMPLATES, get_captioner
from .meaning import Meaning, all_meanings

SPLITS = ("train", "val", "test")


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

    def __post_init__(self) -> None:
        unknown = [lang for lang in self.languages if lang not in LANGUAGES]
        if unknown:
            raise ValueError(f"the built-in benchmark has no language {', '.join(unknown)}; it has {', '.join(LANGUAGES)}")
        if len(set(self.languages)) != len(self.languages) or not self.languages:
            raise ValueError(f"languages must be distinct and non-empty, got {self.languages}")
        if not 0.0 <= self.mismatch_fraction < 1.0:
            raise ValueError(f"mismatch_fraction must be in [0, 1), got {self.mismatch_fraction}")
        if min(self.train_per_language, self.val_per_language, self.test_scenes) < 0 or self.image_size < 16:
            raise ValueError("sizes must be >= 0 and image_size >= 16")

    @property
    def name(self) -> str:
        return f"world-{self.preset}"

    def count(self, split: str) -> int:
        n = {"train": self.train_per_language, "val": self.val_per_language, "test": self.test_scenes}[split]
        return n * len(self.languages)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


PRESETS = {
    # tests: seconds to pack, a few shards per split
    "tiny": WorldSpec("tiny", train_per_language=24, val_per_language=6, test_scenes=24, image_size=64,
                      samples_per_shard=128),
    # the demo: trains in minutes on 2 cores
    "demo": WorldSpec("demo", train_per_language=320, val_per_language=80, test_scenes=100, image_size=64,
                      samples_per_shard=1000),
    # benchmarks and longer experiments
    "large": WorldSpec("large", train_per_language=8000, val_per_language=2000, test_scenes=500, image_size=128,
                       samples_per_shard=5000),
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
        return world
