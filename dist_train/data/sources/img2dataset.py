"""img2dataset's webdataset output: `*.tar` shards of `<key>.jpg`, `<key>.txt` and `<key>.json`.

img2dataset downloads from the web, so its shards are where truncated files turn up (a killed
download job, a full disk). A broken shard ends early instead of failing the run: what was read
before the break is yielded, and the break is reported through `source_errors()`.

img2dataset keeps the input table's extra columns (`--save_additional_columns`) in each sample's
`.json` and in the `.parquet` beside each shard (one row per sample, by `key`). --group-field names
the one that holds translation groups (which captions translate each other, what sentence-translation
evaluation needs), --language-field the one that holds each caption's language; each is read from
the `.json`, else from the `.parquet`.
"""

from __future__ import annotations

import glob
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from braceexpand import braceexpand

from ._common import Fields, fingerprint, language_option, split_option, text
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
    cli_help = "img2dataset's webdataset output (a folder of .tar shards)"
    cli_example = "dist-train pack img2dataset --input downloads/cc3m --language en --out shards/packed/cc3m"

    def __init__(self, input: str | Path, language: str | None = None, split: str = "train",
                 group_field: str | None = None, language_field: str | None = None):
        """`language`: of every caption, or of those without a `language_field` value; `group_field`:
        the extra column that holds translation groups (samples without a value have none)."""
        self.shards = shard_paths(input)
        if language is None and not language_field:
            raise ValueError("--language: give the captions' language, or --language-field naming the field "
                             "that holds it")
        self.language = language_option(language) if language is not None else None
        self.split = split_option(split)
        self.group_field = group_field or None
        self.language_field = language_field or None
        self._errors: list[tuple[str, str]] = []
        self._sidecar: tuple[Path, dict[str, dict[str, Any]]] | None = None  # the current shard's .parquet rows
        self._fingerprint: dict | None = None

    def splits(self) -> list[str]:
        return [self.split]

    def records(self, split: str) -> Iterator[SourceRecord]:
        if split != self.split:
            return
        for path in self.shards:
            for sample in self._samples(path):
                yield self._record(path, sample)

    def _samples(self, path: Path) -> Iterator[dict[str, Any]]:
        """The samples of one tar: runs of consecutive members with one key (the name up to the
        basename's first dot), as webdataset groups them. A sample that repeats a member name, or
        whose key was already used by an earlier run of members, comes with `__defect__` set: it
        alone is rejected and the members after it are read as usual."""
        errors: list[Exception] = []
        done: dict[str, int] = {}  # keys of finished samples -> their first member's position

        def finish(sample: dict[str, Any]) -> dict[str, Any]:
            key = sample["__key__"]
            if key in done and "__defect__" not in sample:
                sample["__defect__"] = (f"{path.name}: the members of sample {key!r} are not contiguous "
                                        f"(it started at member {done[key]}, then again at member {sample['__at__']})")
            done.setdefault(key, sample["__at__"])
            return sample

        sample: dict[str, Any] | None = None
        try:
            with open(path, "rb") as stream:
                from webdataset.tariterators import base_plus_ext, tar_file_iterator  # webdataset imports torch: not for --help

                for i, member in enumerate(tar_file_iterator(stream)):
                    key, suffix = base_plus_ext(member["fname"])
                    if key is None:
                        continue  # a name without an extension is no sample member (webdataset skips it too)
                    suffix = suffix.lower()
                    if sample is not None and sample["__key__"] != key:
                        yield finish(sample)
                        sample = None
                    if sample is None:
                        sample = {"__key__": key, "__at__": i}
                    if suffix in sample and "__defect__" not in sample:
                        sample["__defect__"] = f"{path.name}: member {member['fname']!r} appears twice"
                    sample.setdefault(suffix, member["data"])
        except Exception as e:  # tarfile, gzip and OS errors: whatever a broken file raises
            errors.append(e)
        if sample is not None:  # the sample read before a break is still yielded
            yield finish(sample)
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

    def _sidecar_rows(self, path: Path) -> dict[str, dict[str, Any]]:
        """The rows of the `.parquet` img2dataset writes beside a shard, by key ({} when there is none)."""
        if self._sidecar is None or self._sidecar[0] != path:
            rows: dict[str, dict[str, Any]] = {}
            parquet = path.with_suffix(".parquet")
            wanted = [f for f in (self.group_field, self.language_field) if f]
            if parquet.is_file():
                import pyarrow.parquet as pq

                try:
                    names = pq.read_schema(parquet).names
                    columns = [f for f in wanted if f in names]
                    if "key" in names and columns:
                        table = pq.read_table(parquet, columns=["key", *columns]).to_pydict()
                        for i, key in enumerate(table["key"]):
                            rows[str(key)] = {f: table[f][i] for f in columns}
                except Exception as e:  # an unreadable sidecar: the .json fields still count
                    self._report(parquet, f"cannot read it: {e}")
            self._sidecar = (path, rows)
        return self._sidecar[1]

    def _field(self, path: Path, key: str, info: dict[str, Any], name: str | None) -> Any:
        if not name:
            return None
        if info.get(name) not in (None, ""):
            return info[name]
        return self._sidecar_rows(path).get(key, {}).get(name)

    def _record(self, path: Path, sample: dict[str, Any]) -> SourceRecord:
        key = sample["__key__"]
        fields = Fields(f"{path.name}: sample {key!r}")
        if "__defect__" in sample:
            fields.bad("duplicate_member", sample["__defect__"].split(": ", 1)[1])
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        try:
            info = json.loads(sample["json"]) if "json" in sample else {}
        except ValueError:
            info = {}
        info = info if isinstance(info, dict) else {}
        language = fields.language(self._field(path, key, info, self.language_field), self.language_field or "")
        # img2dataset's own fields (url, status, sizes, exif, sha256, ...) and the input's extra columns, as
        # it stored them; the caption is the sample's text already
        meta = {k: v for k, v in info.items() if k != "caption"}
        return SourceRecord(
            image=BytesImage(image) if image is not None else None,
            caption=text(sample["txt"]) if "txt" in sample else None,
            language=language or self.language,
            image_id=fields.id(info.get("key") or key, "key"),
            caption_id=f"{path.stem}-{key}",
            split=self.split,
            meta=meta,
            translation_group=fields.group(self._field(path, key, info, self.group_field), self.group_field or ""),
            defect=fields.defect,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "shards": [str(p.resolve()) for p in self.shards],
            "language": self.language,
            "split": self.split,
            **({"group_field": self.group_field} if self.group_field else {}),
            **({"language_field": self.language_field} if self.language_field else {}),
            "input_files": self._input_files(),
        }

    def _input_files(self) -> dict:
        """The tars by size and mtime (hashing gigabytes of images on every run costs too much), the
        `.parquet` sidecars with their content too: a re-downloaded or rewritten shard shows in its size."""
        if self._fingerprint is None:
            sidecars = [p.with_suffix(".parquet") for p in self.shards if p.with_suffix(".parquet").is_file()]
            self._fingerprint = {**fingerprint(self.shards, content=False), **fingerprint(sidecars)}
        return self._fingerprint

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--input", required=True, metavar="DIR",
                            help="img2dataset output folder, or a glob or brace pattern of .tar files")
        parser.add_argument("--language", metavar="CODE",
                            help="language of every caption (img2dataset records none), or of those without a "
                                 "--language-field value; required unless --language-field is given")
        parser.add_argument("--split", default="train", metavar="NAME", help="split to put every sample in")
        parser.add_argument("--language-field", metavar="NAME",
                            help="the additional column (in each .json or the shard's .parquet) holding each "
                                 "caption's language")
        parser.add_argument("--group-field", metavar="NAME",
                            help="the additional column (in each .json or the shard's .parquet) holding "
                                 "translation groups: captions with equal values translate each other")

    @classmethod
    def from_args(cls, args) -> "Img2datasetSource":
        return cls(args.input, language=args.language, split=args.split, group_field=args.group_field,
                   language_field=args.language_field)
