"""Shards on disk: atomic writing, names, Parquet manifests, and listing a dataset directory.

Layout of a dataset directory (the packer's and the preprocessing stage's output alike):

    DIR/summary.json                   counts per split and language, rejects by reason
    DIR/rejects.parquet                one row per rejected input record, with its reason
    DIR/<split>/<split>-000000.tar     WebDataset shard (see `schema`)
    DIR/<split>/<split>-000000.parquet its manifest: one row per sample, in tar order

A shard counts as finished only when its manifest exists: the tar is written under a temporary
name, flushed, fsynced and renamed, and only then is the manifest written the same way. A crash at
any point leaves either a finished shard or files that `list_finished_shards` ignores and the
writer cleans up.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from webdataset import tariterators

from .schema import Sample

MANIFEST_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("image_id", pa.string()),
        ("caption_id", pa.string()),
        ("language", pa.string()),
        ("split", pa.string()),
        ("caption_length", pa.int32()),  # in characters
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_bytes", pa.int32()),
        ("origin", pa.string()),  # provenance: human / synthetic / machine
        ("input_index", pa.int64()),  # position of the record in its split's input stream
    ]
)
SHARD_INFO_KEY = b"dist_train.shard"
TMP_MARK = ".tmp-"
_TAR_BLOCK = 512
_SHARD_RE = re.compile(r"^(?P<split>[a-z0-9][a-z0-9_-]*)-(?P<index>\d{6})\.tar$")


def shard_stem(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def tar_path(root: Path, split: str, index: int) -> Path:
    return Path(root) / split / f"{shard_stem(split, index)}.tar"


def manifest_path(tar: Path) -> Path:
    return Path(tar).with_suffix(".parquet")


def tar_member_bytes(size: int) -> int:
    """Bytes a member of `size` bytes takes in a tar: a header block plus its data padded to blocks."""
    return _TAR_BLOCK + -(-size // _TAR_BLOCK) * _TAR_BLOCK


def tar_file_bytes(payload_bytes: int) -> int:
    """Size of a tar file whose members take `payload_bytes`: two end-of-archive blocks, then padding
    to tarfile's 10 KiB record size."""
    record = 20 * _TAR_BLOCK
    return -(-(payload_bytes + 2 * _TAR_BLOCK) // record) * record


def sample_tar_bytes(record: dict) -> int:
    return sum(tar_member_bytes(len(v)) for k, v in record.items() if not k.startswith("_"))


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest says about its shard as a whole."""

    name: str  # tar file name
    num_samples: int
    tar_bytes: int
    sha256: str
    input_start: int  # the shard holds the accepted records of input positions [input_start, input_end)
    input_end: int
    rejected: int  # records of that input range that were rejected

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, sort_keys=True).encode()


def read_shard_info(manifest: Path) -> ShardInfo:
    md = pq.read_schema(manifest).metadata or {}
    if SHARD_INFO_KEY not in md:
        raise ValueError(f"{manifest} is not a dist_train shard manifest (no shard metadata)")
    return ShardInfo(**json.loads(md[SHARD_INFO_KEY]))


def read_manifest(manifest: Path, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(manifest, columns=columns)


def split_names(root: Path) -> list[str]:
    """Splits present in a dataset directory: its folders that hold shards."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and any(p.glob("*.tar")))


def list_shards(root: Path, split: str) -> list[Path]:
    """Tar files of a split in index order (finished or not; see `list_finished_shards`)."""
    folder = Path(root) / split
    if not folder.is_dir():
        return []
    shards = []
    for p in folder.iterdir():
        m = _SHARD_RE.match(p.name)
        if m and m["split"] == split:
            shards.append(p)
    return sorted(shards)


def list_finished_shards(root: Path, split: str) -> list[Path]:
    """Tars of a split that have their manifest, i.e. were completely written."""
    return [t for t in list_shards(root, split) if manifest_path(t).is_file()]


class _HashingWriter:
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ShardWriter:
    """Writes one shard: samples go to a temporary tar; `commit` makes tar and manifest appear."""

    def __init__(self, root: Path, split: str, index: int):
        self.tar = tar_path(root, split, index)
        self.tar.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.tar.with_name(f"{self.tar.name}{TMP_MARK}{os.getpid()}")
        self._file = open(self._tmp, "wb")
        self._hashing = _HashingWriter(self._file)
        # mtime fixed and no encoder: the same samples always give the same bytes.
        self._writer = wds.TarWriter(self._hashing, encoder=False, mtime=0, compress=False)
        self._rows: list[dict] = []
        self.payload_bytes = 0  # tar bytes of the samples so far (without the end-of-archive blocks)

    def __len__(self) -> int:
        return len(self._rows)

    def write(self, sample: Sample, input_index: int, record: dict) -> None:
        """Append `sample`; `record` is its `to_wds()` form (the caller needs its size first)."""
        self._writer.write(record)
        self.payload_bytes += sample_tar_bytes(record)
        self._rows.append(
            {
                "key": sample.key,
                "image_id": sample.image_id,
                "caption_id": sample.caption_id,
                "language": sample.language,
                "split": sample.split,
                "caption_length": len(sample.caption),
                "width": sample.width,
                "height": sample.height,
                "image_bytes": len(sample.image),
                "origin": sample.provenance.origin,
                "input_index": input_index,
            }
        )

    def commit(self, input_start: int, input_end: int, rejected: int) -> ShardInfo:
        self._writer.close()  # writes the end-of-archive blocks into our stream, leaves the file open
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.tar)
        info = ShardInfo(
            name=self.tar.name,
            num_samples=len(self._rows),
            tar_bytes=self._hashing.bytes,
            sha256=self._hashing.sha256.hexdigest(),
            input_start=input_start,
            input_end=input_end,
            rejected=rejected,
        )
        table = pa.Table.from_pylist(self._rows, schema=MANIFEST_SCHEMA)
        table = table.replace_schema_metadata({SHARD_INFO_KEY: info.to_json()})
        atomic_write_parquet(manifest_path(self.tar), table)
        return info

    def abort(self) -> None:
        """Drop the unfinished shard (after an error): close everything, delete the temporary file."""
        try:
            self._writer.close()
            self._file.close()
        finally:
            self._tmp.unlink(missing_ok=True)


def remove_stale_files(folder: Path, keep: Iterable[Path]) -> list[Path]:
    """Delete temporary files and shards not in `keep` (left by a crashed run); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    keep_names = set()
    for t in keep:
        keep_names.update({Path(t).name, manifest_path(t).name})
    removed = []
    for p in sorted(folder.iterdir()):
        is_tmp = TMP_MARK in p.name
        is_shard_file = _SHARD_RE.match(p.name) or (p.suffix == ".parquet" and _SHARD_RE.match(p.with_suffix(".tar").name))
        if is_tmp or (is_shard_file and p.name not in keep_names):
            p.unlink()
            removed.append(p)
    return removed


def iter_shard(tar: Path) -> Iterator[dict]:
    """Raw samples of one shard in order ({"__key__", "jpg", "txt", "json", ...} as bytes), read with
    webdataset's own tar iterator. Errors (a truncated or corrupt tar) are raised, not skipped."""
    tar = Path(tar)
    with open(tar, "rb") as f:
        files = ({**item, "__url__": str(tar)} for item in tariterators.tar_file_iterator(f))
        yield from tariterators.group_by_keys(files)
