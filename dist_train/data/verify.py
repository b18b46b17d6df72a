"""Integrity checks and summaries of a dataset directory: `dist-train shards verify|inspect|stats`."""

from __future__ import annotations

import collections
import concurrent.futures as cf
import hashlib
import io
import json
import multiprocessing
import re
import tarfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dist_train.storage import listdir, location

from .shards import (
    TMP_MARK,
    iter_shard,
    list_shards,
    manifest_path,
    read_manifest,
    read_shard_info,
    split_names,
)

REQUIRED_MEMBERS = ("jpg", "txt", "json")


@dataclass
class ShardReport:
    path: str
    samples: int = 0
    languages: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with location(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_shard(tar: str | Path, decode_images: bool = False) -> ShardReport:
    """Check one shard against its manifest: bytes, order and content of every sample."""
    from PIL import Image  # imported here: this runs in worker processes

    tar = location(tar)
    report = ShardReport(str(tar))
    problems = report.problems
    manifest = manifest_path(tar)
    if not manifest.is_file():
        problems.append("no manifest: the shard was not finished (interrupted write?)")
        return report
    try:
        info = read_shard_info(manifest)
        rows = read_manifest(manifest).to_pylist()
    except Exception as e:
        problems.append(f"unreadable manifest {manifest.name}: {e}")
        return report
    size = tar.stat().st_size
    if size != info.tar_bytes:
        problems.append(f"size {size} bytes, manifest says {info.tar_bytes} (truncated or rewritten)")
    elif _sha256(tar) != info.sha256:
        problems.append("sha256 differs from the manifest (corrupted)")
    if len(rows) != info.num_samples:
        problems.append(f"manifest has {len(rows)} rows but says {info.num_samples} samples")
    languages: collections.Counter = collections.Counter()
    n = 0
    try:
        for n, sample in enumerate(iter_shard(tar), start=1):
            key = sample["__key__"]
            if n > len(rows):
                problems.append(f"sample {n} ({key}) is not in the manifest")
                break
            row = rows[n - 1]
            if key != row["key"]:
                problems.append(f"sample {n}: key {key!r}, manifest says {row['key']!r}")
                break
            missing = [m for m in REQUIRED_MEMBERS if m not in sample]
            if missing:
                problems.append(f"{key}: missing member(s) {', '.join(missing)}")
                continue
            md = json.loads(sample["json"])
            caption = sample["txt"].decode("utf-8")
            for k in ("language", "image_id", "caption_id", "split", "width", "height"):
                if md.get(k) != row[k]:
                    problems.append(f"{key}: json {k}={md.get(k)!r}, manifest {row[k]!r}")
            if len(caption) != row["caption_length"]:
                problems.append(f"{key}: caption has {len(caption)} characters, manifest says {row['caption_length']}")
            if len(sample["jpg"]) != row["image_bytes"]:
                problems.append(f"{key}: image has {len(sample['jpg'])} bytes, manifest says {row['image_bytes']}")
            if decode_images:
                try:
                    img = Image.open(io.BytesIO(sample["jpg"]))
                    img.load()
                    if img.size != (row["width"], row["height"]):
                        problems.append(f"{key}: image is {img.size}, manifest says {(row['width'], row['height'])}")
                except Exception as e:
                    problems.append(f"{key}: image does not decode: {e}")
            languages[row["language"]] += 1
            if len(problems) > 20:
                problems.append("... (stopped after 20 problems)")
                break
    except Exception as e:
        problems.append(f"unreadable after {n} sample(s): {type(e).__name__}: {e}")
    if not problems and n != len(rows):
        problems.append(f"{n} samples in the tar, {len(rows)} in the manifest")
    report.samples = n
    report.languages = dict(languages)
    return report


@dataclass
class DatasetReport:
    root: str
    shards: list[ShardReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # dataset-level: orphans, summary mismatches

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.shards)

    @property
    def bad_shards(self) -> list[ShardReport]:
        return [s for s in self.shards if not s.ok]


def is_shard_pattern(spec: Any) -> bool:
    """A brace pattern of shards (`s3://b/ds/train/train-{000000..000009}.tar`, webdataset's notation)."""
    return isinstance(spec, str) and re.search(r"\{[^{}]*(\.\.|,)[^{}]*\}", spec) is not None


def expand_shards(spec: str) -> list[Path]:
    """The shards a brace pattern names, in order, each a path or URL."""
    from braceexpand import braceexpand

    return [location(s) for s in braceexpand(spec)]


def shard_paths(root: Path | str) -> list[Path]:
    """All shards of a dataset directory, the one shard if `root` is a tar, or those a brace pattern names."""
    if is_shard_pattern(root):
        return expand_shards(root)
    root = location(root)
    if root.is_file():
        return [root]
    return [t for split in split_names(root) for t in list_shards(root, split)]


def verify_dataset(root: str | Path, decode_images: bool = False, workers: int = 1,
                   progress: bool = True) -> DatasetReport:
    if is_shard_pattern(root):  # the shards named, each against its manifest; no folder-level checks
        report = DatasetReport(str(root))
        tars = expand_shards(root)
        missing = [t for t in tars if not t.exists()]
        report.problems += [f"{t} does not exist" for t in missing]
        for t in tqdm([t for t in tars if t not in missing], desc="verify", unit="shard", disable=not progress,
                      dynamic_ncols=True):
            report.shards.append(verify_shard(t, decode_images))
        return report
    root = location(root)
    report = DatasetReport(str(root))
    if not root.exists():
        report.problems.append(f"{root} does not exist")
        return report
    tars = shard_paths(root)
    if not tars:
        report.problems.append(f"no shards under {root}")
    if root.is_dir():
        folders = [p for p in listdir(root) if not p.name.startswith(("_", ".")) and p.is_dir()]
        for folder in sorted(folders, key=lambda p: p.name):
            for p in sorted(listdir(folder), key=lambda p: p.name):
                if TMP_MARK in p.name:
                    report.problems.append(f"{p}: temporary file of an interrupted write")
                elif p.suffix == ".parquet" and not p.with_suffix(".tar").exists():
                    report.problems.append(f"{p}: manifest without its shard")
    bar = tqdm(total=len(tars), desc="verify", unit="shard", disable=not progress, dynamic_ncols=True)
    if workers > 1 and len(tars) > 1:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for r in pool.map(verify_shard, tars, [decode_images] * len(tars)):
                report.shards.append(r)
                bar.update(1)
    else:
        for t in tars:
            report.shards.append(verify_shard(t, decode_images))
            bar.update(1)
    bar.close()
    summary_path = root / "summary.json"
    if root.is_dir() and summary_path.exists() and all(s.ok for s in report.shards):
        summary = json.loads(summary_path.read_text())
        for split, s in summary.get("splits", {}).items():
            shards = [r for r in report.shards if location(r.path).parent.name == split]
            counts: collections.Counter = collections.Counter()
            for r in shards:
                counts.update(r.languages)
            if s.get("shards") != len(shards) or s.get("written") != sum(counts.values()):
                report.problems.append(
                    f"summary.json says {split} has {s.get('shards')} shards / {s.get('written')} samples, "
                    f"found {len(shards)} / {sum(counts.values())}")
            elif s.get("languages") and s["languages"] != dict(sorted(counts.items())):
                report.problems.append(f"summary.json language counts of {split} differ from the shards")
            if "read" in s and s["read"] != s.get("written", 0) + s.get("rejected", 0):
                report.problems.append(f"summary.json: {split}: read != written + rejected")
    return report


# Kept as they are though Unicode calls them format characters: joiners that Devanagari, Arabic-script
# and emoji text needs. Every other format character (the bidi embeddings, overrides and isolates among
# them) is shown escaped.
_KEPT_FORMAT = {"\u200c", "\u200d"}


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control characters (ESC of an ANSI sequence such as
    "\x1b[2J", CR, newlines, C1 controls), bidi overrides such as U+202E, other invisible format
    characters, line and paragraph separators and lone surrogates become escapes (\x1b, \r, \u202e),
    so that a caption or metadata value cannot move the cursor, clear the screen or reorder what follows."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs", "Zl", "Zp") or (category == "Cf" and ch not in _KEPT_FORMAT):
            code = ord(ch)
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(ch)
    return "".join(out)


