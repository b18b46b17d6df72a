"""The packer: input records -> validated, re-encoded samples -> size-bounded WebDataset shards.

Each split is one deterministic stream of input records. The main process checks the cheap
things in order (ids, captions, language codes), worker processes read, decode and re-encode the
images, and the results come back in input order, so shard boundaries depend only on the input
and the options. That is what makes resuming exact: every finished shard records the range of
input positions it covers, a rerun skips to the end of the last finished shard and produces the
same shards an uninterrupted run would have.

Nothing is dropped silently: every input record is either written or rejected with a reason, the
rejects of each shard's input range are stored beside it, and the summary checks
read = written + rejected.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import itertools
import json
import logging
import multiprocessing
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
from tqdm import tqdm

from . import images
from .card import finish_dataset
from .languages import UnknownLanguage, canonical_language
from .schema import Sample, check_split_name, normalize_id, sample_key
from .shards import (
    REJECTS_SCHEMA,
    ShardWriter,
    atomic_write_json,
    atomic_write_parquet,
    list_finished_shards,
    manifest_path,
    read_manifest,
    read_parquet,
    rejects_table,
    read_shard_info,
    remove_stale_files,
    sample_tar_bytes,
    tar_file_bytes,
)
from dist_train.storage import listdir, location, makedirs

from .sources._common import group_string
from .sources.base import DEFAULT_MAX_IMAGE_BYTES, Source, SourceRecord

log = logging.getLogger(__name__)

# Why an input record was not written. Each has a test.
REJECT_REASONS = {
    "missing_image": "the image file does not exist or the source has no image for the caption",
    "unreadable_image": "the image exists but could not be read (not a regular file: a directory, a FIFO, a "
                        "device; permissions, I/O error)",
    "image_too_large": "the image file has more bytes than --max-image-bytes",
    "empty_image": "the image has zero bytes",
    "truncated_image": "the image data ends before the image does",
    "undecodable_image": "the bytes are not an image the decoder understands",
    "too_many_pixels": "width x height over the pixel limit (decompression-bomb guard)",
    "unsupported_image_mode": "the image's pixel format has no faithful conversion to 8-bit RGB",
    "unencodable_image": "the decoded image could not be resized or written as JPEG (e.g. a side over 65535 pixels)",
    "empty_caption": "no caption, or only whitespace and invisible characters (zero-width, bidi marks, "
                     "combining marks alone)",
    "invalid_caption": "the caption is not text (a number, a list, an object in the input)",
    "invalid_utf8": "the caption bytes are not valid UTF-8",
    "unknown_language": "the language code is missing, of the wrong type, private use, or names no registered language",
    "invalid_id": "the caption id (or image id) is empty or not a string or integer",
    "duplicate_id": "an earlier record of the input has the same caption id (after NFC) or the same shard key",
    "invalid_group": "the translation group is not a string or a number (a list, an object)",
    "duplicate_member": "an input tar repeats a member name, or a sample's members are not contiguous",
    "worker_crashed": "the process that read and encoded the image died on it (a crash in the image "
                      "library, or out of memory); only with --workers > 0",
    "malformed_record": "the input record does not have the structure of its format (e.g. an annotation "
                        "that is not a JSON object), or its fields cannot be written",
}

STATE_DIR = "_pack"
MAX_WARNINGS_PER_REASON = 5


def available_cpus() -> int:
    """Cores this process may use (under SLURM: its allocation, not the whole node)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PackError(RuntimeError):
    """The packer cannot run with these arguments (not a problem of single records)."""


