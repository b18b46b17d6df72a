"""What every input source yields: lightweight records that the packer validates and encodes.

A source never decodes images and never drops records: anything wrong with a record (a missing
file, bad bytes, an empty caption) is left for the packer to find, count and reject with a reason.
Records are cheap to create and to pickle, so the packer can send them to worker processes that
read and re-encode the images in parallel.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from ..schema import Provenance


class ImageRef(Protocol):
    """Where a record's image comes from; `read()` runs in a packer worker process."""

    def read(self) -> Any:
        """Encoded image bytes, or an already decoded `PIL.Image.Image`.

        Raises FileNotFoundError when the image does not exist.
        """


@dataclass(frozen=True)
class FileImage:
    path: str

    def read(self) -> bytes:
        return Path(self.path).read_bytes()


@dataclass(frozen=True)
class BytesImage:
    data: bytes

    def read(self) -> bytes:
        return self.data


@dataclass
class SourceRecord:
    """One caption of one image, as the source has it, before validation."""

    image: ImageRef | None  # None when the source has no image for this caption (rejected as missing)
    caption: str | bytes | None  # bytes are decoded by the packer: invalid UTF-8 is rejected, not crashed on
    language: str | None  # as given; the packer canonicalises it and rejects unknown codes
    image_id: str
    caption_id: str
    split: str
    provenance: Provenance = field(default_factory=Provenance)
    meta: dict[str, Any] = field(default_factory=dict)
    # Captions of a split with equal groups translate each other (the sample's `translation_group`);
    # None or "" for none. Sources set it from the input (a column, a field) or by image (`--group-by image`).
    translation_group: str | None = None


class Source(abc.ABC):
    """An input dataset. `splits()` lists its splits in packing order; `records(split)` yields them
    in a deterministic order (the packer's resume relies on it)."""

    name: str  # written into every sample's `source` field

    @abc.abstractmethod
    def splits(self) -> list[str]: ...

    @abc.abstractmethod
    def records(self, split: str) -> Iterator[SourceRecord]: ...

    def count(self, split: str) -> int | None:
        """Number of records in `split` when known without reading them (for progress bars)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What identifies this input, stored with the packed dataset (a rerun with other input is refused)."""
        return {"source": self.name}

    def source_errors(self) -> list[tuple[str, str]]:
        """Problems found while reading the input that affect no single record, as (reason, detail):
        e.g. a truncated input tar whose remaining members could not be read. Reported in the summary."""
        return []


class CliSource(Source):
    """A source that `dist-train pack <cli_name>` can build from its command-line arguments."""

    cli_name: str  # the subcommand: `dist-train pack <cli_name>`
    cli_help: str  # one line for `dist-train pack --help`
    cli_example: str  # a full example command line, shown in `dist-train pack <cli_name> --help`

    @classmethod
    @abc.abstractmethod
    def add_arguments(cls, parser) -> None:
        """Add this source's own options to its argparse subparser (`--out` and the packer's are added for you)."""

    @classmethod
    @abc.abstractmethod
    def from_args(cls, args) -> "CliSource":
        """Build the source from the parsed arguments; raise ValueError with a clear message on bad ones."""
