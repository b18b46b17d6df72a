"""The preprocessing stages, as plain functions and classes over a `ShardWork`.

The Ray pipeline (`pipeline.py`) runs them as Ray Data operators; the benchmark's single-process
baseline calls the same functions in a loop, so both do exactly the same work.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from dist_train.data.images import ImageRejected, reencode
from dist_train.data.schema import ORIGIN_MACHINE, Provenance, Sample, sample_key
from dist_train.storage import location, makedirs
from dist_train.data.shards import (ShardWriter, atomic_write_json, atomic_write_parquet,
                                    iter_shard, manifest_path, read_manifest, rejects_table)
from dist_train.preprocess.captions import normalize_caption
from dist_train.preprocess.work import Row, ShardWork

log = logging.getLogger(__name__)

STATE_DIR = "_preprocess"
TOKENS_MEMBER = "tokens.npy"
FEATURES_MEMBER = "features.npy"

def state_dir(out: Path) -> Path:
    return location(out) / STATE_DIR


def rejects_path(out: Path, split: str, index: int) -> Path:
    return state_dir(out) / "rejects" / f"{split}-{index:06d}.parquet"


def stats_path(out: Path, split: str, index: int) -> Path:
    return state_dir(out) / "stats" / f"{split}-{index:06d}.json"


# --- read, validate, decode, resize, re-encode, normalise -------------------------------------------------


def _input_positions(tar: Path) -> dict[str, int]:
    table = read_manifest(manifest_path(tar), ["key", "input_index"])
    return dict(zip(table.column("key").to_pylist(), table.column("input_index").to_pylist()))


def read_and_clean(work: ShardWork, images: dict[str, Any], captions: dict[str, Any]) -> ShardWork:
    """Read the input shard; check and re-encode images, normalise captions. Bad samples are rejected
    with a reason; a shard that breaks part-way keeps what was read and reports a source error."""
    tar = location(work.input_tar)
    positions = _input_positions(tar)
    next_unknown = work.input_end  # samples missing from the manifest still get a stable, unique position
    try:
        for raw in iter_shard(tar):
            work.read += 1
            key = raw.get("__key__", "?")
            if key in positions:
                input_index = positions[key]
            else:
                input_index, next_unknown = next_unknown, next_unknown + 1
            try:
                sample = Sample.from_wds(raw)
            except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
                lang = _guess_language(raw)
                reason = "invalid_utf8" if isinstance(exc, UnicodeDecodeError) else "malformed_sample"
                work.stages.add("read", lang, "in")
                work.reject("read", reason, f"{type(exc).__name__}: {exc}", key=key, caption_id="",
                            language=lang, input_index=input_index)
                continue
            lang = sample.language
            work.stages.add("read", lang, "in")
            work.stages.add("read", lang, "out")
            row = Row(sample=sample, input_index=input_index)
            if images.get("enabled", True):
                work.stages.add("images", lang, "in")
                try:
                    data, width, height = reencode(sample.image, max_pixels=images["max_pixels"],
                                                   max_side=images["max_side"], quality=images["jpeg_quality"])
                except ImageRejected as exc:
                    work.reject("images", exc.reason, exc.detail, key=key, caption_id=sample.caption_id,
                                language=lang, input_index=input_index)
                    continue
                row.sample = replace(sample, image=data, width=width, height=height)
                work.stages.add("images", lang, "out")
            if captions.get("normalize", True):
                work.stages.add("captions", lang, "in")
                text = normalize_caption(row.sample.caption)
                if not text:
                    work.reject("captions", "empty_caption", "caption is empty after normalisation", key=key,
                                caption_id=sample.caption_id, language=lang, input_index=input_index)
                    continue
                row.sample = replace(row.sample, caption=text)
                work.stages.add("captions", lang, "out")
            work.rows.append(row)
    except Exception as exc:  # a truncated or corrupt tar: keep what was read before the break
        work.source_errors.append({"shard": tar.name, "error": f"{type(exc).__name__}: {exc}",
                                   "samples_read": work.read})
        log.warning("%s: stopped reading after %d samples: %s", tar, work.read, exc)
    return work


def _guess_language(raw: dict) -> str:
    try:
        return str(json.loads(raw["json"])["language"])
    except Exception:
        return "unknown"


def collect_captions(task: dict[str, Any], normalize: bool) -> dict[str, list[str]]:
    """Captions of one input shard by language, for training the vocabulary (unreadable samples are
    left to the main pass, which rejects them with a reason)."""
    by_language: dict[str, list[str]] = {}
    try:
        for raw in iter_shard(task["input_tar"]):
            try:
                md = json.loads(raw["json"])
                text = raw["txt"].decode("utf-8")
            except Exception:
                continue
            text = normalize_caption(text) if normalize else text.strip()
            if text:
                by_language.setdefault(md["language"], []).append(text)
    except Exception:
        pass
    return by_language


# --- translation -------------------------------------------------------------------------------------------


def translated_caption_id(caption_id: str, language: str) -> str:
    return f"{caption_id}-mt-{language}"


class TranslateStage:
    """Machine translation of a shard's captions with one translator, batched and length-sorted by
    the translator. Augmentation adds rows (provenance: machine, with source language and
    translator); query translations are attached to the caption's `meta.translations`."""

    def __init__(self, config: dict[str, Any]):
        from dist_train.preprocess.translate import build_translator
        from dist_train.preprocess.translate.factory import KEYS_BY_BACKEND

        options = dict(config)
        options["num_threads"] = config.get("num_threads") or max(1, math.ceil(config.get("num_cpus") or 1))
        applicable = KEYS_BY_BACKEND.get(config["backend"], set())
        self.translator = build_translator({k: v for k, v in options.items() if k in applicable})

    def __call__(self, work: ShardWork) -> ShardWork:
        name = self.translator.name
        work.notes["translator"] = name
        # (source, target) -> rows to translate
        jobs: dict[tuple[str, str], list[tuple[Row, str]]] = {}
        for row in work.rows:
            s = row.sample
            for target in work.augment_plan.get(s.caption_id, []):
                jobs.setdefault((s.language, target), []).append((row, "augment"))
            for target in work.query_languages:
                if target != s.language:
                    jobs.setdefault((s.language, target), []).append((row, "query"))
        added: list[Row] = []
        for (source, target), items in sorted(jobs.items()):
            texts = [row.sample.caption for row, _ in items]
            metas = [row.sample.meta for row, _ in items]
            outputs = self.translator.translate(texts, source, target, metas=metas)
            for (row, kind), text in zip(items, outputs):
                text = normalize_caption(text)
                s = row.sample
                if kind == "query":
                    translations = dict(s.meta.get("translations", {}))
                    translations[target] = text
                    row.sample = replace(s, meta={**s.meta, "translations": translations, "translator": name})
                    work.stages.add("translate", target, "query_translations")
                    continue
                caption_id = translated_caption_id(s.caption_id, target)
                work.stages.add("translate", target, "in")
                if not text:
                    work.reject("translate", "empty_translation", f"{source}->{target} gave an empty caption",
                                key=sample_key(caption_id), caption_id=caption_id, language=target,
                                input_index=row.input_index)
                    continue
                new = replace(
                    s, key=sample_key(caption_id), caption=text, language=target, caption_id=caption_id,
                    provenance=Provenance(origin=ORIGIN_MACHINE, source_language=source,
                                          source_caption_id=s.caption_id, translator=name),
                )
                added.append(Row(sample=new, input_index=row.input_index, order=len(added) + 1))
                work.stages.add("translate", target, "out")
        work.rows.extend(added)
        return work


