"""The packer writes to object storage with the guarantees it has on disk: a shard appears only
complete, a rerun after a crash resumes and gives the bytes an uninterrupted run gives, a rerun
with other input is refused."""

from __future__ import annotations

import hashlib

import pytest

from dist_train.cli import main
from dist_train.data.pack import PackError, PackOptions, pack
from dist_train.data.shards import list_finished_shards
from dist_train.data.sources.base import BytesImage
from tests.data.test_pack import ListSource, jpeg_bytes, rec


def _digest_local(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".tar", ".json") and "_pack" not in p.parts}


def _digest_s3(url: str) -> dict[str, str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url.removeprefix("s3://")
    return {key[len(root) + 1:]: hashlib.sha256(fs.cat(key)).hexdigest() for key in sorted(fs.find(root))
            if key.endswith((".tar", ".json")) and "/_pack/" not in key}


def _keys(url: str) -> list[str]:
    import s3fs

    return sorted(s3fs.S3FileSystem(skip_instance_cache=True).find(url.removeprefix("s3://")))


def test_crash_mid_pack_to_s3_then_rerun_gives_the_bytes_of_an_uninterrupted_local_run(tmp_path, bucket):
    good = [rec(i, BytesImage(jpeg_bytes(colour=(i * 3 % 255, 10, 10)))) for i in range(80)]
    good[5].caption = ""
    options = PackOptions(max_samples_per_shard=8, workers=0, chunk_size=2, progress=False)
    pack(ListSource({"train": good}), tmp_path / "ref", options)

    out = f"{bucket}/packed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        pack(ListSource({"train": good}, fail_after=60), out, options)
    keys = _keys(out)
    tars = [k for k in keys if k.endswith(".tar")]
    assert len(tars) == len(list_finished_shards(out, "train")) >= 3, "a shard without its manifest is visible"
    assert not [k for k in keys if k.endswith("summary.json")]

    pack(ListSource({"train": good}), out, options)
    assert _digest_s3(out) == _digest_local(tmp_path / "ref")

    with pytest.raises(PackError, match="other input or with other settings"):
        pack(ListSource({"train": good}, tag="other"), out, options)


def test_cli_packs_to_a_url_and_verifies_it(bucket, capsys):
    out = f"{bucket}/world-tiny"
    assert main(["-q", "pack", "world", "--preset", "tiny", "--out", out, "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"{out}: 756 samples written, 0 rejected (of 756 read)" in printed
    assert {k.rsplit("/", 1)[-1] for k in _keys(out)} >= {"summary.json", "rejects.parquet", "train-000000.tar",
                                                          "train-000000.parquet"}