class PackOptionError(PackError):
    """One option out of range; `field` names it, so the CLI can name its flag instead."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


# field -> (smallest allowed value, largest or None, what it counts), checked before anything is written
_OPTION_BOUNDS = {
    "max_samples_per_shard": (1, None, "a positive number of samples"),
    "max_shard_bytes": (10_240, None, "a number of bytes >= 10240"),
    "max_pixels": (1, None, "a positive number of pixels"),
    "max_side": (1, None, "a positive number of pixels"),
    "max_image_bytes": (1, None, "a positive number of bytes"),
    "jpeg_quality": (1, 100, "a JPEG quality from 1 to 100"),
    "workers": (0, None, "a number of processes >= 0"),
    "chunk_size": (1, None, "a positive number of records"),
}


@dataclass(frozen=True)
class PackOptions:
    max_samples_per_shard: int = 10_000
    max_shard_bytes: int = 512 * 2**20  # a single sample larger than this still gets a shard of its own
    max_pixels: int = images.DEFAULT_MAX_PIXELS
    max_side: int | None = None  # shrink images whose longer side exceeds this
    jpeg_quality: int = images.DEFAULT_JPEG_QUALITY
    workers: int = field(default_factory=lambda: available_cpus())  # 0: encode in this process
    chunk_size: int = 32  # records per task sent to a worker
    progress: bool = True
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES  # larger image files are rejected unread

    def __post_init__(self) -> None:
        for name, (low, high, what) in _OPTION_BOUNDS.items():
            value = getattr(self, name)
            if value is None and name == "max_side":
                continue
            if (not isinstance(value, int) or isinstance(value, bool) or value < low
                    or (high is not None and value > high)):
                raise PackOptionError(name, f"must be {what}, got {value!r}")

    def output_settings(self) -> dict[str, Any]:
        """The options that change what is written (a rerun must use the same ones)."""
        d = asdict(self)
        for k in ("workers", "chunk_size", "progress"):
            d.pop(k)
        if d["max_image_bytes"] == DEFAULT_MAX_IMAGE_BYTES:
            d.pop("max_image_bytes")  # so packs made before the option existed resume as before
        return d


@dataclass
class _Checked:
    """A record after the main-process checks: either `reject` is set, or it goes to a worker."""

    index: int
    record: SourceRecord
    key: str
    caption: str | None = None
    language: str | None = None
    caption_id: str = ""  # NFC, as written
    image_id: str = ""
    reject: tuple[str, str] | None = None


# Characters that show nothing: controls, format characters (zero-width, bidi marks, BOM),
# separators, combining marks, unassigned code points; plus the few letters that render blank.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"}
_BLANK_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}  # Hangul fillers, blank braille


def has_visible_character(text: str) -> bool:
    return any(ch not in _BLANK_LETTERS and unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in text)


def _type_detail(field: str, value: Any, wanted: str) -> str:
    return f"{field} is of type {type(value).__name__} ({value!r:.40}), not {wanted}"


def _check_record(index: int, rec: SourceRecord, seen_keys: set[str]) -> _Checked:
    """The main-process checks of one record; whatever is wrong with it becomes its reject."""
    c = _Checked(index, rec, "")
    try:
        _check_fields(c, rec, seen_keys)
    except Exception as e:  # a record no check foresaw must still be one reject, not the end of the run
        c.reject = ("malformed_record", f"{type(e).__name__}: {e}")
    return c


def _check_fields(c: _Checked, rec: SourceRecord, seen_keys: set[str]) -> None:
    caption_id = rec.caption_id
    if isinstance(caption_id, int) and not isinstance(caption_id, bool):
        caption_id = str(caption_id)
    if caption_id is not None and not isinstance(caption_id, str):
        c.reject = ("invalid_id", _type_detail("caption id", caption_id, "a string"))
        return
    caption_id = normalize_id(caption_id or "")
    c.key = key = sample_key(caption_id) if caption_id else ""
    if rec.defect is not None:  # found by the source; the key is still taken, as by any other reject
        if key:
            seen_keys.add(key)
        c.reject = (str(rec.defect[0]), str(rec.defect[1]))
        return
    if not key:
        c.reject = ("invalid_id", "empty caption id")
        return
    if key in seen_keys:
        c.reject = ("duplicate_id", f"caption id {rec.caption_id!r} (shard key {key!r}) was used by an earlier record")
        return
    seen_keys.add(key)
    if not isinstance(rec.image_id, (str, int)) or isinstance(rec.image_id, bool):
        c.reject = ("invalid_id", _type_detail("image id", rec.image_id, "a string"))
        return
    caption = rec.caption
    if isinstance(caption, (bytes, bytearray)):
        try:
            caption = bytes(caption).decode("utf-8")
        except UnicodeDecodeError as e:
            c.reject = ("invalid_utf8", str(e))
            return
    if caption is not None and not isinstance(caption, str):
        c.reject = ("invalid_caption", _type_detail("caption", caption, "text"))
        return
    if isinstance(caption, str):
        try:
            caption.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates from a lenient decoder
            c.reject = ("invalid_utf8", str(e))
            return
        caption = caption.strip()
    if not caption or not has_visible_character(caption):
        detail = ("no caption" if rec.caption is None else "caption is empty or whitespace" if not caption
                  else f"caption has no visible character ({caption!r:.60})")
        c.reject = ("empty_caption", detail)
        return
    try:
        c.language = canonical_language(rec.language)
    except UnknownLanguage as e:
        c.reject = ("unknown_language", str(e))
        return
    group = rec.translation_group
    if group is not None and (not isinstance(group, (str, bytes, int, float)) or isinstance(group, bool)):
        c.reject = ("invalid_group", _type_detail("translation group", group, "a string or a number"))
        return
    if rec.image is None:
        c.reject = ("missing_image", "the source has no image for this caption")
        return
    if not callable(getattr(rec.image, "read", None)):
        c.reject = ("missing_image", _type_detail("image", rec.image, "an image reference"))
        return
    c.caption = caption
    c.caption_id = caption_id
    c.image_id = normalize_id(str(rec.image_id))


def _read_image(image_ref, max_bytes: int):
    try:
        return image_ref.read(max_bytes=max_bytes)
    except TypeError as e:  # an image reference written before `max_bytes` existed
        if "max_bytes" not in str(e):
            raise
        data = image_ref.read()
    if isinstance(data, (bytes, bytearray)) and len(data) > max_bytes:
        raise images.ImageRejected("image_too_large", f"{len(data)} bytes > {max_bytes} (--max-image-bytes)")
    return data


def _encode_one(image_ref, settings: dict) -> tuple:
    """Read and re-encode one image: ("ok", jpeg, w, h) or ("reject", reason, detail), never an exception."""
    try:
        data = _read_image(image_ref, settings.get("max_image_bytes", DEFAULT_MAX_IMAGE_BYTES))
    except images.ImageRejected as e:
        return ("reject", e.reason, e.detail)
    except FileNotFoundError as e:
        return ("reject", "missing_image", str(e))
    except Exception as e:  # OSError, MemoryError, and whatever a source's own image reference raises
        return ("reject", "unreadable_image", f"{type(e).__name__}: {e}")
    try:
        jpeg, w, h = images.reencode(
            data, max_pixels=settings["max_pixels"], max_side=settings["max_side"], quality=settings["jpeg_quality"]
        )
    except images.ImageRejected as e:
        return ("reject", e.reason, e.detail)
    except Exception as e:  # reencode turns what it knows into ImageRejected; anything left is still one image's
        return ("reject", "unencodable_image", f"{type(e).__name__}: {e}")
    return ("ok", jpeg, w, h)


def _encode_chunk(image_refs: list, settings: dict) -> list[tuple]:
    """Worker task: read and re-encode a chunk of images."""
    return [_encode_one(ref, settings) for ref in image_refs]


class _Encoder:
    """Reads and re-encodes images in a pool of worker processes, results in input order.

    One pool serves all splits; at most `4 * workers` chunks are in flight, so memory stays bounded
    however fast the source yields records. A worker killed by the image library itself (a crash in C
    code, the kernel's OOM killer) breaks the pool: the pool is made anew, the chunks in flight are
    sent again, and a chunk whose result was lost is encoded one record at a time in a process of its
    own, so the record that kills its process is rejected (`worker_crashed`) and the others are kept.
    """

    def __init__(self, options: PackOptions):
        self.options = options
        self.settings = options.output_settings()
        self.pool = self._new_pool(options.workers) if options.workers > 0 else None

    @staticmethod
    def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
        # spawn: the parent may hold threads (progress bars, Arrow), which fork does not copy safely.
        return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def __enter__(self) -> "_Encoder":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, todo: list):
        if not todo:
            return None
        try:
            return self.pool.submit(_encode_chunk, todo, self.settings)
        except BrokenProcessPool as e:  # known broken already: the chunk waits for the new pool (`_result`)
            lost: cf.Future = cf.Future()
            lost.set_exception(e)
            return lost

    def _result(self, chunk: list[_Checked], fut, pending: collections.deque) -> list[tuple]:
        """The chunk's results; after a broken pool, a new pool for what is in flight and this chunk
        encoded record by record."""
        if fut is None:
            return []
        try:
            return fut.result()
        except BrokenProcessPool:
            log.warning("an image worker process died (a crash in the image library?); finding the record "
                        "that killed it, one record per process")
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool(self.options.workers)
            for i, (other, _) in enumerate(pending):
                pending[i] = (other, self._submit([c.record.image for c in other if c.reject is None]))
            return _encode_isolated([c.record.image for c in chunk if c.reject is None], self.settings)

    def outcomes(self, checked: Iterator[_Checked]) -> Iterator[tuple[_Checked, tuple | None]]:
        """(checked record, encode result or None for records already rejected), in input order."""
        chunks = iter(lambda: list(itertools.islice(checked, self.options.chunk_size)), [])
        if self.pool is None:
            for chunk in chunks:
                todo = [c.record.image for c in chunk if c.reject is None]
                yield from _match(chunk, _encode_chunk(todo, self.settings))
            return
        pending: collections.deque = collections.deque()
        try:
            for chunk in chunks:
                pending.append((chunk, self._submit([c.record.image for c in chunk if c.reject is None])))
                while len(pending) >= 4 * self.options.workers:
                    chunk, fut = pending.popleft()
                    yield from _match(chunk, self._result(chunk, fut, pending))
            while pending:
                chunk, fut = pending.popleft()
                yield from _match(chunk, self._result(chunk, fut, pending))
        finally:
            for _, fut in pending:
                if fut is not None:
                    fut.cancel()


def _encode_isolated(image_refs: list, settings: dict) -> list[tuple]:
    """Each image in a one-worker pool of its own making while the last one died: the image whose
    process dies is rejected, the rest are encoded as usual."""
    results = []
    pool = _Encoder._new_pool(1)
    try:
        for ref in image_refs:
            try:
                results.append(pool.submit(_encode_one, ref, settings).result())
            except BrokenProcessPool:
                results.append(("reject", "worker_crashed", "the process reading and encoding this image died "
                                "(a crash in the image library, or out of memory)"))
                pool.shutdown(wait=False, cancel_futures=True)
                pool = _Encoder._new_pool(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _match(chunk: list[_Checked], results: list[tuple]) -> Iterator[tuple[_Checked, tuple | None]]:
    it = iter(results)
    for c in chunk:
        yield c, (None if c.reject else next(it))


class _RejectLog:
    """Collects the rejects of the current shard's input range; warns about the first few of each reason."""

    def __init__(self, split: str):
        self.split = split
        self.rows: list[dict] = []
        self.counts: collections.Counter = collections.Counter()  # per reason, whole split

    def add(self, c: _Checked, reason: str, detail: str) -> None:
        rec = c.record
        self.rows.append(
            {
                "split": self.split,
                "input_index": c.index,
                "key": c.key,
                "image_id": str(rec.image_id),
                "caption_id": str(rec.caption_id),
                "language": rec.language if isinstance(rec.language, str) else None,
                "stage": "pack",
                "reason": reason,
                "detail": detail,
            }
        )
        self.counts[reason] += 1
        level = logging.WARNING if self.counts[reason] <= MAX_WARNINGS_PER_REASON else logging.DEBUG
        log.log(level, "rejected %s #%d (caption id %r): %s: %s", self.split, c.index, rec.caption_id, reason, detail)
        if self.counts[reason] == MAX_WARNINGS_PER_REASON + 1:
            log.warning("more records rejected for %s; all are listed in rejects.parquet", reason)

    def take(self) -> list[dict]:
        rows, self.rows = self.rows, []
        return rows


def _state(out: Path) -> Path:
    return out / STATE_DIR


def _rejects_path(out: Path, split: str, index: int | None) -> Path:
    name = f"{split}-tail" if index is None else f"{split}-{index:06d}"
    return _state(out) / "rejects" / f"{name}.parquet"


def _rejects_files(out: Path, split: str, with_temporary: bool = False) -> list[Path]:
    """The reject tables of one split (split names may share a prefix: "test", "test-2017")."""
    pattern = re.compile(rf"^{re.escape(split)}-(\d{{6}}|tail)\.parquet" + (r"(\.tmp-\d+)?$" if with_temporary else "$"))
    folder = _state(out) / "rejects"
    return sorted((p for p in listdir(folder) if pattern.match(p.name)), key=lambda p: p.name)


def _write_rejects(path: Path, rows: list[dict]) -> None:
    makedirs(path.parent)
    atomic_write_parquet(path, rejects_table(rows))


SHARDS_FORMAT = "dist_train.shards/1"
INPUT_FILES = "input_files"  # the key of a source description that fingerprints its input files


def check_out_folder(out: Path) -> None:
    """Refuse an --out that holds anything but a packer's output, before anything is written there:
    packing into a preprocessed dataset or an unrelated folder would mix two datasets."""
    if not out.exists():
        return
    if not out.is_dir():
        raise PackError(f"--out {out} is not a folder")
    if (out / "spm.model").exists() or (out / "_preprocess").exists():
        raise PackError(f"--out {out} holds a preprocessed dataset (spm.model or _preprocess/): "
                        "pack into another folder")
    summary = out / "summary.json"
    if summary.is_file():
        try:
            fmt = json.loads(summary.read_text()).get("format")
        except (ValueError, AttributeError, OSError):
            fmt = None
        if fmt != SHARDS_FORMAT:
            raise PackError(f"--out {out} holds a summary.json of format {fmt!r}, not the packer's "
                            f"{SHARDS_FORMAT!r}: pack into another folder")
    if not _state(out).is_dir() and any(out.iterdir()):
        raise PackError(f"--out {out} is not empty and holds no packer state ({STATE_DIR}/): "
                        "pack into an empty or new folder")


def _input_changes(have: dict, wanted: dict) -> list[str]:
    """What changed in the input files between the first run and this one; an mtime alone is no change."""
    changes = []
    for path, now in wanted.items():
        then = have.get(path)
        if then is None:
            changes.append(f"{path} is a new input file")
            continue
        if then.get("size") != now.get("size"):
            changes.append(f"{path} changed: size {then.get('size')} -> {now.get('size')} bytes")
        elif then.get("sha256") != now.get("sha256"):
            changes.append(f"{path} changed: sha256 {str(then.get('sha256'))[:12]}... -> "
                           f"{str(now.get('sha256'))[:12]}...")
        elif then.get("mtime_ns") != now.get("mtime_ns"):
            log.info("%s has a new modification time but the same content: resuming", path)
    changes += [f"{path} is no longer an input file" for path in have if path not in wanted]
    return changes


def _differences(have: Any, wanted: Any, where: str = "") -> list[str]:
    """`a.b.c: old -> new` for each leaf that differs, so a change deep in a nested spec is named."""
    if isinstance(have, dict) and isinstance(wanted, dict):
        return sorted(d for k in set(have) | set(wanted)
                      for d in _differences(have.get(k), wanted.get(k), f"{where}.{k}" if where else k))
    return [] if have == wanted else [f"{where}: {_short(have)} -> {_short(wanted)}"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_config(out: Path, source: Source, options: PackOptions) -> None:
    wanted = {"source": source.describe(), "options": options.output_settings()}
    wanted = json.loads(json.dumps(wanted))  # normalise tuples etc. for comparison
    path = _state(out) / "config.json"
    if path.exists():
        have = json.loads(path.read_text())
        changes = _input_changes(have.get("source", {}).get(INPUT_FILES) or {}, wanted["source"].get(INPUT_FILES) or {})
        if changes:
            raise PackError(f"the input changed since {out} was started: {'; '.join(changes)}. "
                            f"Use another --out, or delete {out} to start over.")
        have["source"] = {k: v for k, v in have.get("source", {}).items() if k != INPUT_FILES}
        diff = _differences({k: have.get(k) for k in wanted},
                            {**wanted, "source": {k: v for k, v in wanted["source"].items() if k != INPUT_FILES}})
        if diff:
            raise PackError(
                f"{out} already holds a dataset packed from other input or with other settings "
                f"({'; '.join(diff)}). Use another --out, or delete {out} to start over."
            )
    else:
        makedirs(path.parent)
        atomic_write_json(path, wanted)


def _load_seen_keys(seen_keys: set[str], manifests: list[Path], reject_tables: list[Path]) -> None:
    """Keys of records an earlier run already handled (written or rejected): duplicates of them are
    rejected after a resume exactly as in an uninterrupted run."""
    for m in manifests:
        seen_keys.update(read_manifest(m, ["key"]).column("key").to_pylist())
    for rj in reject_tables:
        seen_keys.update(k for k in read_parquet(rj, columns=["key"]).column("key").to_pylist() if k)


def _resume_point(out: Path, split: str, seen_keys: set[str]) -> tuple[int, int]:
    """Clean up after a crash; return (number of finished shards, input position to continue from)."""
    finished = list_finished_shards(out, split)
    # Finished shards form a prefix; anything after the first gap is from an interrupted run.
    contiguous = []
    for i, tar in enumerate(finished):
        if tar.name != f"{split}-{i:06d}.tar":
            break
        contiguous.append(tar)
    removed = remove_stale_files(out / split, contiguous)
    if removed:
        log.info("%s: removed %d unfinished file(s) from an interrupted run", split, len(removed))
    keep = {_rejects_path(out, split, i).name for i in range(len(contiguous))}
    for p in _rejects_files(out, split, with_temporary=True):
        if p.name not in keep:
            p.unlink()
    manifests = [manifest_path(t) for t in contiguous]
    _load_seen_keys(seen_keys, manifests, _rejects_files(out, split))
    resume_from = read_shard_info(manifests[-1]).input_end if manifests else 0
    return len(contiguous), resume_from


def _pack_split(source: Source, split: str, out: Path, encoder: _Encoder, seen_keys: set[str]) -> None:
    options = encoder.options
    done_path = _state(out) / "done" / f"{split}.json"
    if done_path.exists():
        _load_seen_keys(seen_keys, [manifest_path(t) for t in list_finished_shards(out, split)],
                        _rejects_files(out, split))
        log.info("%s: already packed, skipping", split)
        return
    errors_before = len(source.source_errors())
    shard_index, resume_from = _resume_point(out, split, seen_keys)
    if resume_from:
        log.info("%s: resuming after %d finished shard(s), at input record %d", split, shard_index, resume_from)
    total = source.count(split)
    bar = tqdm(total=total, initial=resume_from, desc=f"pack {split}", unit="rec", disable=not options.progress,
               dynamic_ncols=True, mininterval=0.5)
    records = itertools.islice(source.records(split), resume_from, None)
    checked = (_check_record(i, r, seen_keys) for i, r in enumerate(records, start=resume_from))
    rejects = _RejectLog(split)
    writer: ShardWriter | None = None
    segment_start = resume_from
    position = resume_from
    try:
        for c, result in encoder.outcomes(checked):
            position = c.index + 1
            bar.update(1)
            if c.reject is None and result[0] == "reject":
                c.reject = (result[1], result[2])
            if c.reject is not None:
                rejects.add(c, *c.reject)
                continue
            _, jpeg, width, height = result
            rec = c.record
            try:
                sample = Sample(
                    key=c.key, image=jpeg, caption=c.caption, language=c.language, image_id=c.image_id,
                    caption_id=c.caption_id, source=source.name, split=split, width=width, height=height,
                    provenance=rec.provenance, meta=rec.meta,
                    translation_group=group_string(rec.translation_group),
                )
                record = sample.to_wds()
            except Exception as e:  # metadata that is not JSON, a provenance of the wrong type, ...
                rejects.add(c, "malformed_record", f"{type(e).__name__}: {e}")
                continue
            size = sample_tar_bytes(record)
            if writer is not None and (
                len(writer) >= options.max_samples_per_shard
                or tar_file_bytes(writer.payload_bytes + size) > options.max_shard_bytes
            ):
                _commit(out, split, shard_index, writer, segment_start, c.index, rejects.take())
                shard_index, segment_start, writer = shard_index + 1, c.index, None
                bar.set_postfix(shards=shard_index, rejected=sum(rejects.counts.values()), refresh=False)
            if writer is None:
                writer = ShardWriter(out, split, shard_index)
            writer.write(sample, c.index, record)
        if writer is not None:
            _commit(out, split, shard_index, writer, segment_start, position, rejects.take())
            writer = None
        tail = rejects.take()
        if tail:  # rejects after the last written sample (or a split with nothing valid at all)
            _write_rejects(_rejects_path(out, split, None), tail)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    makedirs(done_path.parent)
    # Input problems that belong to no record (a corrupt input tar) are kept with the split, so a
    # rerun that skips the split still reports them.
    errors = [{"reason": r, "detail": d} for r, d in source.source_errors()[errors_before:]]
    atomic_write_json(done_path, {"split": split, "read": position, "source_errors": errors})


def _commit(out: Path, split: str, index: int, writer: ShardWriter, start: int, end: int, rejects: list[dict]) -> None:
    # The rejects go first: the manifest is the shard's "finished" mark and must come last.
    if rejects:
        _write_rejects(_rejects_path(out, split, index), rejects)
    writer.commit(start, end, len(rejects))


def pack(source: Source, out: str | Path, options: PackOptions | None = None) -> dict[str, Any]:
    """Pack every split of `source` into `out`; resumes an interrupted run. Returns the summary."""
    options = options or PackOptions()
    out = location(out)
    splits = source.splits()
    for s in splits:
        check_split_name(s)
    check_out_folder(out)
    makedirs(out)
    _check_config(out, source, options)
    seen_keys: set[str] = set()
    with _Encoder(options) as encoder:
        for split in splits:
            _pack_split(source, split, out, encoder, seen_keys)
    summary = summarize(out, splits, source)
    atomic_write_json(out / "summary.json", summary)
    finish_dataset(out, summary, "dist-train pack")  # sizes.json, <split>.parquet and the dataset card
    return summary


def _read_rejects(out: Path, splits: list[str]) -> pa.Table:
    tables = [rejects_table(read_parquet(p)) for s in splits for p in _rejects_files(out, s)]
    if not tables:
        return REJECTS_SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("split", "ascending"), ("input_index", "ascending")])


