"""The training input pipeline: shards split by rank and worker, shuffled per epoch, resumable exactly.

Why not webdataset's own pipeline: its position cannot be checkpointed, and exact resume (a resumed
run sees exactly the samples it had not seen) is a requirement. The shards are still read with
webdataset's tar iterator (`dist_train.data.shards.iter_shard`), and the manifests give exact sample
counts, so the split is done on samples, not shards:

* epoch e: the shards are permuted from (seed, e); the concatenated samples are cut into equal,
  contiguous ranges, one per rank and then one per worker, so every rank gets the same number of
  steps whatever the shard counts (the remainder of N / (ranks x workers x batch) is dropped);
* each worker shuffles its range through a seeded buffer and yields whole batches, and the
  DataLoader takes batches from its workers in turn, so batch k of an epoch is batch k // K of
  logical worker k % K;
* the position is (epoch, batches consumed); on resume each worker replays its stream and drops
  the batches already consumed, and worker identities are rotated so that the next batch comes
  from the right worker.

`image_features=True` reads each sample's precomputed image features (`<key>.features.npy`, made by the
preprocessing's features stage) into `batch["features"]` (float32) instead of decoding the image.

`captions_per_image=k` makes batches of whole images: consecutive samples of one image (the
preprocessing writes an image's captions and their translations next to each other) form one unit,
units are shuffled instead of samples (shuffle_buffer then counts images), k captions of distinct
languages are drawn from each unit (images with fewer are skipped and counted as `short_images`),
and a batch holds batch_size / k images with k captions each. `caption_languages` (k languages) fixes
which: rows i*k .. i*k+k-1 of a batch are one image's captions in those languages, in that order (a
translation pair per image for the MMT objective; images lacking one count as `short_images`). An epoch then visits every image once
(an image cut by a rank or worker boundary may appear in both parts), so it has about k / c of the
plain epoch's steps for c captions per image. Caption-caption ranking (VSE++) and SMALR's
cross-lingual constraints need such batches.

`resampled=True` draws shards with replacement (per rank and worker) for multi-node runs where
exact epochs do not matter; epochs then have the same nominal length. Corrupt shards and samples
are skipped, counted and logged; a worker that runs short repeats samples of its range so that all
ranks still take the same number of steps (counted as `repeated`).
"""

from __future__ import annotations

import io
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dist_train.data.shards import iter_shard, list_finished_shards, manifest_path, read_manifest, read_shard_info
from dist_train.models.text_batch import pad_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardEntry:
    path: str
    num_samples: int


def list_split(root: str | Path, split: str) -> list[ShardEntry]:
    tars = list_finished_shards(root, split)
    if not tars:
        raise FileNotFoundError(f"no finished shards for split {split!r} under {root}")
    return [ShardEntry(str(t), read_shard_info(manifest_path(t)).num_samples) for t in tars]