# --- image features ----------------------------------------------------------------------------------------


class FeatureStage:
    """Pooled ResNet features averaged over crops (SMALR trains on such precomputed features);
    each distinct image of a shard goes through the network once."""

    def __init__(self, config: dict[str, Any]):
        from dist_train.preprocess.image_features import ImageFeatureExtractor

        threads = config.get("num_threads") or max(1, math.ceil(config.get("num_cpus") or 1))
        self.extractor = ImageFeatureExtractor(
            arch=config["arch"], weights=config.get("weights"), image_size=config["image_size"],
            resize=config["resize"], crops=config["crops"], batch_size=config["batch_size"],
            device=config.get("device", "cpu"), num_threads=threads, seed=config.get("seed", 0),
            source=f"image network of {config['checkpoint']}" if config.get("checkpoint") else None,
        )

    def __call__(self, work: ShardWork) -> ShardWork:
        from dist_train.preprocess.image_features import ImageDecodeError

        work.notes["features"] = self.extractor.describe()
        digests = [hashlib.sha1(row.sample.image).digest() for row in work.rows]
        unique: dict[bytes, int] = {}
        images: list[bytes] = []
        for digest, row in zip(digests, work.rows):
            if digest not in unique:
                unique[digest] = len(images)
                images.append(row.sample.image)
        bad: set[int] = set()
        while True:  # images the image stage did not check (it can be switched off) may not decode
            keep = [i for i in range(len(images)) if i not in bad]
            try:
                computed = self.extractor([images[i] for i in keep]) if keep else None
                break
            except ImageDecodeError as exc:
                bad.add(keep[exc.index])
        position = {i: n for n, i in enumerate(keep)}
        kept = []
        for digest, row in zip(digests, work.rows):
            index = unique[digest]
            s = row.sample
            if index in bad:
                work.reject("features", "undecodable_image", "the feature network could not decode the image",
                            key=s.key, caption_id=s.caption_id, language=s.language, input_index=row.input_index)
                continue
            row.features = computed[position[index]]
            work.stages.add("features", s.language, "out")
            kept.append(row)
        work.rows = kept
        return work


