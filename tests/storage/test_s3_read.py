"""Datasets read from object storage exactly as from disk, against a real S3-compatible server."""

from __future__ import annotations

import itertools

import pytest
import torch

from dist_train.data.shards import iter_shard, list_finished_shards, read_shard_info, manifest_path, split_names
from dist_train.storage import AtomicFile, StorageError, location, set_storage_options
from dist_train.train.data import read_split_groups
from dist_train.train.loader import ShardStream, TrainLoader


def upload(local, url: str) -> str:
    """Copy a dataset folder to `url` with plain s3fs (not the project's code)."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.put(str(local) + "/", url.removeprefix("s3://") + "/", recursive=True)
    return url


@pytest.fixture(scope="module")
def remote_dataset(tiny_preprocessed, s3_server):
    import uuid

    import s3fs

    name = f"read-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return upload(tiny_preprocessed, f"s3://{name}/world-tiny")


def test_listing_and_manifests_match_the_local_copy(tiny_preprocessed, remote_dataset):
    assert split_names(remote_dataset) == split_names(tiny_preprocessed)
    for split in split_names(tiny_preprocessed):
        local = list_finished_shards(tiny_preprocessed, split)
        remote = list_finished_shards(remote_dataset, split)
        assert [t.name for t in remote] == [t.name for t in local]
        assert str(remote[0]).startswith(remote_dataset + "/")
        assert [read_shard_info(manifest_path(t)) for t in remote] == [read_shard_info(manifest_path(t)) for t in local]


def test_shards_stream_the_same_samples(tiny_preprocessed, remote_dataset):
    local = list_finished_shards(tiny_preprocessed, "test")[0]
    remote = list_finished_shards(remote_dataset, "test")[0]
    a, b = list(iter_shard(local)), list(iter_shard(remote))
    assert len(a) == len(b) > 0
    assert [(x["__key__"], x["jpg"], x["txt"]) for x in a] == [(x["__key__"], x["jpg"], x["txt"]) for x in b]
    assert read_split_groups(remote_dataset, "test") == read_split_groups(tiny_preprocessed, "test")


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_from_s3_equal_those_from_disk(tiny_preprocessed, remote_dataset, workers):
    def batches(root):
        stream = ShardStream(root, "train", 8, num_workers=workers, seed=3, shuffle_buffer=50, image_size=32,
                             max_tokens=16)
        return list(itertools.islice(iter(TrainLoader(stream, workers)), 6))

    for x, y in zip(batches(tiny_preprocessed), batches(remote_dataset), strict=True):
        assert x["keys"] == y["keys"]
        assert torch.equal(x["images"], y["images"])


def test_an_upload_appears_only_when_committed(bucket):
    target = location(f"{bucket}/x/shard.tar")
    f = AtomicFile(target)
    f.write(b"half a shard")
    assert not target.exists()
    f.abort()
    assert not target.exists()
    f = AtomicFile(target)
    f.write(b"a whole shard")
    f.commit()
    assert target.read_bytes() == b"a whole shard"


def test_locations_and_storage_options(monkeypatch):
    assert type(location("shards/x")).__name__ == "PosixPath"
    assert str(location("file:///tmp/x")) == "/tmp/x"
    assert str(location("s3://b/x") / "train") == "s3://b/x/train"
    with pytest.raises(StorageError, match="pipe:"):
        location("pipe:cat x.tar")
    with pytest.raises(StorageError, match="not a JSON object"):
        set_storage_options("{endpoint")
    monkeypatch.setenv("FSSPEC_S3", "{}")  # restored (removed) after the test
    import fsspec.config

    monkeypatch.setattr(fsspec.config, "conf", {})
    set_storage_options('{"s3": {"endpoint_url": "http://127.0.0.1:1"}}')
    import json
    import os

    assert json.loads(os.environ["FSSPEC_S3"]) == {"endpoint_url": "http://127.0.0.1:1"}
    assert fsspec.config.conf["s3"] == {"endpoint_url": "http://127.0.0.1:1"}