def _count_tar_samples(tar: Path) -> tuple[int, str | None]:
    """Distinct sample keys in a tar from its headers alone (data is skipped), and the error that ended
    the reading early, if one did."""
    keys: set[str] = set()
    try:
        with tar.open("rb") as stream, tarfile.open(fileobj=stream, mode="r:") as archive:
            for member in archive:
                if member.isfile():
                    keys.add(member.name.split("/")[-1].split(".", 1)[0])
    except (tarfile.TarError, OSError, EOFError) as e:
        return len(keys), f"{type(e).__name__}: {' '.join(str(e).split())}"
    return len(keys), None


def manifest_warnings(tar: Path) -> list[str]:
    """How a shard disagrees with its manifest, as far as the manifest's own record tells without hashing:
    the tar's size (and, when that differs, its sample count), the rows against the recorded count."""
    tar = location(tar)
    manifest = manifest_path(tar)
    if not manifest.is_file():
        return [f"{tar}: no manifest (an unfinished shard): not counted"]
    try:
        info = read_shard_info(manifest)
        rows = read_manifest(manifest, columns=["key"]).num_rows
    except Exception as e:
        return [f"{manifest}: unreadable manifest ({type(e).__name__}: {' '.join(str(e).split())})"]
    problems = []
    size = tar.stat().st_size
    if size != info.tar_bytes:
        found, error = _count_tar_samples(tar)
        problems.append(f"tar is {size} bytes and holds {found} sample(s){' readable' if error else ''}, its "
                        f"manifest says {info.tar_bytes} bytes and {info.num_samples} samples (truncated or replaced)")
    if rows != info.num_samples:
        problems.append(f"manifest has {rows} rows but records {info.num_samples} samples")
    if problems:
        return [f"{tar}: {'; '.join(problems)}; check it with dist-train shards verify"]
    return []


