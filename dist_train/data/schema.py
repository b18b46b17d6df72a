"""The one sample schema of the project, as stored in WebDataset shards.

A sample is one caption of one image. In a shard it is a group of tar members sharing a key:

    <key>.jpg    the image, baseline RGB JPEG bytes
    <key>.txt    the caption, UTF-8
    <key>.json   everything else (see `Sample`), UTF-8 JSON

Keys hold only ``[A-Za-z0-9_-]``: readers such as Ray's and webdataset's split a member name
into key and field at the first dot (`sample_key` says how an id becomes one). Later stages add members of their own (tokens, image
features) under the same key; the three above are always present.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1

# Where a caption came from.
ORIGIN_HUMAN = "human"  # written in this language by a person
ORIGIN_SYNTHETIC = "synthetic"  # written in this language by a program (the built-in benchmark's captioner)
ORIGIN_MACHINE = "machine"  # machine-translated from a caption in another language
ORIGINS = (ORIGIN_HUMAN, ORIGIN_SYNTHETIC, ORIGIN_MACHINE)

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_KEY_LENGTH = 100


@dataclass(frozen=True)
class Provenance:
    """Who wrote a caption: human and machine captions must stay distinguishable."""

    origin: str = ORIGIN_HUMAN
    source_language: str | None = None  # for machine translations: the language translated from
    source_caption_id: str | None = None  # ... and the caption translated
    translator: str | None = None  # ... and the system that translated it (e.g. "marian:opus-mt-en-de")

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"provenance origin must be one of {ORIGINS}, got {self.origin!r}")
        if self.origin == ORIGIN_MACHINE and not (self.source_language and self.translator):
            raise ValueError("a machine-translated caption must name its source language and translator")


@dataclass(frozen=True)
class Sample:
    """One caption of one image, with everything needed to trace it back to its source."""

    key: str
    image: bytes  # JPEG
    caption: str
    language: str  # canonical BCP-47 tag (ISO 639-1 where one exists): "en", "pt-BR", "zh-Hans"
    image_id: str
    caption_id: str
    source: str  # dataset the sample came from: "world-tiny", "coco", "multi30k", ...
    split: str
    width: int
    height: int
    provenance: Provenance = field(default_factory=Provenance)
    meta: dict[str, Any] = field(default_factory=dict)  # free-form, JSON-serialisable
    # Captions with equal groups translate each other (a multilingual test set's ground truth for
    # sentence translation). None: the source declared none; see `dist_train.train.data.caption_group`
    # for what evaluation and training fall back to.
    translation_group: str | None = None

    def __post_init__(self) -> None:
        if self.translation_group is not None and not (isinstance(self.translation_group, str)
                                                       and self.translation_group):
            raise ValueError(f"translation_group must be a non-empty string or None, got {self.translation_group!r}")

    def metadata(self) -> dict[str, Any]:
        """The content of the `.json` member (`translation_group` only when there is one, so datasets
        packed before the field existed read back, and are written, byte for byte as before)."""
        md = {
            "schema_version": SCHEMA_VERSION,
            "image_id": self.image_id,
            "caption_id": self.caption_id,
            "language": self.language,
            "source": self.source,
            "split": self.split,
            "width": self.width,
            "height": self.height,
            "provenance": asdict(self.provenance),
            "meta": self.meta,
        }
        if self.translation_group is not None:
            md["translation_group"] = self.translation_group
        return md

    def to_wds(self) -> dict[str, Any]:
        """The sample as webdataset's TarWriter takes it (bytes values are written as they are)."""
        return {
            "__key__": self.key,
            "jpg": self.image,
            "txt": self.caption.encode("utf-8"),
            "json": json.dumps(self.metadata(), ensure_ascii=False, sort_keys=True).encode("utf-8"),
        }

    @classmethod
    def from_wds(cls, raw: dict[str, Any]) -> "Sample":
        """Inverse of `to_wds`, from the undecoded member bytes of one sample."""
        md = json.loads(raw["json"])
        return cls(
            key=raw["__key__"],
            image=raw["jpg"],
            caption=raw["txt"].decode("utf-8") if isinstance(raw["txt"], bytes) else raw["txt"],
            language=md["language"],
            image_id=md["image_id"],
            caption_id=md["caption_id"],
            source=md["source"],
            split=md["split"],
            width=md["width"],
            height=md["height"],
            provenance=Provenance(**md["provenance"]),
            meta=md.get("meta", {}),
            translation_group=md.get("translation_group"),
        )


def normalize_id(value: str) -> str:
    """Ids in Unicode NFC, so that one id typed as composed or decomposed characters is one id."""
    return unicodedata.normalize("NFC", value)


def sample_key(caption_id: str) -> str:
    """A shard key for a caption id (of NFC form; see `normalize_id`).

    An id of safe characters is its own key (over 100 characters: cut, with a hash suffix after
    `_`). Any other id becomes its safe characters, unsafe ones as `_`, then `-` and 12 hex digits
    of the SHA-1 of the id, so that distinct ids ("猫", "犬"; "a.b", "a_b") keep distinct keys.
    """
    if not _KEY_UNSAFE.search(caption_id):
        if len(caption_id) <= MAX_KEY_LENGTH:
            return caption_id
        digest = hashlib.sha1(caption_id.encode("utf-8")).hexdigest()[:16]
        return f"{caption_id[: MAX_KEY_LENGTH - 17]}_{digest}"
    digest = hashlib.sha1(caption_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{_KEY_UNSAFE.sub('_', caption_id)[: MAX_KEY_LENGTH - 13]}-{digest}"


_SPLIT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def check_split_name(split: str) -> str:
    """Split names become folder names: lower-case letters, digits, `_` and `-`."""
    if not isinstance(split, str) or not _SPLIT_RE.match(split):
        raise ValueError(f"invalid split name {split!r}: use lower-case letters, digits, '_' and '-'")
    return split