def language_counts(root: str | Path, split: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tar in list_finished_shards(root, split):
        for lang in read_manifest(manifest_path(tar), ["language"]).column("language").to_pylist():
            counts[lang] = counts.get(lang, 0) + 1
    return dict(sorted(counts.items()))


def keep_probabilities(counts: dict[str, int], temperature: float) -> dict[str, float]:
    """Per-language keep probabilities that turn shares p_l into shares proportional to p_l ** (1/T)."""
    total = sum(counts.values())
    ratio = {lang: ((n / total) ** (1.0 / temperature)) / (n / total) for lang, n in counts.items() if n}
    top = max(ratio.values())
    return {lang: r / top for lang, r in ratio.items()}


class ShardStream(IterableDataset):
    """Batches of decoded samples for one rank; see the module docstring for the split and resume."""

    def __init__(self, root: str | Path, split: str, batch_size: int, *, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, seed: int = 0, shuffle_buffer: int = 1000, image_size: int = 64,
                 max_tokens: int = 32, resampled: bool = False, language_temperature: float | None = None,
                 languages: list[str] | None = None, special_ids: tuple[int, int, int] = (0, 2, 3),
                 translation_group=None, image_features: bool = False, captions_per_image: int = 0,
                 caption_languages: list[str] | None = None):
        self.shards = list_split(root, split)
        self.root, self.split = str(root), split
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.num_workers = max(1, num_workers)
        self.seed, self.shuffle_buffer, self.image_size, self.max_tokens = seed, shuffle_buffer, image_size, max_tokens
        self.resampled = resampled
        counts = language_counts(root, split)
        self.languages = languages or sorted(counts)
        self.language_index = {lang: i for i, lang in enumerate(self.languages)}
        self.keep = keep_probabilities(counts, language_temperature) if language_temperature else None
        self.pad_id, self.bos_id, self.eos_id = special_ids
        self.translation_group = translation_group
        self.image_features = image_features
        self.captions_per_image = captions_per_image
        self.caption_languages = list(caption_languages) if caption_languages else None
        if self.caption_languages is not None and (len(self.caption_languages) != captions_per_image
                                                   or len(set(self.caption_languages)) != captions_per_image):
            raise ValueError(f"caption_languages={self.caption_languages} must be captions_per_image="
                             f"{captions_per_image} distinct languages")
        total = sum(s.num_samples for s in self.shards)
        self.per_worker = total // (world_size * self.num_workers)
        self.batches_per_worker = self.per_worker // batch_size
        if captions_per_image:
            if captions_per_image < 1 or batch_size % captions_per_image:
                raise ValueError(f"captions_per_image={captions_per_image} must be >= 1 and divide the batch size "
                                 f"{batch_size}")
            images = image_count(root, split)
            self.batches_per_worker = (images // (world_size * self.num_workers)) // (batch_size // captions_per_image)
        if self.batches_per_worker == 0:
            raise ValueError(f"{split}: {total} samples are too few for {world_size} ranks x {self.num_workers} "
                             f"workers x batch {batch_size}")
        self.epoch = 0
        self.consumed = 0  # batches of this epoch already consumed (set before iterating to resume)

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_worker * self.num_workers

    # --- the order of samples -------------------------------------------------------------------------------

    def _rng(self, *parts: int) -> random.Random:
        return random.Random("-".join(map(str, (self.seed, *parts))))  # str seeds are hashed stably

    def _worker_ranges(self, epoch: int, logical_worker: int) -> list[tuple[str, int, int]]:
        """(shard, first, end) pieces of the worker's contiguous range in this epoch's shard order."""
        order = list(self.shards)
        self._rng(epoch).shuffle(order)
        slot = self.rank * self.num_workers + logical_worker
        start, end = slot * self.per_worker, (slot + 1) * self.per_worker
        pieces, offset = [], 0
        for shard in order:
            lo, hi = max(start, offset), min(end, offset + shard.num_samples)
            if lo < hi:
                pieces.append((shard.path, lo - offset, hi - offset))
            offset += shard.num_samples
        return pieces

    def _raw_samples(self, epoch: int, logical_worker: int, stats: dict, rng: random.Random) -> Iterator:
        """The worker's samples (or, with captions_per_image, image units: lists of samples), endlessly,
        shuffled: its range, then its range again to fill up (each pass shuffled on its own, so no
        sample repeats before the range is used up); or, resampled, shards drawn with replacement
        through one continuous buffer."""
        draw = self._rng(epoch, self.rank, logical_worker, 1)
        if self.resampled:
            def shards() -> Iterator[dict]:
                while True:
                    shard = draw.choice(self.shards)
                    yield from self._read_piece(shard.path, 0, shard.num_samples, stats, False, draw)
            yield from self._shuffled(self._units(shards(), stats, draw), rng)
            return
        lap = 0
        while True:
            n = 0
            units = self._units(self._pass(epoch, logical_worker, stats, lap > 0, draw), stats, draw)
            for raw in self._shuffled(units, rng):
                n += 1
                yield raw
            if n == 0:
                raise RuntimeError(f"no readable sample in this worker's part of {self.split} (epoch {epoch}); "
                                   f"see the warnings about corrupt shards under {self.root}")
            lap += 1

    def _pass(self, epoch: int, logical_worker: int, stats: dict, repeat: bool, draw: random.Random):
        for path, first, end in self._worker_ranges(epoch, logical_worker):
            yield from self._read_piece(path, first, end, stats, repeat, draw)

    def _read_piece(self, path: str, first: int, end: int, stats: dict, repeat: bool, rng: random.Random):
        try:
            for i, raw in enumerate(iter_shard(path)):
                if i < first:
                    continue
                if i >= end:
                    break
                if self.keep is not None:
                    lang = _language_of(raw)
                    if rng.random() >= self.keep.get(lang, 1.0):
                        continue
                if repeat:
                    stats["repeated"] += 1
                yield raw
        except Exception as exc:  # a corrupt or truncated shard: keep what was read, skip the rest
            stats["corrupt_shards"] += 1
            log.warning("skipping the rest of %s: %s", path, exc)

    def _units(self, raws: Iterator[dict], stats: dict, rng: random.Random) -> Iterator:
        """Samples as they come, or (captions_per_image=k) one list of k samples of distinct languages
        per run of consecutive samples of one image."""
        k = self.captions_per_image
        if not k:
            yield from raws
            return
        run: list[dict] = []
        run_image = None

        def pick(samples: list[dict]) -> list[dict] | None:
            first_of_language: dict[str, dict] = {}
            for raw in samples:
                first_of_language.setdefault(_language_of(raw), raw)
            if self.caption_languages is not None:
                if any(lang not in first_of_language for lang in self.caption_languages):
                    stats["short_images"] += 1
                    return None
                return [first_of_language[lang] for lang in self.caption_languages]
            if len(first_of_language) < k:
                stats["short_images"] += 1
                return None
            return rng.sample(list(first_of_language.values()), k)

        for raw in raws:
            image = _image_of(raw)
            if run and image != run_image:
                unit = pick(run)
                if unit is not None:
                    yield unit
                run = []
            run_image = image
            run.append(raw)
        if run:
            unit = pick(run)
            if unit is not None:
                yield unit

    def _shuffled(self, raws: Iterator, rng: random.Random) -> Iterator:
        buffer: list[dict] = []
        for raw in raws:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(raw)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], raw = raw, buffer[i]
            yield raw
        rng.shuffle(buffer)
        yield from buffer

    # --- decoding --------------------------------------------------------------------------------------------

    def _decode(self, raw: dict) -> dict | None:
        try:
            md = json.loads(raw["json"])
            if self.image_features:
                stored = np.load(io.BytesIO(raw["features.npy"]), allow_pickle=False)
                image = torch.from_numpy(stored.astype(np.float32))
            else:
                decoded = Image.open(io.BytesIO(raw["jpg"]))
                decoded = _resize_center_crop(decoded.convert("RGB"), self.image_size)
                image = torch.from_numpy(np.asarray(decoded, dtype=np.uint8).copy()).permute(2, 0, 1)
            tokens = np.load(io.BytesIO(raw["tokens.npy"]), allow_pickle=False)
        except Exception as exc:
            log.debug("skipping sample %s: %s", raw.get("__key__"), exc)
            return None
        group = self.translation_group(md) if self.translation_group else md["caption_id"]
        return {"key": raw["__key__"], "image": image, "tokens": tokens, "language": md["language"],
                "image_id": md["image_id"], "group": group}

    def _batches(self, epoch: int, logical_worker: int, skip: int, stats: dict) -> Iterator[dict]:
        rng = self._rng(epoch, self.rank, logical_worker, 2)
        samples: list[dict] = []
        produced = 0
        for item in self._raw_samples(epoch, logical_worker, stats, rng):
            for raw in item if self.captions_per_image else (item,):
                sample = self._decode(raw)
                if sample is None:
                    stats["corrupt_samples"] += 1
                    if stats["corrupt_samples"] > 10 * self.per_worker + 100:
                        raise RuntimeError(f"{self.split}: almost every sample fails to decode "
                                           f"(last: {raw.get('__key__')})")
                    continue
                samples.append(sample)
                if len(samples) == self.batch_size:
                    if produced >= skip:
                        yield self._collate(samples, epoch, logical_worker, produced, stats)
                    produced += 1
                    samples = []
                    if produced == self.batches_per_worker:
                        return

    def _collate(self, samples: list[dict], epoch: int, worker: int, index: int, stats: dict) -> dict:
        return {
            "features" if self.image_features else "images": torch.stack([s["image"] for s in samples]),
            "tokens": pad_tokens([s["tokens"] for s in samples], self.max_tokens, self.bos_id, self.eos_id,
                                 self.pad_id),
            "languages": torch.tensor([self.language_index.get(s["language"], -1) for s in samples]),
            "groups": torch.tensor([_group_id(s["group"]) for s in samples], dtype=torch.int64),
            "image_groups": torch.tensor([_group_id(s["image_id"]) for s in samples], dtype=torch.int64),
            "keys": [s["key"] for s in samples],
            "position": {"epoch": epoch, "worker": worker, "batch": index},
            "stats": dict(stats),
        }

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        k = self.num_workers
        if info is not None and info.num_workers != k:
            raise ValueError(f"ShardStream was built for {k} workers, the DataLoader has {info.num_workers}")
        logical = (physical + self.consumed) % k  # the next batch to consume comes from physical worker 0
        skip = -(-(self.consumed - logical) // k) if self.consumed > logical else 0
        stats = {"corrupt_shards": 0, "corrupt_samples": 0, "repeated": 0, "short_images": 0}
        yield from self._batches(self.epoch, logical, skip, stats)


def _language_of(raw: dict) -> str:
    try:
        return json.loads(raw["json"])["language"]
    except Exception:
        return ""


def _image_of(raw: dict) -> str:
    try:
        return json.loads(raw["json"])["image_id"]
    except Exception:
        return raw.get("__key__", "")


def image_count(root: str | Path, split: str) -> int:
    """Distinct images of a split, from the manifests."""
    images: set[str] = set()
    for tar in list_finished_shards(root, split):
        images.update(read_manifest(manifest_path(tar), ["image_id"]).column("image_id").to_pylist())
    return len(images)


def _group_id(value: Any) -> int:
    """A stable 63-bit id for a string (Python's hash() is salted per process)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(str(value).encode(), digest_size=8).digest(), "little") >> 1


def _resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return image


class TrainLoader:
    """Epochs of batches for one rank, with a checkpointable position (epoch, batches consumed)."""

    def __init__(self, stream: ShardStream, num_workers: int):
        self.stream = stream
        self.num_workers = num_workers
        self.epoch = 0
        self.consumed = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.stream.steps_per_epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "rank": self.stream.rank,
                "world_size": self.stream.world_size, "num_workers": self.num_workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for key in ("world_size", "num_workers"):
            if state.get(key) != self.state_dict()[key]:
                raise ValueError(f"the checkpoint's data position was saved with {key}={state.get(key)}, this run "
                                 f"has {self.state_dict()[key]}: resume with the same {key} (the position is counted "
                                 "per rank and loader worker), or start a new run from the exported weights")
        self.epoch, self.consumed = state["epoch"], state["consumed"]

    def __iter__(self) -> Iterator[dict]:
        """Batches from the current position to the end of training (epochs roll over)."""
        while True:
            self.stream.epoch, self.stream.consumed = self.epoch, self.consumed
            # Its own generator: creating a DataLoader iterator must not draw from the global RNG (a
            # resumed run creates one mid-epoch, and dropout would then see other random numbers).
            seeds = torch.Generator().manual_seed(self.stream.seed * 100003 + self.epoch)
            loader = DataLoader(self.stream, batch_size=None, num_workers=self.num_workers, generator=seeds,
                                persistent_workers=False, prefetch_factor=2 if self.num_workers else None)
            for batch in loader:
                self.consumed += 1
                yield batch
            self.epoch += 1
            self.consumed = 0
