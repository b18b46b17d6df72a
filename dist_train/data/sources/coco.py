"""COCO-style caption files: the official `captions_*.json` and Karpathy's split files.

Both are detected by shape. An official file holds one split, named by --split or guessed from the
file name; a Karpathy file names the split of every image itself (its "restval" is training data).
Official files name images relative to their own folder (train2017/, val2017/), so each file can
have its own --images folder.
Translated COCO variants add a "language" (or "lang") field to each caption, which wins over --language.
Multilingual variants can name translation groups (captions that translate each other, what
sentence-translation evaluation needs) in a "translation_group" field of each caption; --group-by
image groups the captions of each image instead (for captions without that field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ._common import (GROUP_BY_CHOICES, Fields, existing_dir, existing_file, fingerprint, group_by_option,
                      group_string, language_option, read_input, split_option)
from .base import CliSource, FileImage, SourceRecord

_KARPATHY_SPLITS = {"restval": "train"}


def _load(path: Path) -> tuple[str, Any]:
    """("coco" or "karpathy", the parsed file). A file whose structure is wrong is a one-line error
    naming the key; a wrong entry inside the lists is left to the records (a reject each)."""
    try:
        data = json.loads(read_input(path))
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not a JSON file: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level is of type {type(data).__name__}, not an object")
    for key in ("images", "annotations"):
        if key in data and not isinstance(data[key], list):
            raise ValueError(f"{path}: {key!r} is of type {type(data[key]).__name__}, not a list")
    if isinstance(data.get("annotations"), list) and isinstance(data.get("images"), list):
        return "coco", data
    if isinstance(data.get("images"), list) and any(isinstance(img, dict) and "sentences" in img
                                                    for img in data["images"]):
        return "karpathy", data
    raise ValueError(
        f"{path}: neither COCO captions ({{'images': [...], 'annotations': [...]}}) "
        "nor Karpathy splits ({'images': [{'filename', 'split', 'sentences': [...]}]})"
    )


def _sentences(img: Any) -> list:
    """A Karpathy image's sentences; when they are not a list, one record stands for the image (rejected)."""
    if not isinstance(img, dict):
        return []
    sentences = img.get("sentences")
    return sentences if isinstance(sentences, list) else [None]


def _guess_split(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in ("train", "val", "test") if s in name), None)


def _karpathy_split(path: Path, index: int, img: dict) -> str | None:
    """The split of a Karpathy image; None for an entry that is not an object (it holds no captions)."""
    if not isinstance(img, dict):
        return None
    split = img.get("split")
    split = _KARPATHY_SPLITS.get(split, split)
    try:
        return split_option(split, f"{path}: image {index}")
    except ValueError as e:
        raise ValueError(f"{e} (Karpathy files name each image's split)") from None


def _language(fields: Fields, caption: dict, default: str) -> str | None:
    name = "language" if caption.get("language") else "lang"
    return fields.language(caption.get(name), name) or default


GROUP_FIELD = "translation_group"