# --- tokenise and write ------------------------------------------------------------------------------------


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def tokenize_and_write(work: ShardWork, out: str, vocab_proto: bytes | None) -> dict[str, Any]:
    """Tokenise the captions, then write the output shard: rejects and stage counts first, the tar and
    its manifest last (the manifest is what marks the shard finished)."""
    out_dir = location(out)
    rows = sorted(work.rows, key=lambda r: (r.input_index, r.order))
    if vocab_proto is not None:
        from dist_train.preprocess.vocab import load_vocab

        sp = load_vocab(vocab_proto)
        ids = sp.encode([r.sample.caption for r in rows])
        for row, row_ids in zip(rows, ids):
            row.tokens = np.asarray(row_ids, dtype=np.int32)
            work.stages.add("tokenize", row.sample.language, "out")
    writer = ShardWriter(out_dir, work.split, work.index)
    try:
        seen: set[str] = set()
        for row in rows:
            s = row.sample
            if s.key in seen:
                work.reject("write", "duplicate_id", f"key {s.key!r} appears twice in the shard", key=s.key,
                            caption_id=s.caption_id, language=s.language, input_index=row.input_index)
                continue
            seen.add(s.key)
            record = s.to_wds()
            if row.tokens is not None:
                record[TOKENS_MEMBER] = _npy_bytes(row.tokens)
            if row.features is not None:
                record[FEATURES_MEMBER] = _npy_bytes(np.asarray(row.features, dtype=np.float16))
            writer.write(s, row.input_index, record)
            work.stages.add("write", s.language, "out")
        rejects = rejects_table(work.rejects)
        atomic_write_parquet(_mkparent(rejects_path(out_dir, work.split, work.index)), rejects)
        stats = {
            "shard": f"{work.split}-{work.index:06d}",
            "input": work.input_tar,
            "read": work.read,
            "written": len(writer),
            "rejected": len(work.rejects),
            "stages": work.stages.to_dict(),
            "source_errors": work.source_errors,
            "notes": work.notes,
        }
        atomic_write_json(_mkparent(stats_path(out_dir, work.split, work.index)), stats)
        info = writer.commit(work.input_start, work.input_end, rejected=len(work.rejects))
    except BaseException:
        writer.abort()
        raise
    return {"shard": info.name, "split": work.split, "written": info.num_samples, "read": work.read,
            "rejected": len(work.rejects)}


def _mkparent(path: Path) -> Path:
    makedirs(path.parent)
    return path
