"""What every input source yields: lightweight records that the packer validates and encodes.

A source never decodes images and never drops records: anything wrong with a record (a missing
file, bad bytes, an empty caption) is left for the packer to find, count and reject with a reason.
Records are cheap to create and to pickle, so the packer can send them to worker processes that
read and re-encode the images in parallel.
"""

from __future__ import annotations

import abc
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from ..images import ImageRejected
from ..schema import Provenance

DEFAULT_MAX_IMAGE_BYTES = 256 * 2**20


class ImageRef(Protocol):
    """Where a record's image comes from; `read()` runs in a packer worker process."""

    def read(self, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> Any:
        """Encoded image bytes (at most `max_bytes`), or an already decoded `PIL.Image.Image`.

        Raises FileNotFoundError when the image does not exist, ImageRejected for one that cannot be used.
        """


def _too_large(size: int, max_bytes: int) -> ImageRejected:
    return ImageRejected("image_too_large", f"{size} bytes > {max_bytes} (--max-image-bytes)")


@dataclass(frozen=True)
class FileImage:
    path: str

    def read(self, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
        """A regular file's bytes. Opened non-blocking and checked before reading, because a FIFO would
        block forever and a device (/dev/zero) would fill the memory."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
                raise ImageRejected("unreadable_image", f"{self.path} is {kind}")
            if st.st_size > max_bytes:
                raise _too_large(st.st_size, max_bytes)
            chunks, total = [], 0
            while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):  # the file may grow meanwhile
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(total, max_bytes)
            return b"".join(chunks)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class BytesImage:
    data: bytes

    def read(self, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> bytes:
        if len(self.data) > max_bytes:
            raise _too_large(len(self.data), max_bytes)
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
    # (reason, detail) when the source found the record malformed (a field of the wrong type, a
    # repeated tar member): the packer rejects it with that reason instead of looking further.
    defect: tuple[str, str] | None = None


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
