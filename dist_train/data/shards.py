"""Shards on disk: atomic writing, names, Parquet manifests, and listing a dataset directory.

Layout of a dataset directory (the packer's and the preprocessing stage's output alike):

    DIR/summary.json                   counts per split and language, rejects by reason
    DIR/rejects.parquet                one row per rejected input record, with its reason
    DIR/<split>/<split>-000000.tar     WebDataset shard (see `schema`)
    DIR/<split>/<split>-000000.parquet its manifest: one row per sample, in tar order

A shard counts as finished only when its manifest exists: the tar is written under a temporary
name, flushed, fsynced and renamed, and only then is the manifest written the same way. A crash at
any point leaves either a finished shard or files that `list_finished_shards` ignores and the
writer cleans up. DIR may be a URL (s3://bucket/x, see `dist_train.storage`): there a shard is
uploaded under its final key, which shows it only once complete, and the manifest still comes last.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from dist_train.storage import PIPE, AtomicFile, is_remote, listdir, location, makedirs, write_bytes

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
# rejects.parquet, the same columns wherever records are rejected: `stage` says which step did it ("pack",
# or a preprocessing stage), `shard` the input shard it came from (preprocessing).
REJECTS_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("input_index", pa.int64()),
        ("key", pa.string()),
        ("image_id", pa.string()),
        ("caption_id", pa.string()),
        ("language", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("shard", pa.string()),
    ]
)


def rejects_table(table: pa.Table | list[dict]) -> pa.Table:
    """Rows, or a reject table written before a column existed, in REJECTS_SCHEMA (missing columns are null)."""
    if isinstance(table, list):
        return pa.Table.from_pylist(table, schema=REJECTS_SCHEMA)
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
               for f in REJECTS_SCHEMA]
    return pa.Table.from_arrays(columns, schema=REJECTS_SCHEMA)


SHARD_INFO_KEY = b"dist_train.shard"
TMP_MARK = AtomicFile.TMP_MARK
_TAR_BLOCK = 512
_SHARD_RE = re.compile(r"^(?P<split>[a-z0-9][a-z0-9_-]*)-(?P<index>\d{6})\.tar$")


def shard_stem(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def tar_path(root: Path, split: str, index: int) -> Path:
    return location(root) / split / f"{shard_stem(split, index)}.tar"


def manifest_path(tar: Path) -> Path:
    return location(tar).with_suffix(".parquet")


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


def _arrow_source(path: Path):
    """What pyarrow reads from: the path itself when local, an open file for a URL."""
    path = location(path)
    return path.open("rb") if is_remote(path) else str(path)


def read_shard_info(manifest: Path) -> ShardInfo:
    md = pq.read_schema(_arrow_source(manifest)).metadata or {}
    if SHARD_INFO_KEY not in md:
        raise ValueError(f"{manifest} is not a dist_train shard manifest (no shard metadata)")
    return ShardInfo(**json.loads(md[SHARD_INFO_KEY]))


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file, local or in object storage."""
    return pq.read_table(_arrow_source(path), columns=columns)


def read_manifest(manifest: Path, columns: list[str] | None = None) -> pa.Table:
    return read_parquet(manifest, columns)


def split_names(root: Path) -> list[str]:
    """Splits present in a dataset directory: its folders that hold shards."""
    root = location(root)
    return sorted(p.name for p in listdir(root) if not p.name.startswith(("_", ".")) and p.is_dir()
                  and any(_SHARD_RE.match(q.name) for q in listdir(p)))


def list_shards(root: Path, split: str) -> list[Path]:
    """Tar files of a split in index order (finished or not; see `list_finished_shards`)."""
    return [t for t, _ in _list_split_folder(root, split)]


def _list_split_folder(root: Path, split: str) -> list[tuple[Path, bool]]:
    """(tar, has its manifest) for the tars of a split in index order, from one listing of the folder
    (one request in object storage, not one per shard)."""
    entries = listdir(location(root) / split)
    names = {p.name for p in entries}
    shards = []
    for p in entries:
        m = _SHARD_RE.match(p.name)
        if m and m["split"] == split:
            shards.append((p, p.name[: -len(".tar")] + ".parquet" in names))
    return sorted(shards, key=lambda item: item[0].name)


def list_finished_shards(root: Path, split: str) -> list[Path]:
    """Tars of a split that have their manifest, i.e. were completely written."""
    return [t for t, finished in _list_split_folder(root, split) if finished]


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file (or object) that appears complete or not at all (`dist_train.storage.AtomicFile`)."""
    write_bytes(location(path), data)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


class ShardWriter:
    """Writes one shard: samples go to a temporary tar; `commit` makes tar and manifest appear."""

    def __init__(self, root: Path, split: str, index: int):
        self.tar = tar_path(root, split, index)
        makedirs(self.tar.parent)
        self._file = AtomicFile(self.tar)
        self._hashing = _HashingWriter(self._file)
        import webdataset as wds  # here: webdataset imports torch, which `dist-train --help` need not wait for

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
        self._file.commit()
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
        finally:
            self._file.abort()


def remove_stale_files(folder: Path, keep: Iterable[Path]) -> list[Path]:
    """Delete temporary files and shards not in `keep` (left by a crashed run); returns what was removed."""
    folder = location(folder)
    keep_names = set()
    for t in keep:
        keep_names.update({location(t).name, manifest_path(t).name})
    removed = []
    for p in sorted(listdir(folder), key=lambda p: p.name):
        is_tmp = TMP_MARK in p.name
        is_shard_file = _SHARD_RE.match(p.name) or (p.suffix == ".parquet" and _SHARD_RE.match(p.with_suffix(".tar").name))
        if is_tmp or (is_shard_file and p.name not in keep_names):
            p.unlink()
            removed.append(p)
    return removed


def iter_shard(tar: Path) -> Iterator[dict]:
    """Raw samples of one shard in order ({"__key__", "jpg", "txt", "json", ...} as bytes), read with
    webdataset's own tar iterator. Errors (a truncated or corrupt tar) are raised, not skipped."""
    from webdataset import tariterators

    if isinstance(tar, str) and tar.startswith(PIPE):  # a command's output, as webdataset's pipe: URLs
        from webdataset.gopen import gopen

        opened = gopen(tar, "rb")
    else:
        tar = location(tar)
        opened = tar.open("rb")
    with opened as f:
        files = ({**item, "__url__": str(tar)} for item in tariterators.tar_file_iterator(f))
        yield from tariterators.group_by_keys(files)
