"""The packer: layout, bad input (one test per reject reason), size bounds, atomicity and resume."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from dist_train.data.pack import REJECT_REASONS, PackError, PackOptions, pack
from dist_train.data.schema import Sample, sample_key
from dist_train.data.shards import iter_shard, list_finished_shards, list_shards, manifest_path, read_shard_info
from dist_train.data.sources.base import BytesImage, FileImage, Source, SourceRecord
from dist_train.data.sources.world import WorldSource
from dist_train.data.verify import verify_dataset


def jpeg_bytes(w=32, h=24, colour=(200, 30, 30), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, format=fmt)
    return buf.getvalue()


class ListSource(Source):
    """A source over a fixed list of records; `fail_after` simulates a crash while reading input."""

    name = "list"

    def __init__(self, records: dict[str, list[SourceRecord]], fail_after: int | None = None, tag: str = "x"):
        self._records = records
        self.fail_after = fail_after
        self.tag = tag

    def splits(self):
        return list(self._records)

    def records(self, split):
        for i, r in enumerate(self._records[split]):
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("simulated crash")
            yield r

    def describe(self):
        return {"source": self.name, "tag": self.tag}


def rec(i, image, caption="a red box", language="en", split="train", caption_id=None):
    return SourceRecord(image=image, caption=caption, language=language, image_id=f"img{i}",
                        caption_id=caption_id or f"cap{i}", split=split)


def written_samples(out: Path, split: str) -> list[Sample]:
    return [Sample.from_wds(raw) for tar in list_finished_shards(out, split) for raw in iter_shard(tar)]


def rejects_by_id(out: Path) -> dict[str, str]:
    rows = pq.read_table(out / "rejects.parquet").to_pylist()
    return {r["caption_id"]: r["reason"] for r in rows}


@pytest.fixture(params=[0, 2], ids=["inline", "workers"])
def workers(request):
    return request.param


def test_every_kind_of_bad_input_is_rejected_with_its_reason_and_valid_records_survive(tmp_path, workers):
    good = jpeg_bytes()
    ok_file = tmp_path / "ok.jpg"
    ok_file.write_bytes(good)
    (tmp_path / "empty.jpg").write_bytes(b"")
    truncated = jpeg_bytes(256, 256)[:600]
    bomb = io.BytesIO()
    Image.new("L", (400, 300)).save(bomb, format="PNG")  # 120 000 pixels > the 100 000 limit below
    records = [
        rec(0, FileImage(str(ok_file))),
        rec(1, FileImage(str(tmp_path / "nope.jpg"))),
        rec(2, FileImage(str(tmp_path / "empty.jpg"))),
        rec(3, BytesImage(b"this is not an image")),
        rec(4, BytesImage(truncated)),
        rec(5, BytesImage(bomb.getvalue())),
        rec(6, BytesImage(good), caption=""),
        rec(7, BytesImage(good), caption="  \t\n "),
        rec(8, BytesImage(good), caption=None),
        rec(9, BytesImage(good), caption=b"caf\xe9 au lait"),
        rec(10, BytesImage(good), language="xx"),
        rec(11, BytesImage(good), language=None),
        rec(12, BytesImage(good), caption_id="cap0"),  # duplicate of record 0
        rec(13, BytesImage(good), caption_id="a.b"),
        rec(14, BytesImage(good), caption_id=sample_key("a.b")),  # a safe id equal to the shard key of "a.b"
        rec(15, None),
        rec(16, FileImage(str(tmp_path))),  # a directory
        rec(17, BytesImage(good), caption="ein roter Kasten".encode("utf-8"), language="DE"),
        rec(18, BytesImage(jpeg_bytes(fmt="PNG")), caption="  une boîte rouge ", language="fra"),
    ]
    summary = pack(ListSource({"train": records}), tmp_path / "out",
                   PackOptions(workers=workers, max_pixels=100_000, progress=False))
    out = tmp_path / "out"
    assert rejects_by_id(out) == {
        "cap1": "missing_image", "cap2": "empty_image", "cap3": "undecodable_image", "cap4": "truncated_image",
        "cap5": "too_many_pixels", "cap6": "empty_caption", "cap7": "empty_caption", "cap8": "empty_caption",
        "cap9": "invalid_utf8", "cap10": "unknown_language", "cap11": "unknown_language", "cap0": "duplicate_id",
        sample_key("a.b"): "duplicate_id", "cap15": "missing_image", "cap16": "unreadable_image",
    }
    samples = written_samples(out, "train")
    assert [s.caption_id for s in samples] == ["cap0", "a.b", "cap17", "cap18"]
    assert [s.key for s in samples] == ["cap0", sample_key("a.b"), "cap17", "cap18"]
    assert sample_key("a.b").startswith("a_b-") and sample_key("a.b") != sample_key("a_b") == "a_b"
    assert [s.caption for s in samples] == ["a red box", "a red box", "ein roter Kasten", "une boîte rouge"]
    assert [s.language for s in samples] == ["en", "en", "de", "fr"]
    assert all(Image.open(io.BytesIO(s.image)).format == "JPEG" for s in samples)
    assert (samples[0].width, samples[0].height) == (32, 24)
    t = summary["totals"]
    assert (t["read"], t["written"], t["rejected"]) == (19, 4, 15)
    assert t["read"] == t["written"] + t["rejected"]
    assert sum(t["rejects"].values()) == 15 and set(t["rejects"]) <= set(REJECT_REASONS)
    assert json.loads((out / "summary.json").read_text())["totals"] == t
    assert verify_dataset(out, decode_images=True, progress=False).ok


def test_world_tiny_layout_manifests_and_summary(tiny_world):
    out = tiny_world
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["splits"]) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        tars = list_shards(out, split)
        assert tars and [t.name for t in tars] == [f"{split}-{i:06d}.tar" for i in range(len(tars))]
        rows = 0
        for tar in tars:
            manifest = pq.read_table(manifest_path(tar))
            assert manifest.column_names == ["key", "image_id", "caption_id", "language", "split", "caption_length",
                                             "width", "height", "image_bytes", "origin", "input_index"]
            keys = [s["__key__"] for s in iter_shard(tar)]
            assert keys == manifest.column("key").to_pylist()
            assert set(manifest.column("split").to_pylist()) == {split}
            rows += manifest.num_rows
        s = summary["splits"][split]
        assert rows == s["written"] == s["read"] - s["rejected"]
        assert len(s["languages"]) == 14
    assert summary["totals"]["rejected"] == 0


def test_shards_respect_both_size_bounds(tmp_path):
    source = WorldSource("tiny", languages=("en", "ru"))
    pack(source, tmp_path / "by_count", PackOptions(max_samples_per_shard=7, workers=0, progress=False))
    infos = [read_shard_info(manifest_path(t)) for t in list_shards(tmp_path / "by_count", "train")]
    assert [i.num_samples for i in infos] == [7] * 6 + [6]
    limit = 40 * 1024
    pack(source, tmp_path / "by_bytes", PackOptions(max_shard_bytes=limit, workers=0, progress=False))
    infos = [read_shard_info(manifest_path(t)) for t in list_shards(tmp_path / "by_bytes", "train")]
    assert len(infos) > 1 and all(i.tar_bytes <= limit for i in infos)
    assert sum(i.num_samples for i in infos) == 48
    # consecutive input ranges that cover the whole split
    assert [i.input_start for i in infos] == [0] + [i.input_end for i in infos[:-1]] and infos[-1].input_end == 48


def _digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.suffix in (".tar", ".json") and "_pack" not in p.parts}


def test_crash_mid_split_then_rerun_gives_the_same_shards_as_an_uninterrupted_run(tmp_path, workers):
    good = [rec(i, BytesImage(jpeg_bytes(colour=(i * 3 % 255, 10, 10)))) for i in range(80)]
    good[5].caption = ""  # a reject inside a finished shard
    good[73].caption = None  # ... and one in the part after the crash
    options = PackOptions(max_samples_per_shard=8, workers=workers, chunk_size=2, progress=False)
    pack(ListSource({"train": good}), tmp_path / "ref", options)

    with pytest.raises(RuntimeError, match="simulated crash"):
        pack(ListSource({"train": good}, fail_after=60), tmp_path / "crashed", options)
    crashed = tmp_path / "crashed"
    finished = list_finished_shards(crashed, "train")
    # records are read ahead of the writer (at most 4 * workers chunks), so the crash lands a few shards early
    assert 3 <= len(finished) <= 7 and [t.name for t in finished] == [f"train-{i:06d}.tar" for i in range(len(finished))]
    assert not list((crashed / "train").glob("*.tmp-*")), "an aborted shard left a temporary file"
    assert not (crashed / "summary.json").exists()

    pack(ListSource({"train": good}), crashed, options)
    assert _digest(crashed) == _digest(tmp_path / "ref")
    ids = [s.caption_id for s in written_samples(crashed, "train")]
    assert len(ids) == len(set(ids)) == 78
    assert rejects_by_id(crashed) == {"cap5": "empty_caption", "cap73": "empty_caption"}


def test_leftovers_of_a_killed_run_are_ignored_and_cleaned(tmp_path):
    records = [rec(i, BytesImage(jpeg_bytes())) for i in range(20)]
    options = PackOptions(max_samples_per_shard=5, workers=0, progress=False)
    pack(ListSource({"train": records}), tmp_path / "ref", options)
    out = tmp_path / "out"
    pack(ListSource({"train": records}), out, options)
    # Make it look like a run killed with SIGKILL after shard 1's tar was renamed but before its
    # manifest was written, while shard 2 was still being written.
    manifest_path(out / "train" / "train-000001.tar").unlink()
    (out / "train" / "train-000002.tar.tmp-12345").write_bytes(b"partial")
    for p in [out / "summary.json", out / "_pack" / "done" / "train.json"]:
        p.unlink()
    assert [t.name for t in list_finished_shards(out, "train")] != [f"train-00000{i}.tar" for i in range(4)]
    report = verify_dataset(out, progress=False)
    assert not report.ok and any("train-000001.tar" in s.path for s in report.bad_shards)
    pack(ListSource({"train": records}), out, options)
    assert _digest(out) == _digest(tmp_path / "ref")
    assert not list((out / "train").glob("*.tmp-*"))
    assert verify_dataset(out, progress=False).ok


def test_rerun_of_a_finished_dataset_does_nothing_and_other_settings_are_refused(tmp_path):
    records = [rec(i, BytesImage(jpeg_bytes())) for i in range(6)]
    out = tmp_path / "out"
    pack(ListSource({"train": records}), out, PackOptions(workers=0, progress=False))
    tar = list_shards(out, "train")[0]
    mtime = tar.stat().st_mtime_ns
    pack(ListSource({"train": records}), out, PackOptions(workers=0, progress=False))
    assert tar.stat().st_mtime_ns == mtime
    with pytest.raises(PackError, match="jpeg_quality"):
        pack(ListSource({"train": records}), out, PackOptions(workers=0, jpeg_quality=50, progress=False))
    with pytest.raises(PackError, match="tag"):
        pack(ListSource({"train": records}, tag="other input"), out, PackOptions(workers=0, progress=False))


def test_splits_whose_names_share_a_prefix_keep_their_own_rejects(tmp_path):
    img = BytesImage(jpeg_bytes())
    source = ListSource({
        "test": [rec(0, img, split="test"), rec(1, img, caption="", split="test")],
        "test-2017": [rec(2, img, caption="", split="test-2017"), rec(3, img, split="test-2017"),
                      rec(4, img, caption=None, split="test-2017")],
    })
    options = PackOptions(workers=0, progress=False, max_samples_per_shard=1)
    summary = pack(source, tmp_path / "out", options)
    assert summary["splits"]["test"]["rejected"] == 1 and summary["splits"]["test-2017"]["rejected"] == 2
    (tmp_path / "out" / "summary.json").unlink()
    (tmp_path / "out" / "_pack" / "done" / "test-2017.json").unlink()  # as if killed while packing test-2017
    summary = pack(source, tmp_path / "out", options)
    assert summary["splits"]["test"]["rejected"] == 1 and summary["splits"]["test-2017"]["rejected"] == 2
    assert rejects_by_id(tmp_path / "out") == {"cap1": "empty_caption", "cap2": "empty_caption", "cap4": "empty_caption"}
    assert pq.read_table(tmp_path / "out" / "rejects.parquet").num_rows == 3


def test_duplicate_ids_across_splits_are_rejected(tmp_path):
    img = BytesImage(jpeg_bytes())
    source = ListSource({"train": [rec(0, img), rec(1, img)], "test": [rec(1, img, split="test"), rec(2, img, split="test")]})
    summary = pack(source, tmp_path / "out", PackOptions(workers=0, progress=False))
    assert summary["splits"]["test"]["rejects"] == {"duplicate_id": 1}
    assert [s.caption_id for s in written_samples(tmp_path / "out", "test")] == ["cap2"]


def test_translation_groups_are_written_only_where_declared_and_read_back(tmp_path):
    img = BytesImage(jpeg_bytes())
    records = [rec(0, img), rec(1, img, language="de"), rec(2, img)]
    records[0].translation_group, records[1].translation_group, records[2].translation_group = "g1", 7, "  "
    pack(ListSource({"test": [dataclasses.replace(r, split="test") for r in records]}), tmp_path / "out",
         PackOptions(workers=0, progress=False))
    samples = written_samples(tmp_path / "out", "test")
    assert [s.translation_group for s in samples] == ["g1", "7", None]  # a blank group is none
    raw = [json.loads(raw["json"]) for tar in list_finished_shards(tmp_path / "out", "test") for raw in iter_shard(tar)]
    assert [md.get("translation_group") for md in raw] == ["g1", "7", None]
    assert "translation_group" not in raw[2]  # no key at all: datasets without groups keep their bytes
    # a sample written before the field existed reads back without a group
    old = samples[2].to_wds()
    assert Sample.from_wds(old).translation_group is None and b"translation_group" not in old["json"]
    with pytest.raises(ValueError, match="translation_group must be a non-empty string"):
        dataclasses.replace(samples[0], translation_group="")


def test_resize_and_rgb_conversion(tmp_path):
    buf = io.BytesIO()
    Image.new("RGBA", (400, 100), (0, 0, 255, 128)).save(buf, format="PNG")
    pack(ListSource({"train": [rec(0, BytesImage(buf.getvalue()))]}), tmp_path / "out",
         PackOptions(workers=0, max_side=100, progress=False))
    (sample,) = written_samples(tmp_path / "out", "train")
    img = Image.open(io.BytesIO(sample.image))
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (100, 25) == (sample.width, sample.height)
