"""The built-in benchmark as a packer source: scenes are rendered in the packer's workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..schema import ORIGIN_SYNTHETIC, Provenance
from ..world.dataset import HARD_TEST_SPLIT, PRESETS, SPLITS, World, get_spec
from ..world.languages import LANGUAGES
from ..world.meaning import Meaning
from ..world.render import render
from .base import CliSource, SourceRecord


@dataclass(frozen=True)
class RenderedImage:
    """An image drawn on demand from its scene (in the packer's worker processes)."""

    scene: dict
    seed: int
    size: int

    def read(self, max_bytes: int | None = None):  # a decoded image: no bytes to bound
        return render(Meaning.from_dict(self.scene), self.seed, self.size)


class WorldSource(CliSource):
    cli_name = "world"
    cli_help = "the built-in multilingual benchmark (rendered scenes, captions in 14 languages)"
    cli_example = "dist-train pack world --preset tiny --out shards/packed/world-tiny"

    def __init__(self, preset: str = "tiny", **overrides):
        self.spec = get_spec(preset, **overrides)
        self.world = World.generate(self.spec)
        self.name = self.spec.name

    def splits(self) -> list[str]:
        return [s for s in (*SPLITS, HARD_TEST_SPLIT) if self.world.captions.get(s)]

    def count(self, split: str) -> int:
        return len(self.world.captions[split])

    def records(self, split: str) -> Iterator[SourceRecord]:
        for c in self.world.captions[split]:
            yield SourceRecord(
                image=RenderedImage(c.scene.to_dict(), c.scene_seed, self.spec.image_size),
                caption=c.caption,
                language=c.language,
                image_id=c.image_id,
                caption_id=c.caption_id,
                split=split,
                provenance=Provenance(origin=ORIGIN_SYNTHETIC),
                meta=c.meta(),
            )

    def describe(self) -> dict:
        return {"source": self.name, "spec": self.spec.to_dict()}

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="size preset (default: tiny)")
        parser.add_argument("--seed", type=int, help="random seed (default: 0)")
        parser.add_argument("--languages", help=f"comma-separated subset of {','.join(LANGUAGES)} (default: all)")
        parser.add_argument("--train-per-language", type=int,
                            help="training images per language (task 2: training images)")
        parser.add_argument("--val-per-language", type=int,
                            help="validation images per language (task 2: validation images)")
        parser.add_argument("--test-scenes", type=int, help="test scenes, each captioned in every language")
        parser.add_argument("--captions-per-language", type=int,
                            help="task 2 (presets pivot, pivot-tiny): caption every train and val image this many "
                                 "times in every language, independently (default: 0, one language per image)")
        parser.add_argument("--test-captions-per-language", type=int,
                            help="task 2: references per language of each test image (default: "
                                 "--captions-per-language)")
        parser.add_argument("--hard-test-pairs", type=int,
                            help="pairs of test scenes that differ in one attribute or the relation only, in a "
                                 "second test split 'test_hard' (default: 0, none)")
        parser.add_argument("--image-size", type=int, help="image side in pixels")
        parser.add_argument("--mismatch-fraction", type=float,
                            help="fraction of training captions that describe another scene (default: 0.1)")

    @classmethod
    def from_args(cls, args) -> "WorldSource":
        languages = tuple(s.strip() for s in args.languages.split(",")) if args.languages else None
        return cls(args.preset, seed=args.seed, languages=languages, train_per_language=args.train_per_language,
                   val_per_language=args.val_per_language, test_scenes=args.test_scenes,
                   hard_test_pairs=args.hard_test_pairs, captions_per_language=args.captions_per_language,
                   test_captions_per_language=args.test_captions_per_language,
                   image_size=args.image_size, mismatch_fraction=args.mismatch_fraction)