def summarize(out: Path, splits: list[str], source: Source) -> dict[str, Any]:
    """Counts from what is on disk (manifests and reject tables), so they describe the shards as they are."""
    rejects = _read_rejects(out, splits)
    atomic_write_parquet(out / "rejects.parquet", rejects)
    reject_rows = rejects.select(["split", "reason"]).to_pylist()
    per_split: dict[str, Any] = {}
    source_errors = []
    totals = {"read": 0, "written": 0, "rejected": 0, "languages": collections.Counter(),
              "rejects": collections.Counter()}
    for split in splits:
        shards = list_finished_shards(out, split)
        languages: collections.Counter = collections.Counter()
        written = tar_bytes = 0
        for tar in shards:
            info = read_shard_info(manifest_path(tar))
            written += info.num_samples
            tar_bytes += info.tar_bytes
            languages.update(read_manifest(manifest_path(tar), ["language"]).column("language").to_pylist())
        reasons = collections.Counter(r["reason"] for r in reject_rows if r["split"] == split)
        done = json.loads((_state(out) / "done" / f"{split}.json").read_text())
        source_errors += [dict(e, split=split) for e in done.get("source_errors", [])]
        rejected = sum(reasons.values())
        if done["read"] != written + rejected:
            raise PackError(f"internal error: {split}: read {done['read']} != written {written} + rejected {rejected}")
        per_split[split] = {
            "shards": len(shards),
            "read": done["read"],
            "written": written,
            "rejected": rejected,
            "tar_bytes": tar_bytes,
            "languages": dict(sorted(languages.items())),
            "rejects": dict(sorted(reasons.items())),
        }
        totals["read"] += done["read"]
        totals["written"] += written
        totals["rejected"] += rejected
        totals["languages"].update(languages)
        totals["rejects"].update(reasons)
    totals["languages"] = dict(sorted(totals["languages"].items()))
    totals["rejects"] = dict(sorted(totals["rejects"].items()))
    return {
        "format": SHARDS_FORMAT,
        "source": source.describe(),
        "options": json.loads((_state(out) / "config.json").read_text())["options"],
        "splits": per_split,
        "totals": totals,
        "source_errors": source_errors,
    }


def summary_table(summary: dict[str, Any], out: Path) -> str:
    """The summary as people read it: totals, a row per split, rejects by reason."""
    t = summary["totals"]
    lines = [f"{out}: {t['written']} samples written, {t['rejected']} rejected (of {t['read']} read)",
             f"{'split':<10}{'shards':>7}{'read':>9}{'written':>9}{'rejected':>9}  languages"]
    for split, s in summary["splits"].items():
        langs = " ".join(f"{k}:{v}" for k, v in s["languages"].items())
        lines.append(f"{split:<10}{s['shards']:>7}{s['read']:>9}{s['written']:>9}{s['rejected']:>9}  {langs}")
    if t["rejects"]:
        lines.append("rejects: " + ", ".join(f"{k}: {v}" for k, v in t["rejects"].items())
                     + f"  (every one in {location(out) / 'rejects.parquet'})")
    for e in summary.get("source_errors", []):
        lines.append(f"input problem in {e.get('split')}: {e['reason']}: {e['detail']}")
    return "\n".join(lines)
