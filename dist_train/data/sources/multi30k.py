"""Multi30K (github.com/multi30k/dataset): Flickr30k images captioned in en, de, fr and cs (task 1),
or five times each in en and de (task 2, `--task 2`).

Layout of a checkout of the repository:

    data/task1/image_splits/<split>.txt          one image file name per line
    data/task1/raw/<split>.<lang>.gz             one caption per line, line i describing image i
    data/task2/image_splits/<split>_images.txt   one image file name per line
    data/task2/raw/<split>.<n>.<lang>.gz         n = 1..5: the n-th caption of image i on line i

Not every split has every language. The images come from the Flickr30k image folder, except
test_2017_mscoco's: its lines name COCO 2014 images ("COCO_val2014_000000398076.jpg#657409", the
COCO caption id after the "#"), found under --coco-images/val2014/ when that option is given.
Caption files are read as bytes and decoded line by line, so a line of invalid UTF-8 becomes one
rejected record rather than an error for the whole file.

Task 1's caption files are parallel: line i of every language is a translation of line i of the
others (the English caption, translated). Every record therefore carries the translation group
`multi30k-<split>-<line>`, shared by that line's captions in all languages.

Task 2's captions were written independently in each language (crowdsourced descriptions of the
image, the data of captioners trained on unpaired captions): none translates another, so its
records carry no translation group. Its layout as in the repository at a3d2e0d: train (29 000 images),
val (1 014) and test_2016 (1 000, packed as test) have 5 caption files per language, en and de;
test_2017 has an image list and no captions. Each file found is packed: a language or a caption
number missing for a split leaves only those captions out, as a language missing in task 1 does.
"""

from __future__ import annotations

import glob
import gzip
from pathlib import Path
from typing import Any, Iterator

from ._common import existing_dir, fingerprint, read_input, split_option, text
from .base import CliSource, FileImage, SourceRecord

SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
TASK2_SPLITS = ("train", "val", "test_2016", "test_2017")
# the standard test set; the later ones keep their names
_OUR_SPLIT = {1: {"test_2016_flickr": "test"}, 2: {"test_2016": "test"}}
_SPLITS = {1: SPLITS, 2: TASK2_SPLITS}
_IMAGE_LIST = {1: "{}.txt", 2: "{}_images.txt"}


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