def dataset_stats(root: str | Path) -> dict:
    """Counts per split and language, caption lengths and image sizes, from the manifests alone; and a
    `warnings` line per shard whose tar disagrees with its manifest (size, sample count) or has none."""
    root = location(root)
    out: dict = {"root": str(root), "splits": {}, "warnings": []}
    for split in split_names(root):
        langs: collections.Counter = collections.Counter()
        origins: collections.Counter = collections.Counter()
        chars = images = caption_total = 0
        widths, heights = [], []
        tars = list_shards(root, split)
        for tar in tars:
            out["warnings"] += manifest_warnings(tar)
            m = manifest_path(tar)
            if not m.exists():
                continue
            try:
                t = read_manifest(m).to_pydict()
            except Exception:  # named in the warnings
                continue
            langs.update(t["language"])
            origins.update(t["origin"])
            caption_total += len(t["key"])
            chars += sum(t["caption_length"])
            images += sum(t["image_bytes"])
            widths += t["width"]
            heights += t["height"]
        n = caption_total
        out["splits"][split] = {
            "shards": len(tars),
            "samples": n,
            "languages": dict(sorted(langs.items())),
            "origins": dict(sorted(origins.items())),
            "mean_caption_chars": round(chars / n, 1) if n else 0,
            "mean_image_bytes": round(images / n) if n else 0,
            "image_width": [min(widths), max(widths)] if n else None,
            "image_height": [min(heights), max(heights)] if n else None,
        }
    summary = root / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        out["rejects"] = s.get("totals", {}).get("rejects", {})
        out["read"] = s.get("totals", {}).get("read")
        out["rejected"] = s.get("totals", {}).get("rejected")
    return out
