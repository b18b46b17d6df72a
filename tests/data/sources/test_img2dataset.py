from __future__ import annotations

import argparse
import io
import json
import logging
import tarfile

import pytest
import webdataset as wds
from PIL import Image

from dist_train.data.pack import PackOptions, pack
from dist_train.data.sources.base import BytesImage, SourceRecord
from dist_train.data.sources.img2dataset import Img2datasetSource


def _jpeg(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(out, format="JPEG")
    return out.getvalue()


def _meta(key: str, caption: str) -> bytes:
    return json.dumps({"key": key, "caption": caption, "url": f"https://example.com/{key}.jpg", "status": "success",
                       "width": 16, "height": 12, "error_message": None}).encode()


def _kept(key: str) -> dict:
    """What a record keeps of img2dataset's .json: every field but the caption (the .txt)."""
    return {k: v for k, v in json.loads(_meta(key, "")).items() if k != "caption"}


def _shard(path, samples):
    """Writes the samples as img2dataset does: <key>.jpg, <key>.txt, <key>.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as w:
        for s in samples:
            w.write(s)
    return path


def _sample(key, colour=(255, 0, 0), caption="a caption"):
    return {"__key__": key, "jpg": _jpeg(colour), "txt": caption.encode(), "json": _meta(key, caption)}


RED, GREEN = _jpeg((255, 0, 0)), _jpeg((0, 255, 0))


@pytest.fixture
def shards(tmp_path):
    out = tmp_path / "cc"
    no_jpg = _sample("000000002")
    del no_jpg["jpg"]
    no_txt = _sample("000000003", (0, 255, 0))
    del no_txt["txt"]
    _shard(out / "00000.tar", [
        _sample("000000000", (255, 0, 0), "Ein rotes Bild."),
        {"__key__": "000000001", "jpg": GREEN, "txt": b"bad \xff utf-8", "json": b"{not json"},
        no_jpg,
        no_txt,
    ])
    _shard(out / "00001.tar", [_sample("000010000", (0, 255, 0), "Gr\u00fcn.")])
    (out / "00000.parquet").write_bytes(b"ignored")
    (out / "00000_stats.json").write_text("{}")
    return out


def test_samples_become_records_in_shard_order(shards):
    src = Img2datasetSource(shards, language="de")
    assert src.splits() == ["train"]
    assert list(src.records("train")) == [
        SourceRecord(BytesImage(RED), "Ein rotes Bild.", "de", "000000000", "00000-000000000", "train",
                     meta=_kept("000000000")),
        SourceRecord(BytesImage(GREEN), b"bad \xff utf-8", "de", "000000001", "00000-000000001", "train"),
        SourceRecord(None, "a caption", "de", "000000002", "00000-000000002", "train",
                     meta=_kept("000000002")),
        SourceRecord(BytesImage(GREEN), None, "de", "000000003", "00000-000000003", "train",
                     meta=_kept("000000003")),
        SourceRecord(BytesImage(GREEN), "Grün.", "de", "000010000", "00001-000010000", "train",
                     meta=_kept("000010000")),
    ]
    assert src.source_errors() == []
    assert list(src.records("val")) == []


def _cut_in_sample(path, key: str, member: str = "jpg", into: int = 100) -> bytes:
    """The tar's bytes cut `into` bytes into the data of member <key>.<member>."""
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        offset = tar.getmember(f"{key}.{member}").offset_data
    return data[: offset + into]


def test_a_truncated_tar_keeps_the_samples_before_the_break_and_is_reported(tmp_path, caplog):
    good = _shard(tmp_path / "full" / "00000.tar", [_sample(f"{i:09d}", (i * 60, 0, 0), f"caption {i}")
                                                    for i in range(4)])
    broken = tmp_path / "in" / "00000.tar"
    broken.parent.mkdir()
    broken.write_bytes(_cut_in_sample(good, "000000002"))
    _shard(tmp_path / "in" / "00001.tar", [_sample("000000009", caption="after the broken shard")])
    src = Img2datasetSource(tmp_path / "in", language="en")
    with caplog.at_level(logging.WARNING, logger="dist_train.data.sources.img2dataset"):
        records = list(src.records("train"))
    assert [(r.caption_id, r.caption) for r in records] == [
        ("00000-000000000", "caption 0"), ("00000-000000001", "caption 1"),
        ("00001-000000009", "after the broken shard")]
    assert records[1].image == BytesImage(_jpeg((60, 0, 0)))
    assert src.source_errors() == [("corrupt_input_shard", f"{broken}: unexpected end of data")]
    assert [r.getMessage() for r in caplog.records] == [
        f"corrupt_input_shard: {broken}: unexpected end of data; the samples read before the break are kept"]
    list(src.records("train"))  # reading again reports nothing new
    assert len(src.source_errors()) == 1


def test_a_sample_cut_after_its_first_members_is_yielded_with_what_was_read(tmp_path):
    good = _shard(tmp_path / "full.tar", [_sample("a", caption="first"), _sample("b", caption="second")])
    broken = tmp_path / "in" / "00000.tar"
    broken.parent.mkdir()
    # members are written in sorted order: jpg, json, txt; cut inside b's txt
    broken.write_bytes(_cut_in_sample(good, "b", "txt", into=3))
    src = Img2datasetSource(broken, language="en")
    assert list(src.records("train")) == [
        SourceRecord(BytesImage(_jpeg((255, 0, 0))), "first", "en", "a", "00000-a", "train",
                     meta=_kept("a")),
        SourceRecord(BytesImage(_jpeg((255, 0, 0))), None, "en", "b", "00000-b", "train",
                     meta=_kept("b")),
    ]
    assert src.source_errors() == [("corrupt_input_shard", f"{broken}: unexpected end of data")]


def test_a_tar_cut_at_a_member_boundary_is_reported_too(tmp_path):
    # tarfile takes a tar that ends exactly before a header for a complete one
    good = _shard(tmp_path / "full.tar", [_sample("a", caption="first"), _sample("b", caption="second")])
    with tarfile.open(good) as tar:
        last = tar.getmember("a.txt")
        cut = last.offset_data + -(-last.size // 512) * 512  # where a's last member ends and b's headers begin
    broken = tmp_path / "in" / "00000.tar"
    broken.parent.mkdir()
    broken.write_bytes(good.read_bytes()[:cut])
    src = Img2datasetSource(broken, language="en")
    assert [r.caption for r in src.records("train")] == ["first"]
    assert src.source_errors() == [
        ("corrupt_input_shard", f"{broken}: the file ends without the end-of-archive marker (truncated?)")]


def test_garbage_and_empty_files_yield_nothing_and_are_reported(tmp_path):
    (tmp_path / "a.tar").write_bytes(b"this is no tar file" * 100)
    (tmp_path / "b.tar").write_bytes(b"")
    src = Img2datasetSource(tmp_path, language="en")
    assert list(src.records("train")) == []
    assert src.source_errors() == [
        ("corrupt_input_shard", f"{tmp_path / 'a.tar'}: invalid header"),
        ("corrupt_input_shard", f"{tmp_path / 'b.tar'}: empty file"),
    ]


def test_input_patterns(shards, tmp_path):
    assert [p.name for p in Img2datasetSource(shards / "0000{1,0}.tar", language="en").shards] == [
        "00001.tar", "00000.tar"]
    assert [p.name for p in Img2datasetSource(f"{shards}/*.tar", language="en").shards] == ["00000.tar", "00001.tar"]
    with pytest.raises(ValueError, match=r"--input: no file matches .*00002\.tar"):
        Img2datasetSource(shards / "0000{0..2}.tar", language="en")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"--input: no \.tar files in"):
        Img2datasetSource(tmp_path / "empty", language="en")


def test_from_args_through_a_real_parser(shards):
    parser = argparse.ArgumentParser()
    Img2datasetSource.add_arguments(parser)
    src = Img2datasetSource.from_args(parser.parse_args(["--input", str(shards), "--language", "FR", "--split", "web"]))
    assert src.splits() == ["web"]
    assert [(r.language, r.split) for r in src.records("web")] == [("fr", "web")] * 5
    described = src.describe()
    files = described.pop("input_files")
    assert described == {"source": "img2dataset", "language": "fr", "split": "web",
                         "shards": [str((shards / "00000.tar").resolve()), str((shards / "00001.tar").resolve())]}
    tar = (shards / "00000.tar").resolve()
    assert files[str(tar)] == {"size": tar.stat().st_size, "mtime_ns": tar.stat().st_mtime_ns}  # no hash of the images
    assert set(files[str(tar.with_suffix(".parquet"))]) == {"size", "mtime_ns", "sha256"}
    with pytest.raises(ValueError, match=r"--language: give the captions' language, or --language-field"):
        Img2datasetSource.from_args(parser.parse_args(["--input", str(shards)]))  # one of the two is required
    with pytest.raises(ValueError, match=r"--language: 'und' names no particular language"):
        Img2datasetSource.from_args(parser.parse_args(["--input", str(shards), "--language", "und"]))
    with pytest.raises(ValueError, match=r"--split: invalid split name"):
        Img2datasetSource.from_args(parser.parse_args(["--input", str(shards), "--language", "en", "--split", "Web"]))


def test_packing_a_truncated_input_reports_it_in_the_summary(tmp_path):
    good = _shard(tmp_path / "full.tar", [_sample(f"{i:09d}", (0, 0, i * 60), f"caption {i}") for i in range(4)])
    broken = tmp_path / "in" / "00000.tar"
    broken.parent.mkdir()
    broken.write_bytes(_cut_in_sample(good, "000000003"))
    summary = pack(Img2datasetSource(broken, language="en"), tmp_path / "out", PackOptions(workers=0, progress=False))
    assert summary["totals"]["read"] == 3 and summary["totals"]["written"] == 3
    assert summary["source_errors"] == [
        {"reason": "corrupt_input_shard", "detail": f"{broken}: unexpected end of data", "split": "train"}]


def test_translation_groups_and_languages_from_the_json_or_the_parquet_beside_the_shard(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    def sample(key, caption, **extra):
        return {"__key__": key, "jpg": RED, "txt": caption.encode(),
                "json": json.dumps({"key": key, "caption": caption, **extra}).encode()}

    out = tmp_path / "web"
    _shard(out / "00000.tar", [sample("000000000", "A red box.", group="box", lang="en"),
                               sample("000000001", "Eine rote Kiste.", group="box", lang="de"),
                               sample("000000002", "Une boîte.", lang="fr"),
                               sample("000000003", "Nothing declared.")])
    # img2dataset's parquet holds the same extra columns; it fills in what a .json lacks
    pq.write_table(pa.table({"key": ["000000002", "000000003"], "group": [17, None], "lang": ["fr", None]}),
                   out / "00000.parquet")
    src = Img2datasetSource(out, language="en", group_field="group", language_field="lang")
    assert [(r.translation_group, r.language) for r in src.records("train")] == [
        ("box", "en"), ("box", "de"), ("17", "fr"), (None, "en")]
    assert src.describe()["group_field"] == "group" and src.describe()["language_field"] == "lang"
    assert src.source_errors() == []
    assert [r.translation_group for r in Img2datasetSource(out, language="en").records("train")] == [None] * 4
    parser = argparse.ArgumentParser()
    Img2datasetSource.add_arguments(parser)
    args = parser.parse_args(["--input", str(out), "--language-field", "lang", "--group-field", "group"])
    assert [r.language for r in Img2datasetSource.from_args(args).records("train")][:3] == ["en", "de", "fr"]