class CocoSource(CliSource):
    name = "coco"
    cli_name = "coco"
    cli_help = "COCO caption JSON (official or Karpathy splits) plus an image folder"
    cli_example = (
        "dist-train pack coco --annotations annotations/captions_train2017.json "
        "--images coco/train2017 --annotations annotations/captions_val2017.json --images coco/val2017 "
        "--out shards/packed/coco"
    )

    def __init__(self, annotations: list[str | Path], images: str | Path | list[str | Path],
                 split: str | None = None, language: str = "en", group_by: str | None = None):
        """`images`: one folder for all annotation files, or a list of one per file, in the same order.
        `group_by="image"`: captions without a `translation_group` field are grouped by their image."""
        images = [images] if isinstance(images, (str, Path)) else images
        if not annotations:
            raise ValueError("--annotations: give at least one annotation file")
        if len(images) not in (1, len(annotations)):
            raise ValueError(f"--images: give one folder, or one per --annotations file ({len(annotations)}), "
                             f"not {len(images)}")
        self.annotations = [existing_file(p, "--annotations") for p in annotations]
        dirs = [existing_dir(p, "--images") for p in images]
        self.images = dirs * len(annotations) if len(dirs) == 1 else dirs
        self.split = split_option(split) if split is not None else None
        self.language = language_option(language)
        self.group_by = group_by_option(group_by)
        self._files: list[tuple[Path, Path, str, dict[str, int]]] = []  # (file, images, format, captions per split)
        self._errors: list[tuple[str, str]] = []  # entries that hold no record (an image that is not an object)
        self._fingerprint: dict | None = None
        for path, image_dir in zip(self.annotations, self.images):
            fmt, data = _load(path)
            self._files.append((path, image_dir, fmt, self._split_counts(path, fmt, data)))

    def _split_counts(self, path: Path, fmt: str, data: dict) -> dict[str, int]:
        """Captions per split of one file; a file whose split is unknown or invalid is a config error."""
        if fmt == "karpathy":
            if self.split is not None:
                raise ValueError(f"--split: {path} is a Karpathy split file, which names each image's split itself")
            counts: dict[str, int] = {}
            for i, img in enumerate(data["images"]):
                split = _karpathy_split(path, i, img)
                if split is None:
                    continue  # reported by records(), so that it shows in the summary
                counts[split] = counts.get(split, 0) + len(_sentences(img))
            return counts
        split = self.split or _guess_split(path)
        if split is None:
            raise ValueError(f"cannot tell the split of {path} from its name (no train, val or test in it): "
                             "pass --split")
        return {split: len(data["annotations"])}

    def _group(self, fields: Fields, caption: dict, image_id: str) -> str | None:
        """The caption's own `translation_group`, else its image's with --group-by image, else none."""
        own = fields.group(caption.get(GROUP_FIELD), GROUP_FIELD)
        if own is None and self.group_by == "image":
            return group_string(image_id)
        return own

    def splits(self) -> list[str]:
        return list(dict.fromkeys(s for *_, counts in self._files for s in counts))

    def count(self, split: str) -> int:
        return sum(counts.get(split, 0) for *_, counts in self._files)

    def records(self, split: str) -> Iterator[SourceRecord]:
        # Parsed files are not kept between splits: as Python objects they take many times their size on disk.
        for path, image_dir, fmt, counts in self._files:
            if split in counts:
                _, data = _load(path)
                if fmt == "karpathy":
                    yield from self._karpathy(path, image_dir, data, split)
                else:
                    yield from self._coco(path, image_dir, data, split)

    def _coco(self, path: Path, image_dir: Path, data: dict, split: str) -> Iterator[SourceRecord]:
        files: dict[Any, Any] = {}
        for i, img in enumerate(data["images"]):
            if isinstance(img, dict):
                try:
                    files[img.get("id")] = img.get("file_name")
                except TypeError:  # an unhashable id: no annotation can name it
                    self._note(path, f"images[{i}]: id is of type {type(img.get('id')).__name__}")
            else:
                self._note(path, f"images[{i}] is of type {type(img).__name__}, not an object")
        for i, ann in enumerate(data["annotations"]):
            fields = Fields(f"{path.name}: annotations[{i}]")
            if not isinstance(ann, dict):
                fields.bad("malformed_record", f"is of type {type(ann).__name__}, not an object")
                yield SourceRecord(None, None, None, "", "", split, defect=fields.defect)
                continue
            image_id = fields.id(ann.get("image_id"), "image_id")
            try:
                known = ann.get("image_id") in files
            except TypeError:
                known = False
            file_name = fields.path(files.get(ann.get("image_id")), f"file_name of image {image_id}") if known else None
            ann_id = fields.id(ann.get("id"), "id")
            yield SourceRecord(
                image=FileImage(str(image_dir / file_name)) if file_name else None,
                caption=fields.text(ann.get("caption"), "caption"),
                language=_language(fields, ann, self.language),
                image_id=image_id,
                caption_id=f"coco-{ann_id}" if ann_id else "",
                split=split,
                translation_group=self._group(fields, ann, image_id),
                defect=fields.defect,
            )

    def _karpathy(self, path: Path, image_dir: Path, data: dict, split: str) -> Iterator[SourceRecord]:
        for i, img in enumerate(data["images"]):
            if not isinstance(img, dict):
                self._note(path, f"images[{i}] is of type {type(img).__name__}, not an object (no captions read)")
            if _karpathy_split(path, i, img) != split:
                continue
            where = f"{path.name}: images[{i}]"
            image_fields = Fields(where)
            filename = image_fields.path(img.get("filename"), "filename")
            filepath = image_fields.path(img.get("filepath"), "filepath") or ""
            image = FileImage(str(image_dir / filepath / filename)) if filename else None
            image_id = image_fields.id(img["cocoid"] if "cocoid" in img else img.get("imgid"), "cocoid")
            sentences = img.get("sentences")
            if not isinstance(sentences, list):
                image_fields.bad("invalid_caption", f"sentences is of type {type(sentences).__name__}, not a list")
                yield SourceRecord(image, None, self.language, image_id, "", split, defect=image_fields.defect)
                continue
            for j, sentence in enumerate(sentences):
                fields = Fields(f"{where}.sentences[{j}]")
                fields.defect = image_fields.defect
                if not isinstance(sentence, dict):
                    fields.bad("malformed_record", f"is of type {type(sentence).__name__}, not an object")
                    yield SourceRecord(image, None, self.language, image_id, "", split, defect=fields.defect)
                    continue
                sent_id = fields.id(sentence.get("sentid"), "sentid")
                yield SourceRecord(
                    image=image,
                    caption=fields.text(sentence.get("raw"), "raw"),
                    language=_language(fields, sentence, self.language),
                    image_id=image_id,
                    caption_id=f"coco-{sent_id}" if sent_id else "",
                    split=split,
                    meta={"karpathy_split": img["split"]},
                    translation_group=self._group(fields, sentence, image_id),
                    defect=fields.defect,
                )

    def _note(self, path: Path, detail: str) -> None:
        error = ("malformed_input", f"{path}: {detail}")
        if error not in self._errors:
            self._errors.append(error)

    def source_errors(self) -> list[tuple[str, str]]:
        return list(self._errors)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "annotations": [str(p.resolve()) for p in self.annotations],
            "images": [str(p.resolve()) for p in self.images],
            "split": self.split,
            "language": self.language,
            **({"group_by": self.group_by} if self.group_by else {}),
            "input_files": self._input_files(),
        }

    def _input_files(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.annotations)
        return self._fingerprint

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--annotations", action="append", required=True, metavar="FILE",
                            help="caption JSON, official COCO or Karpathy format (repeat for several files)")
        parser.add_argument("--images", action="append", required=True, metavar="DIR",
                            help="image folder that file_name is relative to (Karpathy: filepath/filename); "
                                 "one for all files, or one per --annotations in the same order")
        parser.add_argument("--split", metavar="NAME",
                            help="split of official COCO files; without it, train, val or test from the file name")
        parser.add_argument("--language", default="en", metavar="CODE",
                            help="language of captions without their own language/lang field")
        parser.add_argument("--group-by", choices=GROUP_BY_CHOICES,
                            help="translation groups for captions without their own translation_group field: "
                                 "the captions of one image in distinct languages translate each other")

    @classmethod
    def from_args(cls, args) -> "CocoSource":
        return cls(args.annotations, args.images, split=args.split, language=args.language, group_by=args.group_by)
