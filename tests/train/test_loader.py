"""The training loader: every rank the same steps, every sample once per epoch, exact resume."""

from __future__ import annotations

import io
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dist_train.data.shards import iter_shard, list_finished_shards
from dist_train.train.loader import ShardStream, TrainLoader, keep_probabilities


def _stream(root: Path, rank=0, world=1, workers=0, batch=8, **kw) -> ShardStream:
    return ShardStream(root, "train", batch, rank=rank, world_size=world, num_workers=workers, seed=7,
                       shuffle_buffer=50, image_size=32, max_tokens=16, **kw)


def _epoch_keys(loader: TrainLoader, steps: int) -> list[list[str]]:
    return [b["keys"] for b in itertools.islice(iter(loader), steps)]


@pytest.mark.parametrize("world,workers", [(1, 0), (2, 1), (2, 2), (3, 2)])
def test_every_rank_takes_the_same_steps_and_no_sample_repeats_within_an_epoch(tiny_preprocessed, world, workers):
    # 336 train samples in 3 shards of 128/128/80: never an even split over ranks x workers x batch
    loaders = [TrainLoader(_stream(tiny_preprocessed, r, world, workers), workers) for r in range(world)]
    steps = {l.steps_per_epoch for l in loaders}
    assert len(steps) == 1
    (n,) = steps
    assert n == (336 // (world * max(1, workers))) // 8 * max(1, workers)
    seen = [k for l in loaders for batch in _epoch_keys(l, n) for k in batch]
    assert len(seen) == len(set(seen)) == n * 8 * world
    assert all(l.epoch == 0 and l.consumed == n for l in loaders)


def test_epochs_are_shuffled_differently_and_reproducibly(tiny_preprocessed):
    a = _epoch_keys(TrainLoader(_stream(tiny_preprocessed), 0), 84)
    b = _epoch_keys(TrainLoader(_stream(tiny_preprocessed), 0), 84)
    assert a == b
    first, second = a[:42], a[42:]
    assert [k for x in first for k in x] != [k for x in second for k in x]
    assert sorted(k for x in first for k in x) == sorted(k for x in second for k in x)


@pytest.mark.parametrize("workers,stop", [(0, 5), (2, 7), (2, 40), (2, 42)])
def test_resume_continues_with_exactly_the_unseen_batches(tiny_preprocessed, workers, stop):
    total = 70  # crosses an epoch boundary (42 steps per epoch with batch 8)
    reference = _epoch_keys(TrainLoader(_stream(tiny_preprocessed, workers=workers), workers), total)
    first = TrainLoader(_stream(tiny_preprocessed, workers=workers), workers)
    head = _epoch_keys(first, stop)
    state = first.state_dict()
    resumed = TrainLoader(_stream(tiny_preprocessed, workers=workers), workers)
    resumed.load_state_dict(state)
    tail = _epoch_keys(resumed, total - stop)
    assert head + tail == reference


def test_resume_with_other_worker_count_is_refused(tiny_preprocessed):
    loader = TrainLoader(_stream(tiny_preprocessed, workers=2), 2)
    _epoch_keys(loader, 3)
    other = TrainLoader(_stream(tiny_preprocessed, workers=1), 1)
    with pytest.raises(ValueError, match="num_workers"):
        other.load_state_dict(loader.state_dict())


def test_a_corrupt_shard_is_skipped_and_counted_and_steps_stay_equal(tiny_preprocessed, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_preprocessed, root)
    tar = list_finished_shards(root, "train")[0]
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 3])
    loaders = [TrainLoader(_stream(root, r, 2, 1), 1) for r in range(2)]
    n = loaders[0].steps_per_epoch
    batches = [list(itertools.islice(iter(l), n)) for l in loaders]
    assert [len(b) for b in batches] == [n, n]
    stats = [b[-1]["stats"] for b in batches]
    assert sum(s["corrupt_shards"] for s in stats) >= 1
    assert sum(s["repeated"] for s in stats) > 0  # the short worker filled its quota from its own range


