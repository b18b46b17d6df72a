"""img2dataset's webdataset output: `*.tar` shards of `<key>.jpg`, `<key>.txt` and `<key>.json`.

img2dataset downloads from the web, so its shards are where truncated files turn up (a killed
download job, a full disk). A broken shard ends early instead of failing the run: what was read
before the break is yielded, and the break is reported through `source_errors()`.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from braceexpand import braceexpand
from webdataset.tariterators import group_by_keys, tar_file_iterator

from ._common import id_string, language_option, split_option, text
from .base import BytesImage, CliSource, SourceRecord

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # img2dataset's --encode_format choices


def shard_paths(spec: str | Path) -> list[Path]:
    """The tars of a folder, or of a glob or brace pattern ("out/{00000..00009}.tar"), in sorted order."""
    if Path(spec).is_dir():
        paths = sorted(Path(spec).glob("*.tar"))
        if not paths:
            raise ValueError(f"--input: no .tar files in {spec}")
        return paths
    paths = []
    for pattern in braceexpand(str(spec)):
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise ValueError(f"--input: no file matches {pattern}")
        paths += [Path(m) for m in matches]
    return paths


def _has_end_marker(path: Path) -> bool:
    """Whether the tar ends with the zero blocks a finished tar ends with. Python's tarfile takes a
    tar cut at a header boundary for a complete one, so this is how such a cut is noticed."""
    size = path.stat().st_size
    if size < 1024 or size % 512:
        return False
    with open(path, "rb") as f:
        f.seek(size - 1024)
        return f.read(1024) == bytes(1024)


def _error_message(e: Exception) -> str:
    # webdataset appends " @ <file object>" to the message and the stream and url to the args.
    message = str(e.args[0]) if e.args else type(e).__name__
    return message.split(" @ ")[0]


class Img2datasetSource(CliSource):
    name = "img2dataset"
    cli_name = "img2dataset"
    cli_help = "img2dataset's webdataset output (a folder of .tar shards), in one language"
    cli_example = "dist-train pack img2dataset --input downloads/cc3m --language en --out shards/packed/cc3m"

    def __init__(self, input: str | Path, language: str, split: str = "train"):
        self.shards = shard_paths(input)
        self.language = language_option(language)
        self.split = split_option(split)
        self._errors: list[tuple[str, str]] = []

    def splits(self) -> list[str]:
        return [self.split]

    def records(self, split: str) -> Iterator[SourceRecord]:
        if split != self.split:
            return
        for path in self.shards:
            for sample in self._samples(path):
                yield self._record(path, sample)

    def _samples(self, path: Path) -> Iterator[dict[str, Any]]:
        """The samples of one tar, grouped by key as webdataset groups them."""
        errors: list[Exception] = []

        def members(stream) -> Iterator[dict[str, Any]]:
            # Ends quietly at a read error, so that the sample being grouped is still yielded.
            try:
                for member in tar_file_iterator(stream):
                    yield dict(member, __url__=str(path))  # group_by_keys wants the url
            except Exception as e:  # tarfile, gzip and OS errors: whatever a broken file raises
                errors.append(e)

        try:
            with open(path, "rb") as stream:
                yield from group_by_keys(members(stream))
        except Exception as e:  # unreadable file, or a member name repeated within a sample
            errors.append(e)
        if errors:
            self._report(path, _error_message(errors[0]))
        elif not _has_end_marker(path):
            self._report(path, "the file ends without the end-of-archive marker (truncated?)")

    def _report(self, path: Path, message: str) -> None:
        error = ("corrupt_input_shard", f"{path}: {message}")
        log.warning("%s: %s; the samples read before the break are kept", *error)
        if error not in self._errors:
            self._errors.append(error)

    def source_errors(self) -> list[tuple[str, str]]:
        return list(self._errors)

    def _record(self, path: Path, sample: dict[str, Any]) -> SourceRecord:
        key = sample["__key__"]
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        try:
            info = json.loads(sample["json"]) if "json" in sample else {}
        except ValueError:
            info = {}
        info = info if isinstance(info, dict) else {}
        return SourceRecord(
            image=BytesImage(image) if image is not None else None,
            caption=text(sample["txt"]) if "txt" in sample else None,
            language=self.language,
            image_id=id_string(info.get("key") or key),
            caption_id=f"{path.stem}-{key}",
            split=self.split,
            meta={"url": info["url"]} if "url" in info else {},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "shards": [str(p.resolve()) for p in self.shards],
            "language": self.language,
            "split": self.split,
        }

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--input", required=True, metavar="DIR",
                            help="img2dataset output folder, or a glob or brace pattern of .tar files")
        parser.add_argument("--language", required=True, metavar="CODE",
                            help="language of every caption (img2dataset records none)")
        parser.add_argument("--split", default="train", metavar="NAME", help="split to put every sample in")

    @classmethod
    def from_args(cls, args) -> "Img2datasetSource":
        return cls(args.input, language=args.language, split=args.split)
