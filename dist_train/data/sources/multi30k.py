"""Multi30K (github.com/multi30k/dataset), task 1: Flickr30k images captioned in en, de, fr and cs.

Layout of a checkout of the repository:

    data/task1/image_splits/<split>.txt   one image file name per line
    data/task1/raw/<split>.<lang>.gz      one caption per line, line i describing image i

Not every split has every language. The images come from the Flickr30k image folder, except
test_2017_mscoco's: its lines name COCO 2014 images ("COCO_val2014_000000398076.jpg#657409", the
COCO caption id after the "#"), found under --coco-images/val2014/ when that option is given.
Caption files are read as bytes and decoded line by line, so a line of invalid UTF-8 becomes one
rejected record rather than an error for the whole file.

Task 1's caption files are parallel: line i of every language is a translation of line i of the
others (the English caption, translated). Every record therefore carries the translation group
`multi30k-<split>-<line>`, shared by that line's captions in all languages.
"""

from __future__ import annotations

import glob
import gzip
from pathlib import Path
from typing import Any, Iterator

from ._common import existing_dir, fingerprint, read_input, split_option, text
from .base import CliSource, FileImage, SourceRecord

SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
_OUR_SPLIT = {"test_2016_flickr": "test"}  # the standard test set; the later ones keep their names


def _lines(path: Path) -> list[bytes]:
    data = read_input(path)
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, ValueError) as e:  # not gzip, or cut short
            raise ValueError(f"{path}: cannot decompress it: {e}") from None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def _caption_files(raw: Path, split: str, languages: list[str] | None) -> dict[str, Path]:
    """Language -> caption file of one split, in the order of `languages` (default: all, sorted)."""
    found: dict[str, Path] = {}
    for path in sorted(raw.glob(f"{glob.escape(split)}.*")):  # "train.de" sorts before "train.de.gz"
        language = path.name[len(split) + 1:].removesuffix(".gz")
        if "." not in language:
            found.setdefault(language, path)
    return {lang: found[lang] for lang in (languages or sorted(found)) if lang in found}


class Multi30kSource(CliSource):
    name = "multi30k"
    cli_name = "multi30k"
    cli_help = "a checkout of the Multi30K repository (task 1) plus the Flickr30k images"
    cli_example = ("dist-train pack multi30k --root multi30k-dataset --images flickr30k-images "
                   "--out shards/packed/multi30k")

    def __init__(self, root: str | Path, images: str | Path, splits: list[str] | None = None,
                 languages: list[str] | None = None, coco_images: str | Path | None = None):
        """`splits` in Multi30K's names (default: all of SPLITS that exist); `languages` as in the
        caption file names (default: all found); `coco_images`: the COCO 2014 folder holding
        train2014/ and val2014/ (default: COCO images are looked for in `images`)."""
        self.root = existing_dir(root, "--root")
        self.images = existing_dir(images, "--images")
        self.coco_images = existing_dir(coco_images, "--coco-images") if coco_images is not None else None
        task = self.root / "data" / "task1"
        names = splits or [s for s in SPLITS if (task / "image_splits" / f"{s}.txt").is_file()]
        if not names:
            raise ValueError(f"--root: no Multi30K image lists in {task / 'image_splits'}")
        # our split name -> (Multi30K split name, image list, caption file per language, number of images)
        self._splits: dict[str, tuple[str, Path, dict[str, Path], int]] = {}
        self._fingerprint: dict | None = None
        for name in names:
            image_list = task / "image_splits" / f"{name}.txt"
            if not image_list.is_file():
                raise ValueError(f"--splits: Multi30K has no split {name!r} here: no {image_list}")
            ours = split_option(_OUR_SPLIT.get(name, name), "--splits")
            if ours in self._splits:
                raise ValueError(f"--splits: {self._splits[ours][0]} and {name} would both be split {ours!r}")
            captions = _caption_files(task / "raw", name, languages)
            if not captions:
                if splits:
                    raise ValueError(f"--splits: no caption files for {name} in {task / 'raw'}")
                continue
            n = len(_lines(image_list))
            for path in captions.values():
                if (m := len(_lines(path))) != n:
                    raise ValueError(f"{path} has {m} lines but {image_list} has {n}: caption line i must "
                                     "describe image i")
            self._splits[ours] = (name, image_list, captions, n)
        missing = [lang for lang in languages or [] if not any(lang in c for _, _, c, _ in self._splits.values())]
        if missing:
            raise ValueError(f"--languages: no caption files for {', '.join(missing)} in {task / 'raw'}")
        if not self._splits:
            raise ValueError(f"--root: no Multi30K caption files in {task / 'raw'}")

    def splits(self) -> list[str]:
        return list(self._splits)

    def count(self, split: str) -> int:
        if split not in self._splits:
            return 0
        _, _, captions, n = self._splits[split]
        return n * len(captions)

    def records(self, split: str) -> Iterator[SourceRecord]:
        """Image by image, each image's captions in the order of the languages."""
        if split not in self._splits:
            return
        name, image_list, captions, _ = self._splits[split]
        texts = {lang: _lines(path) for lang, path in captions.items()}
        for i, line in enumerate(_lines(image_list)):
            image_name = line.decode("utf-8", "replace").strip().split("#")[0]
            image = FileImage(str(self._image_path(image_name))) if image_name else None
            for lang, lines in texts.items():
                yield SourceRecord(
                    image=image,
                    caption=text(lines[i]),
                    language=lang,
                    image_id=image_name,
                    caption_id=f"multi30k-{name}-{i + 1}-{lang}",
                    split=split,
                    translation_group=f"multi30k-{name}-{i + 1}",
                )

    def _image_path(self, name: str) -> Path:
        if self.coco_images is not None and name.startswith("COCO_"):
            return self.coco_images / name.split("_")[1] / name  # COCO_val2014_... is in val2014/
        return self.images / name

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "root": str(self.root.resolve()),
            "images": str(self.images.resolve()),
            "coco_images": str(self.coco_images.resolve()) if self.coco_images is not None else None,
            "splits": {ours: {"multi30k_split": name, "languages": list(captions)}
                       for ours, (name, _, captions, _) in self._splits.items()},
            "translation_groups": "line",  # packs made before groups existed have none: not resumed into one
            "input_files": self._input_files(),
        }

    def _input_files(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = fingerprint([p for _, image_list, captions, _ in self._splits.values()
                                             for p in (image_list, *captions.values())])
        return self._fingerprint

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--root", required=True, metavar="DIR", help="checkout of github.com/multi30k/dataset")
        parser.add_argument("--images", required=True, metavar="DIR", help="the Flickr30k image folder")
        parser.add_argument("--coco-images", metavar="DIR",
                            help="COCO 2014 folder with train2014/ and val2014/, for test_2017_mscoco")
        parser.add_argument("--splits", metavar="LIST",
                            help=f"comma-separated Multi30K splits; without it, those found of {','.join(SPLITS)}; "
                                 "test_2016_flickr is packed as test")
        parser.add_argument("--languages", metavar="LIST",
                            help="comma-separated caption languages, e.g. en,de; without it, all found")

    @classmethod
    def from_args(cls, args) -> "Multi30kSource":
        def as_list(value: str | None) -> list[str] | None:
            return [s.strip() for s in value.split(",") if s.strip()] if value else None

        return cls(args.root, args.images, splits=as_list(args.splits), languages=as_list(args.languages),
                   coco_images=args.coco_images)