def test_language_balancing_lifts_a_small_language(tiny_preprocessed):
    probs = keep_probabilities({"en": 900, "ja": 100}, temperature=1e6)
    assert probs["ja"] == 1.0 and probs["en"] == pytest.approx(1 / 9, rel=1e-4)
    natural = keep_probabilities({"en": 900, "ja": 100}, temperature=1.0)
    assert natural == {"en": 1.0, "ja": 1.0}
    stream = _stream(tiny_preprocessed, language_temperature=2.0)
    assert stream.keep is not None and max(stream.keep.values()) == 1.0


# --- precomputed image features and batches of whole images (SMALR, VSE++) ---------------------------------------


def _features_by_key(root: Path) -> dict[str, tuple[str, str, np.ndarray]]:
    """key -> (image id, language, stored features) of every training sample."""
    out = {}
    for tar in list_finished_shards(root, "train"):
        for raw in iter_shard(tar):
            md = json.loads(raw["json"])
            out[raw["__key__"]] = (md["image_id"], md["language"],
                                   np.load(io.BytesIO(raw["features.npy"]), allow_pickle=False))
    return out


def test_feature_batches_carry_each_samples_stored_features_and_no_pixels(tiny_parallel10):
    stored = _features_by_key(tiny_parallel10)
    batch = next(iter(TrainLoader(_stream(tiny_parallel10, image_features=True), 0)))
    assert "images" not in batch
    assert batch["features"].dtype == torch.float32 and batch["features"].shape == (8, 512)
    for key, row in zip(batch["keys"], batch["features"]):
        torch.testing.assert_close(row, torch.from_numpy(stored[key][2].astype(np.float32)), rtol=0, atol=0)
    assert len({tuple(row.tolist()) for row in batch["features"]}) > 1


def test_image_batches_hold_k_captions_of_distinct_languages_and_visit_every_image_once(tiny_parallel10):
    stored = _features_by_key(tiny_parallel10)
    images = {image for image, _, _ in stored.values()}
    assert len(images) == 240 and len(stored) == 2400  # ten captions of every training image
    loader = TrainLoader(_stream(tiny_parallel10, batch=8, image_features=True, captions_per_image=2), 0)
    assert loader.steps_per_epoch == 240 // 4
    seen = []
    for batch in _epoch_batches(loader, loader.steps_per_epoch):
        pairs = [(stored[k][0], stored[k][1]) for k in batch["keys"]]
        for first, second in zip(pairs[0::2], pairs[1::2]):
            assert first[0] == second[0] and first[1] != second[1]
        assert batch["image_groups"][0::2].tolist() == batch["image_groups"][1::2].tolist()
        seen.extend(first[0] for first in pairs[0::2])
    assert sorted(seen) == sorted(images)  # every image exactly once per epoch
    assert batch["stats"]["short_images"] == 0


@pytest.mark.parametrize("workers,stop", [(0, 7), (2, 33)])
def test_resume_with_image_batches_continues_with_exactly_the_unseen_batches(tiny_parallel10, workers, stop):
    def make():
        stream = _stream(tiny_parallel10, workers=workers, batch=8, image_features=True, captions_per_image=2)
        return TrainLoader(stream, workers)

    total = 80  # crosses the epoch boundary (60 steps per epoch)
    reference = _epoch_keys(make(), total)
    first = make()
    head = _epoch_keys(first, stop)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert head + _epoch_keys(resumed, total - stop) == reference


def test_captions_per_image_must_divide_the_batch(tiny_parallel10):
    with pytest.raises(ValueError, match="captions_per_image=3"):
        _stream(tiny_parallel10, batch=8, captions_per_image=3)


def _epoch_batches(loader: TrainLoader, steps: int) -> list[dict]:
    return list(itertools.islice(iter(loader), steps))