def _caption_files(raw: Path, split: str, languages: list[str] | None,
                   task: int = 1) -> list[tuple[str, int | None, Path]]:
    """(language, caption number, file) of one split, in the order of `languages` (default: all,
    sorted), then by number (task 2's `<split>.<n>.<lang>`; None in task 1's `<split>.<lang>`)."""
    found: dict[tuple[str, int | None], Path] = {}
    for path in sorted(raw.glob(f"{glob.escape(split)}.*")):  # "train.de" sorts before "train.de.gz"
        parts = path.name[len(split) + 1:].removesuffix(".gz").split(".")
        if task == 1 and len(parts) == 1:
            found.setdefault((parts[0], None), path)
        elif task == 2 and len(parts) == 2 and parts[0].isdigit() and int(parts[0]) > 0:
            found.setdefault((parts[1], int(parts[0])), path)
    by_language: dict[str, list[tuple[int | None, Path]]] = {}
    for (lang, n), path in sorted(found.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
        by_language.setdefault(lang, []).append((n, path))
    return [(lang, n, path) for lang in languages or sorted(by_language) for n, path in by_language.get(lang, [])]


class Multi30kSource(CliSource):
    name = "multi30k"
    cli_name = "multi30k"
    cli_help = "a checkout of the Multi30K repository (task 1 or 2) plus the Flickr30k images"
    cli_example = ("dist-train pack multi30k --root multi30k-dataset --images flickr30k-images "
                   "--out shards/packed/multi30k")

    def __init__(self, root: str | Path, images: str | Path, splits: list[str] | None = None,
                 languages: list[str] | None = None, coco_images: str | Path | None = None, task: int = 1):
        """`splits` in Multi30K's names (default: all of the task's splits that exist); `languages` as
        in the caption file names (default: all found); `coco_images`: the COCO 2014 folder holding
        train2014/ and val2014/ (default: COCO images are looked for in `images`); `task`: 1 or 2."""
        if task not in _SPLITS:
            raise ValueError(f"--task: Multi30K has tasks 1 and 2, not {task!r}")
        self.task = task
        self.root = existing_dir(root, "--root")
        self.images = existing_dir(images, "--images")
        self.coco_images = existing_dir(coco_images, "--coco-images") if coco_images is not None else None
        folder = self.root / "data" / f"task{task}"
        image_list_of = _IMAGE_LIST[task].format
        names = splits or [s for s in _SPLITS[task] if (folder / "image_splits" / image_list_of(s)).is_file()]
        if not names:
            raise ValueError(f"--root: no Multi30K image lists in {folder / 'image_splits'}")
        # our split name -> (Multi30K split name, image list, (language, number, file) of each caption file,
        # number of images)
        self._splits: dict[str, tuple[str, Path, list[tuple[str, int | None, Path]], int]] = {}
        self._fingerprint: dict | None = None
        for name in names:
            image_list = folder / "image_splits" / image_list_of(name)
            if not image_list.is_file():
                raise ValueError(f"--splits: Multi30K has no split {name!r} here: no {image_list}")
            ours = split_option(_OUR_SPLIT[task].get(name, name), "--splits")
            if ours in self._splits:
                raise ValueError(f"--splits: {self._splits[ours][0]} and {name} would both be split {ours!r}")
            captions = _caption_files(folder / "raw", name, languages, task)
            if not captions:
                if splits:
                    raise ValueError(f"--splits: no caption files for {name} in {folder / 'raw'}")
                continue
            n = len(_lines(image_list))
            for _, _, path in captions:
                if (m := len(_lines(path))) != n:
                    raise ValueError(f"{path} has {m} lines but {image_list} has {n}: caption line i must "
                                     "describe image i")
            self._splits[ours] = (name, image_list, captions, n)
        found = {lang for _, _, captions, _ in self._splits.values() for lang, _, _ in captions}
        missing = [lang for lang in languages or [] if lang not in found]
        if missing:
            raise ValueError(f"--languages: no caption files for {', '.join(missing)} in {folder / 'raw'}")
        if not self._splits:
            raise ValueError(f"--root: no Multi30K caption files in {folder / 'raw'}")

    def splits(self) -> list[str]:
        return list(self._splits)

    def count(self, split: str) -> int:
        if split not in self._splits:
            return 0
        _, _, captions, n = self._splits[split]
        return n * len(captions)

    def records(self, split: str) -> Iterator[SourceRecord]:
        """Image by image, each image's captions in the order of the languages (task 2: then by number)."""
        if split not in self._splits:
            return
        name, image_list, captions, _ = self._splits[split]
        texts = [(lang, number, _lines(path)) for lang, number, path in captions]
        for i, line in enumerate(_lines(image_list)):
            image_name = line.decode("utf-8", "replace").strip().split("#")[0]
            image = FileImage(str(self._image_path(image_name))) if image_name else None
            for lang, number, lines in texts:
                if number is None:  # task 1: line i of every language translates the English
                    caption_id, group = f"multi30k-{name}-{i + 1}-{lang}", f"multi30k-{name}-{i + 1}"
                else:  # task 2: independent captions, no translations
                    caption_id, group = f"multi30k-task2-{name}-{i + 1}-{number}-{lang}", None
                yield SourceRecord(
                    image=image,
                    caption=text(lines[i]),
                    language=lang,
                    image_id=image_name,
                    caption_id=caption_id,
                    split=split,
                    translation_group=group,
                )

    def _image_path(self, name: str) -> Path:
        if self.coco_images is not None and name.startswith("COCO_"):
            return self.coco_images / name.split("_")[1] / name  # COCO_val2014_... is in val2014/
        return self.images / name

    def describe(self) -> dict[str, Any]:
        splits = {}
        for ours, (name, _, captions, _) in self._splits.items():
            languages = list(dict.fromkeys(lang for lang, _, _ in captions))
            splits[ours] = {"multi30k_split": name, "languages": languages}
            if self.task == 2:
                splits[ours]["captions"] = {lang: [n for have, n, _ in captions if have == lang] for lang in languages}
        described = {
            "source": self.name,
            "root": str(self.root.resolve()),
            "images": str(self.images.resolve()),
            "coco_images": str(self.coco_images.resolve()) if self.coco_images is not None else None,
            "splits": splits,
            "translation_groups": "line",  # packs made before groups existed have none: not resumed into one
            "input_files": self._input_files(),
        }
        if self.task == 2:  # task 1's description stays as it was, so its packs resume
            described.update(task=2, translation_groups="none")
        return described

    def _input_files(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = fingerprint([p for _, image_list, captions, _ in self._splits.values()
                                             for p in (image_list, *(path for _, _, path in captions))])
        return self._fingerprint

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--root", required=True, metavar="DIR", help="checkout of github.com/multi30k/dataset")
        parser.add_argument("--images", required=True, metavar="DIR", help="the Flickr30k image folder")
        parser.add_argument("--coco-images", metavar="DIR",
                            help="COCO 2014 folder with train2014/ and val2014/, for test_2017_mscoco")
        parser.add_argument("--task", type=int, choices=sorted(_SPLITS), default=1,
                            help="1: parallel captions (translations of the English), grouped by line; 2: five "
                                 "independent captions per image and language, no translation groups (default: 1)")
        parser.add_argument("--splits", metavar="LIST",
                            help=f"comma-separated Multi30K splits; without it, those found of {','.join(SPLITS)} "
                                 f"(task 2: {','.join(TASK2_SPLITS)}); test_2016_flickr (task 2: test_2016) is "
                                 "packed as test")
        parser.add_argument("--languages", metavar="LIST",
                            help="comma-separated caption languages, e.g. en,de; without it, all found")

    @classmethod
    def from_args(cls, args) -> "Multi30kSource":
        def as_list(value: str | None) -> list[str] | None:
            return [s.strip() for s in value.split(",") if s.strip()] if value else None

        return cls(args.root, args.images, splits=as_list(args.splits), languages=as_list(args.languages),
                   coco_images=args.coco_images, task=args.task)
